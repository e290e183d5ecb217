"""End to end: real senders (DCMTK's storescu/echoscu, pynetdicom) into our receiver."""

from __future__ import annotations

import copy
import logging
import subprocess
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from dcmrecv.config import FilenameMode, StorageMode, SubdirectoryMode
from tests.conftest import rejection_seen, require_tool, running_receiver
from tests.helpers import data_set_bytes, everything_under

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
MR_SMALL = Path(get_testdata_file("MR_small.dcm"))  # type: ignore[arg-type]


def run_tool(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.dcmtk
def test_echoscu_gets_success_without_a_profile(tmp_path: Path) -> None:
    echoscu = require_tool("echoscu")
    with running_receiver(output_directory=tmp_path) as server:
        result = run_tool(echoscu, "-v", "127.0.0.1", server.port)
    assert result.returncode == 0, result.stderr
    assert "Received Echo Response (Success)" in result.stderr


@pytest.mark.dcmtk
def test_storescu_instance_is_stored_under_dcmtk_name(
    tmp_path: Path, default_profile, caplog: pytest.LogCaptureFixture
) -> None:
    storescu = require_tool("storescu")
    caplog.set_level(logging.INFO, logger="dcmrecv")
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        result = run_tool(storescu, "127.0.0.1", server.port, CT_SMALL)
    assert result.returncode == 0, result.stderr
    sent = pydicom.dcmread(CT_SMALL)
    expected = tmp_path / f"CT.{sent.SOPInstanceUID}"
    assert everything_under(tmp_path) == [expected]
    stored = pydicom.dcmread(expected)
    assert stored.file_meta.MediaStorageSOPInstanceUID == sent.SOPInstanceUID
    assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    assert stored.PixelData == sent.PixelData
    assert f"Stored received object to file: {expected}" in caplog.text


@pytest.mark.dcmtk
def test_bit_preserving_keeps_the_received_bytes(tmp_path: Path, default_profile) -> None:
    storescu = require_tool("storescu")
    with running_receiver(
        output_directory=tmp_path,
        profile=default_profile,
        storage_mode=StorageMode.BIT_PRESERVING,
        filename_extension=".dcm",
    ) as server:
        # -xs: propose only the file's own transfer syntax, so no conversion happens.
        result = run_tool(storescu, "-xs", "127.0.0.1", server.port, CT_SMALL)
    assert result.returncode == 0, result.stderr
    [stored] = everything_under(tmp_path)
    assert stored.name.startswith("CT.") and stored.suffix == ".dcm"
    received, source = data_set_bytes(stored), data_set_bytes(CT_SMALL)
    # storescu sends the file's data set as it is, except that it drops the Data
    # Set Trailing Padding (FFFC,FFFC) at the end of CT_small.dcm.
    assert source.startswith(received)
    assert source[len(received) : len(received) + 4] == b"\xfc\xff\xfc\xff"


def _pynetdicom_send(port: int, files: list[Path], ae_title: str = "PYNETDICOM") -> list[int]:
    ae = AE(ae_title=ae_title)
    datasets = [pydicom.dcmread(f) for f in files]
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="ANY-SCP")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


# pydicom's bundled files with distinct SOP Instance UIDs: several SOP classes and
# Explicit/Implicit LE, Big Endian, Deflated, JPEG, JPEG 2000 and RLE transfer syntaxes.
PYDICOM_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "JPEG2000.dcm",
    "JPEG-lossy.dcm",
    "SC_rgb_rle.dcm",
    "ExplVR_BigEnd.dcm",
    "image_dfl.dcm",
    "693_J2KI.dcm",
]


def test_pynetdicom_stores_many_classes_and_transfer_syntaxes(
    tmp_path: Path, default_profile
) -> None:
    files = [Path(get_testdata_file(name)) for name in PYDICOM_FILES]  # type: ignore[arg-type]
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        statuses = _pynetdicom_send(server.port, files)
    assert statuses == [0] * len(files)
    stored = {pydicom.dcmread(p).SOPInstanceUID: p for p in everything_under(tmp_path)}
    for source in files:
        sent = pydicom.dcmread(source)
        received = pydicom.dcmread(stored[sent.SOPInstanceUID])
        assert received.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        # pynetdicom (pydicom) leaves out group length elements when it encodes.
        for element in [e for e in sent if e.tag.element == 0x0000]:
            del sent[element.tag]
        if sent.file_meta.TransferSyntaxUID.is_encapsulated and "PixelData" in sent:
            sent["PixelData"].VR = "OB"  # encapsulated OW is stored as OB (PS3.5 A.4)
        assert received == sent, f"{source.name} changed on the way"


