#!/usr/bin/env python3
"""Generate storescp.cfg and profiles/*.cfg from the UID table (dcmrecv/negotiation/_uid_table.py).

Usage: python3 tools/gen_profiles.py [--check]

The files are DCMTK association negotiation profiles (dcmnet/docs/asconfig.txt)
that this receiver and DCMTK's own dcmrecv/storescp can both load.  --check
compares instead of writing and exits 1 when a committed file is out of date.

storescp.cfg negotiates as the storescp.cfg of DCMTK 3.7.0 (dcmnet/etc/): the
same profiles (Default, AllDICOM), presentation context lists
(GenericStorageSCP, AllDICOMStorageSCP) and transfer syntax lists, each SOP
class in the same list, each list in the same order.  What decides a class's
list is a rule (is_image_class), so that rows added to the UID table after
DCMTK 3.7.0 land where DCMTK would put them; tests/test_bundled_profiles.py
holds the result to DCMTK's file, context by context.

Names are DCMTK's, except for UIDs DCMTK 3.6.7 (Debian 12's dcmtk) has no name
for: those are written as numbers (with the name in a comment line above), so
that DCMTK's own tools understand every value.  DCMTK 3.6.8 and later load the
files; DCMTK 3.6.7 and older read every presentation context list as if for a
requestor, limited to 128 entries (DcmAssociationConfigurationFile::initialize,
SCU mode; lifted for SCP use in 3.6.8), which "all storage SOP classes" exceeds,
in DCMTK's own storescp.cfg since 3.6.8 as here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dcmrecv.negotiation._uid_table import UID_ROWS  # noqa: E402
from dcmrecv.negotiation.uids import (  # noqa: E402
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    LOCAL_ENDIAN_EXPLICIT,
    OPPOSITE_ENDIAN_EXPLICIT,
    STORAGE_SOP_CLASSES,
    TRANSFER_SYNTAXES,
    VERIFICATION_SOP_CLASS,
    uid_name,
)

# UIDs that DCMTK 3.6.7's UID name map (dcmdata/libsrc/dcuid.cc) does not know by
# the name current DCMTK gives them: added in 3.6.8 or later, or renamed since.
# Compiled from DCMTK 3.6.7's dcuid.cc; tests/test_bundled_profiles.py checks that
# DCMTK 3.6.7's dcmrecv understands every value of the generated files.
UNNAMED_IN_DCMTK_3_6_7 = frozenset(
    {
        "1.2.840.10008.1.2.1.98",
        "1.2.840.10008.1.2.8.1",
        "1.2.840.10008.1.2.4.100.1",
        "1.2.840.10008.1.2.4.101.1",
        "1.2.840.10008.1.2.4.102.1",
        "1.2.840.10008.1.2.4.103.1",
        "1.2.840.10008.1.2.4.104.1",
        "1.2.840.10008.1.2.4.105.1",
        "1.2.840.10008.1.2.4.106.1",
        "1.2.840.10008.1.2.4.110",
        "1.2.840.10008.1.2.4.111",
        "1.2.840.10008.1.2.4.112",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
        "1.2.840.10008.1.2.4.204",
        "1.2.840.10008.1.2.4.205",
        "1.2.840.10008.1.2.6.1",
        "1.2.840.10008.1.2.6.2",
        "1.2.840.10008.5.1.4.1.1.77.1.8",
        "1.2.840.10008.5.1.4.1.1.77.1.9",
        "1.2.840.10008.5.1.4.1.1.481.24",
        "1.2.840.10008.5.1.4.1.1.481.23",
        "1.2.840.10008.5.1.4.1.1.9.1.4",
        "1.2.840.10008.5.1.4.1.1.66.8",
        "1.2.840.10008.5.1.4.1.1.88.70",
        "1.2.840.10008.5.1.4.1.1.66.7",
        "1.2.840.10008.5.1.4.1.1.6.3",
        "1.2.840.10008.5.1.4.1.1.481.25",
        "1.2.840.10008.5.1.4.1.1.11.12",
        "1.2.840.10008.5.1.4.1.1.9.100.2",
        "1.2.840.10008.5.1.4.1.1.88.77",
        "1.2.840.10008.5.1.4.1.1.9.100.1",
        "1.2.840.10008.5.1.4.1.1.601.3",
        "1.2.840.10008.5.1.4.1.1.601.4",
        "1.2.840.10008.5.1.4.1.1.601.5",
        "1.2.840.10008.5.1.4.1.1.201.1",
    }
)

ENCAPSULATED_UNCOMPRESSED = "1.2.840.10008.1.2.1.98"  # PS3.5 A.4, one fragment per frame
DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"  # PS3.5 A.4, deflate per frame

# The compressed head of DCMTK 3.7.0's [AnyTransferSyntax], in its order: JPEG
# Baseline first, lossy and lossless mixed, roughly in the order DCMTK learnt
# them (not the UID order, nor the table's).  Compiled from that file; the test
# compares.  Syntaxes the UID table gains later go after these (any_transfer_syntax).
DCMTK_COMPRESSED_ORDER = (
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 and 4)
    "1.2.840.10008.1.2.4.52",
    "1.2.840.10008.1.2.4.53",
    "1.2.840.10008.1.2.4.54",
    "1.2.840.10008.1.2.4.55",
    "1.2.840.10008.1.2.4.56",
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.58",
    "1.2.840.10008.1.2.4.59",
    "1.2.840.10008.1.2.4.60",
    "1.2.840.10008.1.2.4.61",
    "1.2.840.10008.1.2.4.62",
    "1.2.840.10008.1.2.4.63",
    "1.2.840.10008.1.2.4.64",
    "1.2.840.10008.1.2.4.65",
    "1.2.840.10008.1.2.4.66",
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Lossy (Near-Lossless)
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 (Lossless Only)
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.100",  # MPEG2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.101",
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264
    "1.2.840.10008.1.2.4.103",
    "1.2.840.10008.1.2.4.104",
    "1.2.840.10008.1.2.4.105",
    "1.2.840.10008.1.2.4.106",
    "1.2.840.10008.1.2.4.100.1",  # the fragmentable MPEG variants
    "1.2.840.10008.1.2.4.101.1",
    "1.2.840.10008.1.2.4.102.1",
    "1.2.840.10008.1.2.4.103.1",
    "1.2.840.10008.1.2.4.104.1",
    "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106.1",
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265
    "1.2.840.10008.1.2.4.108",
    "1.2.840.10008.1.2.4.201",  # HTJ2K (Lossless Only)
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
    "1.2.840.10008.1.2.4.111",
    "1.2.840.10008.1.2.4.112",
    DEFLATED_IMAGE_FRAME,
)

# In the table but in none of DCMTK's lists, nor here: the JPIP Referenced
# syntaxes carry no pixel data, only its Pixel Data Provider URL (0028,7FE0)
# (PS3.5 A.4); the SMPTE ST 2110 ones exist for DICOM Real-Time Video
# only (PS3.22); the two retired ones (RFC 2557 MIME, XML) were never DIMSE
# transfer syntaxes.
NOT_FOR_STORAGE = frozenset(
    {
        "1.2.840.10008.1.2.4.94",
        "1.2.840.10008.1.2.4.95",
        "1.2.840.10008.1.2.4.204",
        "1.2.840.10008.1.2.4.205",
        "1.2.840.10008.1.2.7.1",
        "1.2.840.10008.1.2.7.2",
        "1.2.840.10008.1.2.7.3",
        "1.2.840.10008.1.2.6.1",
        "1.2.840.10008.1.2.6.2",
    }
)

# Transfer syntaxes whose pixel data decode to exactly what was encoded (PS3.5
# section 8.2 and Annex A.4): encapsulated uncompressed, RLE, deflated frames,
# and the lossless modes of JPEG, JPEG-LS, JPEG 2000, HTJ2K and JPEG XL.
LOSSLESS_COMPRESSED = frozenset(
    {
        ENCAPSULATED_UNCOMPRESSED,
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
        "1.2.840.10008.1.2.4.58",  # JPEG Lossless, Non-Hierarchical (Process 15), retired
        "1.2.840.10008.1.2.4.65",  # JPEG Lossless, Hierarchical (Process 28), retired
        "1.2.840.10008.1.2.4.66",  # JPEG Lossless, Hierarchical (Process 29), retired
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction (Process 14 SV1)
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 (Lossless Only)
        "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 Multi-component (Lossless Only)
        "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
        "1.2.840.10008.1.2.4.201",  # HTJ2K (Lossless Only)
        "1.2.840.10008.1.2.4.202",  # HTJ2K with RPCL Options (Lossless Only)
        "1.2.840.10008.1.2.5",  # RLE Lossless
        DEFLATED_IMAGE_FRAME,
    }
)

# DCMTK's lists end with the uncompressed encodings, Explicit VR in the machine's
# byte order first (asconfig.txt 2.1: LocalEndianExplicit, OppositeEndianExplicit).
# Retired Explicit VR Big Endian (PS3.5 A.3) stays in, as in DCMTK's file.
UNCOMPRESSED = (LOCAL_ENDIAN_EXPLICIT, OPPOSITE_ENDIAN_EXPLICIT, IMPLICIT_VR_LITTLE_ENDIAN)
UNCOMPRESSED_OR_ZLIB = (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, *UNCOMPRESSED)
# The two Encapsulated lists leave the retired big endian syntax out (DCMTK's
# comment) and write Explicit VR Little Endian by name.  No profile of DCMTK's
# uses them; they are here so that the file has all of DCMTK's list names.
UNCOMPRESSED_ENCAPSULATED = (
    ENCAPSULATED_UNCOMPRESSED,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
UNCOMPRESSED_ENCAPSULATED_OR_ZLIB = (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    *UNCOMPRESSED_ENCAPSULATED,
)

# The storage SOP classes that DCMTK's storescp.cfg (3.6.8 to 3.7.0) accepts with
# any transfer syntax although their DCMTK name has no "Image" in it: surface and
# thickness maps, the ultrasound volume, and DICOS's 2D/3D automated image
# threat detection (AIT) objects.  See is_image_class.
IMAGE_CLASSES_NOT_NAMED_IMAGE = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.82.1",  # Corneal Topography Map Storage
        "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume Storage
        "1.2.840.10008.5.1.4.1.1.81.1",  # Ophthalmic Thickness Map Storage
        "1.2.840.10008.5.1.4.1.1.501.4",  # DICOS 2D AIT Storage
        "1.2.840.10008.5.1.4.1.1.501.5",  # DICOS 3D AIT Storage
    }
)

_STATUS = {row[0]: row[4] for row in UID_ROWS}


def is_image_class(sop_class_uid: str) -> bool:
    """True for a storage SOP class that takes any transfer syntax, as in DCMTK's storescp.cfg.

    The rule: DCMTK's name for the class says "Image" (CTImageStorage,
    RETIRED_VLImageStorage, DICOS_CTImageStorage, ...), or it is one of
    IMAGE_CLASSES_NOT_NAMED_IMAGE.  It gives exactly the image list of DCMTK's
    storescp.cfg: segmentations, parametric maps, RT Dose, waveforms, SR,
    presentation states and all other classes fall to the non-image list, as
    DCMTK has them ("including segmentation", says its file), although DCMTK's
    dcmImageSOPClassUIDs (dcuid.h) counts segmentations and parametric maps as
    images.  A class newer than DCMTK 3.7.0 is placed by its name.
    """
    return "Image" in uid_name(sop_class_uid) or sop_class_uid in IMAGE_CLASSES_NOT_NAMED_IMAGE


def any_transfer_syntax() -> tuple[str, ...]:
    """DCMTK 3.7.0's [AnyTransferSyntax]: compressed first, then deflated, then uncompressed.

    A transfer syntax the UID table has and that list lacks (one newer than
    DCMTK 3.7.0) goes after DCMTK's compressed ones, in table order, unless it
    is NOT_FOR_STORAGE.
    """
    tail = (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, ENCAPSULATED_UNCOMPRESSED, *UNCOMPRESSED)
    placed = {
        *DCMTK_COMPRESSED_ORDER,
        *tail,
        EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
        *NOT_FOR_STORAGE,
    }
    newer = tuple(ts for ts in TRANSFER_SYNTAXES if ts not in placed)
    return (*DCMTK_COMPRESSED_ORDER, *newer, *tail)


def lossless_only() -> tuple[str, ...]:
    """any_transfer_syntax() without the lossy syntaxes, in the same order."""
    keep = {*LOSSLESS_COMPRESSED, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, *UNCOMPRESSED}
    return tuple(ts for ts in any_transfer_syntax() if ts in keep)


# ---------------------------------------------------------------------------
# A file in DCMTK's layout.


@dataclass(frozen=True)
class ContextGroup:
    """Consecutive PresentationContextN entries, with a comment block above them."""

    comment: str
    contexts: tuple[tuple[str, str], ...]  # (abstract syntax UID, transfer syntax list name)


@dataclass(frozen=True)
class ContextList:
    name: str
    comment: str
    groups: tuple[ContextGroup, ...]


@dataclass(frozen=True)
class ConfigFile:
    header: str
    transfer_syntax_lists: tuple[tuple[str, tuple[str, ...]], ...]  # (name, entries)
    context_lists: tuple[ContextList, ...]
    profiles: tuple[tuple[str, str, str], ...]  # (profile name, context list name, comment)


def uid_text(uid: str) -> str:
    """How a UID is written: DCMTK's name, as a number where DCMTK 3.6.7 has no name."""
    if uid in (LOCAL_ENDIAN_EXPLICIT, OPPOSITE_ENDIAN_EXPLICIT):
        return uid
    return uid if uid in UNNAMED_IN_DCMTK_3_6_7 else uid_name(uid)


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() + "\n" for line in text.splitlines()]


