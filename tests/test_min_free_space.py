"""``--min-free-space`` on a small tmpfs that fills up, with real senders.

The output directory is a tmpfs of 8 MiB mounted for the test (needs root or
CAP_SYS_ADMIN; skipped with the reason otherwise) and unmounted afterwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE

from dcmrecv.negotiation.asconfig import load_profile
from dcmrecv.status import Status
from dcmrecv.storage.freespace import parse_watermark
from tests.conftest import running_receiver
from tests.helpers import free_bytes, tmpfs
from tests.rawpeer import (
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    CT_IMAGE_STORAGE,
    EXPLICIT_VR_LE,
    Pdu,
    RawPeer,
    associate_rq,
)

ROOT = Path(__file__).resolve().parent.parent
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
MIB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "tmpfs", "8m") as mountpoint:
        yield mountpoint


def fill(disk: Path, leave: int) -> Path:
    """A file that leaves about ``leave`` bytes free on ``disk``."""
    info = os.statvfs(disk)
    free = info.f_bavail * info.f_frsize
    filler = disk / "filler.bin"
    with filler.open("ab") as handle:
        handle.write(bytes(max(0, free - leave)))
    return filler


def store_until_refused(port: int, ds: pydicom.Dataset, most: int) -> list[int]:
    """One association: C-STOREs of new instances until one is refused."""
    ae = AE(ae_title="FILLER")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port)
    assert assoc.is_established
    statuses: list[int] = []
    try:
        for number in range(most):
            ds.SOPInstanceUID = f"1.2.3.4.{number}"
            statuses.append(int(assoc.send_c_store(ds).Status))
            if statuses[-1] != 0:
                break
    finally:
        assoc.release()
    return statuses


def association_answer(port: int) -> Pdu:
    """What the receiver answers to a storage A-ASSOCIATE-RQ."""
    with RawPeer(port) as peer:
        peer.send(associate_rq([(1, CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])]))
        answer = peer.receive()
        assert answer is not None
        return answer


def stored(disk: Path) -> list[Path]:
    return sorted(p for p in disk.iterdir() if p.name.startswith("CT."))


def test_storing_stops_below_the_watermark_and_resumes_by_itself(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dcmrecv")
    profile = load_profile(ROOT / "storescp.cfg", "Default")
    instance = pydicom.dcmread(CT_SMALL)
    size = CT_SMALL.stat().st_size
    # Room for a few instances above the 2 MiB watermark.
    filler = fill(small_disk, 2 * MIB + 4 * size)
    with running_receiver(
        output_directory=small_disk,
        profile=profile,
        min_free_space=parse_watermark("2M"),
        free_space_interval=0.0,  # every request looks at the disk as it is now
    ) as server:
        statuses = store_until_refused(server.port, instance, 40)
        # Refused once the disk is under the watermark: 0xA700 before any data is
        # written, never a partial file.
        assert statuses[-1] == Status.OUT_OF_RESOURCES, statuses
        assert 0 in statuses
        kept = stored(small_disk)
        assert len(kept) == statuses.count(0)
        for path in kept:
            assert pydicom.dcmread(path).PixelData == instance.PixelData
        assert free_bytes(small_disk) > 0  # the watermark kept the disk from filling
        assert "is below --min-free-space 2M" in caplog.text
        assert "No space left" not in caplog.text  # refused by the watermark, not ENOSPC
        assert [p.name for p in small_disk.iterdir() if p.name.startswith(".")] == []

        # A new association is refused outright: A-ASSOCIATE-RJ (2,3,2), transient,
        # "local limit exceeded" (PS3.8 9.3.4).
        answer = association_answer(server.port)
        assert answer.pdu_type == A_ASSOCIATE_RJ
        assert answer.reject_fields() == (2, 3, 2)

        # Space comes back: storing resumes without a restart.
        filler.unlink()
        assert association_answer(server.port).pdu_type == A_ASSOCIATE_AC
        instance.SOPInstanceUID = "1.2.3.5"
        assert store_until_refused(server.port, instance, 1) == [0]
    assert "back above --min-free-space" in caplog.text
