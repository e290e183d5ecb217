"""``--workers N``: one port, N processes, every limit for the whole receiver.

The receiver runs as a user runs it (``python -m dcmrecv ... --workers N``), DCMTK's
``storescu`` sends from several processes at once, and what a user would check is
checked: every file stored, the counts in ``/metrics`` summed over the workers, one
``--max-associations`` for all of them, a killed worker replaced, SIGTERM ending
everything with exit code 0.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from tests.conftest import free_port, rejection_seen, require_tool, wait_for_port
from tests.interop import stored_files

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ["-xf", str(ROOT / "storescp.cfg"), "Default"]
TIMEOUT = 60.0


def ct_files(directory: Path, count: int) -> list[Path]:
    """``count`` CT images, each a distinct instance (pydicom's CT_small with new UIDs)."""
    source = get_testdata_file("CT_small.dcm")
    assert source is not None
    directory.mkdir()
    files = []
    for n in range(count):
        dataset = pydicom.dcmread(source)
        uid = generate_uid()
        dataset.SOPInstanceUID = uid
        dataset.file_meta.MediaStorageSOPInstanceUID = uid
        path = directory / f"ct{n:03d}.dcm"
        dataset.save_as(path)
        files.append(path)
    return files


@contextlib.contextmanager
def receiver(tmp_path: Path, *options: str) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    """Our dcmrecv with ``options`` on a free port; yields (port, process, log)."""
    port = free_port()
    (tmp_path / "out").mkdir(exist_ok=True)
    log = tmp_path / "receiver.log"
    env = {**os.environ, "TCP_NODELAY": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dcmrecv", "-v", *PROFILE, "-od", "out", *options, str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
    try:
        wait_for_port(port, process)
        yield port, process, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(TIMEOUT)


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


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def metric(port: int, name: str) -> float:
    """One sample of our /metrics, e.g. ``dcmrecv_instances_total{status="success"}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def send_all(port: int, batches: list[list[Path]]) -> list[int]:
    """One storescu process per batch, all at once; their exit codes."""
    storescu = require_tool("storescu")
    senders = [
        subprocess.Popen(
            [storescu, "-aec", "DCMRECV", "127.0.0.1", str(port), *map(str, batch)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        for batch in batches
    ]
    return [sender.wait(TIMEOUT) for sender in senders]


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
    stored = stored_files(tmp_path / "out")
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
    assert len(stored_files(tmp_path / "out")) == 8
    text = log.read_text()
    assert re.search(rf"worker \d \(process {victim}\) ended \(signal 9\)", text), text