def _entries(key: str, values: Iterable[tuple[str, str]], first: int, width: int) -> list[str]:
    """``keyN = value`` lines from N = first, keys padded to width as in DCMTK's files; a
    named UID written as a number gets its name in a comment line above."""
    out = []
    for number, (uid, rest) in enumerate(values, start=first):
        written = uid_text(uid)
        if written == uid and uid_name(uid) != uid:
            out.append(f"# {uid_name(uid)}\n")
        out.append(f"{f'{key}{number}':<{width}} = {written}{rest}\n")
    return out


def _supersection(title: str) -> list[str]:
    rule = "# " + "=" * 76 + "\n"
    return ["\n", rule, f"[[{title}]]\n", rule]


def render(config: ConfigFile) -> str:
    out = _comment(config.header)
    out += _supersection("TransferSyntaxes")
    for name, syntaxes in config.transfer_syntax_lists:
        width = len(f"TransferSyntax{len(syntaxes)}")
        out += ["\n", f"[{name}]\n"]
        out += _entries("TransferSyntax", ((ts, "") for ts in syntaxes), 1, width)
    out += _supersection("PresentationContexts")
    for context_list in config.context_lists:
        out += ["\n", f"[{context_list.name}]\n", *_comment(context_list.comment)]
        total = sum(len(group.contexts) for group in context_list.groups)
        width = len(f"PresentationContext{total}")
        number = 1
        for group in context_list.groups:
            out += _comment("\n" + group.comment)
            pairs = ((uid, f"\\{ts}") for uid, ts in group.contexts)
            out += _entries("PresentationContext", pairs, number, width)
            number += len(group.contexts)
    out += _supersection("Profiles")
    for name, context_list_name, comment in config.profiles:
        out += ["\n", *_comment(comment), f"[{name}]\n"]
        out.append(f"PresentationContexts = {context_list_name}\n")
    return "".join(out)