def test_concurrent_associations_are_served_at_once(tmp_path: Path, default_profile) -> None:
    # Four associations stay open together: a receiver serving one at a time
    # would leave the others waiting for the first release.
    ae = AE()
    ae.add_requested_context(CTImageStorage)
    sent = pydicom.dcmread(CT_SMALL)
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        associations = [ae.associate("127.0.0.1", server.port) for _ in range(4)]
        assert all(a.is_established for a in associations)
        statuses = []
        for index, assoc in enumerate(associations):
            ds = copy.deepcopy(sent)
            ds.SOPInstanceUID = f"{sent.SOPInstanceUID}.{index + 1}"
            statuses.append(int(assoc.send_c_store(ds).Status))
        for assoc in associations:
            assoc.release()
    assert statuses == [0, 0, 0, 0]
    assert len(everything_under(tmp_path)) == 4


def test_parallel_senders_store_every_instance(tmp_path: Path, default_profile) -> None:
    sent = pydicom.dcmread(CT_SMALL)
    errors: list[BaseException] = []

    def sender(number: int) -> None:
        try:
            ae = AE()
            ae.add_requested_context(CTImageStorage, sent.file_meta.TransferSyntaxUID)
            assoc = ae.associate("127.0.0.1", port)
            assert assoc.is_established
            for index in range(10):
                ds = copy.deepcopy(sent)
                ds.SOPInstanceUID = f"{sent.SOPInstanceUID}.{number}.{index}"
                assert assoc.send_c_store(ds).Status == 0
            assoc.release()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        port = server.port
        threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert not errors, errors
    files = everything_under(tmp_path)
    assert len(files) == 80
    for path in files:
        assert pydicom.dcmread(path).PixelData == sent.PixelData


def test_without_profile_storage_is_refused(tmp_path: Path) -> None:
    ae = AE()
    ae.add_requested_context(CTImageStorage)
    with running_receiver(output_directory=tmp_path) as server:
        # DCMTK: "no acceptable presentation contexts" is (1, 1, 1).
        assert rejection_seen(ae, server.port) == (1, 1, 1)


def test_called_ae_title_must_match_explicit_aetitle(tmp_path: Path) -> None:
    ae = AE()
    ae.add_requested_context(Verification)
    with running_receiver(
        output_directory=tmp_path, aetitle="STORE1", aetitle_explicit=True, use_called_aetitle=False
    ) as server:
        assert rejection_seen(ae, server.port, ae_title="OTHER") == (1, 1, 7)
        right = ae.associate("127.0.0.1", server.port, ae_title="STORE1")
        assert right.is_established
        assert right.send_c_echo().Status == 0
        right.release()


def test_max_associations_rejects_the_next_one(tmp_path: Path) -> None:
    ae = AE()
    ae.add_requested_context(Verification)
    with running_receiver(output_directory=tmp_path, max_associations=1) as server:
        first = ae.associate("127.0.0.1", server.port)
        assert first.is_established
        assert rejection_seen(ae, server.port) == (2, 3, 2)
        first.release()
        third = ae.associate("127.0.0.1", server.port)
        assert third.is_established
        third.release()


def test_transfer_syntax_preference_is_the_profiles(tmp_path: Path, default_profile) -> None:
    # The peer lists Implicit first; the profile prefers Explicit VR Little Endian.
    ae = AE()
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        assoc = ae.associate("127.0.0.1", server.port)
        assert assoc.is_established
        accepted = assoc.accepted_contexts[0].transfer_syntax[0]
        assoc.release()
    first_choice = default_profile.contexts[0].transfer_syntaxes[0]
    assert accepted == first_choice == "1.2.840.10008.1.2.1"


def test_series_date_subdirectories_and_short_names(tmp_path: Path, default_profile) -> None:
    ds = pydicom.dcmread(CT_SMALL)
    ds.SeriesDate = "20240229"
    with running_receiver(
        output_directory=tmp_path,
        profile=default_profile,
        subdirectory=SubdirectoryMode.SERIES_DATE,
        filename_mode=FilenameMode.SHORT_UNIQUE,
    ) as server:
        ae = AE()
        ae.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", server.port)
        assert assoc.send_c_store(ds).Status == 0
        assoc.release()
    [stored] = everything_under(tmp_path)
    relative = stored.relative_to(tmp_path)
    assert relative.parts[:4] == ("data", "2024", "02", "29")
    assert relative.name.startswith("CT_") and len(relative.name) == 3 + 16
