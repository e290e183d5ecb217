"""Issue 24's acceptance test: Orthanc, a real Storage Commitment requester.

Orthanc (Debian's 1.10 on Debian 12, 1.12 on Debian 13) stores instances into our
receiver with its C-STORE, asks for storage commitment through its REST API, and we
read its verdict back.  Orthanc releases the N-ACTION's association at once, so
our report travels on a new association to Orthanc's DICOM port, from the AE title
Orthanc called; Orthanc takes it only from an AE title of its DicomModalities, at
the host listed there (tests/orthanc.py configures it strictly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file

from tests.conftest import free_port
from tests.helpers import receiver, wait_until
from tests.orthanc import OrthancFactory, orthanc  # noqa: F401 (fixture)

NO_SUCH_OBJECT_INSTANCE = 0x0112


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert isinstance(path, str), f"pydicom's test file {name} is missing"
    return Path(path)


def uids(name: str) -> tuple[str, str]:
    """(SOP Class UID, SOP Instance UID) of one of pydicom's test files."""
    dataset = pydicom.dcmread(pydicom_file(name), stop_before_pixels=True)
    return str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)


def instances(result: Any, key: str) -> list[str]:
    return sorted(item["SOPInstanceUID"] for item in result[key])


def test_orthanc_gets_committed_for_what_we_stored_and_0112_for_the_rest(
    tmp_path: Path,
    orthanc: OrthancFactory,  # noqa: F811
) -> None:
    port = free_port()
    peer = orthanc(modalities={"dcmrecv": ("DCMRECV", "127.0.0.1", port)})
    ct, mr, plan = (uids(name) for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"))
    ids = [peer.upload(pydicom_file(n)) for n in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")]
    options = ["--storage-commitment", "--commitment-peer", f"ORTHANC=127.0.0.1:{peer.dicom_port}"]
    options += ["--event-log", "events.jsonl"]
    with receiver(tmp_path, *options, port=port) as (_, _, log):
        # Orthanc's C-STORE job stores CT and MR, and asks for their commitment.
        stored = peer.store("dcmrecv", ids[:2], storage_commitment=True)
        first = peer.wait_for_storage_commitment(stored["StorageCommitmentTransactionUID"])

        # The RT plan was never sent; the MR's file is removed after its Success.
        (mr_file,) = (tmp_path / "out").glob(f"*{mr[1]}*")
        mr_file.unlink()
        transaction = peer.request_storage_commitment("dcmrecv", instances=[ct, mr, plan])
        second = peer.wait_for_storage_commitment(transaction)
        wait_until(lambda: log.read_text().count("on the new association") == 2, "two reports")

    assert first["Status"] == "Success", first
    assert instances(first, "Success") == sorted([ct[1], mr[1]])
    assert second["Status"] == "Failure", second
    assert instances(second, "Success") == [ct[1]]
    assert instances(second, "Failures") == sorted([mr[1], plan[1]])
    assert {f["FailureReason"] for f in second["Failures"]} == {NO_SUCH_OBJECT_INSTANCE}
    # Orthanc released its association at once: the report went on a new one, from
    # the AE title Orthanc had called.
    text = log.read_text()
    assert "goes on a new association (the requester did not wait for it)" in text
    assert "sent to ORTHANC on the new association: 1 committed, 2 failed" in text