# ---------------------------------------------------------------------------
# The files.

ANY = "AnyTransferSyntax"
NON_IMAGE = "UncompressedOrZlib"

# DCMTK's transfer syntax lists, by its names and in its order.
DCMTK_TRANSFER_SYNTAX_LISTS = (
    ("Uncompressed", UNCOMPRESSED),
    ("UncompressedEncapsulated", UNCOMPRESSED_ENCAPSULATED),
    ("UncompressedOrZlib", UNCOMPRESSED_OR_ZLIB),
    ("UncompressedEncapsulatedOrZlib", UNCOMPRESSED_ENCAPSULATED_OR_ZLIB),
    ("AnyTransferSyntax", any_transfer_syntax()),
)

_VERIFICATION = ContextGroup(
    "Verification (C-ECHO), uncompressed.", ((VERIFICATION_SOP_CLASS, "Uncompressed"),)
)


def _storage_group(comment: str, classes: Iterable[str], sort: bool = True) -> ContextGroup:
    chosen = list(classes)
    if sort:
        # DCMTK sorts by name, in byte order (MRSpectroscopy before Macular...).
        chosen.sort(key=uid_name)
    return ContextGroup(
        comment, tuple((uid, ANY if is_image_class(uid) else NON_IMAGE) for uid in chosen)
    )


