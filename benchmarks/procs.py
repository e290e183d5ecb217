"""Processes under test: start a receiver, wait until it answers, measure it, stop it.

Linux only: memory and CPU time come from ``/proc/PID/status`` (VmHWM, the resident
set's high-water mark, see proc(5)) and ``/proc/PID/stat`` (utime and stime, in clock
ticks).  The parsers are pure functions so they can be tested on sample text.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

#: Seconds a receiver may take to answer its first C-ECHO after being started.
READY_TIMEOUT = 30.0
#: Seconds between readiness probes; the probe itself (echoscu) is the wait.
READY_POLL = 0.02
#: Seconds a receiver may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0


class BenchmarkError(RuntimeError):
    """A receiver or sender did not do what the benchmark needs; no timing is valid."""


class ExitedEarly(BenchmarkError):
    """The receiver exited before it answered a C-ECHO (e.g. its port was taken)."""


def free_port() -> int:
    """A TCP port the OS reports free now (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def is_dcmtk_tool(path: str) -> bool:
    """True if ``path --version`` identifies itself as a DCMTK tool."""
    try:
        result = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "$dcmtk:" in result.stdout + result.stderr


def find_dcmtk_tool(name: str, search_path: str | None = None) -> str:
    """The first ``name`` on PATH that is DCMTK's (pynetdicom installs its own storescu)."""
    directories = (search_path or os.environ.get("PATH", "")).split(os.pathsep)
    for directory in [*directories, "/usr/bin", "/usr/local/bin"]:
        candidate = shutil.which(name, path=directory) if directory else None
        if candidate and is_dcmtk_tool(candidate):
            return candidate
    raise BenchmarkError(f"DCMTK's {name} not found: install Debian's dcmtk package")


def parse_vmhwm_kib(status_text: str) -> int | None:
    """VmHWM in KiB from the text of ``/proc/PID/status``; None if the line is missing."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            fields = line.split()
            return int(fields[1])
    return None


def parse_status_kib(status_text: str, field: str) -> int | None:
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/PID/status`` in KiB, or None."""
    for line in status_text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def parse_threads(status_text: str) -> int | None:
    """The ``Threads:`` count of ``/proc/PID/status``, or None."""
    for line in status_text.splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return None


def parse_ppid(stat_text: str) -> int:
    """The parent PID, field 4 of ``/proc/PID/stat`` (counted after the last ``)``)."""
    return int(stat_text[stat_text.rindex(")") + 2 :].split()[1])


def descendants(parents: Mapping[int, int], root: int) -> set[int]:
    """``root`` and every process below it, given a pid -> parent pid map."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, stack = {root}, [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in tree:
                tree.add(child)
                stack.append(child)
    return tree


def parse_cpu_ticks(stat_text: str) -> int:
    """utime + stime (fields 14 and 15 of ``/proc/PID/stat``, clock ticks).

    The command name (field 2) is in parentheses and may itself contain spaces and
    parentheses, so the fields are counted from the last ``)``.
    """
    rest = stat_text[stat_text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime is field 14 -> rest[11], stime -> rest[12].
    return int(rest[11]) + int(rest[12])


def clock_ticks_per_second() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


@dataclass(frozen=True)
class Command:
    """A program to run: argv plus the environment changes it needs."""

    argv: tuple[str, ...]
    #: Variables to set; a value of None removes the variable.
    env: Mapping[str, str | None]

    def environment(self) -> dict[str, str]:
        environ = dict(os.environ)
        for key, value in self.env.items():
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value
        return environ


class Receiver:
    """A receiver subprocess, as a context manager: started, ready, then stopped.

    Use :meth:`peak_rss_kib` and :meth:`cpu_seconds` while it runs; both read /proc.
    """

    def __init__(self, command: Command, port: int, echoscu: str, log_path: Path) -> None:
        self.command = command
        self.port = port
        self.echoscu = echoscu
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Receiver:
        if self.process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchmarkError("receiver not started")
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.command.environment(),
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        # A C-ECHO that succeeds proves the receiver listens *and* negotiates; probing
        # with a bare TCP connect would only prove the listening socket exists.
        deadline = time.monotonic() + READY_TIMEOUT
        probe = [self.echoscu, "-aec", "DCMRECV", "-to", "5", "127.0.0.1", str(self.port)]
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ExitedEarly(
                    f"receiver exited with {self.process.returncode} before it was ready:"
                    f" {self.log_tail()}"
                )
            answered = subprocess.run(probe, capture_output=True, timeout=10, check=False)
            if answered.returncode == 0:
                return
            time.sleep(READY_POLL)
        raise BenchmarkError(f"receiver not ready after {READY_TIMEOUT} s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def peak_rss_kib(self) -> int | None:
        """VmHWM now: read it just before stopping, it is the run's high-water mark."""
        try:
            return parse_vmhwm_kib(Path(f"/proc/{self.pid}/status").read_text())
        except OSError:
            return None

    def status(self) -> str:
        """The text of ``/proc/PID/status`` now (VmRSS, Threads, ...)."""
        return Path(f"/proc/{self.pid}/status").read_text()

    def cpu_seconds(self) -> float:
        """User plus system CPU time the receiver used so far, all threads together."""
        ticks = parse_cpu_ticks(Path(f"/proc/{self.pid}/stat").read_text())
        return ticks / clock_ticks_per_second()

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL if it lingers; returns the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode


#: How often a receiver is restarted on a new port when its port was taken meanwhile.
PORT_ATTEMPTS = 3


def start_receiver(
    build: Callable[[int], Command], echoscu: str, log_path: Path, attempts: int = PORT_ATTEMPTS
) -> Receiver:
    """A started, ready receiver on a free port; ``build(port)`` gives its command.

    free_port() releases the port before the receiver binds it, and on a machine
    where other test suites also bind port 0 it is sometimes taken in between
    ("Address already in use"); a receiver that exits before it is ready is tried
    again on a new port.
    """
    for attempt in range(attempts):
        port = free_port()
        receiver = Receiver(build(port), port, echoscu, log_path)
        try:
            receiver.start()
        except ExitedEarly:
            if attempt == attempts - 1:
                raise
            continue
        return receiver
    raise BenchmarkError("no free port")  # not reached: the last attempt raises


@dataclass(frozen=True)
class TreeSample:
    """Summed over a process tree at one moment."""

    rss_kib: int
    threads: int
    processes: int


def tree_memory_kib(statuses: Sequence[str]) -> int:
    """Resident memory of a process tree, counting shared file pages once.

    Summing VmRSS over forked children counts the executable and libraries they
    share with their parent once per child (64 storescp children: ~540 MB that is
    mostly the same pages).  So: the sum of the private-ish parts (RssAnon and
    RssShmem, proc(5)) plus the largest RssFile, as if every process mapped the same
    files.  For one process this is its VmRSS.  (PSS from smaps_rollup would be
    exact, but costs ~1 ms per process per sample.)
    """
    private = sum(
        (parse_status_kib(text, "RssAnon") or 0) + (parse_status_kib(text, "RssShmem") or 0)
        for text in statuses
    )
    files = max((parse_status_kib(text, "RssFile") or 0 for text in statuses), default=0)
    return private + files


class TreeSampler:
    """Samples a process tree's memory and thread count in a background thread.

    A forking server (DCMTK's ``storescp --fork``) holds its associations in short-
    lived children whose VmHWM is gone when they exit, so memory is summed over the
    live tree at each sample (:func:`tree_memory_kib`) and the peak is kept.  A pid's
    parent does not change while both live, so each new pid's ``stat`` is read once;
    a sample costs one directory listing of /proc plus the tree's ``status`` files.
    """

    def __init__(self, root: int, interval: float = 0.02) -> None:
        self.root = root
        self.interval = interval
        self.peak: TreeSample | None = None
        self._parents: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._record(self.sample())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._record(self.sample())

    def _record(self, sample: TreeSample | None) -> None:
        if sample is None:
            return
        peak = self.peak
        if peak is None:
            self.peak = sample
            return
        self.peak = TreeSample(
            max(peak.rss_kib, sample.rss_kib),
            max(peak.threads, sample.threads),
            max(peak.processes, sample.processes),
        )

    def sample(self) -> TreeSample | None:
        live = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        for pid in live - self._parents.keys():
            try:
                self._parents[pid] = parse_ppid(Path(f"/proc/{pid}/stat").read_text())
            except (OSError, ValueError, IndexError):
                continue
        for gone in self._parents.keys() - live:
            del self._parents[gone]
        statuses = []
        for pid in descendants(self._parents, self.root):
            try:
                statuses.append(Path(f"/proc/{pid}/status").read_text())
            except OSError:
                continue  # exited between the listing and now
        if not statuses:
            return None
        threads = sum(parse_threads(status) or 0 for status in statuses)
        return TreeSample(tree_memory_kib(statuses), threads, len(statuses))


@dataclass(frozen=True)
class SenderResult:
    elapsed: float
    returncodes: tuple[int, ...]
    output: str


def run_senders(commands: Sequence[Command], timeout: float = 1800.0) -> SenderResult:
    """Start all ``commands`` at once; the time from the first start to the last exit."""
    with contextlib.ExitStack() as stack:
        # Output goes to files, not pipes: a full pipe would stall a sender mid-run.
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in commands]
        started = time.perf_counter()
        processes = [
            subprocess.Popen(
                command.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=command.environment(),
            )
            for command, log in zip(commands, logs, strict=True)
        ]
        # Popen.wait(timeout=...) polls with sleeps of up to 50 ms, which would quantise
        # the timings; a plain wait() blocks in waitpid, and a timer enforces the limit.
        watchdog = threading.Timer(timeout, _kill_all, args=(processes,))
        watchdog.start()
        try:
            for process in processes:
                process.wait()
            elapsed = time.perf_counter() - started
        finally:
            watchdog.cancel()
        outputs = []
        for log in logs:
            log.seek(0)
            outputs.append(log.read().decode(errors="replace"))
    return SenderResult(
        elapsed=elapsed,
        returncodes=tuple(process.returncode for process in processes),
        output="\n".join(outputs),
    )


def _kill_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
