"""Helpers several test modules share: waiting for what a user would see, test
images, our receiver as a process, one /metrics sample."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conftest import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
#: The bundled profile, as the README's examples use it.
PROFILE = ["-xf", str(ROOT / "storescp.cfg"), "default"]
#: Our two commands, run from this checkout.
COMMANDS = {
    "dcmrecv": [sys.executable, "-m", "dcmrecv"],
    "storescp": [sys.executable, "-c", "from dcmrecv.commands.storescp import main; main()"],
}
#: Seconds any wait in these tests may take on a busy 2-core machine.
TIMEOUT = 60.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ct_files(directory: Path, count: int) -> list[Path]:
    """``count`` CT images, each a distinct instance (pydicom's CT_small with new UIDs)."""
    source = get_testdata_file("CT_small.dcm")
    assert source is not None
    directory.mkdir(parents=True, exist_ok=True)
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


def environment() -> dict[str, str]:
    """The environment of our receiver as a process: this checkout first on the path."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def receiver(
    workdir: Path, *options: str, port: int | None = None, command: str = "dcmrecv"
) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    """Our ``command`` (-v, the bundled profile, ``-od out``) with ``options`` on a
    free port (or ``port``); yields (port, process, log file).  Stopped with
    SIGTERM at the end (killed if it does not stop)."""
    port = port or free_port()
    (workdir / "out").mkdir(exist_ok=True)
    log = workdir / f"{command}-{port}.log"
    program = COMMANDS[command]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*program, "-v", *PROFILE, "-od", "out", *options, str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=environment(),
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


def metric(port: int, name: str) -> float:
    """One sample of our /metrics, e.g. ``dcmrecv_instances_total{status="success"}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")
