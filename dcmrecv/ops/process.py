"""Running hook commands: one runner for every hook of both commands.

dcmrecv's ``--exec-on-eostudy`` (``/bin/sh -c``, the manifest on standard input,
output captured for the log, ``--exec-timeout``) and storescp's ``-xcr``/``-xcs``
(argv, standard input /dev/null, output where ours goes, waited for only with
``--exec-sync``) start their processes here, and this module alone decides how they
end:

* Every process starts in a session of its own, so that killing it kills its process
  group: a shell and the pipeline or ``sleep 1000 &`` it started.
* A hook has ended when its process has exited.  What it started and left running
  (``setsid daemon &``, issue 22) may keep the output pipes open for ever: once the
  process has exited, the pipes are read for at most :data:`GRACE` seconds more,
  then handed to a drain thread that reads and discards until they close (so the
  daemon is not killed by SIGPIPE) and nobody waits for them.  At its deadline a
  hook still running is killed (SIGKILL to its group) and its pipes are let go at
  once: nothing a hook does holds its caller past the deadline.
* Output kept for the log is bounded (:data:`MAX_OUTPUT` per stream, the rest read
  and dropped), so a hook printing without end costs no memory.
* :meth:`ProcessRunner.shutdown` gives every wait a last deadline (the server's
  ``--shutdown-timeout``): hooks still running then are killed, and no new one is
  started after it, so SIGTERM takes at most the shutdown timeout whatever hooks do.
  storescp's hooks without ``--exec-sync`` are not waited for and not killed (as in
  DCMTK: they may outlive the receiver).
* No zombies: every process started is reaped (a waiting thread for the ones nobody
  waits for).  When the receiver runs as process 1 (a container's entry point),
  processes that hooks left behind become its children when their parent exits; a
  reaper thread then collects those too (``waitid(WNOWAIT)`` tells them from ours).

Waits use ``pidfd_open`` (Linux 5.3) to learn of an exit without polling, else a
short poll.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

#: Output kept per stream for the log; the rest is read and dropped.
MAX_OUTPUT: Final = 4096
#: Seconds the pipes are still read after the process exited (what it wrote last).
GRACE: Final = 0.5
#: Without pidfd_open: how often an exit is looked for.
_POLL: Final = 0.05
_CHUNK: Final = 65536


@dataclass(frozen=True)
class Finished:
    """How a hook ended."""

    #: Exit status (negative: the signal that ended it); None when it was killed.
    returncode: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    #: Why it was killed: "timeout", "shutdown"; None when it exited by itself.
    killed: str | None = None
    #: Its output pipes were still open when it ended: a process it started has them.
    pipes_held: bool = False


class ProcessRunner:
    """Starts, waits for, kills and reaps hook processes (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        #: Processes started here and not reaped yet (their pids are not orphans).
        self._ours: set[int] = set()
        #: After shutdown(): no wait lasts beyond this (monotonic time).
        self._shutdown_at: float | None = None
        #: Closed by shutdown(): every waiting selector wakes to look at the deadline.
        #: Made by the first wait, not at import (storescp --inetd must find
        #: descriptors 0-2 as inetd left them, even closed ones).
        self._wake: tuple[int, int] | None = None
        self._drain: _Drain | None = None
        self._orphans: threading.Thread | None = None

    # --- the two ways to run ----------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        capture: bool = False,
        timeout: float | None = None,
    ) -> Finished:
        """Run ``argv`` and wait for it, at most ``timeout`` seconds (and never past the
        shutdown deadline).  ``stdin`` is written to its standard input (else
        /dev/null); with ``capture`` its output is kept (MAX_OUTPUT per stream),
        else it goes where ours goes.  OSError when it cannot start."""
        with self._lock:
            if self._shutdown_at is not None and time.monotonic() >= self._shutdown_at:
                return Finished(None, killed="shutdown")
            process = self._popen(
                argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.PIPE if capture else None,
            )
            if self._wake is None:
                self._wake = os.pipe()
            wake = self._wake[0]
        deadline = time.monotonic() + timeout if timeout is not None else None
        try:
            return self._wait(process, stdin or b"", deadline, wake)
        finally:
            self._reap(process)

    def start(self, argv: Sequence[str]) -> None:
        """Start ``argv`` without waiting (standard input /dev/null, output ours); a
        thread reaps it.  OSError when it cannot start."""
        with self._lock:
            process = self._popen(argv, stdin=subprocess.DEVNULL, stdout=None, stderr=None)
        threading.Thread(
            target=self._reap, args=(process,), name="hook-reaper", daemon=True
        ).start()

    def shutdown(self, deadline: float) -> None:
        """No wait lasts beyond ``deadline`` (monotonic): hooks still running then are
        killed, none starts after it.  Quick and safe from a signal handler."""
        if self._shutdown_at is not None:
            return
        self._shutdown_at = deadline
        if self._wake is not None:
            with contextlib.suppress(OSError):
                os.close(self._wake[1])  # every selector waiting on the read end wakes

    # --- starting, waiting, reaping ---------------------------------------------------

    def _popen(
        self,
        argv: Sequence[str],
        *,
        stdin: int,
        stdout: int | None,
        stderr: int | None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in a session of its own.  Holds the lock, so that the
        orphan reaper never takes one of ours for an orphan."""
        process = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            close_fds=True,
            start_new_session=True,
        )
        self._ours.add(process.pid)
        if os.getpid() == 1 and self._orphans is None:
            self._orphans = threading.Thread(
                target=self._reap_orphans, name="orphan-reaper", daemon=True
            )
            self._orphans.start()
        self._lock.notify_all()
        return process

    def _wait(
        self, process: subprocess.Popen[bytes], stdin: bytes, deadline: float | None, wake: int
    ) -> Finished:
        selector = selectors.DefaultSelector()
        outputs: dict[int, bytearray] = {}
        pending = memoryview(stdin)
        try:
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    os.set_blocking(stream.fileno(), False)
                    selector.register(stream.fileno(), selectors.EVENT_READ)
                    outputs[stream.fileno()] = bytearray()
            if process.stdin is not None:
                if pending:
                    os.set_blocking(process.stdin.fileno(), False)
                    selector.register(process.stdin.fileno(), selectors.EVENT_WRITE)
                else:
                    process.stdin.close()
            pidfd = _pidfd(process.pid)
            if pidfd is not None:
                selector.register(pidfd, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            exited_at: float | None = None
            killed: str | None = None
            while True:
                if exited_at is None and process.poll() is not None:
                    exited_at = time.monotonic()
                reading = [fd for fd in outputs if _registered(selector, fd)]
                if exited_at is not None and not reading:
                    break
                now = time.monotonic()
                limit, why = self._deadline(deadline)
                if exited_at is not None:
                    limit, why = min(limit or exited_at + GRACE, exited_at + GRACE), None
                if limit is not None and now >= limit:
                    if exited_at is None:
                        killed = why
                        _kill_group(process.pid)
                        process.wait()
                    break
                wait = None if limit is None else limit - now
                if pidfd is None and exited_at is None:
                    wait = _POLL if wait is None else min(wait, _POLL)
                for key, _events in selector.select(wait):
                    fd = key.fd
                    if fd == wake:
                        selector.unregister(fd)  # closed for good: look at the deadline
                    elif fd == pidfd:
                        selector.unregister(fd)
                    elif fd in outputs:
                        _read_into(selector, fd, outputs[fd])
                    elif process.stdin is not None:
                        pending = _feed(selector, fd, pending)
                        if not pending:  # all written: end of its standard input
                            with contextlib.suppress(KeyError):
                                selector.unregister(fd)
                            process.stdin.close()
            held = [fd for fd in outputs if _registered(selector, fd)]
            if held:
                self._drainer().take(held)
            stdout = process.stdout.fileno() if process.stdout is not None else -1
            stderr = process.stderr.fileno() if process.stderr is not None else -1
            return Finished(
                None if killed else process.returncode,
                bytes(outputs.get(stdout, b"")),
                bytes(outputs.get(stderr, b"")),
                killed,
                bool(held),
            )
        finally:
            selector.close()
            if pidfd is not None:
                os.close(pidfd)
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            for stream in (process.stdout, process.stderr):
                # A pipe the drain took is its own duplicate; ours closes here.
                if stream is not None:
                    stream.close()

    def _deadline(self, deadline: float | None) -> tuple[float | None, str | None]:
        """The earlier of the hook's deadline and the shutdown's, and which it is."""
        shutdown = self._shutdown_at
        if shutdown is not None and (deadline is None or shutdown < deadline):
            return shutdown, "shutdown"
        return deadline, "timeout" if deadline is not None else None

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        """Wait for the process (it has exited or been killed, or is being waited for
        on its own thread) and forget it."""
        try:
            process.wait()
        finally:
            with self._lock:
                self._ours.discard(process.pid)

    def _reap_orphans(self) -> None:
        """As process 1: collect the exited processes that are not ours to wait for."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                with self._lock:
                    self._lock.wait(60)  # until a hook starts a process
                continue
            except InterruptedError:
                continue
            if info is None:
                continue
            with self._lock:
                ours = info.si_pid in self._ours
                if not ours:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(info.si_pid, 0)
            if ours:
                time.sleep(_POLL)  # its owner reaps it in a moment

    def _drainer(self) -> _Drain:
        with self._lock:
            if self._drain is None:
                self._drain = _Drain()
            return self._drain


class _Drain:
    """Reads and drops what pipes nobody waits for bring, until they close: the output
    of processes that outlived their hook."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        threading.Thread(target=self._run, name="hook-drain", daemon=True).start()

    def take(self, fds: list[int]) -> None:
        """Drain these pipes (duplicated: the caller closes its own)."""
        with self._lock:
            for fd in fds:
                mine = os.dup(fd)
                os.set_inheritable(mine, False)
                os.set_blocking(mine, False)
                self._selector.register(mine, selectors.EVENT_READ)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            for key, _events in self._selector.select():
                if key.fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 512)
                    continue
                try:
                    data = os.read(key.fd, _CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    with self._lock:
                        self._selector.unregister(key.fd)
                    os.close(key.fd)


def _registered(selector: selectors.BaseSelector, fd: int) -> bool:
    try:
        selector.get_key(fd)
    except KeyError:
        return False
    return True


def _read_into(selector: selectors.BaseSelector, fd: int, kept: bytearray) -> None:
    """Read what is there; keep up to MAX_OUTPUT; unregister at the end of the stream."""
    try:
        data = os.read(fd, _CHUNK)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data:
        selector.unregister(fd)
        return
    if len(kept) < MAX_OUTPUT:
        kept += data[: MAX_OUTPUT - len(kept)]


def _feed(selector: selectors.BaseSelector, fd: int, pending: memoryview) -> memoryview:
    """Write what the pipe takes; a process that stopped reading gets no more."""
    try:
        return pending[os.write(fd, pending) :]
    except BlockingIOError:
        return pending
    except OSError:  # EPIPE: it exited, or closed its standard input
        selector.unregister(fd)
        return pending[len(pending) :]


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits, where the system has one."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


def _kill_group(pid: int) -> None:
    """SIGKILL the process group (the process is its leader: start_new_session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except OSError as exc:
        if exc.errno != errno.EPERM:
            raise


#: The process's one runner: studies and storescp's hooks start their processes
#: here, and the server's shut-down reaches them all through it.
RUNNER: Final = ProcessRunner()


def run_hook(command: str, stdin: bytes, timeout: float) -> Finished:
    """dcmrecv's ``--exec-on-eostudy``: ``/bin/sh -c command`` with ``stdin``, its
    output captured, killed with its process group after ``timeout`` seconds or at
    the shut-down's deadline.  OSError when it cannot start."""
    return RUNNER.run(["/bin/sh", "-c", command], stdin=stdin, capture=True, timeout=timeout)


def run_command(argv: Sequence[str], sync: bool) -> None:
    """storescp's ``-xcr``/``-xcs`` (HookCommand.argv): waited for with ``sync``
    (``--exec-sync``, then killed at the shut-down's deadline), else left to run and
    reaped.  Standard input is /dev/null; output goes where ours goes, as in DCMTK."""
    try:
        if sync:
            RUNNER.run(argv)
        else:
            RUNNER.start(argv)
    except OSError as exc:
        log.error("cannot execute command '%s': %s", " ".join(argv[:3]), exc.strerror or exc)
