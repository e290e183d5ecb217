"""InstanceStore on a real file system: what appears in the output directory."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from dcmrecv.config import (
    DuplicatePolicy,
    FilenameMode,
    ReceiverConfig,
    StorageMode,
    SubdirectoryMode,
)
from dcmrecv.storage import durability, namer, writer
from dcmrecv.storage.model import InstanceFacts
from dcmrecv.storage.namer import DcmrecvNamer
from dcmrecv.storage.writer import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    STATUS_DUPLICATE,
    STATUS_OUT_OF_RESOURCES,
    STATUS_SUCCESS,
    IncomingInstance,
    InstanceStore,
    StoreResult,
)
from tests.conftest import free_port, require_tool, wait_for_port
from tests.helpers import files_under

#: Stand-in for dcmrecv.negotiation.uids.modality_prefix: DCMTK's codes for the classes used here.
MODALITY = {
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.7": "SC",
}
TS_EXPLICIT_LE = "1.2.840.10008.1.2.1"
FRAGMENT = 16372  # what DCMTK sends per PDV with a 16 KB maximum PDU


class Received:
    """A test file split into what an association delivers: UIDs, TS and data set."""

    def __init__(self, name: str) -> None:
        path = get_testdata_file(name)
        assert isinstance(path, str)
        self.path = Path(path)
        raw = self.path.read_bytes()
        (meta_length,) = struct.unpack("<I", raw[140:144])
        self.dataset = raw[144 + meta_length :]
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        self.sop_class_uid = str(meta.MediaStorageSOPClassUID)
        self.sop_instance_uid = str(meta.MediaStorageSOPInstanceUID)
        self.transfer_syntax_uid = str(meta.TransferSyntaxUID)


CT_SMALL = Received("CT_small.dcm")  # Series Date 19970430, explicit VR LE
CT_NAME = f"CT.{CT_SMALL.sop_instance_uid}"


def make_store(
    tmp_path: Path,
    modality: Callable[[str], str | None] = MODALITY.get,
    clock: Callable[[], datetime] = datetime.now,
    **options: object,
) -> InstanceStore:
    config = ReceiverConfig(port=0, output_directory=tmp_path, **options)  # type: ignore[arg-type]
    return InstanceStore(config, modality_prefix=modality, clock=clock)


def send(
    store: InstanceStore,
    data: bytes,
    *,
    sop_class_uid: str = CT_SMALL.sop_class_uid,
    sop_instance_uid: str = CT_SMALL.sop_instance_uid,
    transfer_syntax_uid: str = TS_EXPLICIT_LE,
    fragment: int = FRAGMENT,
) -> StoreResult:
    instance = store.begin(
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        calling_aetitle="STORESCU",
    )
    buffer = bytearray(fragment)
    for start in range(0, len(data), fragment):
        piece = data[start : start + fragment]
        # The engine reuses its receive buffer: what write() did not copy is lost.
        buffer[: len(piece)] = piece
        instance.write(memoryview(buffer)[: len(piece)])
        buffer[: len(piece)] = bytes(len(piece))
    return instance.commit()


def data_set_of(path: Path) -> bytes:
    raw = path.read_bytes()
    (meta_length,) = struct.unpack("<I", raw[140:144])
    return raw[144 + meta_length :]


def encode(ds: pydicom.Dataset) -> bytes:
    """A data set in explicit VR little endian, as an SCU would send it."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def large_ct(pixel_bytes: int = 3 * 1024 * 1024 + 5) -> bytes:
    """CT_small with random pixel data: larger than the writer's buffer."""
    ds = pydicom.dcmread(CT_SMALL.path)
    ds.PixelData = os.urandom(pixel_bytes)
    ds["PixelData"].VR = "OB"
    return encode(ds)


LARGE_CT = large_ct()


#: The durable default (named temporary files) and ``--no-fsync`` (nameless files,
#: InstanceStore.nameless): both must leave the same files behind.
BOTH_MODES = pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "no-fsync"])


# --- success ------------------------------------------------------------------------


