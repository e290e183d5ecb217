"""Helpers several test modules share: waiting for what a user would see, test
images and the files a receiver stored, our receiver as a process, raw peers'
requests, one /metrics sample."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dcmrecv.commands.dcmrecv import main as dcmrecv_main
from dcmrecv.wire import inherited
from tests import rawpeer
from tests.conftest import free_port, require_tool, wait_for_port
from tests.rawpeer import CT_IMAGE_STORAGE, EXPLICIT_VR_LE, RawPeer

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


# --- waiting ---------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], bool], what: str, timeout: float = TIMEOUT, interval: float = 0.05
) -> None:
    """Poll ``condition`` every ``interval`` seconds until it holds; fail naming
    ``what`` after ``timeout``.  For effects of another thread or process that we
    have no event to await."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


# --- test files and what was stored ----------------------------------------------------------


def pydicom_file(name: str) -> Path:
    """One of pydicom's test files (those shipped with it, never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None
    return Path(str(path))


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


def data_set_and_syntax(path: Path) -> tuple[bytes, str]:
    """The encoded data set of a Part 10 file (everything after the file meta) and
    its Transfer Syntax UID."""
    with path.open("rb") as handle:
        pydicom.filereader.read_preamble(handle, False)
        meta = pydicom.filereader._read_file_meta_info(handle)
        return handle.read(), str(meta.TransferSyntaxUID)


def data_set_bytes(path: Path) -> bytes:
    """The encoded data set of a Part 10 file: everything after the file meta."""
    return data_set_and_syntax(path)[0]


def files_under(directory: Path) -> list[str]:
    """Relative POSIX paths of every regular file below ``directory``, sorted."""
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def everything_under(directory: Path) -> list[Path]:
    """Every entry below ``directory`` but directories, hidden ones included
    (temporaries must be gone too), sorted."""
    return sorted(p for p in directory.rglob("*") if not p.is_dir())


def changed(safe: str, value: str) -> str:
    """A value a file name template had to change: its safe form, ``_`` and 16 hex
    digits of its SHA-256, so distinct values stay distinct (as
    storage.naming.sanitize_uid names UIDs)."""
    return f"{safe}_{hashlib.sha256(value.encode()).hexdigest()[:16]}"


# --- a small disk ----------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's ``size=``, e.g. ``8m``) on a new directory
    ``mountpoint``; skips the test with the reason where it cannot be mounted (it
    needs root or CAP_SYS_ADMIN).  Unmounted at the end."""
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s file system."""
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


# --- our receiver as a process ---------------------------------------------------------------


def environment(**extra: str) -> dict[str, str]:
    """The environment of our receiver as a process, with ``extra`` variables: this
    checkout first on the path, Nagle's algorithm off for DCMTK peers, and no
    socket activation variables (a child given LISTEN_FDS would take descriptor 3
    for its listener)."""
    env = {**os.environ, "TCP_NODELAY": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for name in inherited.ACTIVATION_VARIABLES:
        env.pop(name, None)
    return env


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = TIMEOUT) -> int:
    """SIGTERM ``process`` if it still runs and wait for it: its exit code.  Killed
    if it does not end within ``timeout`` (the code then says so: -9)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout)


@contextlib.contextmanager
def listening(
    arguments: Sequence[str],
    port: int,
    workdir: Path,
    log: Path,
    *,
    append: bool = True,
    timeout: float = TIMEOUT,
) -> Iterator[subprocess.Popen[bytes]]:
    """A receiver run as ``arguments`` in ``workdir`` (our ``environment()``), its
    standard output and error in ``log`` (appended to, or written anew), once it
    listens on ``port``; stopped at the end (``stop`` with ``timeout``)."""
    with log.open("ab" if append else "wb") as out:
        process = subprocess.Popen(
            arguments, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=environment()
        )
    try:
        wait_for_port(port, process)
        yield process
    finally:
        stop(process, timeout)


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
    arguments = [*COMMANDS[command], "-v", *PROFILE, "-od", "out", *options, str(port)]
    with listening(arguments, port, workdir, log) as process:
        yield port, process, log


def invoke_dcmrecv(*args: str) -> Result:
    """Our dcmrecv command in this process (click's runner), with ``args``."""
    return CliRunner().invoke(dcmrecv_main, list(args), prog_name="dcmrecv")


def action_information(
    transaction_uid: str | None, references: Sequence[tuple[str | None, str | None]] | None
) -> Dataset:
    """A Storage Commitment N-ACTION's Action Information as pydicom builds it: the
    Transaction UID and a Referenced SOP Sequence of (SOP Class UID, SOP Instance UID)
    items; None leaves an element out (malformed requests)."""
    action = Dataset()
    if transaction_uid is not None:
        action.TransactionUID = transaction_uid
    if references is not None:
        items = []
        for sop_class, sop_instance in references:
            item = Dataset()
            if sop_class is not None:
                item.ReferencedSOPClassUID = sop_class
            if sop_instance is not None:
                item.ReferencedSOPInstanceUID = sop_instance
            items.append(item)
        action.ReferencedSOPSequence = items
    return action


def metric(port: int, name: str) -> float:
    """One sample of our /metrics, e.g. ``dcmrecv_instances_total{status="success"}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


# --- peers -----------------------------------------------------------------------------------


def storescu_senders(port: int, batches: Sequence[Sequence[Path]]) -> list[subprocess.Popen[bytes]]:
    """One DCMTK storescu per non-empty batch, all started at once, their output
    dropped; the processes."""
    storescu = require_tool("storescu")
    return [
        subprocess.Popen(
            [storescu, "-aec", "DCMRECV", "127.0.0.1", str(port), *map(str, batch)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        for batch in batches
        if batch
    ]


#: The presentation context ID raw_store proposes CT Image Storage with.
_CT_CONTEXT = 1


def raw_store(port: int, request_uid: str | bytes, data_set: bytes) -> int:
    """One C-STORE of ``data_set`` from a raw peer; the response's status."""
    with RawPeer(port) as peer:
        accepted = peer.associate(
            rawpeer.associate_rq(
                [(_CT_CONTEXT, CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])], calling="HOSTILE"
            )
        )
        assert accepted == {_CT_CONTEXT: EXPLICIT_VR_LE}
        peer.send(
            rawpeer.message(_CT_CONTEXT, True, rawpeer.c_store_rq(CT_IMAGE_STORAGE, request_uid))
        )
        peer.send(rawpeer.message(_CT_CONTEXT, False, data_set))
        return rawpeer.status_of(peer.receive_command())


def association_answer(port: int, source: str) -> tuple[RawPeer, str | tuple[int, int, int]]:
    """An A-ASSOCIATE-RQ from ``source``: the peer and "AC", the RJ's fields or "closed"."""
    peer = RawPeer(port, source=source)
    peer.send(rawpeer.ECHO_RQ_FIXTURE)
    answer = peer.receive()
    if answer is None:
        return peer, "closed"
    if answer.pdu_type == rawpeer.A_ASSOCIATE_AC:
        return peer, "AC"
    return peer, answer.reject_fields()