def _family(uid: str) -> str:
    """standard, retired, draft, or the DCMTK name prefix of the DICOS/DICONDE classes."""
    status = _STATUS[uid]
    if status in ("standard", "retired", "draft"):
        return status
    return uid_name(uid).split("_", 1)[0]


def storage_groups(current_only: bool) -> tuple[ContextGroup, ...]:
    """The storage classes of the table in DCMTK's storescp.cfg layout.

    Images (standard, retired, draft), then non-images (the same), then DICOS
    and DICONDE, each with its images first, in table order.
    """
    by_family: dict[str, list[str]] = {}
    for uid in STORAGE_SOP_CLASSES:
        by_family.setdefault(_family(uid), []).append(uid)
    families = ("standard",) if current_only else tuple(by_family)
    groups = []
    for image in (True, False):
        kind = "image" if image else "non-image"
        for family in ("standard", "retired", "draft"):
            if family not in families:
                continue
            classes = [uid for uid in by_family.get(family, []) if is_image_class(uid) == image]
            if classes:
                label = (
                    f"{kind} SOP classes"
                    if family == "standard"
                    else f"{family} {kind} SOP classes"
                )
                groups.append(_storage_group(label[0].upper() + label[1:] + ".", classes))
    for family in families:
        if family in ("standard", "retired", "draft"):
            continue
        classes = sorted(by_family[family], key=lambda uid: not is_image_class(uid))
        groups.append(_storage_group(f"{family} storage SOP classes.", classes, sort=False))
    return tuple(groups)


