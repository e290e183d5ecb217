#!/usr/bin/env python3
"""Generate storescp.cfg and profiles/*.cfg from the UID table (dcmrecv/negotiation/_uid_table.py).

Usage: python3 tools/gen_profiles.py [--check]

The files are DCMTK association negotiation profiles (dcmnet/docs/asconfig.txt)
that this receiver and DCMTK's own dcmrecv/storescp can both load.  --check
compares instead of writing and exits 1 when a committed file is out of date.

Names are DCMTK's, except for UIDs DCMTK 3.6.7 (Debian 12's dcmtk) has no name
for: those are written as numbers (with the name in a comment line above), so
that DCMTK's own tools understand every value.  DCMTK 3.6.8 and later load the
files; DCMTK 3.6.7 and older read every presentation context list as if for a
requestor, limited to 128 entries (DcmAssociationConfigurationFile::initialize,
SCU mode; lifted for SCP use in 3.6.8), which "all storage SOP classes" exceeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dcmrecv.negotiation._uid_table import UID_ROWS  # noqa: E402
from dcmrecv.negotiation.asconfig import (  # noqa: E402
    AssociationProfiles,
    PresentationContextSpec,
    Profile,
    render_asconfig,
)
from dcmrecv.negotiation.uids import (  # noqa: E402
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    STORAGE_SOP_CLASSES,
    TRANSFER_SYNTAXES,
    VERIFICATION_SOP_CLASS,
    uid_name,
)

# UIDs that DCMTK 3.6.7's UID name map (dcmdata/libsrc/dcuid.cc) does not know by
# the name current DCMTK gives them: added in 3.6.8 or later, or renamed since.
# Compiled from DCMTK 3.6.7's dcuid.cc; tests/test_asconfig.py checks that
# DCMTK 3.6.7's dcmrecv loads the generated files.
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

# Uncompressed (native) encodings, PS3.5 A.1, A.2, A.3: the receiver's preference.
UNCOMPRESSED = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN)

# Transfer syntaxes whose pixel data decode to exactly what was encoded (PS3.5
# section 8.2 and Annex A.4): encapsulated uncompressed, RLE, deflated frames,
# and the lossless modes of JPEG, JPEG-LS, JPEG 2000, HTJ2K and JPEG XL.
LOSSLESS_COMPRESSED = frozenset(
    {
        "1.2.840.10008.1.2.1.98",  # Encapsulated Uncompressed Explicit VR Little Endian
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
        "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression
    }
)

# In the table but not for storing data sets received with C-STORE: the SMPTE
# ST 2110 syntaxes exist for DICOM Real-Time Video only (PS3.22), and the two
# retired ones (RFC 2557 MIME, XML) were never DIMSE transfer syntaxes.
NOT_FOR_STORAGE = frozenset(
    {
        "1.2.840.10008.1.2.7.1",
        "1.2.840.10008.1.2.7.2",
        "1.2.840.10008.1.2.7.3",
        "1.2.840.10008.1.2.6.1",
        "1.2.840.10008.1.2.6.2",
    }
)

_STATUS = {row[0]: row[4] for row in UID_ROWS}


def any_transfer_syntax() -> tuple[str, ...]:
    """Everything the receiver stores: uncompressed first, then deflated, lossless, lossy."""
    first = (*UNCOMPRESSED, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
    rest = [ts for ts in TRANSFER_SYNTAXES if ts not in first and ts not in NOT_FOR_STORAGE]
    lossless = [ts for ts in rest if ts in LOSSLESS_COMPRESSED]
    lossy = [ts for ts in rest if ts not in LOSSLESS_COMPRESSED]
    return (*first, *lossless, *lossy)


def lossless_transfer_syntaxes() -> tuple[str, ...]:
    return tuple(
        ts
        for ts in any_transfer_syntax()
        if ts in (*UNCOMPRESSED, *LOSSLESS_COMPRESSED, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
    )


LIST_NAMES = {
    UNCOMPRESSED: "Uncompressed",
    any_transfer_syntax(): "AnyTransferSyntax",
    lossless_transfer_syntaxes(): "LosslessOnly",
}


def storage_profile(name: str, classes: tuple[str, ...], syntaxes: tuple[str, ...]) -> Profile:
    verification = PresentationContextSpec(VERIFICATION_SOP_CLASS, UNCOMPRESSED)
    contexts = tuple(PresentationContextSpec(uid, syntaxes) for uid in classes)
    return Profile(name=name, contexts=(verification, *contexts))


def uid_text(uid: str) -> str:
    return uid if uid in UNNAMED_IN_DCMTK_3_6_7 else uid_name(uid)


def _header(title: str, body: str) -> str:
    return (
        f"{title}\n\n{body}\n\n"
        "Generated by tools/gen_profiles.py from the UID table; do not edit, regenerate\n"
        "with `python3 tools/gen_profiles.py`.  Format: DCMTK's dcmnet/docs/asconfig.txt.\n"
        "UIDs that DCMTK 3.6.7 has no name for are written as numbers, with the name\n"
        "in a comment line above.  DCMTK 3.6.8 and later load this file as it is;\n"
        "DCMTK 3.6.7 and older refuse any presentation context list of more than 128\n"
        "entries, even for a receiver, and cannot load a file that has a longer one."
    )


def build_files() -> dict[Path, str]:
    standard = tuple(uid for uid in STORAGE_SOP_CLASSES if _STATUS[uid] == "standard")
    default = storage_profile("Default", STORAGE_SOP_CLASSES, any_transfer_syntax())
    all_dicom = storage_profile("AllDICOM", standard, any_transfer_syntax())
    uncompressed = storage_profile("Uncompressed", STORAGE_SOP_CLASSES, UNCOMPRESSED)
    lossless = storage_profile("LosslessOnly", STORAGE_SOP_CLASSES, lossless_transfer_syntaxes())
    verification = Profile(
        name="Verification",
        contexts=(PresentationContextSpec(VERIFICATION_SOP_CLASS, UNCOMPRESSED),),
    )

    def render(profiles: tuple[Profile, ...], header: str, comments: dict[str, str]) -> str:
        return render_asconfig(
            AssociationProfiles(profiles),
            header=header,
            uid_text=uid_text,
            list_names=LIST_NAMES,
            comments=comments,
        )

    files = {
        REPO / "storescp.cfg": render(
            (default, all_dicom),
            _header(
                "Association negotiation profiles for dcmrecv and storescp.",
                "Use: dcmrecv -xf storescp.cfg Default <port>\n\n"
                "Default   every storage SOP class DCMTK knows (standard, retired, draft,\n"
                "          DICOS, DICONDE) in every transfer syntax the receiver can store,\n"
                "          plus Verification.\n"
                "AllDICOM  the same, limited to current (non-retired, non-draft) standard\n"
                "          storage SOP classes.\n\n"
                "The receiver's preference when a sender offers several transfer syntaxes:\n"
                "Explicit VR Little Endian, Implicit VR Little Endian, Explicit VR Big\n"
                "Endian, Deflated, then lossless and then lossy compression.",
            ),
            {
                "Default": "All storage SOP classes, any transfer syntax, and Verification.",
                "AllDICOM": "Current standard storage SOP classes only, any transfer syntax.",
            },
        ),
        REPO / "profiles" / "uncompressed.cfg": render(
            (uncompressed,),
            _header(
                "Uncompressed only: dcmrecv -xf profiles/uncompressed.cfg Uncompressed <port>",
                "Use it when whatever reads the received files cannot decompress: every\n"
                "storage SOP class is accepted in Explicit VR Little Endian, Implicit VR\n"
                "Little Endian or Explicit VR Big Endian only, so a sender holding\n"
                "compressed images must decompress them (or cannot send them).",
            ),
            {"Uncompressed": "All storage SOP classes and Verification, uncompressed only."},
        ),
        REPO / "profiles" / "lossless.cfg": render(
            (lossless,),
            _header(
                "Lossless only: dcmrecv -xf profiles/lossless.cfg LosslessOnly <port>",
                "Use it for archives and diagnostic reading that must never receive lossy\n"
                "compressed pixel data: uncompressed, deflated and lossless JPEG, JPEG-LS,\n"
                "JPEG 2000, HTJ2K, JPEG XL and RLE are accepted; a sender offering only a\n"
                "lossy syntax for a SOP class is refused that presentation context.",
            ),
            {"LosslessOnly": "All storage SOP classes and Verification, lossless only."},
        ),
        REPO / "profiles" / "verification.cfg": render(
            (verification,),
            _header(
                "Verification only: dcmrecv -xf profiles/verification.cfg Verification <port>",
                "Use it to test connectivity (echoscu, C-ECHO) with a receiver that must not\n"
                "store anything: only the Verification SOP class is accepted, in any\n"
                "uncompressed transfer syntax (without -xf dcmrecv accepts Verification in\n"
                "Implicit VR Little Endian only).",
            ),
            {"Verification": "Verification SOP class only."},
        ),
    }
    return files


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
