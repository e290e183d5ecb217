"""plan_path (DCMTK's naming rules) and scan_dataset (the strict data set walk).

Expected names are written out by hand from dcmrecv.man and DCMTK 3.6.7's
dstorscp.cc / offname.cc, and checked against the real dcmrecv in test_writer.py.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from datetime import datetime
from pathlib import Path, PurePosixPath

import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from dcmrecv.config import FilenameMode, SubdirectoryMode
from dcmrecv.storage import dataset
from dcmrecv.storage import naming as storage
from dcmrecv.storage.dataset import DatasetError, scan_dataset
from dcmrecv.storage.naming import PlanError, parse_series_date, plan_path, short_unique_name

NOW = datetime(2024, 3, 5, 7, 8, 9, 12345)
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"


def plan(**overrides: object) -> storage.PathPlan:
    kwargs: dict[str, object] = {
        "subdirectory": SubdirectoryMode.NONE,
        "filename_mode": FilenameMode.DEFAULT,
        "extension": "",
        "sop_instance_uid": "1.2.3",
        "modality": "CT",
        "series_date": None,
        "now": NOW,
        "new_uid": None,
        "short_name": None,
    }
    kwargs.update(overrides)
    return plan_path(**kwargs)  # type: ignore[arg-type]


# --- naming ------------------------------------------------------------------------

NAMING_CASES = [
    # (overrides, expected relative path, replaces an existing file)
    ({}, "CT.1.2.3", True),
    ({"extension": ".dcm"}, "CT.1.2.3.dcm", True),
    ({"modality": None}, "UNKNOWN.1.2.3", True),
    ({"sop_instance_uid": "1.2.3\0"}, "CT.1.2.3", True),  # UI padding (PS3.5 6.2)
    (
        {"filename_mode": FilenameMode.UNIQUE, "new_uid": "2.25.42", "extension": ".dcm"},
        "CT.X.2.25.42.dcm",
        False,
    ),
    (
        {"filename_mode": FilenameMode.UNIQUE, "new_uid": "2.25.42", "modality": None},
        "UNKNOWN.X.2.25.42",
        False,
    ),
    (
        {"filename_mode": FilenameMode.SHORT_UNIQUE, "short_name": "0123456789abcdef"},
        "CT_0123456789abcdef",
        False,
    ),
    (
        {
            "filename_mode": FilenameMode.SHORT_UNIQUE,
            "short_name": "0123456789abcdef",
            "modality": None,
        },
        "XX_0123456789abcdef",
        False,
    ),
    (
        {"filename_mode": FilenameMode.SYSTEM_TIME, "extension": ".dcm"},
        "20240305070809.012345.CT.dcm",
        False,
    ),
    (
        {"filename_mode": FilenameMode.SYSTEM_TIME, "modality": None},
        "20240305070809.012345.UNKNOWN",
        False,
    ),
    (
        {
            "subdirectory": SubdirectoryMode.SERIES_DATE,
            "series_date": "19970430",
            "extension": ".dcm",
        },
        "data/1997/04/30/CT.1.2.3.dcm",
        True,
    ),
    (
        {"subdirectory": SubdirectoryMode.SERIES_DATE, "series_date": None},
        "undef/20240305/CT.1.2.3",
        True,
    ),
    (
        {"subdirectory": SubdirectoryMode.SERIES_DATE, "series_date": ""},
        "undef/20240305/CT.1.2.3",
        True,
    ),
    (
        {"subdirectory": SubdirectoryMode.SERIES_DATE, "series_date": "1997/04/30"},
        "undef/20240305/CT.1.2.3",
        True,
    ),
    # The series date only matters with +ssd.
    ({"series_date": "19970430"}, "CT.1.2.3", True),
]


@pytest.mark.parametrize(("overrides", "expected", "replace"), NAMING_CASES)
def test_plan_path_names_like_dcmtk(
    overrides: dict[str, object], expected: str, replace: bool
) -> None:
    result = plan(**overrides)
    assert result.relative == PurePosixPath(expected)
    assert result.replace_existing is replace


def test_system_time_names_have_six_digit_microseconds() -> None:
    result = plan(filename_mode=FilenameMode.SYSTEM_TIME, now=datetime(1999, 12, 31, 23, 59, 58, 5))
    assert result.filename == "19991231235958.000005.CT"


def test_short_unique_name_layout_matches_a_name_dcmtk_made() -> None:
    # DCMTK 3.6.7 dcmrecv +fsu named a file RP_6b02056590a7a954: the receiver's start
    # time 0x6b020565 followed by 32 random bits.
    assert short_unique_name(0x6B020565, 0x90A7A954) == "6b02056590a7a954"
    assert short_unique_name(1, 2) == "0000000100000002"


SERIES_DATES = [
    ("19970430", ("1997", "04", "30")),
    ("19970430 ", ("1997", "04", "30")),  # trailing DA padding is dropped
    ("1997.04.30", ("1997", "04", "30")),  # ACR-NEMA form, accepted by DCMTK
    ("19970430\\20010101", ("1997", "04", "30")),  # first of several values
    ("20230231", ("2023", "02", "31")),  # DCMTK checks day <= 31 only
    ("", None),
    (None, None),
    (" 19970430", None),  # DCMTK keeps leading spaces
    ("19970430\0", None),
    ("1997043", None),
    ("199704301", None),
    ("19971330", None),  # month 13
    ("19970400", None),  # day 0
    ("19970432", None),
    ("1997-04-30", None),
    ("2023023a", None),
    ("١٩٩٧٠٤٣٠", None),  # non-ASCII digits
    ("../../..", None),
]


@pytest.mark.parametrize(("value", "expected"), SERIES_DATES)
def test_series_date_validity_follows_dcmtk(
    value: str | None, expected: tuple[str, str, str] | None
) -> None:
    assert parse_series_date(value) == expected


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        # Letters, digits, "." and "-" stay (DCMTK's name); anything else becomes "_"
        # and the name ends in "_" and a hash of the value.
        ("../../etc/passwd", "CT..._.._etc_passwd_" + _hash("../../etc/passwd")),
        ("1.2/3", "CT.1.2_3_" + _hash("1.2/3")),
        ("1.2\\3", "CT.1.2_3_" + _hash("1.2\\3")),
        ("1.2\x003", "CT.1.2_3_" + _hash("1.2\x003")),
        ("1.2 3", "CT.1.2_3_" + _hash("1.2 3")),
        ("1.2.3_4", "CT.1.2.3_4_" + _hash("1.2.3_4")),
        ("1.2.3a", "CT.1.2.3a"),
        ("A1B2C3D4" * 8, "CT." + "A1B2C3D4" * 8),  # seen from real equipment
        ("..", "CT..."),
        ("1.2.3 ", "CT.1.2.3"),
        ("1" * 65, "CT." + "1" * 64 + "_" + _hash("1" * 65)),
    ],
)
def test_peer_uid_cannot_name_another_directory(uid: str, expected: str) -> None:
    result = plan(sop_instance_uid=uid)
    assert result.directory == ()
    assert result.filename == expected


@given(
    first=st.text(min_size=1, max_size=100),
    second=st.text(min_size=1, max_size=100),
)
def test_distinct_instance_uids_never_share_a_file_name(first: str, second: str) -> None:
    # DCMTK would name "1.2.3/4" and "1.2.3_4" alike and one would overwrite the other.
    # A value that is empty once its padding is gone is refused (PlanError), not named.
    if first.rstrip("\0 ") != second.rstrip("\0 ") and first.rstrip("\0 ") and second.rstrip("\0 "):
        assert plan(sop_instance_uid=first).filename != plan(sop_instance_uid=second).filename


def test_the_same_instance_uid_always_gets_the_same_name() -> None:
    assert plan(sop_instance_uid="1.2/3").filename == plan(sop_instance_uid="1.2/3").filename
    assert plan(sop_instance_uid="1.2/3").replace_existing


@given(uid=st.text(min_size=1, max_size=80), date=st.one_of(st.none(), st.text(max_size=12)))
def test_any_peer_value_stays_one_component_below_its_directory(uid: str, date: str | None) -> None:
    try:
        result = plan(
            subdirectory=SubdirectoryMode.SERIES_DATE, sop_instance_uid=uid, series_date=date
        )
    except PlanError:
        return  # refused (empty after padding is removed): also safe
    parts = result.relative.parts
    assert len(parts) == len(result.directory) + 1
    assert all(part not in (".", "..") and "/" not in part and "\0" not in part for part in parts)
    assert parts[0] in ("data", "undef")
    assert len(result.filename.encode()) <= 255


def test_long_instance_uids_are_cut_not_refused() -> None:
    # DCMTK aborts the association: its command parser refuses a UI value of 300.
    names = {plan(sop_instance_uid="9" * n).filename for n in (64, 65, 300, 10000)}
    assert len(names) == 4
    assert max(len(name) for name in names) == len("CT.") + 64 + 1 + 16


def test_file_names_longer_than_255_bytes_are_refused() -> None:
    with pytest.raises(PlanError):
        plan(sop_instance_uid="1.2", extension="." + "x" * 126, modality="M" * 126)


@pytest.mark.parametrize("uid", ["", "\0", " "])
def test_empty_instance_uid_is_refused_for_default_names(uid: str) -> None:
    with pytest.raises(PlanError):
        plan(sop_instance_uid=uid)


@pytest.mark.parametrize("extension", ["/x", ".dcm/../x", "\\x", ".d\0"])
def test_extension_with_separator_is_refused(extension: str) -> None:
    with pytest.raises(PlanError):
        plan(extension=extension)


# --- scan_dataset ---------------------------------------------------------------------


def encode(ds: Dataset, *, implicit: bool = False, little: bool = True) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = little
    fp.is_implicit_VR = implicit
    write_dataset(fp, ds)
    return fp.getvalue()


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(data) + compressor.flush()
    # PS3.5 A.5: an odd-length deflated stream is padded with one NUL.
    return deflated + b"\x00" if len(deflated) % 2 else deflated


def scan(data: bytes, ts: str = EXPLICIT_LE, **kwargs: int) -> dataset.DatasetSummary:
    return scan_dataset(io.BytesIO(data), len(data), ts, **kwargs)  # type: ignore[arg-type]


def sample() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4"
    ds.SeriesDate = "19970430"
    item = Dataset()
    item.CodeValue = "T-D1100"
    ds.AnatomicRegionSequence = [item]
    ds.PatientName = "Test^Patient"
    ds.PixelData = bytes(512)
    ds["PixelData"].VR = "OW"
    return ds


@pytest.mark.parametrize(
    ("ts", "implicit", "little"),
    [(EXPLICIT_LE, False, True), (IMPLICIT_LE, True, True), (EXPLICIT_BE, False, False)],
)
def test_scan_reports_uids_and_series_date(ts: str, implicit: bool, little: bool) -> None:
    summary = scan(encode(sample(), implicit=implicit, little=little), ts)
    assert summary == dataset.DatasetSummary(CT, "1.2.3.4", "19970430")


def test_scan_reads_deflated_data_sets() -> None:
    summary = scan(deflate(encode(sample())), DEFLATED)
    assert summary.sop_instance_uid == "1.2.3.4"


def test_odd_length_data_set_is_refused_but_a_quick_look_still_finds_the_date() -> None:
    data = encode(sample()) + b"\x00"
    with pytest.raises(DatasetError, match="odd length"):
        scan(data)
    assert scan(data, stop_after=dataset.SERIES_DATE_TAG).series_date == "19970430"


def test_deflated_data_set_counts_its_inflated_length() -> None:
    stream = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    odd_value = struct.pack("<HH2sH", 0x7FE1, 0x0010, b"LT", 3) + b"odd"
    odd_inflated = stream.compress(encode(sample()) + odd_value) + stream.flush()
    with pytest.raises(DatasetError, match="odd length"):
        scan(odd_inflated + b"\x00" * (len(odd_inflated) % 2), DEFLATED)


JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
RLE = "1.2.840.10008.1.2.5"


def encapsulated_sample(vr: str = "OB") -> bytes:
    """sample() with Pixel Data encapsulated (PS3.5 A.4): offset table and one fragment."""
    head = encode(sample()).split(b"\xe0\x7f\x10\x00", 1)[0]
    items = struct.pack("<HHL", 0xFFFE, 0xE000, 0) + struct.pack("<HHL", 0xFFFE, 0xE000, 4)
    pixels = struct.pack("<HH2s2xL", 0x7FE0, 0x0010, vr.encode(), 0xFFFFFFFF) + items
    return head + pixels + b"\x01\x02\x03\x04" + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


@pytest.mark.parametrize("ts", [JPEG_BASELINE, RLE, "1.2.840.10008.1.2.4.201"])
def test_native_pixel_data_in_an_encapsulated_syntax_is_refused(ts: str) -> None:
    with pytest.raises(DatasetError, match="native Pixel Data"):
        scan(encode(sample()), ts)
    assert scan(encapsulated_sample(), ts).encapsulated_ow_offset is None


@pytest.mark.parametrize("ts", [EXPLICIT_LE, DEFLATED])
def test_encapsulated_pixel_data_in_a_native_syntax_is_refused(ts: str) -> None:
    data = encapsulated_sample()
    with pytest.raises(DatasetError, match="encapsulated Pixel Data"):
        scan(deflate(data) if ts == DEFLATED else data, ts)


def test_encapsulated_pixel_data_with_vr_ow_is_found_for_the_repair() -> None:
    data = encapsulated_sample("OW")
    offset = scan(data, JPEG_BASELINE).encapsulated_ow_offset
    assert offset is not None and data[offset : offset + 6] == b"\xe0\x7f\x10\x00OW"


def test_an_unknown_transfer_syntax_gets_no_pixel_data_rule() -> None:
    # A private syntax accepted by a profile: we cannot know what it needs.
    private = "1.2.276.0.7230010.3.1.4.9"
    assert scan(encode(sample()), private).sop_instance_uid == "1.2.3.4"
    assert scan(encapsulated_sample(), private).sop_instance_uid == "1.2.3.4"


def test_series_date_with_another_vr_is_not_a_date() -> None:
    ds = sample()
    ds["SeriesDate"].VR = "LO"
    assert scan(encode(ds)).series_date is None


def dataset_bytes(name: str) -> tuple[bytes, str]:
    """The data set of one of pydicom's test files (after its file meta), and its TS."""
    path = get_testdata_file(name)
    assert isinstance(path, str)
    data = Path(path).read_bytes()
    meta_length = struct.unpack("<I", data[140:144])[0]
    ts = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    return data[144 + meta_length :], str(ts)


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "JPEG2000.dcm",
        "rtplan.dcm",
        "image_dfl.dcm",
    ],
)
def test_scan_accepts_real_files(name: str) -> None:
    data, ts = dataset_bytes(name)
    assert scan(data, ts).sop_class_uid is not None


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm"])
def test_scan_refuses_files_dcmdump_cannot_read_either(name: str) -> None:
    data, ts = dataset_bytes(name)
    with pytest.raises(DatasetError):
        scan(data, ts)