_LIST_COMMENT = (
    "Image SOP classes in any transfer syntax this receiver knows, compressed first,\n"
    "so that a sender can send what it holds; other SOP classes uncompressed or\n"
    "deflated only, as in DCMTK's storescp.cfg."
)

_FOOTER = (
    "Generated by tools/gen_profiles.py from the UID table; do not edit, regenerate\n"
    "with `python3 tools/gen_profiles.py`.  Format: DCMTK's dcmnet/docs/asconfig.txt.\n"
    "UIDs that DCMTK 3.6.7 has no name for are written as numbers, with the name\n"
    "in a comment line above.  DCMTK 3.6.8 and later load this file as it is;\n"
    "DCMTK 3.6.7 and older refuse any presentation context list of more than 128\n"
    "entries, even for a receiver, and cannot load a file that has a longer one."
)


def storescp_cfg() -> ConfigFile:
    return ConfigFile(
        header=(
            "Association negotiation profiles for dcmrecv and storescp.\n\n"
            "Use: dcmrecv -xf storescp.cfg Default <port>\n\n"
            "Default   every storage SOP class DCMTK knows (standard, retired, draft,\n"
            "          DICOS, DICONDE), plus Verification.\n"
            "AllDICOM  the same, limited to current (non-retired, non-draft) standard\n"
            "          storage SOP classes.\n\n"
            "Both negotiate as DCMTK 3.7.0's own storescp.cfg: the same profiles, lists\n"
            "and preference orders.  Image SOP classes take any transfer syntax, JPEG\n"
            "Baseline and the other compressed ones first, so compressed data arrive as\n"
            "the sender holds them; other SOP classes take Deflated Explicit VR Little\n"
            "Endian or an uncompressed transfer syntax.  The receiver picks the first\n"
            "syntax of its list that the sender offers, whatever the sender's order.\n\n" + _FOOTER
        ),
        transfer_syntax_lists=DCMTK_TRANSFER_SYNTAX_LISTS,
        context_lists=(
            ContextList(
                "GenericStorageSCP",
                _LIST_COMMENT,
                (_VERIFICATION, *storage_groups(current_only=False)),
            ),
            ContextList(
                "AllDICOMStorageSCP",
                "As GenericStorageSCP, without retired, draft, DICOS and DICONDE SOP classes.\n"
                + _LIST_COMMENT,
                (_VERIFICATION, *storage_groups(current_only=True)),
            ),
        ),
        profiles=(
            ("Default", "GenericStorageSCP", "All storage SOP classes, and Verification."),
            ("AllDICOM", "AllDICOMStorageSCP", "Current standard storage SOP classes only."),
        ),
    )