@BOTH_MODES
@pytest.mark.parametrize("fragment", [FRAGMENT, 128 * 1024, 1_000_000])
def test_stored_file_is_part10_with_the_received_bytes(
    tmp_path: Path, fragment: int, fsync: bool
) -> None:
    result = send(make_store(tmp_path, fsync=fsync), CT_SMALL.dataset, fragment=fragment)
    assert result == StoreResult(
        STATUS_SUCCESS, tmp_path / CT_NAME, None, False, log_path=str(tmp_path / CT_NAME)
    )
    assert files_under(tmp_path) == [CT_NAME]
    assert data_set_of(tmp_path / CT_NAME) == CT_SMALL.dataset
    stored = pydicom.dcmread(tmp_path / CT_NAME)
    assert stored.file_meta.MediaStorageSOPInstanceUID == CT_SMALL.sop_instance_uid
    assert stored.file_meta.SourceApplicationEntityTitle == "STORESCU"
    assert stored == pydicom.dcmread(CT_SMALL.path)


@BOTH_MODES
def test_large_instance_streams_through(tmp_path: Path, fsync: bool) -> None:
    data = LARGE_CT
    result = send(make_store(tmp_path, fsync=fsync), data, fragment=65536)
    assert result.status == STATUS_SUCCESS
    assert result.path is not None and data_set_of(result.path) == data


def test_series_date_subdirectories_and_extension(tmp_path: Path) -> None:
    store = make_store(
        tmp_path, subdirectory=SubdirectoryMode.SERIES_DATE, filename_extension=".dcm"
    )
    result = send(store, CT_SMALL.dataset)
    assert result.status == STATUS_SUCCESS
    assert files_under(tmp_path) == [f"data/1997/04/30/{CT_NAME}.dcm"]


def test_missing_series_date_uses_today_from_the_clock(tmp_path: Path) -> None:
    mr = Received("MR_small.dcm")  # its Series Date is empty
    store = make_store(
        tmp_path,
        clock=lambda: datetime(2031, 1, 2, 3, 4, 5),
        subdirectory=SubdirectoryMode.SERIES_DATE,
    )
    result = send(
        store, mr.dataset, sop_class_uid=mr.sop_class_uid, sop_instance_uid=mr.sop_instance_uid
    )
    assert result.status == STATUS_SUCCESS
    assert files_under(tmp_path) == [f"undef/20310102/MR.{mr.sop_instance_uid}"]


def test_default_output_directory_is_logged_like_dcmtk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = ReceiverConfig(port=0)  # -od defaults to "."
    result = send(InstanceStore(config, modality_prefix=MODALITY.get), CT_SMALL.dataset)
    # DCMTK prints "Stored received object to file: ./CT.<uid>".
    assert result.log_path == f"./{CT_NAME}"
    assert result.path is not None and result.path.resolve() == tmp_path / CT_NAME


@BOTH_MODES
def test_duplicate_instance_replaces_the_file_and_says_so(tmp_path: Path, fsync: bool) -> None:
    store = make_store(tmp_path, fsync=fsync)
    first = send(store, CT_SMALL.dataset)
    other = pydicom.dcmread(CT_SMALL.path)
    other.PatientName = "Second^Copy"
    second_data = encode(other)
    second = send(store, second_data)
    assert (first.overwritten, second.overwritten) == (False, True)
    assert files_under(tmp_path) == [CT_NAME]
    assert data_set_of(tmp_path / CT_NAME) == second_data


def test_unique_names_use_a_new_2_25_uid(tmp_path: Path) -> None:
    store = make_store(tmp_path, filename_mode=FilenameMode.UNIQUE)
    names = {Path(str(send(store, CT_SMALL.dataset).path)).name for _ in range(2)}
    assert len(names) == 2
    for name in names:
        prefix, uid = name[:5], name[5:]
        assert prefix == "CT.X."
        assert uid.startswith("2.25.") and uid[5:].isdigit() and len(uid) <= 64


def test_short_unique_names_never_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = iter([7, 7, 8])  # the second instance first draws the name the first one got
    monkeypatch.setattr(namer.secrets, "randbits", lambda _bits: next(draws))
    store = make_store(
        tmp_path, filename_mode=FilenameMode.SHORT_UNIQUE, modality=lambda _uid: None
    )
    first = send(store, CT_SMALL.dataset)
    second = send(store, CT_SMALL.dataset)
    assert isinstance(store.namer, DcmrecvNamer)
    stamp = f"{store.namer.started:08x}"
    assert files_under(tmp_path) == [f"XX_{stamp}00000007", f"XX_{stamp}00000008"]
    assert not first.overwritten and not second.overwritten