BROKEN = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x08\x00\x16\x00UI", id="header-cut"),
    pytest.param(b"\x08\x00\x16\x00UI\x10\x001.2", id="value-cut"),
    pytest.param(b"\x08\x00\x16\x00\x01\x02\x02\x001.", id="bad-vr"),
    pytest.param(b"\xfe\xff\x00\xe0\x00\x00\x00\x00", id="item-at-top-level"),
    pytest.param(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", id="sequence-delimiter-at-top-level"),
    pytest.param(b"\x09\x00\x10\x10OB\x00\x00\xff\xff\xff\xff", id="undefined-length-ob"),
    pytest.param(
        b"\x08\x00\x12\x11SQ\x00\x00\x08\x00\x00\x00" + b"\x10\x00\x10\x00PN\x00\x00",
        id="sequence-without-item",
    ),
    pytest.param(
        b"\x08\x00\x12\x11SQ\x00\x00\x10\x00\x00\x00\xfe\xff\x00\xe0\x10\x00\x00\x00"
        + b"\x08\x00\x00\x01SH\x02\x001 ",
        id="item-longer-than-its-sequence",
    ),
    pytest.param(
        b"\x08\x00\x12\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff",
        id="unterminated-item",
    ),
    pytest.param(
        b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\x10\x00\x00\x00abcd",
        id="fragment-cut",
    ),
]


