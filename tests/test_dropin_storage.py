"""What a sender and an operator see of each C-STORE outcome, next to DCMTK's dcmrecv.

One receiver process (our ``dcmrecv`` at its default log level) and one DCMTK
``dcmrecv`` get the same crafted C-STOREs from a raw peer, one association each:

* values that are not UIDs (PS3.5 9.1) are stored, as DCMTK stores them, under safe
  names that never make two instances share a file, with a W: line;
* every failure status comes with an E: line naming the SOP instance and the reason;
* in normal mode a Success is a file that dcmdump and pydicom both read back, with the
  same elements: data sets that contradict their transfer syntax are refused (DCMTK
  refuses them too), encapsulated Pixel Data received as OW is stored as OB.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from tests.conftest import require_tool
from tests.interop import our_command, receiver_process
from tests.rawpeer import (
    CT_IMAGE_STORAGE,
    EXPLICIT_VR_LE,
    MR_IMAGE_STORAGE,
    RELEASE_RQ,
    UNDEFINED_LENGTH,
    RawPeer,
    associate_rq,
    c_store_rq,
    command_set,
    ct_data_set,
    element,
    explicit,
    message,
    status_of,
    text,
    ui,
    us,
)

#: Values that are not UIDs are what these tests send; pydicom warns on reading them.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
CT_CONTEXT, CT_JPEG_CONTEXT, MR_CONTEXT = 1, 3, 5
REQUEST = associate_rq(
    [
        (CT_CONTEXT, CT_IMAGE_STORAGE, [EXPLICIT_VR_LE]),
        (CT_JPEG_CONTEXT, CT_IMAGE_STORAGE, [JPEG_BASELINE]),
        (MR_CONTEXT, MR_IMAGE_STORAGE, [EXPLICIT_VR_LE]),
    ]
)
#: Both receivers load this (asconfig format, DCMTK's asconfig.txt): one context per
#: SOP class, so that DCMTK takes it as an SCP profile.
PROFILE = """\
[[TransferSyntaxes]]
[All]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = LittleEndianImplicit
TransferSyntax3 = JPEGBaseline
[[PresentationContexts]]
[Contexts]
PresentationContext1 = CTImageStorage\\All
PresentationContext2 = MRImageStorage\\All
[[Profiles]]
[Dropin]
PresentationContexts = Contexts
"""
HEX_UID = "A1B2C3D4" * 8  # seen from real equipment: 64 hexadecimal digits


def _item(value: bytes) -> bytes:
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(value)) + value


def _encapsulated(vr: str) -> bytes:
    """Pixel Data as PS3.5 A.4 encapsulates it: empty offset table, one fragment."""
    fragments = _item(b"") + _item(bytes(10)) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    return struct.pack("<HH2s2xL", 0x7FE0, 0x0010, vr.encode(), UNDEFINED_LENGTH) + fragments


def _image(uid: str, pixel_data: bytes, *, odd: bool = False) -> bytes:
    elements = [
        explicit(0x00080016, "UI", text(CT_IMAGE_STORAGE, b"\x00")),
        explicit(0x00080018, "UI", text(uid, b"\x00")),
        explicit(0x00080060, "CS", text("CT")),
        explicit(0x00100010, "PN", text("DROP^IN")),
    ]
    if odd:
        elements.append(explicit(0x00104000, "LT", b"odd"))  # 3 bytes: not padded
    return b"".join([*elements, pixel_data])


@dataclass(frozen=True)
class Case:
    name: str
    context: int
    command: bytes
    data_set: bytes
    uid: str
    #: Our status, and a fragment of the reason in its log line (None: no line).
    status: int
    reason: str | None


def _store(
    name: str,
    uid: str,
    data_set: bytes,
    status: int = 0x0000,
    reason: str | None = None,
    *,
    context: int = CT_CONTEXT,
    sop_class: str = CT_IMAGE_STORAGE,
) -> Case:
    return Case(
        name, context, c_store_rq(sop_class, uid), data_set, uid or "(none)", status, reason
    )


NATIVE = explicit(0x7FE00010, "OB", bytes(64))
INVALID = "not a valid UID"
ODD = "data set has odd length"
CASES = [
    _store("hex-uid", HEX_UID, ct_data_set(HEX_UID), reason=INVALID),
    _store("slash-uid", "1.2.3/4", ct_data_set("1.2.3/4"), reason=INVALID),
    _store("underscore-uid", "1.2.3_4", ct_data_set("1.2.3_4"), reason=INVALID),
    _store("dots-uid", "..", ct_data_set(".."), reason=INVALID),
    _store("valid", "1.2.3.1", ct_data_set("1.2.3.1")),
    _store("jpeg", "1.2.3.2", _image("1.2.3.2", _encapsulated("OB")), context=CT_JPEG_CONTEXT),
    _store(
        "jpeg-ow",
        "1.2.3.3",
        _image("1.2.3.3", _encapsulated("OW")),
        reason="stored as OB",
        context=CT_JPEG_CONTEXT,
    ),
    _store(
        "native-on-jpeg",
        "1.2.3.4",
        _image("1.2.3.4", NATIVE),
        0xC000,
        "native Pixel Data (defined length) in a transfer syntax that needs encapsulated",
        context=CT_JPEG_CONTEXT,
    ),
    _store(
        "encapsulated-on-explicit",
        "1.2.3.5",
        _image("1.2.3.5", _encapsulated("OB")),
        0xC000,
        "encapsulated Pixel Data (undefined length) in a native transfer syntax",
    ),
    _store("odd-length", "1.2.3.6", _image("1.2.3.6", b"", odd=True), 0xC000, ODD),
    _store("odd-trailing-byte", "1.2.3.7", ct_data_set("1.2.3.7") + b"\x00", 0xC000, ODD),
    _store("empty", "1.2.3.8", b"", 0xC000, "data set is empty"),
    _store(
        "class-not-on-context",
        "1.2.3.9",
        ct_data_set("1.2.3.9", sop_class_uid=MR_IMAGE_STORAGE),
        0x0122,
        "SOP class differs from the presentation context",
        sop_class=MR_IMAGE_STORAGE,
    ),
    _store(
        "uid-differs",
        "1.2.3.10",
        ct_data_set("1.2.3.11"),
        0xA900,
        "SOP Class/Instance UID differ from the C-STORE request",
    ),
    _store(
        "no-uids-in-data-set",
        "1.2.3.12",
        explicit(0x00100010, "PN", text("DROP^IN")),
        0xC000,
        "data set lacks SOP Class/Instance UID",
    ),
    Case(
        "c-find",
        CT_CONTEXT,
        command_set(  # C-FIND-RQ (PS3.7 9.3.2.1) with an identifier
            element(0x0002, ui(CT_IMAGE_STORAGE)),
            element(0x0100, us(0x0020)),
            element(0x0110, us(1)),
            element(0x0700, us(0)),
            element(0x0800, us(0x0000)),
        ),
        explicit(0x00100010, "PN", text("DROP^IN")),
        "(none)",
        0x0211,
        "E: cannot handle this kind of DIMSE command (0x0020), we are a Storage SCP only",
    ),
    _store(
        "no-uid-in-command",
        "",
        ct_data_set("1.2.3.13"),
        0xC000,
        "command lacks Affected SOP Class/Instance UID",
    ),
]
SUCCESSES = [case for case in CASES if case.status == 0]
FAILURES = [case for case in CASES if case.status != 0]


def _exchange(port: int, case: Case) -> int | str:
    """Send one case on its own association: the response status, or "aborted"."""
    with RawPeer(port, timeout=10) as peer:
        peer.associate(REQUEST)
        peer.send(message(case.context, True, case.command))
        peer.send(message(case.context, False, case.data_set))
        try:
            fields = peer.receive_command()
        except AssertionError:  # an A-ABORT (DCMTK's answer to some of these)
            return "aborted"
        with contextlib.suppress(OSError):
            peer.send(RELEASE_RQ)
            peer.receive()
        return status_of(fields)


@dataclass
class Run:
    statuses: dict[str, int | str]
    log: str
    files: list[Path]


def _run(command: list[str], workdir: Path, extra: list[str]) -> Run:
    (workdir / "dropin.cfg").write_text(PROFILE)
    output = workdir / "out"
    output.mkdir()
    arguments = ["-xf", "dropin.cfg", "Dropin", "-od", "out", *extra]
    with receiver_process(command, arguments, workdir) as (port, _process):
        statuses = {case.name: _exchange(port, case) for case in CASES}
    return Run(
        statuses,
        (workdir / "receiver.log").read_text(errors="replace"),
        sorted(p for p in output.rglob("*") if p.is_file()),
    )


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run(our_command(), tmp_path_factory.mktemp("ours"), [])


@pytest.fixture(scope="module")
def dcmtk(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run([require_tool("dcmrecv")], tmp_path_factory.mktemp("dcmtk"), [])


def _ids(cases: list[Case]) -> list[str]:
    return [case.name for case in cases]


# --- 12.3: every failure says why ----------------------------------------------------------


@pytest.mark.parametrize("case", FAILURES, ids=_ids(FAILURES))
def test_each_failure_logs_the_instance_and_the_reason_at_the_default_level(
    ours: Run, case: Case
) -> None:
    assert ours.statuses[case.name] == case.status
    assert case.reason is not None
    if case.name == "c-find":  # not a C-STORE: no instance, its own line
        assert case.reason in ours.log.splitlines()
        return
    line = f"E: C-STORE of SOP instance {case.uid}: "
    matching = [entry for entry in ours.log.splitlines() if entry.startswith(line)]
    assert matching, f"no line starting {line!r} in:\n{ours.log}"
    assert case.reason in matching[0]
    assert matching[0].endswith(f"(status 0x{case.status:04X})")


def test_the_default_level_shows_nothing_for_plain_successes(ours: Run) -> None:
    for case in SUCCESSES:
        if case.reason is None:
            assert f" {case.uid}:" not in ours.log


# --- 12.2: never refuse what DCMTK stores ---------------------------------------------------


@pytest.mark.parametrize("case", SUCCESSES, ids=_ids(SUCCESSES))
def test_what_we_store_dcmtk_stores_too(ours: Run, dcmtk: Run, case: Case) -> None:
    assert ours.statuses[case.name] == 0x0000
    assert dcmtk.statuses[case.name] == 0x0000


def test_invalid_uids_get_safe_names_that_never_collide(ours: Run, dcmtk: Run) -> None:
    invalid = [case for case in CASES if case.reason == INVALID]
    ours_names = {pydicom.dcmread(p).SOPInstanceUID: p.name for p in ours.files}
    assert {case.uid for case in invalid} <= set(ours_names)
    assert len({ours_names[case.uid] for case in invalid}) == len(invalid)
    # Where the value is safe, the name is DCMTK's.
    dcmtk_names = {p.name for p in dcmtk.files}
    for uid in (HEX_UID, ".."):
        assert ours_names[uid] == f"CT.{uid}"
        assert f"CT.{uid}" in dcmtk_names
    # DCMTK names "1.2.3/4" and "1.2.3_4" alike: the second overwrote the first.
    assert "CT.1.2.3_4" in dcmtk_names
    assert len(dcmtk.files) == len(SUCCESSES) - 1 + sum(
        case.status != 0 and dcmtk.statuses[case.name] == 0 for case in CASES
    )
    for case in invalid:
        assert f"W: C-STORE of SOP instance {case.uid}: SOP Instance UID is {INVALID}" in ours.log


# --- 12.4: a Success in normal mode is a file DCMTK's tools can read -----------------------

_DUMP_LINE = re.compile(r"^\(([0-9a-f]{4}),([0-9a-f]{4})\) ([A-Z][A-Z]) ")


def _dcmdump_elements(path: Path) -> list[tuple[int, str]]:
    """Top-level (tag, VR) of the data set as DCMTK's dcmdump reads it; fails on error."""
    result = subprocess.run(
        [require_tool("dcmdump"), str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"dcmdump cannot read {path.name}: {result.stderr}"
    assert "E:" not in result.stderr, result.stderr
    lines = result.stdout.split("# Dicom-Data-Set", 1)[1].splitlines()
    found = []
    for line in lines:
        match = _DUMP_LINE.match(line)  # indented lines are nested: not matched
        if match:
            found.append((int(match[1] + match[2], 16), match[3]))
    return found


def _pydicom_elements(path: Path) -> list[tuple[int, str]]:
    data_set = pydicom.dcmread(path)
    for each in data_set.iterall():
        _ = each.value  # every value decodes
    return [(int(each.tag), str(each.VR)) for each in data_set]


def test_every_success_in_normal_mode_reads_back_alike_in_dcmdump_and_pydicom(
    ours: Run,
) -> None:
    assert len(ours.files) == len(SUCCESSES)
    for path in ours.files:
        assert _dcmdump_elements(path) == _pydicom_elements(path), path.name


def test_encapsulated_pixel_data_received_as_ow_is_stored_as_ob(ours: Run) -> None:
    (path,) = [p for p in ours.files if p.name == "CT.1.2.3.3"]
    assert pydicom.dcmread(path)["PixelData"].VR == "OB"
    assert "W: C-STORE of SOP instance 1.2.3.3: encapsulated Pixel Data received" in ours.log


CONTRADICTIONS = [c for c in CASES if c.name in ("native-on-jpeg", "encapsulated-on-explicit")]
ODD_CASES = [c for c in CASES if c.name.startswith("odd")]


@pytest.mark.parametrize("case", CONTRADICTIONS + ODD_CASES, ids=_ids(CONTRADICTIONS + ODD_CASES))
def test_dcmtk_refuses_the_data_sets_we_refuse_for_their_transfer_syntax(
    dcmtk: Run, case: Case
) -> None:
    # DCMTK aborts the association (pixel data that contradicts the syntax, or
    # "DIMSE: Odd Fragment Length") or cannot write the file (A700).
    assert dcmtk.statuses[case.name] in ("aborted", 0xA700)
    assert not any(p.name == f"CT.{case.uid}" for p in dcmtk.files)


# --- bit-preserving mode keeps the bytes ---------------------------------------------------


@pytest.fixture(scope="module")
def bit_preserving(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run(our_command(), tmp_path_factory.mktemp("plus-b"), ["+B"])


def test_bit_preserving_mode_stores_the_bytes_as_received(bit_preserving: Run) -> None:
    for name in ("jpeg-ow", "native-on-jpeg", "encapsulated-on-explicit", "odd-length"):
        case = next(c for c in CASES if c.name == name)
        assert bit_preserving.statuses[name] == 0x0000
        (path,) = [p for p in bit_preserving.files if p.name == f"CT.{case.uid}"]
        assert path.read_bytes().endswith(case.data_set)


# --- a full disk ---------------------------------------------------------------------------


@contextlib.contextmanager
def _limited_receiver(workdir: Path, limit: int) -> Iterator[int]:
    """Our receiver with a file size limit (prlimit): writes beyond it fail with EFBIG,
    as on a full disk (Python ignores SIGXFSZ)."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) not found")
    command = [prlimit, f"--fsize={limit}:{limit}", *our_command()]
    (workdir / "dropin.cfg").write_text(PROFILE)
    arguments = ["-xf", "dropin.cfg", "Dropin", "-od", "."]
    with receiver_process(command, arguments, workdir) as (port, _process):
        yield port


def test_a_full_disk_logs_an_error_naming_the_instance(tmp_path: Path) -> None:
    uid = "1.2.3.99"
    with _limited_receiver(tmp_path, 1024 * 1024) as port, RawPeer(port, timeout=30) as peer:
        peer.associate(REQUEST)
        status = peer.store(
            CT_CONTEXT,
            c_store_rq(CT_IMAGE_STORAGE, uid),
            ct_data_set(uid, pixel_data=bytes(4 * 1024 * 1024)),
        )
        peer.send(RELEASE_RQ)
        assert peer.receive() is not None
    assert status == 0xA700
    log = (tmp_path / "receiver.log").read_text()
    assert (
        f"E: C-STORE of SOP instance {uid}: cannot store received object: File too large (EFBIG)"
        in log
    ), log
    assert not (tmp_path / f"CT.{uid}").exists()
