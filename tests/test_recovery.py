"""After a crash: every acknowledged instance is intact, nothing truncated is left.

Two kinds of crash.  A killed process (SIGKILL at random moments during a send, by
a real receiver process) keeps everything it wrote in the page cache: there the test
is that every C-STORE answered Success has its complete file after a restart, and
that no temporary file or half-written file stays.  A power cut can also lose data
that was written but not flushed: that state is built by hand (a final name whose
file is shorter than its temporary name records) and recovery must remove it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import signal
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from dcmrecv.storage.recovery import recover
from tests.interop import our_command, receiver_process

BUNDLED_CFG = Path(__file__).resolve().parent.parent / "storescp.cfg"
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]


def _temp(root: Path, size: int | None) -> Path:
    suffix = f"-{size}" if size is not None else ""
    return root / f".dcmrecv-{os.urandom(8).hex()}{suffix}.part"


def test_a_file_truncated_by_a_power_cut_is_removed_with_its_final_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The journal kept the final name, the data reached the disk only in part: the
    # temporary name records 1000 bytes, the file has 600.  No Success was sent for
    # it (Success waits for the flush), so the sender will send it again.
    series = tmp_path / "CT"
    series.mkdir()
    final = series / "CT.1.2.3"
    final.write_bytes(b"\0" * 600)
    os.link(final, _temp(tmp_path, 1000))
    other = series / "CT.1.2.4"
    other.write_bytes(b"kept")
    with caplog.at_level(logging.WARNING):
        outcome = recover(str(tmp_path))
    assert (outcome.removed, outcome.truncated) == (1, 1)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["CT.1.2.4"]
    assert "has 600 of its 1000 bytes after a crash" in caplog.text
    assert f"removed {final}: truncated by a crash" in caplog.text


def test_a_complete_file_keeps_its_final_name(tmp_path: Path) -> None:
    # The flush completed (Success may have been sent); only the unlink of the
    # temporary name was lost.
    final = tmp_path / "CT.1.2.3"
    final.write_bytes(b"\1" * 1000)
    os.link(final, _temp(tmp_path, 1000))
    assert recover(str(tmp_path)).removed == 1
    assert [p.name for p in tmp_path.iterdir()] == ["CT.1.2.3"]
    assert final.read_bytes() == b"\1" * 1000


def test_a_temporary_file_without_a_final_name_is_removed(tmp_path: Path) -> None:
    _temp(tmp_path, None).write_bytes(b"partial")
    _temp(tmp_path, 5).write_bytes(b"12345")
    assert recover(str(tmp_path)).removed == 2
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_file_a_live_receiver_holds_is_left_alone(tmp_path: Path) -> None:
    final = tmp_path / "CT.1.2.3"
    final.write_bytes(b"\0" * 10)
    held = _temp(tmp_path, 1000)
    os.link(final, held)
    fd = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert recover(str(tmp_path)).removed == 0
        assert held.exists() and final.exists()
    finally:
        os.close(fd)


# --- a real receiver killed at random moments ------------------------------------------------


def _sender(port: int, acknowledged: dict[str, bytes], stop: threading.Event) -> None:
    """Send CT instances of mixed sizes until the association breaks; record each Success."""
    template = pydicom.dcmread(CT_SMALL)
    ae = AE()
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 3
    assoc = ae.associate("127.0.0.1", port)
    if not assoc.is_established:
        return
    rng = random.Random()
    try:
        while not stop.is_set() and assoc.is_established:
            template.SOPInstanceUID = generate_uid()
            # Some instances large enough that the kill lands in a write or a flush.
            template.add_new((0x0009, 0x0010), "LO", "DCMRECV TEST")
            template.add_new((0x0009, 0x1001), "OB", os.urandom(rng.choice((0, 4096, 2**20))))
            try:
                status = assoc.send_c_store(template)
            except RuntimeError:
                # The kill ended the association after the loop's check (pynetdicom
                # refuses to send on an association that is no longer established).
                if assoc.is_established:
                    raise
                break
            if status and status.Status == 0:
                acknowledged[template.SOPInstanceUID] = bytes(template[0x0009, 0x1001].value)
    finally:
        if assoc.is_established:
            assoc.abort()


@pytest.mark.parametrize("round_", range(4))
def test_every_acknowledged_instance_survives_sigkill(round_: int, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    acknowledged: dict[str, bytes] = {}
    stop = threading.Event()
    arguments = ["-xf", str(BUNDLED_CFG), "Default", "-od", str(out)]
    with receiver_process(our_command(), arguments, tmp_path) as (port, process):
        senders = [
            threading.Thread(target=_sender, args=(port, acknowledged, stop), daemon=True)
            for _ in range(3)
        ]
        for sender in senders:
            sender.start()
        # Wait until some instances are stored, then kill at a random moment.
        deadline = 30.0
        waited = threading.Event()
        while len(acknowledged) < 5 and deadline > 0:
            waited.wait(0.05)
            deadline -= 0.05
        waited.wait(random.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        stop.set()
        for sender in senders:
            sender.join(30)
    assert acknowledged, "nothing was stored before the kill"
    snapshot = dict(acknowledged)
    # A restart puts right what the kill left (the receiver runs recovery at start-up).
    with receiver_process(our_command(), arguments, tmp_path):
        pass
    leftovers = [p for p in out.rglob(".dcmrecv-*")]
    assert leftovers == []
    stored = {}
    for path in out.rglob("*"):
        if path.is_file():
            # Every file under a final name is a complete DICOM file.
            dataset = pydicom.dcmread(path)
            stored[dataset.SOPInstanceUID] = bytes(dataset[0x0009, 0x1001].value or b"")
    missing = set(snapshot) - set(stored)
    assert not missing, f"{len(missing)} acknowledged instances lost"
    assert all(stored[uid] == value for uid, value in snapshot.items())
    # Some that were not acknowledged may be stored too (the kill fell after the
    # flush, before the response): they are complete as well, checked above.