def test_system_time_names_draw_a_new_time_on_a_collision(tmp_path: Path) -> None:
    times = iter([datetime(2024, 1, 2, 3, 4, 5, 6)] * 2 + [datetime(2024, 1, 2, 3, 4, 5, 7)])
    store = make_store(tmp_path, filename_mode=FilenameMode.SYSTEM_TIME, clock=lambda: next(times))
    send(store, CT_SMALL.dataset)
    send(store, CT_SMALL.dataset)
    assert files_under(tmp_path) == ["20240102030405.000006.CT", "20240102030405.000007.CT"]


class FlushSpy:
    """Records each fsync/syncfs: of a directory or not, and which names existed then."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, bool, list[str]]] = []

    def _record(self, call: str, fd: int) -> None:
        names = sorted(p.name for p in self.root.rglob("*") if p.is_file())
        self.calls.append((call, os.path.isdir(f"/proc/self/fd/{fd}"), names))

    def fsync(self, fd: int) -> None:
        self._record("fsync", fd)

    def syncfs(self, fd: int) -> None:
        self._record("syncfs", fd)


def _store_with_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, fs_keeps_names: bool, syncfs: bool
) -> tuple[InstanceStore, FlushSpy]:
    spy = FlushSpy(tmp_path)
    monkeypatch.setattr(os, "fsync", spy.fsync)
    # The file system the test runs on may be anything (overlayfs in a container or a
    # chroot); which type it reports is what the writer acts on.
    kind = "ext4" if fs_keeps_names else "overlay"
    monkeypatch.setattr(durability, "filesystem_type", lambda _directory: kind)
    monkeypatch.setattr(durability, "_load_syncfs", lambda: spy.syncfs if syncfs else None)
    return make_store(tmp_path), spy


def test_one_fsync_of_the_named_file_where_it_keeps_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ext4, XFS, btrfs: the file's fsync also makes its new name durable, so the file
    # is named first and flushed once; the sized temporary name is still there then,
    # for recovery (tests/test_recovery.py), and is gone by the time Success is sent.
    store, spy = _store_with_flushes(tmp_path, monkeypatch, fs_keeps_names=True, syncfs=True)
    assert send(store, CT_SMALL.dataset).status == STATUS_SUCCESS
    ((call, is_dir, names),) = spy.calls
    assert (call, is_dir) == ("fsync", False)
    final = f"CT.{CT_SMALL.sop_instance_uid}"
    assert final in names
    (temp,) = [name for name in names if name != final]
    size = (tmp_path / final).stat().st_size
    assert temp.startswith(".dcmrecv-") and temp.endswith(f"-{size}.part")
    assert files_under(tmp_path) == [final]


def test_elsewhere_one_syncfs_of_the_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, spy = _store_with_flushes(tmp_path, monkeypatch, fs_keeps_names=False, syncfs=True)
    assert send(store, CT_SMALL.dataset).status == STATUS_SUCCESS
    ((call, _is_dir, names),) = spy.calls
    assert call == "syncfs" and f"CT.{CT_SMALL.sop_instance_uid}" in names


def test_without_syncfs_the_bytes_then_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No way to cover the name with the file's flush: the bytes are flushed before
    # the file has its final name, then the directory that holds the name.
    store, spy = _store_with_flushes(tmp_path, monkeypatch, fs_keeps_names=False, syncfs=False)
    assert send(store, CT_SMALL.dataset).status == STATUS_SUCCESS
    final = f"CT.{CT_SMALL.sop_instance_uid}"
    assert [(call, is_dir, final in names) for call, is_dir, names in spy.calls] == [
        ("fsync", False, False),
        ("fsync", True, True),
    ]


def test_no_flush_with_no_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = FlushSpy(tmp_path)
    monkeypatch.setattr(os, "fsync", spy.fsync)
    monkeypatch.setattr(durability, "_load_syncfs", lambda: spy.syncfs)
    result = send(make_store(tmp_path, fsync=False), CT_SMALL.dataset)
    assert result.status == STATUS_SUCCESS and spy.calls == []


def test_ignore_mode_stores_nothing(tmp_path: Path) -> None:
    result = send(make_store(tmp_path, storage_mode=StorageMode.IGNORE), CT_SMALL.dataset)
    assert result == StoreResult(STATUS_SUCCESS, None, None)
    assert files_under(tmp_path) == []


def test_deflated_data_set_is_stored_as_received(tmp_path: Path) -> None:
    dfl = Received("image_dfl.dcm")
    result = send(
        make_store(tmp_path),
        dfl.dataset,
        sop_class_uid=dfl.sop_class_uid,
        sop_instance_uid=dfl.sop_instance_uid,
        transfer_syntax_uid=dfl.transfer_syntax_uid,
    )
    assert result.status == STATUS_SUCCESS and result.path is not None
    assert data_set_of(result.path) == dfl.dataset
    assert pydicom.dcmread(result.path).PixelData == pydicom.dcmread(dfl.path).PixelData


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(CT_SMALL.dataset[:-100], id="truncated"),
        pytest.param(b"\x08\x00\x16\x00\x01\x02", id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param(LARGE_CT[:-10], id="large-truncated"),
    ],
)
def test_unparsable_data_set_is_refused_and_not_stored(tmp_path: Path, data: bytes) -> None:
    result = send(make_store(tmp_path), data)
    assert 0xC000 <= result.status <= 0xCFFF
    assert result.path is None and result.error_comment and len(result.error_comment) <= 64
    assert files_under(tmp_path) == []
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("sop_class_uid", "sop_instance_uid"),
    [(CT_SMALL.sop_class_uid, "1.2.3.4"), ("1.2.840.10008.5.1.4.1.1.4", CT_SMALL.sop_instance_uid)],
)
def test_data_set_not_matching_the_request_is_refused(
    tmp_path: Path, sop_class_uid: str, sop_instance_uid: str
) -> None:
    result = send(
        make_store(tmp_path),
        CT_SMALL.dataset,
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
    )
    assert result.status == STATUS_DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    assert os.listdir(tmp_path) == []


def test_data_set_without_sop_uids_cannot_be_understood(tmp_path: Path) -> None:
    ds = pydicom.dcmread(CT_SMALL.path)
    del ds.SOPInstanceUID
    result = send(make_store(tmp_path), encode(ds))
    assert result.status == STATUS_CANNOT_UNDERSTAND
    assert os.listdir(tmp_path) == []


JPEG_LOSSY = Received("JPEG-lossy.dcm")  # JPEG Baseline, encapsulated Pixel Data (OB)
_ENCAPSULATED_HEADER = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"


def jpeg_with_fragment(size: int) -> bytes:
    """JPEG-lossy's data set with one more fragment of ``size`` bytes in its Pixel Data."""
    data = JPEG_LOSSY.dataset
    assert data.endswith(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")  # sequence delimiter
    fragment = struct.pack("<HHL", 0xFFFE, 0xE000, size) + bytes(size)
    return data[:-8] + fragment + data[-8:] if size else data


@pytest.mark.parametrize("size", [0, 600_000], ids=["in-memory", "on-disk"])
def test_encapsulated_pixel_data_received_as_ow_is_stored_as_ob(tmp_path: Path, size: int) -> None:
    sent = jpeg_with_fragment(size)
    received_as_ow = sent.replace(_ENCAPSULATED_HEADER, _ENCAPSULATED_HEADER.replace(b"OB", b"OW"))
    assert received_as_ow != sent
    result = send(
        make_store(tmp_path),
        received_as_ow,
        sop_class_uid=JPEG_LOSSY.sop_class_uid,
        sop_instance_uid=JPEG_LOSSY.sop_instance_uid,
        transfer_syntax_uid=JPEG_LOSSY.transfer_syntax_uid,
    )
    assert result.status == STATUS_SUCCESS and result.path is not None
    assert data_set_of(result.path) == sent  # only the VR changed (PS3.5 A.4)
    assert result.reason is not None and "stored as OB" in result.reason
    # +B keeps the bytes as received.
    (tmp_path / "b").mkdir()
    keep = make_store(tmp_path / "b", storage_mode=StorageMode.BIT_PRESERVING)
    kept = send(
        keep,
        received_as_ow,
        sop_class_uid=JPEG_LOSSY.sop_class_uid,
        sop_instance_uid=JPEG_LOSSY.sop_instance_uid,
        transfer_syntax_uid=JPEG_LOSSY.transfer_syntax_uid,
    )
    assert kept.path is not None and data_set_of(kept.path) == received_as_ow


@pytest.mark.parametrize(
    ("data", "transfer_syntax_uid", "why"),
    [
        pytest.param(CT_SMALL.dataset + b"\x00", TS_EXPLICIT_LE, "odd length", id="odd"),
        pytest.param(LARGE_CT + b"\x00", TS_EXPLICIT_LE, "odd length", id="large-odd"),
        pytest.param(
            CT_SMALL.dataset,
            JPEG_LOSSY.transfer_syntax_uid,
            "native Pixel Data",
            id="native-on-jpeg",
        ),
        pytest.param(
            jpeg_with_fragment(600_000), TS_EXPLICIT_LE, "encapsulated Pixel Data", id="jpeg-on-le"
        ),
    ],
)
def test_data_set_contradicting_its_transfer_syntax_is_refused_with_the_reason(
    tmp_path: Path, data: bytes, transfer_syntax_uid: str, why: str
) -> None:
    uids = (
        (JPEG_LOSSY.sop_class_uid, JPEG_LOSSY.sop_instance_uid)
        if data.startswith(JPEG_LOSSY.dataset[:64])
        else (CT_SMALL.sop_class_uid, CT_SMALL.sop_instance_uid)
    )
    result = send(
        make_store(tmp_path),
        data,
        sop_class_uid=uids[0],
        sop_instance_uid=uids[1],
        transfer_syntax_uid=transfer_syntax_uid,
    )
    assert result.status == STATUS_CANNOT_UNDERSTAND
    assert result.reason is not None and why in result.reason
    assert os.listdir(tmp_path) == []


def test_invalid_instance_uid_is_stored_and_the_result_says_so(tmp_path: Path) -> None:
    ds = pydicom.dcmread(CT_SMALL.path)
    ds.SOPInstanceUID = "1.2.3/4"
    result = send(make_store(tmp_path), encode(ds), sop_instance_uid="1.2.3/4")
    assert result.status == STATUS_SUCCESS and result.path is not None
    assert result.path.parent == tmp_path and result.path.name.startswith("CT.1.2.3_4_")
    assert result.reason is not None and "not a valid UID" in result.reason


#: One Patient's Name element, 3 bytes long: it reads, but breaks PS3.5's even lengths.
ODD_NAME = b"\x10\x00\x10\x00PN\x03\x00ODD"


def test_bit_preserving_stores_what_reads_and_finds_the_series_date(tmp_path: Path) -> None:
    store = make_store(
        tmp_path, storage_mode=StorageMode.BIT_PRESERVING, subdirectory=SubdirectoryMode.SERIES_DATE
    )
    assert send(store, CT_SMALL.dataset).status == STATUS_SUCCESS
    # Not checked against the request or PS3.5's length rules: it reads.
    result = send(store, ODD_NAME, sop_instance_uid="1.2.9")
    assert result.status == STATUS_SUCCESS and result.path is not None
    assert data_set_of(result.path) == ODD_NAME
    today = datetime.now().strftime("%Y%m%d")
    assert files_under(tmp_path) == [f"data/1997/04/30/{CT_NAME}", f"undef/{today}/CT.1.2.9"]
    # What does not read is never a Success (issue 22: a truncated data set was).
    for garbage in (b"\x01\x02\x03 not DICOM", CT_SMALL.dataset[:-10]):
        refused = send(store, garbage, sop_instance_uid="1.2.10")
        assert refused.status == STATUS_CANNOT_UNDERSTAND
        assert refused.reason is not None and refused.reason.startswith("bad data set: ")
    assert len(files_under(tmp_path)) == 2


def test_peer_uid_with_path_characters_stays_in_the_output_directory(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    store = make_store(root, storage_mode=StorageMode.BIT_PRESERVING)
    result = send(store, CT_SMALL.dataset, sop_instance_uid="../../escape/1.2")
    assert result.status == STATUS_SUCCESS and result.path is not None
    assert result.path.resolve().parent == root.resolve()
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_symlinked_subdirectory_is_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "out", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "data").symlink_to(outside)
    store = make_store(root, subdirectory=SubdirectoryMode.SERIES_DATE)
    result = send(store, CT_SMALL.dataset)
    assert result.status == STATUS_OUT_OF_RESOURCES
    assert list(outside.iterdir()) == []
    assert sorted(os.listdir(root)) == ["data"]


def test_extension_with_path_separator_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_store(tmp_path, filename_extension="/../x")


# --- failures and clean-up -------------------------------------------------------------


@BOTH_MODES
def test_discard_leaves_nothing(tmp_path: Path, fsync: bool) -> None:
    store = make_store(tmp_path, fsync=fsync)
    for size in (100, 600_000):
        instance = store.begin(
            sop_class_uid=CT_SMALL.sop_class_uid,
            sop_instance_uid=CT_SMALL.sop_instance_uid,
            transfer_syntax_uid=TS_EXPLICIT_LE,
            calling_aetitle="X",
        )
        instance.write(bytes(size))
        instance.discard()
        instance.discard()
        assert instance.commit().status != STATUS_SUCCESS
        assert os.listdir(tmp_path) == []


def test_cleanup_removes_only_abandoned_temporary_files(tmp_path: Path) -> None:
    (tmp_path / "data" / "2020").mkdir(parents=True)
    leftovers = [
        tmp_path / ".dcmrecv-0123456789abcdef.part",
        tmp_path / "data" / "2020" / ".dcmrecv-fedcba9876543210.part",
    ]
    keep = [tmp_path / "CT.1.2.3", tmp_path / ".dcmrecv-notours.part", tmp_path / "x.part"]
    for path in leftovers + keep:
        path.write_bytes(b"x")
    store = make_store(tmp_path)
    # An instance being received right now (its temp file exists) must survive.
    live = store.begin(
        sop_class_uid=CT_SMALL.sop_class_uid,
        sop_instance_uid=CT_SMALL.sop_instance_uid,
        transfer_syntax_uid=TS_EXPLICIT_LE,
        calling_aetitle="X",
    )
    live.write(LARGE_CT[:1_000_000])  # beyond the buffer: the temporary file exists
    (live_temp,) = set(tmp_path.glob(".dcmrecv-*.part")) - set(leftovers + keep)
    assert store.cleanup_leftovers() == 2
    assert live_temp.exists()
    assert not any(path.exists() for path in leftovers)
    assert all(path.exists() for path in keep)
    live.write(LARGE_CT[1_000_000:])
    assert live.commit().status == STATUS_SUCCESS
    assert data_set_of(tmp_path / CT_NAME) == LARGE_CT


# --- --no-fsync: files without a name until complete ------------------------------------


def nameless_store(tmp_path: Path, **options: Any) -> InstanceStore:
    store = make_store(tmp_path, fsync=False, **options)
    if not store.nameless:
        pytest.skip("this file system or /proc cannot make nameless files (O_TMPFILE)")
    return store


def begin_ct(store: InstanceStore) -> IncomingInstance:
    return store.begin(
        sop_class_uid=CT_SMALL.sop_class_uid,
        sop_instance_uid=CT_SMALL.sop_instance_uid,
        transfer_syntax_uid=TS_EXPLICIT_LE,
        calling_aetitle="X",
    )


def test_no_fsync_file_has_no_name_until_it_is_complete(tmp_path: Path) -> None:
    instance = begin_ct(nameless_store(tmp_path))
    instance.write(LARGE_CT[:1_000_000])  # beyond the buffer: the file exists
    assert os.listdir(tmp_path) == []  # not even a temporary name
    instance.write(LARGE_CT[1_000_000:])
    assert instance.commit().status == STATUS_SUCCESS
    assert files_under(tmp_path) == [CT_NAME]
    assert data_set_of(tmp_path / CT_NAME) == LARGE_CT


def test_no_fsync_uses_temporary_names_without_o_tmpfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "_O_TMPFILE", 0)
    store = make_store(tmp_path, fsync=False)
    assert not store.nameless
    instance = begin_ct(store)
    instance.write(LARGE_CT[:1_000_000])
    assert [name.startswith(".dcmrecv-") for name in os.listdir(tmp_path)] == [True]
    instance.write(LARGE_CT[1_000_000:])
    assert instance.commit().status == STATUS_SUCCESS
    assert files_under(tmp_path) == [CT_NAME]


