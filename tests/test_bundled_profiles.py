"""The bundled profiles (storescp.cfg, profiles/*.cfg) do what they claim.

storescp.cfg is held to DCMTK 3.7.0's own storescp.cfg (tests/data/asconfig/): the same
profile and list names, each SOP class in the same list, each transfer syntax list in the
same order, and the same answer from negotiate() for every storage SOP class under many
proposals.  profiles/*.cfg are checked by property over the UID table.  The tests marked
dcmtk load the generated files into DCMTK 3.6.7's dcmrecv (in slices of 128 contexts, all it
can read) and compare its answers with ours, and send compressed files with DCMTK's dcmsend
to our dcmrecv and to DCMTK's: both must store them in the transfer syntax they were sent in.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from dcmrecv.negotiation._uid_table import UID_ROWS
from dcmrecv.negotiation.acceptor import (
    ABSTRACT_SYNTAX_NOT_SUPPORTED,
    ACCEPTANCE,
    TRANSFER_SYNTAXES_NOT_SUPPORTED,
    ContextResult,
    ProposedContext,
    negotiate,
)
from dcmrecv.negotiation.asconfig import (
    PresentationContextSpec,
    Profile,
    load_profile,
    read_asconfig,
)
from dcmrecv.negotiation.uids import (
    LOCAL_ENDIAN_EXPLICIT,
    OPPOSITE_ENDIAN_EXPLICIT,
    STORAGE_SOP_CLASSES,
    TRANSFER_SYNTAXES,
    resolve_uid,
    uid_name,
)
from tests import interop
from tests.conftest import free_port, require_tool, wait_for_port
from tests.helpers import files_under

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "asconfig"
OURS = REPO / "storescp.cfg"
DCMTK_CURRENT = DATA / "dcmtk-3.7.0-storescp.cfg"

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
PRIVATE_CLASS = "1.2.826.0.1.3680043.8.1.99"
ILE = "1.2.840.10008.1.2"
ELE = "1.2.840.10008.1.2.1"
EBE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
RLE = "1.2.840.10008.1.2.5"
NATIVE = (ELE, ILE, EBE)  # PS3.5 A.1, A.2, A.3: the uncompressed encodings
STATUS = {row[0]: row[4] for row in UID_ROWS}


def _load_generator() -> ModuleType:
    name = "gen_profiles"
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# The file's text, read independently of dcmrecv's reader: sections and entries.

_HEADER = re.compile(r"^\[\[(.+)\]\]\s*$|^\[(.+)\]\s*$")
_ENTRY = re.compile(r"^([A-Za-z]+?)(\d+)\s*=\s*(.*?)\s*$")
_REFERENCE = re.compile(r"^PresentationContexts\s*=\s*(.*?)\s*$")


def _sections(path: Path) -> dict[str, dict[str, list[str]]]:
    """supersection -> section -> its value lines (TransferSyntaxN, ... in order)."""
    result: dict[str, dict[str, list[str]]] = {}
    supersection = section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        header = _HEADER.match(line)
        if header and header.group(1):
            supersection = header.group(1)
            result[supersection] = {}
        elif header:
            section = header.group(2)
            result[supersection][section] = []
        else:
            entry = _ENTRY.match(line) or _REFERENCE.match(line)
            assert entry, f"{path.name}: unexpected line {line!r}"
            result[supersection][section].append(entry.group(entry.lastindex or 0))
    return result


def _token(value: str) -> str:
    """A transfer syntax or SOP class value as a UID; the byte order words stay words."""
    if value in (LOCAL_ENDIAN_EXPLICIT, OPPOSITE_ENDIAN_EXPLICIT):
        return value
    uid = resolve_uid(value)
    assert uid is not None, value
    return uid


GENERATED = {
    "storescp.cfg": ("Default", "AllDICOM"),
    "profiles/uncompressed.cfg": ("Uncompressed",),
    "profiles/lossless.cfg": ("LosslessOnly",),
    "profiles/verification.cfg": ("Verification",),
}


def test_generator_writes_exactly_the_bundled_files() -> None:
    files = _load_generator().build_files()
    assert {path.relative_to(REPO).as_posix() for path in files} == set(GENERATED)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_bundled_files_load_as_receiver_profiles(name: str) -> None:
    profiles = read_asconfig(REPO / name)
    assert profiles.names == GENERATED[name]
    for profile_name in profiles.names:
        verification = profiles.scp_profile(profile_name).contexts[0]
        # DCMTK's [Uncompressed]: Explicit VR in this machine's byte order, the other, Implicit.
        machine_order = (resolve_uid(LOCAL_ENDIAN_EXPLICIT), resolve_uid(OPPOSITE_ENDIAN_EXPLICIT))
        assert verification == PresentationContextSpec(VERIFICATION, (*machine_order, ILE))


def test_same_profile_and_list_names_as_dcmtk() -> None:
    ours, dcmtk = _sections(OURS), _sections(DCMTK_CURRENT)
    for supersection in ("TransferSyntaxes", "PresentationContexts", "Profiles"):
        assert list(ours[supersection]) == list(dcmtk[supersection]), supersection
    assert ours["Profiles"] == dcmtk["Profiles"]  # Default -> GenericStorageSCP, ...


def test_same_transfer_syntax_lists_in_the_same_order_as_dcmtk() -> None:
    ours, dcmtk = _sections(OURS), _sections(DCMTK_CURRENT)
    for name, values in dcmtk["TransferSyntaxes"].items():
        assert [_token(v) for v in ours["TransferSyntaxes"][name]] == [_token(v) for v in values]
    any_syntax = [_token(v) for v in ours["TransferSyntaxes"]["AnyTransferSyntax"]]
    assert any_syntax[0] == JPEG_BASELINE
    assert any_syntax[-5:] == [DEFLATED, "1.2.840.10008.1.2.1.98", *dcmtk_uncompressed()]


def dcmtk_uncompressed() -> list[str]:
    return [LOCAL_ENDIAN_EXPLICIT, OPPOSITE_ENDIAN_EXPLICIT, ILE]


def _lists_by_class(path: Path, context_list: str) -> dict[str, str]:
    """SOP class UID -> name of the transfer syntax list it is given."""
    result = {}
    for value in _sections(path)["PresentationContexts"][context_list]:
        sop_class, _, syntaxes = value.partition("\\")
        uid = _token(sop_class)
        assert uid not in result, f"{sop_class} twice in [{context_list}]"
        result[uid] = syntaxes
    return result


@pytest.mark.parametrize("context_list", ["GenericStorageSCP", "AllDICOMStorageSCP"])
def test_each_sop_class_in_the_same_list_as_dcmtk(context_list: str) -> None:
    ours = _lists_by_class(OURS, context_list)
    dcmtk = _lists_by_class(DCMTK_CURRENT, context_list)
    # Classes newer than DCMTK's file would be extra here; today there are none.
    assert {uid: ours[uid] for uid in dcmtk} == dcmtk
    newer = set(ours) - set(dcmtk)
    assert newer <= set(STORAGE_SOP_CLASSES)
    assert ours[CT] == "AnyTransferSyntax"
    # DCMTK's non-image list takes segmentations and RT Dose too.
    assert ours[SEGMENTATION] == ours[RT_DOSE] == "UncompressedOrZlib"


def test_default_has_every_storage_class_and_alldicom_the_current_standard_ones() -> None:
    default = load_profile(OURS, "Default")
    assert sorted(c.abstract_syntax for c in default.contexts) == sorted(
        [VERIFICATION, *STORAGE_SOP_CLASSES]
    )
    current = [uid for uid in STORAGE_SOP_CLASSES if STATUS[uid] == "standard"]
    all_dicom = load_profile(OURS, "AllDICOM")
    assert sorted(c.abstract_syntax for c in all_dicom.contexts) == sorted([VERIFICATION, *current])


@pytest.mark.parametrize("release", ["3.6.8", "3.6.9", "3.7.0"])
def test_image_rule_gives_dcmtks_image_list(release: str) -> None:
    """Every DCMTK storescp.cfg with all storage classes (3.6.8 on) splits them by the rule."""
    generator = _load_generator()
    contexts = load_profile(DATA / f"dcmtk-{release}-storescp.cfg", "Default").contexts
    any_syntax = max((c.transfer_syntaxes for c in contexts), key=len)
    for context in contexts[1:]:
        image = context.transfer_syntaxes == any_syntax
        assert generator.is_image_class(context.abstract_syntax) == image, uid_name(
            context.abstract_syntax
        )


# ---------------------------------------------------------------------------
# Negotiation: ours and DCMTK's answers to the same proposals.


def proposals() -> list[tuple[str, ...]]:
    """Transfer syntax proposals: each single one, native, everything in several orders,
    and what dcmsend proposes for a compressed file (its syntax, then native)."""
    everything = list(TRANSFER_SYNTAXES)
    shuffled = []
    for seed in range(5):
        order = everything[:]
        random.Random(seed).shuffle(order)
        shuffled.append(tuple(order))
    return [
        *((ts,) for ts in everything),
        NATIVE,
        (ILE, EBE),
        (DEFLATED, ILE),
        tuple(everything),
        tuple(reversed(everything)),
        *shuffled,
        *((ts, ELE, EBE, ILE) for ts in everything if ts not in NATIVE),
    ]


def _answers(profile: Profile, classes: list[str]) -> dict[tuple[str, int], ContextResult]:
    proposed = []
    keys = []
    for sop_class in classes:
        for number, syntaxes in enumerate(proposals()):
            keys.append((sop_class, number))
            proposed.append(ProposedContext(len(proposed) + 1, sop_class, syntaxes))
    result = negotiate(proposed, profile)
    return dict(zip(keys, result.contexts, strict=True))


@pytest.mark.parametrize("profile_name", ["Default", "AllDICOM"])
def test_same_answer_as_dcmtks_storescp_cfg_for_every_storage_class(profile_name: str) -> None:
    ours = load_profile(OURS, profile_name)
    dcmtk = load_profile(DCMTK_CURRENT, profile_name)
    classes = [VERIFICATION, *STORAGE_SOP_CLASSES, PRIVATE_CLASS]
    our_answers, dcmtk_answers = _answers(ours, classes), _answers(dcmtk, classes)
    dcmtk_classes = {c.abstract_syntax for c in dcmtk.contexts}
    dcmtk_syntaxes = {ts for c in dcmtk.contexts for ts in c.transfer_syntaxes}
    accepted = 0
    for key, theirs in dcmtk_answers.items():
        mine = our_answers[key]
        if theirs.result == ACCEPTANCE:
            accepted += 1
            assert mine == theirs, (uid_name(key[0]), proposals()[key[1]])
        elif key[0] not in dcmtk_classes and key[0] in STORAGE_SOP_CLASSES:
            pass  # a class newer than DCMTK's file: ours may take it
        elif mine.result == ACCEPTANCE:
            assert mine.transfer_syntax not in dcmtk_syntaxes, (uid_name(key[0]), mine)
        else:
            assert mine == theirs
    # Not vacuous: both accept most of it, and both refuse some of it.
    assert accepted > len(dcmtk_answers) // 3
    results = {answer.result for answer in our_answers.values()}
    assert results == {ACCEPTANCE, ABSTRACT_SYNTAX_NOT_SUPPORTED, TRANSFER_SYNTAXES_NOT_SUPPORTED}


def test_compressed_images_are_taken_as_they_are_and_non_images_deflated() -> None:
    default = load_profile(OURS, "Default")
    answers = negotiate(
        [
            ProposedContext(1, CT, (RLE, ELE, EBE, ILE)),
            ProposedContext(3, CT, (ILE, ELE, JPEG_LS_LOSSLESS)),
            ProposedContext(5, CT, (ELE, JPEG_BASELINE, JPEG_LOSSLESS_SV1)),
            ProposedContext(7, RT_DOSE, (ELE, DEFLATED, RLE)),
            ProposedContext(9, RT_DOSE, (RLE,)),
            ProposedContext(11, CT, (ILE, EBE)),
        ],
        default,
    )
    assert [(c.result, c.transfer_syntax) for c in answers.contexts] == [
        (ACCEPTANCE, RLE),
        (ACCEPTANCE, JPEG_LS_LOSSLESS),
        (ACCEPTANCE, JPEG_BASELINE),
        (ACCEPTANCE, DEFLATED),
        (TRANSFER_SYNTAXES_NOT_SUPPORTED, ""),
        (ACCEPTANCE, EBE),  # DCMTK's OppositeEndianExplicit comes before Implicit VR
    ]


# ---------------------------------------------------------------------------
# profiles/*.cfg, by property over every storage SOP class and transfer syntax in the table.


def _lossless_by_name(ts: str) -> bool:
    """Pixel data decode to what was encoded: the name says Lossless, or no compression."""
    not_compressed = {*NATIVE, DEFLATED, "1.2.840.10008.1.2.1.98", "1.2.840.10008.1.2.8.1"}
    return "Lossless" in uid_name(ts) or ts in not_compressed


def _accepted_singles(profile: Profile) -> dict[str, set[str]]:
    """SOP class -> the transfer syntaxes accepted when each is proposed alone."""
    proposed = [
        ProposedContext(1, sop_class, (ts,))
        for sop_class in [VERIFICATION, *STORAGE_SOP_CLASSES]
        for ts in TRANSFER_SYNTAXES
    ]
    result: dict[str, set[str]] = {}
    for context in negotiate(proposed, profile).contexts:
        if context.result == ACCEPTANCE:
            result.setdefault(context.abstract_syntax, set()).add(context.transfer_syntax)
    return result


def test_uncompressed_profile_takes_every_class_uncompressed_only() -> None:
    accepted = _accepted_singles(load_profile(REPO / "profiles/uncompressed.cfg", "Uncompressed"))
    assert set(accepted) == {VERIFICATION, *STORAGE_SOP_CLASSES}
    assert all(syntaxes == set(NATIVE) for syntaxes in accepted.values())


def test_lossless_profile_takes_every_class_and_never_a_lossy_syntax() -> None:
    profile = load_profile(REPO / "profiles/lossless.cfg", "LosslessOnly")
    accepted = _accepted_singles(profile)
    assert set(accepted) == {VERIFICATION, *STORAGE_SOP_CLASSES}
    dcmtk_any = load_profile(DCMTK_CURRENT, "Default").contexts[1].transfer_syntaxes
    every_lossless = {ts for ts in dcmtk_any if _lossless_by_name(ts)}
    assert accepted[VERIFICATION] == set(NATIVE)
    for sop_class in STORAGE_SOP_CLASSES:
        assert accepted[sop_class] == every_lossless, uid_name(sop_class)
    # Lossless compressed data arrive as they were sent, not decompressed first.
    answer = negotiate([ProposedContext(1, CT, (ELE, ILE, RLE))], profile).contexts[0]
    assert answer.transfer_syntax == RLE


def test_verification_profile_takes_nothing_but_verification() -> None:
    accepted = _accepted_singles(load_profile(REPO / "profiles/verification.cfg", "Verification"))
    assert accepted == {VERIFICATION: set(NATIVE)}


# ---------------------------------------------------------------------------
# DCMTK 3.6.7's dcmrecv with the generated files, 128 contexts at a time.


@contextlib.contextmanager
def _dcmrecv(path: Path, profile: str) -> Iterator[int]:
    """DCMTK's dcmrecv with the profile, on a port of its own."""
    port = free_port()
    process = subprocess.Popen(
        [require_tool("dcmrecv"), "-xf", str(path), profile, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            wait_for_port(port, process)
        except RuntimeError:
            output = process.communicate()[0].decode(errors="replace")
            pytest.fail(f"DCMTK's dcmrecv did not load {path.name} [{profile}]: {output}")
        yield port
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _slices(generator: ModuleType) -> Iterator[tuple[str, Any, str]]:
    """(description, ConfigFile, profile name) for every generated list, cut to 128 contexts."""
    for path, config in generator.build_configs().items():
        for context_list in config.context_lists:
            pairs = [c for group in context_list.groups for c in group.contexts]
            for start in range(0, len(pairs), 128):
                part = generator.ContextList(
                    "Part", "", (generator.ContextGroup("", tuple(pairs[start : start + 128])),)
                )
                sliced = generator.ConfigFile(
                    header="",
                    transfer_syntax_lists=config.transfer_syntax_lists,
                    context_lists=(part,),
                    profiles=(("Part", "Part", ""),),
                )
                yield f"{path.name} [{context_list.name}] from {start + 1}", sliced, "Part"


@pytest.mark.dcmtk
def test_dcmtk_367_reads_the_generated_files_as_we_do(tmp_path: Path) -> None:
    """Every value is one DCMTK 3.6.7 knows, and it negotiates each slice as negotiate() does."""
    from pynetdicom import AE

    generator = _load_generator()
    syntaxes = list(TRANSFER_SYNTAXES)
    # At most 50 transfer syntaxes per context: DCMTK refuses more (DICOM_MAXTRANSFERSYNTAXES).
    offers = [
        tuple(reversed(syntaxes))[:50],
        tuple(syntaxes[-50:]),
        (ILE, EBE),
        (DEFLATED, RLE, JPEG_BASELINE, ILE),
    ]
    for description, config, profile_name in _slices(generator):
        path = tmp_path / "part.cfg"
        path.write_text(generator.render(config), encoding="utf-8")
        profile = load_profile(path, profile_name)
        with _dcmrecv(path, profile_name) as port:
            for offer in offers:
                proposed = [
                    ProposedContext(2 * n + 1, c.abstract_syntax, offer)
                    for n, c in enumerate(profile.contexts)
                ]
                ae = AE()
                ae.acse_timeout = 10
                for context in proposed:
                    ae.add_requested_context(context.abstract_syntax, list(offer))
                assoc = ae.associate("127.0.0.1", port)
                # DCMTK rejects an association in which it accepts no context.
                theirs = {
                    cx.context_id: (cx.abstract_syntax, cx.transfer_syntax[0])
                    for cx in (assoc.accepted_contexts if assoc.is_established else [])
                }
                if assoc.is_established:
                    assoc.release()
                ours = {
                    c.context_id: (c.abstract_syntax, c.transfer_syntax)
                    for c in negotiate(proposed, profile).accepted
                }
                assert ours == theirs, f"{description}, offer {offer[:3]}..."


# ---------------------------------------------------------------------------
# A real send: compressed data arrive compressed.

#: pydicom test files, one per compressed transfer syntax that matters, and one deflated.
COMPRESSED_FILES = (
    "MR_small_RLE.dcm",  # MR, RLE Lossless
    "SC_rgb_jpeg_gdcm.dcm",  # SC, JPEG Lossless SV1
    "MR_small_jpeg_ls_lossless.dcm",  # MR, JPEG-LS Lossless (sent with a UID of its own)
    "examples_jpeg2k.dcm",  # US, JPEG 2000 Lossless Only
    "SC_rgb_dcmtk_+eb+cr.dcm",  # SC, JPEG Baseline
    "JPEGLSNearLossless_08.dcm",  # SC, JPEG-LS near-lossless
    "image_dfl.dcm",  # SC, Deflated Explicit VR Little Endian
    "CT_small.dcm",  # CT, Explicit VR Little Endian
)


def _send_and_read(
    command: list[str], config: Path, files: list[Path], workdir: Path
) -> dict[str, tuple[str, bytes]]:
    """SOP Instance UID -> (stored transfer syntax, Pixel Data bytes) after a dcmsend."""
    workdir.mkdir()
    output = workdir / "out"
    output.mkdir()
    arguments = ["-xf", str(config), "Default", "-od", str(output)]
    with interop.receiver_process(command, arguments, workdir) as (port, _):
        returncode, log = interop.send("dcmsend", port, files, workdir)
    assert returncode == 0, log
    stored = {}
    for relative in files_under(output):
        dataset = pydicom.dcmread(output / relative)
        pixels = dataset.get((0x7FE0, 0x0010))
        stored[str(dataset.SOPInstanceUID)] = (
            str(dataset.file_meta.TransferSyntaxUID),
            bytes(pixels.value) if pixels is not None else b"",
        )
    return stored


@pytest.mark.dcmtk
def test_dcmsend_sends_compressed_files_as_they_are(tmp_path: Path) -> None:
    """dcmsend offers a file's own syntax and the native ones (it can decompress lossless);
    with the bundled Default our dcmrecv takes the file's own, as DCMTK's dcmrecv does with
    DCMTK's storescp.cfg (3.6.7's here, the newest Debian 12's DCMTK can load)."""
    files = []
    sent = {}
    for name in COMPRESSED_FILES:
        found = get_testdata_file(name, download=False)
        assert found is not None, f"pydicom does not bundle {name}"
        path = Path(str(found))
        dataset = pydicom.dcmread(path)
        if name == "MR_small_jpeg_ls_lossless.dcm":  # same UID as MR_small_RLE.dcm
            dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = (
                dataset.SOPInstanceUID + ".80"
            )
            path = tmp_path / name
            dataset.save_as(path, enforce_file_format=True)
        files.append(path)
        sent[str(dataset.SOPInstanceUID)] = (
            str(dataset.file_meta.TransferSyntaxUID),
            bytes(dataset.PixelData),
        )
    ours = _send_and_read(interop.our_command(), OURS, files, tmp_path / "ours")
    assert ours == sent
    dcmtk = _send_and_read(
        interop.dcmtk_command(), DATA / "dcmtk-3.6.7-storescp.cfg", files, tmp_path / "dcmtk"
    )
    assert {uid: syntax for uid, (syntax, _) in dcmtk.items()} == {
        uid: syntax for uid, (syntax, _) in ours.items()
    }