@pytest.mark.parametrize("data", BROKEN)
def test_scan_refuses_broken_structure(data: bytes) -> None:
    with pytest.raises(DatasetError):
        scan(data)


def nested(depth: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2"
    current = ds
    for _ in range(depth):
        item = Dataset()
        current.ReferencedSeriesSequence = [item]
        current = item
    return ds


@pytest.mark.parametrize(("ts", "implicit"), [(EXPLICIT_LE, False), (IMPLICIT_LE, True)])
def test_sequences_nested_64_deep_pass_and_65_are_refused(ts: str, implicit: bool) -> None:
    assert scan(encode(nested(64), implicit=implicit), ts).sop_instance_uid == "1.2"
    with pytest.raises(DatasetError, match="deeper"):
        scan(encode(nested(65), implicit=implicit), ts)


def test_implicit_vr_defined_length_sequence_is_checked_inside() -> None:
    # (0008,1115) Referenced Series Sequence, 12 bytes: an item whose element claims
    # 100 bytes.  Known as SQ from the data dictionary, so the walk looks inside.
    data = (
        b"\x08\x00\x15\x11\x10\x00\x00\x00"
        + b"\xfe\xff\x00\xe0\x08\x00\x00\x00"
        + b"\x08\x00\x00\x01\x64\x00\x00\x00"
    )
    with pytest.raises(DatasetError):
        scan(data, IMPLICIT_LE)


def test_un_of_undefined_length_is_walked_as_implicit_sequence() -> None:
    # PS3.5 6.2.2: a private element sent as UN with undefined length holds a sequence
    # in implicit VR little endian; here its item is never closed.
    good = (
        b"\x09\x00\x10\x10UN\x00\x00\xff\xff\xff\xff"
        + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
        + b"\x09\x00\x11\x10\x02\x00\x00\x00ab"
        + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
        + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    scan(good)
    with pytest.raises(DatasetError):
        scan(good[:-16])


def test_stop_after_reads_only_up_to_the_series_date() -> None:
    head = encode(sample())
    cut = head[: head.index(b"\x10\x00\x10\x00")]  # ends before Patient Name's value
    garbage = cut + b"\x10\x00\x10\x00PN\xff\x7f"
    assert scan(garbage, stop_after=dataset.SERIES_DATE_TAG).series_date == "19970430"
    with pytest.raises(DatasetError):
        scan(garbage)


class RecordingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.largest_read = max(self.largest_read, len(data))
        return data


def test_pixel_data_is_skipped_not_read() -> None:
    ds = sample()
    ds.PixelData = bytes(8 * 1024 * 1024)
    data = encode(ds)
    stream = RecordingStream(data)
    scan_dataset(stream, len(data), EXPLICIT_LE)
    assert stream.largest_read < 1024


def test_deflate_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = sample()
    ds.PixelData = bytes(4 * 1024 * 1024)
    bomb = deflate(encode(ds))
    assert len(bomb) < 16 * 1024  # 4 MiB from a few KiB: ratio far above 256
    monkeypatch.setattr(dataset, "INFLATE_FLOOR", 1024 * 1024)
    with pytest.raises(DatasetError, match="limit"):
        scan(bomb, DEFLATED)


def test_corrupt_deflate_stream_is_refused() -> None:
    data = bytearray(deflate(encode(sample())))
    data[5:40] = bytes(35)
    with pytest.raises(DatasetError):
        scan(bytes(data), DEFLATED)


FUZZ_SEED = encode(sample())


@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda cut, flips: bytes(
                b ^ flips.get(i, 0) for i, b in enumerate(FUZZ_SEED[: cut or len(FUZZ_SEED)])
            ),
            st.integers(0, len(FUZZ_SEED)),
            st.dictionaries(st.integers(0, len(FUZZ_SEED) - 1), st.integers(1, 255), max_size=4),
        ),
    ),
    ts=st.sampled_from([EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED]),
)
def test_scan_parses_or_raises_dataset_error_never_anything_else(data: bytes, ts: str) -> None:
    try:
        summary = scan(data, ts)
    except DatasetError:
        return
    assert isinstance(summary, dataset.DatasetSummary)