def test_no_fsync_falls_back_to_a_temporary_name_when_o_tmpfile_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = nameless_store(tmp_path)
    # As a file system that stopped taking O_TMPFILE would: open(2) fails (EISDIR).
    monkeypatch.setattr(writer, "_NAMELESS_FLAGS", os.O_RDWR | os.O_DIRECTORY)
    assert send(store, LARGE_CT, fragment=65536).status == STATUS_SUCCESS
    assert files_under(tmp_path) == [CT_NAME]
    assert data_set_of(tmp_path / CT_NAME) == LARGE_CT


@pytest.mark.parametrize("policy", list(DuplicatePolicy), ids=lambda p: p.value)
@pytest.mark.parametrize("size", ["small", "large"])
def test_no_fsync_duplicates_follow_the_policy(
    tmp_path: Path, policy: DuplicatePolicy, size: str
) -> None:
    store = nameless_store(tmp_path, on_duplicate=policy)
    first = CT_SMALL.dataset if size == "small" else LARGE_CT
    other = pydicom.dcmread(CT_SMALL.path)
    other.PatientName = "Second^Copy"
    second = encode(other)
    assert send(store, first).status == STATUS_SUCCESS
    assert send(store, first).status == STATUS_SUCCESS  # identical: nothing written
    result = send(store, second)
    expected = {
        DuplicatePolicy.OVERWRITE: ([CT_NAME], second),
        DuplicatePolicy.KEEP: ([CT_NAME], first),
        DuplicatePolicy.RENAME: ([CT_NAME, f"{CT_NAME}~1"], first),
        DuplicatePolicy.REJECT: ([CT_NAME], first),
    }[policy]
    assert (result.status == STATUS_DUPLICATE) == (policy is DuplicatePolicy.REJECT)
    assert files_under(tmp_path) == expected[0]  # no temporary name left either
    assert data_set_of(tmp_path / CT_NAME) == expected[1]
    if policy is DuplicatePolicy.RENAME:
        assert data_set_of(tmp_path / f"{CT_NAME}~1") == second


