"""``--workers N``: one port, N processes, every limit for the whole receiver.

The receiver runs as a user runs it (``python -m dcmrecv ... --workers N``), DCMTK's
``storescu`` sends from several processes at once, and what a user would check is
checked: every file stored, the counts in ``/metrics`` summed over the workers, one
``--max-associations`` for all of them, a killed worker replaced, SIGTERM ending
everything with exit code 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from tests.conftest import free_port, rejection_seen
from tests.helpers import (
    TIMEOUT,
    ct_files,
    files_under,
    metric,
    receiver,
    storescu_senders,
    wait_until,
)


def workers_of(process: subprocess.Popen[bytes]) -> list[int]:
    """The worker processes the receiver runs (its children)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    try:
        pids = [int(pid) for pid in children.read_text().split()]
    except OSError:
        return []
    return [pid for pid in pids if b"dcmrecv.ops.worker" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def send_all(port: int, batches: list[list[Path]]) -> list[int]:
    """One storescu process per batch, all at once; their exit codes."""
    return [sender.wait(TIMEOUT) for sender in storescu_senders(port, batches)]


@pytest.mark.dcmtk
def test_three_workers_store_every_instance_and_metrics_add_up(tmp_path: Path) -> None:
    files = ct_files(tmp_path / "files", 30)
    http = free_port()
    with receiver(tmp_path, "--workers", "3", "--http-port", str(http)) as (port, process, log):
        wait_until(lambda: len(workers_of(process)) == 3, "three workers")
        wait_until(lambda: b"ready" in _readyz(http), "/readyz")
        codes = send_all(port, [files[n::6] for n in range(6)])
        assert codes == [0] * 6
        assert metric(http, 'dcmrecv_instances_total{status="success"}') == 30
        assert metric(http, 'dcmrecv_associations_total{result="accepted"}') == 6
        assert metric(http, "dcmrecv_associations_active") == 0
        children = workers_of(process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in children)
    stored = files_under(tmp_path / "out")
    assert len(stored) == 30
    for path in files:
        uid = str(pydicom.dcmread(path).SOPInstanceUID)
        assert f"CT.{uid}" in stored
    text = log.read_text()
    assert text.count("I: Association Received ") == 6
    assert "Traceback" not in text


def _readyz(port: int) -> bytes:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return bytes(answer.read())
    except OSError:
        return b""


def test_max_associations_counts_every_worker(tmp_path: Path) -> None:
    with receiver(tmp_path, "--workers", "2", "--max-associations", "1") as (port, _, log):
        holder = AE(ae_title="HOLDER")
        holder.add_requested_context(CTImageStorage)
        held = holder.associate("127.0.0.1", port)
        assert held.is_established
        try:
            # Whichever worker the next one lands on, the one slot is taken.
            for _ in range(4):
                other = AE(ae_title="OTHER")
                other.add_requested_context(CTImageStorage)
                # PS3.8 9.3.4: transient, presentation related, local limit exceeded.
                assert rejection_seen(other, port) == (2, 3, 2)
        finally:
            held.release()
        again = AE(ae_title="AGAIN")
        again.add_requested_context(CTImageStorage)
        wait_until(lambda: _established(again, port), "a slot after the release")
    assert "Refusing Association (too many associations)" in log.read_text()


def _established(ae: AE, port: int) -> bool:
    association = ae.associate("127.0.0.1", port)
    if association.is_established:
        association.release()
        return True
    return False


@pytest.mark.dcmtk
def test_a_killed_worker_is_replaced_and_the_receiver_goes_on(tmp_path: Path) -> None:
    files = ct_files(tmp_path / "files", 8)
    with receiver(tmp_path, "--workers", "2") as (port, process, log):
        wait_until(lambda: len(workers_of(process)) == 2, "two workers")
        victim = workers_of(process)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: len(workers_of(process)) == 2 and victim not in workers_of(process),
            "a new worker",
        )
        assert send_all(port, [files[:4], files[4:]]) == [0, 0]
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    assert len(files_under(tmp_path / "out")) == 8
    text = log.read_text()
    assert re.search(rf"worker \d \(process {victim}\) ended \(signal 9\)", text), text
