"""``--workers N``: one listener, N worker processes serving its connections.

One Python process runs its Python work on one core at a time; a receiver that must
use every core runs several.  The parent process keeps the listening socket and the
admission policy (``--accept-from``, the connection limits per peer and in all,
``--max-associations``), so every limit holds for the whole receiver, exactly as
with one process.  It hands each accepted connection to the worker with the fewest
(SCM_RIGHTS over a Unix socket pair, PS3.8 is not involved), and the worker serves
it as a single receiver would: TLS, the association, storage.

The control channel (one ``SOCK_SEQPACKET`` socket pair per worker) carries small
JSON messages:

==========  ==========  =====================================================
message     direction   meaning
==========  ==========  =====================================================
``conn``    to worker   a connection (its descriptor attached): id, peer, hurried
``admit``   to parent   may connection ``id`` take a slot (``--max-associations``)?
``admit``   to worker   the answer
``reclaim`` to worker   abort connection ``id`` (the parent needs its slot)
``closed``  to parent   connection ``id`` is over
``ready``   to parent   the worker serves (sent once, at start)
==========  ==========  =====================================================

The parent keeps a duplicate of each connection's descriptor while a worker serves
it: to read how long it has been quiet (``TCP_INFO``, for the choice of which
connection makes room at a limit) and to cut it off if its worker dies.  A worker
that dies is replaced; its connections are gone with it, and their slots are freed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger("dcmrecv.wire.server")

#: The largest control message (they are a few dozen bytes).
MAX_MESSAGE: Final = 4096
#: A worker that dies within this many seconds of starting is restarted after a
#: growing pause (1 s, doubling, at most RESTART_PAUSE_MAX), so a crash loop does
#: not spin.
QUICK_DEATH: Final = 10.0
RESTART_PAUSE_MAX: Final = 30.0
#: How long an association waits for the parent's answer to ``admit``.
ADMIT_TIMEOUT: Final = 10.0


def encode(message: dict[str, Any]) -> bytes:
    """One control message (pure)."""
    return json.dumps(message, separators=(",", ":")).encode()


def decode(data: bytes) -> dict[str, Any]:
    """One control message; ValueError when it is not one."""
    message = json.loads(data)
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ValueError("not a control message")
    return message


def control_pair() -> tuple[socket.socket, socket.socket]:
    """(parent's end, worker's end); the worker's end is inheritable."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    child.set_inheritable(True)
    return parent, child


def send(sock: socket.socket, message: dict[str, Any], fd: int | None = None) -> None:
    if fd is None:
        sock.sendall(encode(message))
    else:
        socket.send_fds(sock, [encode(message)], [fd])


def receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The next message and its descriptors; None when the other end is gone."""
    try:
        data, fds, _flags, _address = socket.recv_fds(sock, MAX_MESSAGE, 4)
    except (ConnectionResetError, BlockingIOError):
        return None
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    return decode(data), fds


# --- the parent's side -------------------------------------------------------------------


@dataclass(eq=False)
class RemoteConnection:
    """A connection a worker serves, as the parent's admission policy sees it."""

    worker: Worker
    id: int
    sock: socket.socket
    address: tuple[str, int]
    refusing: bool
    admitted: bool = False

    def request_stop(self) -> None:
        """Workers drain their own associations when they are stopped (SIGTERM)."""

    def force_stop(self) -> None:
        """Make room: the worker aborts it (A-ABORT); the socket is cut if it cannot."""
        try:
            send(self.worker.control, {"t": "reclaim", "id": self.id})
        except OSError:
            self.cut()

    def cut(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass(eq=False)
class Worker:
    """One worker process and its control channel."""

    index: int
    process: subprocess.Popen[bytes]
    control: socket.socket
    started: float
    ready: bool = False
    connections: dict[int, RemoteConnection] = field(default_factory=dict)


#: Starts worker number ``index`` with its end of the control pair; returns the process.
Spawn = Callable[[int, socket.socket], "subprocess.Popen[bytes]"]


class WorkerPool:
    """The parent's workers: started, fed with connections, replaced when they die.

    Used from the listener's thread only (the accept loop selects on ``controls()``).
    """

    def __init__(
        self, count: int, spawn: Spawn, on_death: Callable[[int], None] | None = None
    ) -> None:
        """``on_death(pid)`` is told when a worker process has ended and been reaped."""
        self.count = count
        self._spawn = spawn
        self._on_death = on_death
        self.workers: list[Worker | None] = [None] * count
        self._ids = 0
        self._restart_at: dict[int, float] = {}
        self._pause: dict[int, float] = {}
        #: Set when the set of control sockets changed (the selector re-registers).
        self.changed = True
        self.stopping = False

    def start(self) -> None:
        for index in range(self.count):
            self._start(index)

    def _start(self, index: int) -> None:
        parent, child = control_pair()
        try:
            process = self._spawn(index, child)
        finally:
            child.close()
        self.workers[index] = Worker(index, process, parent, time.monotonic())
        self.changed = True

    def controls(self) -> Iterator[Worker]:
        return (worker for worker in self.workers if worker is not None)

    @property
    def ready(self) -> int:
        """How many workers serve now."""
        return sum(1 for worker in self.controls() if worker.ready)

    def dispatch(
        self, sock: socket.socket, address: tuple[str, int], *, hurried: bool, refusing: bool
    ) -> RemoteConnection | None:
        """Hand ``sock`` to the least busy ready worker; None when none can take it."""
        ready = [worker for worker in self.controls() if worker.ready]
        if not ready:
            return None
        worker = min(ready, key=lambda w: len(w.connections))
        self._ids += 1
        message = {"t": "conn", "id": self._ids, "a": list(address), "h": hurried}
        try:
            send(worker.control, message, sock.fileno())
        except OSError as exc:
            log.error("cannot hand a connection to worker %d: %s", worker.index, exc)
            return None
        connection = RemoteConnection(worker, self._ids, sock, address, refusing)
        worker.connections[connection.id] = connection
        return connection

    def restarts_due(self, now: float) -> float | None:
        """Start the workers whose pause is over; the time of the next one, if any."""
        for index, when in list(self._restart_at.items()):
            if when <= now and not self.stopping:
                del self._restart_at[index]
                try:
                    self._start(index)
                except OSError as exc:
                    log.error("cannot start worker %d: %s", index, exc)
                    self._schedule(index, now)
        return min(self._restart_at.values(), default=None)

    def died(self, worker: Worker) -> list[RemoteConnection]:
        """``worker`` is gone: reap it, schedule its replacement; its connections."""
        self.workers[worker.index] = None
        self.changed = True
        worker.control.close()
        try:
            code = worker.process.wait(5)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            code = worker.process.wait()
        if self._on_death is not None:
            self._on_death(worker.process.pid)
        lost = list(worker.connections.values())
        for connection in lost:
            connection.cut()
            connection.close()
        if not self.stopping:
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            log.error(
                "worker %d (process %d) ended (%s) with %d connection(s); starting another",
                worker.index,
                worker.process.pid,
                how,
                len(lost),
            )
            self._schedule(
                worker.index,
                time.monotonic(),
                quick=time.monotonic() - worker.started < QUICK_DEATH,
            )
        return lost

    def _schedule(self, index: int, now: float, quick: bool = True) -> None:
        pause = min(self._pause.get(index, 0.5) * 2, RESTART_PAUSE_MAX) if quick else 0.0
        self._pause[index] = pause or 0.5
        self._restart_at[index] = now + pause

    def terminate(self) -> None:
        """Ask every worker to drain and stop (SIGTERM, as the parent was asked)."""
        self.stopping = True
        for worker in self.controls():
            try:
                worker.process.terminate()
            except OSError:
                pass

    def kill(self) -> None:
        for worker in self.controls():
            try:
                worker.process.kill()
            except OSError:
                pass


# --- the worker's side ---------------------------------------------------------------------


class ParentLink:
    """A worker's end of the control channel: connections in, admit questions out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._waiting: dict[int, tuple[threading.Event, list[bool]]] = {}
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._send_lock:
            send(self.sock, message)

    def admit(self, connection_id: int) -> bool:
        """Ask the parent for a slot under ``--max-associations`` (an association's thread)."""
        done = threading.Event()
        answer: list[bool] = []
        with self._lock:
            self._waiting[connection_id] = (done, answer)
        try:
            self.send({"t": "admit", "id": connection_id})
            if not done.wait(ADMIT_TIMEOUT):
                log.error("no answer from the parent process about a slot; refusing")
                return False
            return answer[0]
        except OSError:
            return False
        finally:
            with self._lock:
                self._waiting.pop(connection_id, None)

    def answered(self, connection_id: int, admitted: bool) -> None:
        """The parent's answer to ``admit`` arrived (the link's reading thread)."""
        with self._lock:
            waiting = self._waiting.get(connection_id)
        if waiting is not None:
            waiting[1].append(admitted)
            waiting[0].set()
