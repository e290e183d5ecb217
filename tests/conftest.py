"""Shared test fixtures.

Peers are real programs: DCMTK's command line tools (Debian package ``dcmtk``) and
pynetdicom as SCU.  Under CI (``CI=true``) a missing peer is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from dcmrecv.config import ReceiverConfig
    from dcmrecv.negotiation.asconfig import Profile
    from dcmrecv.wire.server import Server

IN_CI = os.environ.get("CI", "").lower() == "true"


class FakeServer:
    """Stands in for dcmrecv.serve: records the configuration, returns a code."""

    def __init__(self) -> None:
        self.configs: list[ReceiverConfig] = []
        self.exit_code = 0

    def serve(self, config: ReceiverConfig) -> int:
        self.configs.append(config)
        return self.exit_code

    @property
    def config(self) -> ReceiverConfig:
        assert len(self.configs) == 1, "serve() was not called exactly once"
        return self.configs[0]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    """The commands' tests: dcmrecv.serve replaced by a FakeServer."""
    import dcmrecv

    fake = FakeServer()
    monkeypatch.setattr(dcmrecv, "serve", fake.serve)
    return fake


@functools.cache
def _dcmtk_tool(name: str) -> str | None:
    """DCMTK's program of that name, skipping look-alikes earlier on PATH.

    pynetdicom installs Python scripts called ``storescu``, ``echoscu`` and
    ``storescp``; they often come first on PATH but are not the peers we mean.
    A DCMTK program identifies itself with ``$dcmtk: ...`` in ``--version``.
    """
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        candidate = shutil.which(name, path=directory)
        if candidate is None:
            continue
        try:
            version = subprocess.run(
                [candidate, "--version"], capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "$dcmtk:" in version:
            return candidate
    return None


def require_tool(name: str) -> str:
    """Path of a DCMTK tool; skip outside CI, fail under CI when it is missing."""
    path = _dcmtk_tool(name)
    if path is None:
        message = (
            f"DCMTK's {name} not found: install Debian's dcmtk package (apt-get install dcmtk)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_program(name: str, needed_for: str) -> str:
    """Path of a program on PATH; skip outside CI, fail under CI when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"the {name} command line tool is needed {needed_for}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def subscribed(*subscribers: Any) -> dict[str, Any]:
    """Server arguments whose event bus has dcmrecv's log dialect and ``subscribers``
    (objects with a ``subscribe(bus)`` method), for ``running_receiver(server_args=...)``."""
    from dcmrecv.events import EventBus
    from dcmrecv.logs.dialects import DcmrecvDialect
    from dcmrecv.wire.association import Services

    bus = EventBus()
    DcmrecvDialect().subscribe(bus)
    for subscriber in subscribers:
        subscriber.subscribe(bus)
    return {"services": Services(bus=bus)}


@contextlib.contextmanager
def running_receiver(
    *, server_args: dict[str, Any] | None = None, **settings: Any
) -> Iterator[Server]:
    """Our receiver on 127.0.0.1 and an OS-assigned port, in this process.

    ``settings`` override ReceiverConfig fields (output_directory, profile, ...);
    ``server_args`` are keyword arguments of the Server (services, store).
    The server is stopped, and its threads joined, when the block ends.
    """
    from dcmrecv.config import ReceiverConfig
    from dcmrecv.wire.server import Server

    settings.setdefault("bind_address", "127.0.0.1")
    settings.setdefault("shutdown_timeout", 10.0)
    server = Server(ReceiverConfig(port=0, **settings), **(server_args or {}))
    thread = threading.Thread(target=server.serve_forever, name="test-receiver", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(30)
        assert not thread.is_alive(), "receiver did not stop"


def requeue_stolen_responses() -> None:
    """Make pynetdicom's requestor keep the DIMSE responses its own reactor takes.

    pynetdicom (3.0.4, the latest) runs a reactor thread beside the thread that
    calls ``send_c_echo``/``send_c_store``.  Before sending, the caller clears a
    checkpoint and waits until the reactor says it is paused; but the reactor
    says so before it looks at the checkpoint and takes it back only after, so a
    caller that looks in between goes ahead while the reactor runs one more round.
    When the thread switch falls there (a busy machine, a fast peer such as ours),
    that round takes the response off the queue, logs "Received unexpected C-STORE
    service message", drops it, and the caller waits out its DIMSE timeout (30 s)
    and aborts.  Eight threads of C-ECHOs against the receiver lost 6 responses in
    8 s under two busy loops.  A response is never a request the reactor could
    serve: for a requestor it is put back on the queue for the caller waiting on
    it.  The reactor blocks at the checkpoint on its next round, so it cannot
    take it again.
    """
    from pynetdicom.association import Association

    serve = Association._serve_request
    if getattr(serve, "keeps_responses", False):
        return

    def serve_request(self: Association, msg: Any, context_id: int) -> None:
        if self.is_requestor and not msg.is_valid_request:
            self.dimse.msg_queue.put((context_id, msg))
            return
        serve(self, msg, context_id)

    serve_request.keeps_responses = True  # type: ignore[attr-defined]
    Association._serve_request = serve_request  # type: ignore[method-assign]


requeue_stolen_responses()


def rejection_seen(ae: Any, port: int, host: str = "127.0.0.1", **kwargs: Any) -> Any:
    """Request an association; the A-ASSOCIATE-RJ's (result, source, reason), else None.

    Read from the PDU pynetdicom's reader thread decoded, not from
    ``Association.is_rejected``: pynetdicom 3.0's requestor checks that its socket
    is still connected before it looks at the answer, so on a busy machine an RJ
    followed at once by the acceptor's close (what DCMTK does too) is reported as
    an abort.  An association that is accepted instead is released.
    """
    from pynetdicom import evt
    from pynetdicom.pdu import A_ASSOCIATE_RJ

    seen: list[tuple[int, int, int]] = []

    def on_pdu(event: Any) -> None:
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            rj = event.pdu
            seen.append((int(rj.result), int(rj.source), int(rj.reason_diagnostic)))

    assoc = ae.associate(host, port, evt_handlers=[(evt.EVT_PDU_RECV, on_pdu)], **kwargs)
    if assoc.is_established:
        assoc.release()
    return seen[0] if seen else None


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    """The commands configure the process's logging; each test starts and ends clean."""
    from dcmrecv.logs.layout import reset_logging

    reset_logging()
    yield
    reset_logging()


@pytest.fixture
def in_tmp(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run in an empty, writable working directory (the default output directory)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def default_profile() -> Profile:
    """The bundled storescp.cfg's Default profile, as a receiver in this process takes it."""
    from dcmrecv.negotiation.asconfig import load_profile

    return load_profile(Path(__file__).resolve().parent.parent / "storescp.cfg", "Default")


#: Ports handed out by free_port() in this process, never handed out twice.
_GIVEN_PORTS: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            return int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port that was free a moment ago, for external programs that need a number.

    Taken below the kernel's ephemeral range (ip_local_port_range): a port the OS
    picked for "port 0" comes from that range, so any client socket (another test's,
    or wait_for_port's own probe, which can even connect to itself there) may take it
    before the receiver binds it, and the receiver then exits "Address already in use".
    """
    low = _ephemeral_low()
    for _ in range(1000):
        port = random.randrange(max(1024, low - 20000), low)
        if port in _GIVEN_PORTS:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN_PORTS.add(port)
        return port
    raise RuntimeError("no free TCP port below the ephemeral range")


def wait_for_port(
    port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 15
) -> None:
    """Block until something accepts connections on 127.0.0.1:port (an external receiver)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            # Connection refused: the program is still starting.  Waiting on its
            # own readiness is not possible for DCMTK tools, so retry briefly.
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


@pytest.fixture(autouse=True)
def _no_receiver_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """DCMRECV_* variables configure dcmrecv; one left in the shell must not leak in."""
    for name in list(os.environ):
        if name.startswith("DCMRECV_"):
            monkeypatch.delenv(name)
