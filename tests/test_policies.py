"""Storage policies end to end: ``--output-template`` and ``--on-duplicate`` with real
senders (DCMTK's storescu, pynetdicom) into our receiver."""

from __future__ import annotations

import copy
import logging
import subprocess
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pynetdicom import AE

from dcmrecv.config import DuplicatePolicy, StorageMode
from dcmrecv.storage.template import parse_template
from dcmrecv.storage.writer import STATUS_DUPLICATE
from tests.conftest import require_tool, running_receiver
from tests.helpers import changed, files_under

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
MR_SMALL = Path(get_testdata_file("MR_small.dcm"))  # type: ignore[arg-type]
TEMPLATE = (
    "{PatientID}/{StudyDate}_{AccessionNumber}/{SeriesNumber:04d}_{Modality}/{SOPInstanceUID}.dcm"
)


def pynetdicom_send(
    port: int, datasets: list[Dataset], ae_title: str = "PYNETDICOM", called: str = "ANY-SCP"
) -> list[int]:
    ae = AE(ae_title=ae_title)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def ct(**changes: object) -> Dataset:
    ds = pydicom.dcmread(CT_SMALL)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


# --- --output-template ------------------------------------------------------------------


@pytest.mark.dcmtk
def test_storescu_instance_lands_where_the_template_says(tmp_path: Path, default_profile) -> None:
    storescu = require_tool("storescu")
    with running_receiver(
        output_directory=tmp_path,
        profile=default_profile,
        output_template=parse_template(TEMPLATE),
    ) as server:
        result = subprocess.run(
            [storescu, "127.0.0.1", str(server.port), str(CT_SMALL)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    sent = pydicom.dcmread(CT_SMALL)
    # CT_small has no Accession Number: the fallback word stands in.
    expected = (
        f"{sent.PatientID}/{sent.StudyDate}_UNKNOWN/"
        f"{int(sent.SeriesNumber):04d}_{sent.Modality}/{sent.SOPInstanceUID}.dcm"
    )
    assert files_under(tmp_path) == [expected]
    assert pydicom.dcmread(tmp_path / expected).SOPInstanceUID == sent.SOPInstanceUID


HOSTILE = [
    # (PatientID sent, the directory it becomes)
    ("../../../etc", changed("_._.._.._etc", "../../../etc")),
    ("/absolute", changed("_absolute", "/absolute")),
    ("..", changed("_.", "..")),
    (".hidden", changed("_hidden", ".hidden")),
    ("a\\b", changed("a_b", "a\\b")),
    ("tab\there", changed("tab_here", "tab\there")),
    ("   ", "UNKNOWN"),
]


@pytest.mark.parametrize(
    "mode", [StorageMode.NORMAL, StorageMode.BIT_PRESERVING], ids=["normal", "bit-preserving"]
)
def test_hostile_values_stay_inside_the_output_directory(
    tmp_path: Path, default_profile, mode: StorageMode
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    datasets = []
    for number, (patient_id, _shown) in enumerate(HOSTILE):
        ds = ct(PatientID=patient_id, SOPInstanceUID=f"1.2.3.4.{number}")
        datasets.append(ds)
    with running_receiver(
        output_directory=out,
        profile=default_profile,
        storage_mode=mode,
        output_template=parse_template("{PatientID}/{CallingAETitle}/{SOPInstanceUID}"),
    ) as server:
        statuses = pynetdicom_send(server.port, datasets, ae_title="EVIL/../AE")
    assert statuses == [0] * len(HOSTILE)
    expected = sorted(
        f"{shown}/{changed('EVIL_.._AE', 'EVIL/../AE')}/1.2.3.4.{number}"
        for number, (_id, shown) in enumerate(HOSTILE)
    )
    assert files_under(out) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_association_values_in_the_template(tmp_path: Path, default_profile) -> None:
    ds = ct()
    with running_receiver(
        output_directory=tmp_path,
        profile=default_profile,
        output_template=parse_template(
            "{CalledAETitle}/{CallingAETitle}_{PeerAddress}/{Prefix}_{SOPInstanceUID}"
        ),
    ) as server:
        statuses = pynetdicom_send(server.port, [ds], ae_title="SENDER", called="../ARCHIVE")
    assert statuses == [0]
    called = changed("_._ARCHIVE", "../ARCHIVE")
    assert files_under(tmp_path) == [f"{called}/SENDER_127.0.0.1/CT_{ds.SOPInstanceUID}"]


def test_numbers_binary_values_and_long_values(tmp_path: Path, default_profile) -> None:
    long_id = "X" * 64
    ds = ct(PatientID=long_id, SeriesNumber="7")
    with running_receiver(
        output_directory=tmp_path,
        profile=default_profile,
        output_template=parse_template("{SeriesNumber:04d}/{Rows}x{Columns}/{PatientID}"),
    ) as server:
        assert pynetdicom_send(server.port, [ds]) == [0]
    assert files_under(tmp_path) == [f"0007/{ds.Rows}x{ds.Columns}/{long_id}"]


def test_template_in_implicit_vr_reads_values_by_the_dictionary(
    tmp_path: Path, default_profile
) -> None:
    ds = ct()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    for _element in ds:
        pass  # decoded from the file's explicit VR, so it can be sent in implicit VR
    ds.set_original_encoding(True, True)
    with running_receiver(
        output_directory=tmp_path,
        profile=default_profile,
        output_template=parse_template("{Modality}/{Rows}/{00100020}"),
    ) as server:
        assert pynetdicom_send(server.port, [ds]) == [0]
    assert files_under(tmp_path) == [f"CT/{ds.Rows}/{ds.PatientID}"]


# --- --on-duplicate ----------------------------------------------------------------------


def _store_twice(
    tmp_path: Path, profile: object, policy: DuplicatePolicy, second: Dataset
) -> tuple[list[int], list[str]]:
    with running_receiver(
        output_directory=tmp_path, profile=profile, on_duplicate=policy, filename_extension=".dcm"
    ) as server:
        statuses = pynetdicom_send(server.port, [ct()])
        statuses += pynetdicom_send(server.port, [second])
    return statuses, files_under(tmp_path)


NAME = f"CT.{pydicom.dcmread(CT_SMALL).SOPInstanceUID}"


def test_overwrite_replaces_with_dcmtks_warning(
    tmp_path: Path, default_profile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dcmrecv")
    statuses, files = _store_twice(
        tmp_path, default_profile, DuplicatePolicy.OVERWRITE, ct(PatientName="Second^Copy")
    )
    assert statuses == [0, 0]
    assert files == [f"{NAME}.dcm"]
    assert pydicom.dcmread(tmp_path / files[0]).PatientName == "Second^Copy"
    assert "file already exists, overwriting" in caplog.text


def test_keep_answers_success_and_keeps_the_first(
    tmp_path: Path, default_profile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dcmrecv")
    statuses, files = _store_twice(
        tmp_path, default_profile, DuplicatePolicy.KEEP, ct(PatientName="Second^Copy")
    )
    assert statuses == [0, 0]
    assert files == [f"{NAME}.dcm"]
    assert pydicom.dcmread(tmp_path / files[0]).PatientName == ct().PatientName
    assert "kept the stored file" in caplog.text


def test_rename_stores_the_second_copy_beside_the_first(tmp_path: Path, default_profile) -> None:
    statuses, files = _store_twice(
        tmp_path, default_profile, DuplicatePolicy.RENAME, ct(PatientName="Second^Copy")
    )
    assert statuses == [0, 0]
    assert files == [f"{NAME}.dcm", f"{NAME}~1.dcm"]
    assert pydicom.dcmread(tmp_path / f"{NAME}~1.dcm").PatientName == "Second^Copy"


def test_reject_answers_a_failure_and_keeps_the_first(tmp_path: Path, default_profile) -> None:
    statuses, files = _store_twice(
        tmp_path, default_profile, DuplicatePolicy.REJECT, ct(PatientName="Second^Copy")
    )
    assert statuses == [0, STATUS_DUPLICATE]
    assert files == [f"{NAME}.dcm"]
    assert pydicom.dcmread(tmp_path / files[0]).PatientName == ct().PatientName


@pytest.mark.parametrize("policy", list(DuplicatePolicy), ids=lambda p: p.value)
def test_identical_resend_is_a_quiet_success(
    tmp_path: Path, default_profile, policy: DuplicatePolicy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dcmrecv")
    statuses, files = _store_twice(tmp_path, default_profile, policy, ct())
    assert statuses == [0, 0]
    assert files == [f"{NAME}.dcm"]
    assert "overwriting" not in caplog.text
    assert "identical to the stored file" in caplog.text


def race(port: int, datasets: list[Dataset]) -> list[int]:
    """Each data set from its own association; the C-STOREs start together."""
    start = threading.Barrier(len(datasets))
    statuses: list[int] = []

    def sender(index: int, ds: Dataset) -> None:
        ae = AE(ae_title=f"RACER{index}")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", port)
        assert assoc.is_established
        try:
            start.wait(10)
            statuses.append(int(assoc.send_c_store(ds).Status))
        finally:
            assoc.release()

    threads = [
        threading.Thread(target=sender, args=(i, copy.deepcopy(ds)))
        for i, ds in enumerate(datasets)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


@pytest.mark.parametrize(
    "policy", [DuplicatePolicy.REJECT, DuplicatePolicy.KEEP], ids=lambda p: p.value
)
def test_two_associations_racing_on_one_instance_store_it_once(
    tmp_path: Path, default_profile, policy: DuplicatePolicy
) -> None:
    """Two senders, different bytes for one SOP instance, released at the same moment:
    exactly one copy is stored, intact, and (reject) exactly one sender hears so."""
    copies = [ct(PatientName=f"Copy^{n}") for n in range(2)]
    rounds = 5
    with running_receiver(
        output_directory=tmp_path, profile=default_profile, on_duplicate=policy
    ) as server:
        for round_number in range(rounds):
            uid = f"1.2.826.0.1.3680043.2.1143.99.{round_number}"
            for ds in copies:
                ds.SOPInstanceUID = uid
            statuses = sorted(race(server.port, copies))
            if policy is DuplicatePolicy.REJECT:
                assert statuses == [0, STATUS_DUPLICATE]
            else:
                assert statuses == [0, 0]
            stored = pydicom.dcmread(tmp_path / f"CT.{uid}")
            assert str(stored.PatientName) in ("Copy^0", "Copy^1")
    assert len(files_under(tmp_path)) == rounds
