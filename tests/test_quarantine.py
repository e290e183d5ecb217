"""``--quarantine-dir``: what is refused after it arrived is kept, with the reason.

The refusals come from a raw peer (a data set that does not parse, one that names
another instance than its request) and from pynetdicom (a rejected duplicate).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE

from dcmrecv.config import DuplicatePolicy
from dcmrecv.negotiation.asconfig import Profile
from dcmrecv.storage.freespace import parse_watermark
from dcmrecv.storage.quarantine import NotKept, Room, Usage, make_room
from dcmrecv.storage.writer import STATUS_DUPLICATE
from tests.conftest import running_receiver
from tests.helpers import raw_store
from tests.rawpeer import (
    CT_IMAGE_STORAGE,
    ct_data_set,
    explicit,
)

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    out, quarantine = tmp_path / "out", tmp_path / "quarantine"
    out.mkdir()
    quarantine.mkdir()
    return out, quarantine


def entries(quarantine: Path) -> list[tuple[Path, dict[str, object]]]:
    found = []
    for sidecar in sorted(quarantine.glob("*.json")):
        record = json.loads(sidecar.read_text())
        found.append((quarantine / str(record["file"]), record))
    return found


def test_refused_data_sets_are_kept_with_a_sidecar(
    dirs: tuple[Path, Path], default_profile: Profile, caplog: pytest.LogCaptureFixture
) -> None:
    out, quarantine = dirs
    caplog.set_level(logging.INFO, logger="dcmrecv")
    broken = ct_data_set("1.2.3.4.1") + explicit(0x7FE10010, "OB", b"", length=1000)
    mismatch = ct_data_set("1.2.3.4.999")
    with running_receiver(
        output_directory=out, profile=default_profile, quarantine_directory=quarantine
    ) as server:
        assert raw_store(server.port, "1.2.3.4.1", broken) == 0xC000
        assert raw_store(server.port, "1.2.3.4.2", mismatch) == 0xA900
    assert list(out.iterdir()) == []
    kept = entries(quarantine)
    assert len(kept) == 2
    by_status = {record["status"]: (path, record) for path, record in kept}
    path, record = by_status["0xC000"]
    assert record["sop_instance_uid"] == "1.2.3.4.1"
    assert record["sop_class_uid"] == CT_IMAGE_STORAGE
    assert "bad data set" in str(record["reason"])
    association = record["association"]
    assert isinstance(association, dict)
    assert association["calling_ae_title"] == "HOSTILE"
    assert association["called_ae_title"] == "ANY-SCP"
    assert association["peer"] == "127.0.0.1"
    assert isinstance(association["serial"], int)
    # The file is what would have been stored: file meta, then the bytes received.
    assert path.read_bytes().endswith(broken)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID == (
        "1.2.3.4.1"
    )
    path, record = by_status["0xA900"]
    assert path.read_bytes().endswith(mismatch)
    assert record["sop_instance_uid"] == "1.2.3.4.2"
    assert f"quarantined as {quarantine}" in caplog.text


def test_a_rejected_duplicate_is_kept(dirs: tuple[Path, Path], default_profile: Profile) -> None:
    out, quarantine = dirs
    first = pydicom.dcmread(CT_SMALL)
    second = pydicom.dcmread(CT_SMALL)
    second.PatientName = "Second^Copy"
    with running_receiver(
        output_directory=out,
        profile=default_profile,
        quarantine_directory=quarantine,
        on_duplicate=DuplicatePolicy.REJECT,
    ) as server:
        ae = AE(ae_title="DUPLICATOR")
        ae.add_requested_context(first.SOPClassUID, first.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", server.port)
        try:
            assert int(assoc.send_c_store(first).Status) == 0
            assert int(assoc.send_c_store(second).Status) == STATUS_DUPLICATE
        finally:
            assoc.release()
    [(path, record)] = entries(quarantine)
    assert record["status"] == f"0x{STATUS_DUPLICATE:04X}"
    assert pydicom.dcmread(path).PatientName == "Second^Copy"
    assert [p.name for p in out.iterdir()] == [f"CT.{first.SOPInstanceUID}"]


def test_the_limit_removes_the_oldest_first(
    dirs: tuple[Path, Path], default_profile: Profile
) -> None:
    out, quarantine = dirs
    broken = [
        ct_data_set(f"1.2.3.4.{n}", pixel_data=bytes(3000))
        + explicit(0x7FE10010, "OB", b"", length=1000)
        for n in range(5)
    ]
    # An entry takes its data file's blocks and its sidecar's (8 KiB with 4 KiB blocks).
    block = max(os.statvfs(quarantine).f_frsize, 512)
    entry = 2 * (-(-3800 // block) * block)
    with running_receiver(
        output_directory=out,
        profile=default_profile,
        quarantine_directory=quarantine,
        quarantine_limit=parse_watermark(str(2 * entry + entry // 2)),  # room for two
    ) as server:
        for number, data_set in enumerate(broken):
            assert raw_store(server.port, f"1.2.3.4.{number}", data_set) == 0xC000
    kept = entries(quarantine)
    assert [record["sop_instance_uid"] for _path, record in kept] == ["1.2.3.4.3", "1.2.3.4.4"]
    assert sum(p.stat().st_blocks * 512 for p in quarantine.iterdir()) <= 2 * entry + entry // 2
    assert list(out.iterdir()) == []


def usage(allocated: int) -> Usage:
    return Usage(allocated, 2)


def test_make_room_removes_the_oldest_until_every_bound_holds() -> None:
    held = [("2024a", usage(5)), ("2024b", usage(5)), ("2024c", usage(5))]
    roomy = Room(held=15, limit=25, free_after=100, free_floor=10, inodes_after=50, inodes_floor=5)
    assert make_room(held, 10, roomy) == []
    # The limit: 15 held + 10 new must come down to 20.
    assert make_room(held, 10, replace(roomy, limit=20)) == ["2024a"]
    # Free space: 4 short of the floor, each removal frees 5.
    assert make_room(held, 10, replace(roomy, free_after=6)) == ["2024a"]
    # Inodes: each removal frees 2.
    assert make_room(held, 10, replace(roomy, inodes_after=0)) == ["2024a", "2024b", "2024c"]
    with pytest.raises(NotKept, match="larger than --quarantine-limit"):
        make_room(held, 30, roomy)
    with pytest.raises(NotKept, match=r"less than 10 \(--min-free-space plus 5% of the file"):
        make_room(held, 10, replace(roomy, free_after=-6))