def _one_list_file(
    header: str, profile: str, list_name: str, syntaxes: tuple[str, ...], comment: str
) -> ConfigFile:
    """Every storage SOP class with one transfer syntax list, and Verification."""
    storage = tuple((uid, list_name) for uid in STORAGE_SOP_CLASSES)
    lists = (("Uncompressed", UNCOMPRESSED),)
    if list_name != "Uncompressed":
        lists += ((list_name, syntaxes),)
    return ConfigFile(
        header=f"{header}\n\n{_FOOTER}",
        transfer_syntax_lists=lists,
        context_lists=(
            ContextList(
                f"{profile}StorageSCP",
                "",
                (_VERIFICATION, ContextGroup("Storage SOP classes.", storage)),
            ),
        ),
        profiles=((profile, f"{profile}StorageSCP", comment),),
    )


def build_configs() -> dict[Path, ConfigFile]:
    """Every generated file, by path, before rendering."""
    verification = ConfigFile(
        header=(
            "Verification only: dcmrecv -xf profiles/verification.cfg Verification <port>\n\n"
            "Use it to test connectivity (echoscu, C-ECHO) with a receiver that must not\n"
            "store anything: only the Verification SOP class is accepted, in any\n"
            "uncompressed transfer syntax (without -xf dcmrecv accepts Verification in\n"
            "Implicit VR Little Endian only).\n\n" + _FOOTER
        ),
        transfer_syntax_lists=(("Uncompressed", UNCOMPRESSED),),
        context_lists=(ContextList("VerificationSCP", "", (_VERIFICATION,)),),
        profiles=(("Verification", "VerificationSCP", "Verification SOP class only."),),
    )
    files = {
        REPO / "storescp.cfg": storescp_cfg(),
        REPO / "profiles" / "uncompressed.cfg": _one_list_file(
            "Uncompressed only: dcmrecv -xf profiles/uncompressed.cfg Uncompressed <port>\n\n"
            "Use it when whatever reads the received files cannot decompress: every\n"
            "storage SOP class is accepted in Explicit VR Little Endian, Implicit VR\n"
            "Little Endian or Explicit VR Big Endian only, so a sender holding\n"
            "compressed images must decompress them (or cannot send them).",
            "Uncompressed",
            "Uncompressed",
            UNCOMPRESSED,
            "All storage SOP classes and Verification, uncompressed only.",
        ),
        REPO / "profiles" / "lossless.cfg": _one_list_file(
            "Lossless only: dcmrecv -xf profiles/lossless.cfg LosslessOnly <port>\n\n"
            "Use it for archives and diagnostic reading that must never receive lossy\n"
            "compressed pixel data: lossless JPEG, JPEG-LS, JPEG 2000, HTJ2K, JPEG XL and\n"
            "RLE (preferred, in the order of storescp.cfg's AnyTransferSyntax, so that\n"
            "they arrive as the sender holds them), deflated and uncompressed are\n"
            "accepted; a sender offering only a lossy syntax for a SOP class is refused\n"
            "that presentation context.",
            "LosslessOnly",
            "LosslessOnly",
            lossless_only(),
            "All storage SOP classes and Verification, lossless only.",
        ),
        REPO / "profiles" / "verification.cfg": verification,
    }
    return files


def build_files() -> dict[Path, str]:
    return {path: render(config) for path, config in build_configs().items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    stale = 0
    for path, text in build_files().items():
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                print(f"{path} is out of date: run tools/gen_profiles.py", file=sys.stderr)
                stale = 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return stale


if __name__ == "__main__":
    sys.exit(main())