@pytest.mark.parametrize("data", [b"\x08\x00", b"\x08\x00" * 300_000], ids=["small", "large"])
def test_no_fsync_refused_data_set_goes_to_the_quarantine(tmp_path: Path, data: bytes) -> None:
    out, quarantine = tmp_path / "out", tmp_path / "quarantine"
    out.mkdir()
    quarantine.mkdir()
    store = nameless_store(out, quarantine_directory=quarantine)
    result = send(store, data)
    assert result.status == STATUS_CANNOT_UNDERSTAND
    assert os.listdir(out) == []
    [sidecar] = quarantine.glob("*.json")
    kept = quarantine / json.loads(sidecar.read_text())["file"]
    assert kept.read_bytes().endswith(data)


class _Reversed:
    """A converter that rewrites every instance: the received file, reversed."""

    def changes(self, facts: InstanceFacts) -> bool:
        return True

    def convert(
        self, source: BinaryIO, source_path: str, facts: InstanceFacts, target: BinaryIO
    ) -> None:
        assert Path(source_path).read_bytes() == source.read()  # readable by its path too
        source.seek(0)
        target.write(source.read()[::-1])


def test_no_fsync_conversion_replaces_the_received_file(tmp_path: Path) -> None:
    store = nameless_store(tmp_path)
    store.converter = _Reversed()
    for data in (CT_SMALL.dataset, LARGE_CT):
        result = send(store, data)
        assert result.status == STATUS_SUCCESS
        assert files_under(tmp_path) == [CT_NAME]
        assert (tmp_path / CT_NAME).read_bytes()[::-1].endswith(data)


DISK_FULL_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    from dcmrecv.config import ReceiverConfig, StorageMode
    from dcmrecv.storage.writer import InstanceStore

    root, uid, limit, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    fsync = sys.argv[5] == "fsync"
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    store = InstanceStore(
        ReceiverConfig(
            port=0,
            output_directory=Path(root),
            storage_mode=StorageMode.BIT_PRESERVING,
            fsync=fsync,
        ),
        modality_prefix=lambda _uid: "CT",
    )
    instance = store.begin(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=uid,
                           transfer_syntax_uid="1.2.840.10008.1.2.1", calling_aetitle="X")
    # One OB element (Explicit VR LE) of zeros: a data set that reads.
    instance.write(bytes.fromhex("e07f10004f420000") + (size - 12).to_bytes(4, "little"))
    chunk = bytes(16384)
    for _ in range(size // len(chunk) - 1):
        instance.write(chunk)
    instance.write(bytes(len(chunk) - 12))
    result = instance.commit()
    print(json.dumps({"status": result.status, "comment": result.error_comment}))
    """
)


@pytest.mark.parametrize(
    ("limit", "size"),
    [
        pytest.param(1024 * 1024, 4 * 1024 * 1024, id="fails-while-receiving"),
        pytest.param(4096, 64 * 1024, id="fails-when-committing"),
    ],
)
@BOTH_MODES
def test_file_size_limit_answers_out_of_resources_and_keeps_the_old_file(
    tmp_path: Path, limit: int, size: int, fsync: bool
) -> None:
    uid = "1.2.826.0.1.3680043.2.1"
    old = make_store(tmp_path, storage_mode=StorageMode.BIT_PRESERVING)
    assert send(old, ODD_NAME, sop_instance_uid=uid).status == STATUS_SUCCESS
    before = (tmp_path / f"CT.{uid}").read_bytes()
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            DISK_FULL_CHILD,
            str(tmp_path),
            uid,
            str(limit),
            str(size),
            "fsync" if fsync else "no-fsync",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert child.returncode == 0, child.stderr
    outcome = json.loads(child.stdout)
    assert outcome["status"] == STATUS_OUT_OF_RESOURCES
    assert "too large" in outcome["comment"].lower()
    assert (tmp_path / f"CT.{uid}").read_bytes() == before
    assert os.listdir(tmp_path) == [f"CT.{uid}"]


@BOTH_MODES
def test_same_instance_on_two_associations_ends_as_one_intact_file(
    tmp_path: Path, fsync: bool
) -> None:
    store = make_store(tmp_path, fsync=fsync)
    base = pydicom.dcmread(CT_SMALL.path)
    versions = []
    for name in ("First^Sender", "Second^Sender"):
        base.PatientName = name
        versions.append(encode(base))
    for _round in range(10):
        barrier = threading.Barrier(2)
        results: list[StoreResult] = []

        def receive(data: bytes, barrier: threading.Barrier, results: list[StoreResult]) -> None:
            instance = store.begin(
                sop_class_uid=CT_SMALL.sop_class_uid,
                sop_instance_uid=CT_SMALL.sop_instance_uid,
                transfer_syntax_uid=TS_EXPLICIT_LE,
                calling_aetitle="X",
            )
            instance.write(data)
            barrier.wait()
            results.append(instance.commit())

        threads = [threading.Thread(target=receive, args=(v, barrier, results)) for v in versions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [r.status for r in results] == [STATUS_SUCCESS, STATUS_SUCCESS]
        assert os.listdir(tmp_path) == [CT_NAME]
        assert data_set_of(tmp_path / CT_NAME) in versions
        (tmp_path / CT_NAME).unlink()
        # Exactly one of the two found the name taken.
        assert sorted(r.overwritten for r in results) == [False, True]


# --- against DCMTK ----------------------------------------------------------------------

CT_ONLY_CFG = """\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = LittleEndianImplicit

[[PresentationContexts]]
[CTOnly]
PresentationContext1 = CTImageStorage\\Uncompressed

[[Profiles]]
[Default]
PresentationContexts = CTOnly
"""


@pytest.mark.dcmtk
def test_same_path_as_dcmtk_dcmrecv(tmp_path: Path) -> None:
    dcmrecv = require_tool("dcmrecv")
    dcmsend = require_tool("dcmsend")
    cfg = tmp_path / "ct.cfg"
    cfg.write_text(CT_ONLY_CFG)
    theirs, ours = tmp_path / "dcmtk", tmp_path / "ours"
    theirs.mkdir()
    ours.mkdir()
    port = free_port()
    options = ["+fd", "+ssd", "-fe", ".dcm"]
    proc = subprocess.Popen(
        [dcmrecv, "-v", *options, "-od", str(theirs), "-xf", str(cfg), "Default", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening" in line:
                break
        # dcmrecv prints "listening" just before it opens the port.
        wait_for_port(port, proc)  # type: ignore[arg-type]
        sent = subprocess.run(
            [dcmsend, "-aet", "STORESCU", "127.0.0.1", str(port), str(CT_SMALL.path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
    finally:
        proc.terminate()
        log, _ = proc.communicate(timeout=10)
    dcmtk_files = files_under(theirs)
    assert len(dcmtk_files) == 1, log

    store = make_store(ours, subdirectory=SubdirectoryMode.SERIES_DATE, filename_extension=".dcm")
    result = send(store, CT_SMALL.dataset)
    assert result.status == STATUS_SUCCESS
    assert files_under(ours) == dcmtk_files
    assert f"Stored received object to file: {theirs / dcmtk_files[0]}" in log
    assert result.log_path == str(ours / dcmtk_files[0])

    dcmtk_file = pydicom.dcmread(theirs / dcmtk_files[0])
    our_file = pydicom.dcmread(ours / dcmtk_files[0])
    for keyword in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID"):
        assert our_file.file_meta[keyword].value == dcmtk_file.file_meta[keyword].value
    # Same data set, except that DCMTK's normal mode drops Data Set Trailing Padding
    # (FFFC,FFFC), which CT_small.dcm carries; we keep the bytes as received.
    assert "DataSetTrailingPadding" in our_file and "DataSetTrailingPadding" not in dcmtk_file
    del our_file.DataSetTrailingPadding
    assert list(our_file) == list(dcmtk_file)
