"""CPU time of processes: a receiver's process tree from /proc, a short command's rusage.

Issue 21 compares receivers by the CPU they spend per stored instance, not only by
the sender's wall time: ``storescu`` waits for each response, so wall time per
instance follows the receiver's CPU, but the CPU figure says which side it is.
Both receivers are read the same way, utime + stime (proc(5), ``/proc/PID/stat``
fields 14 and 15) of every process in the tree plus cutime + cstime (fields 16 and
17: children that exited and were waited for, e.g. ``storescp --fork``'s), read
just before the senders start and just after the last one exits.  One clock tick
is 10 ms: 1000 tiny instances cost 0.1-0.4 s, so the resolution is 3-10 %.

A short command (``--version``, one inetd connection, the health probe) is read
from its ``rusage`` when it is waited for (wait4(2)): exact, and with its children.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import Command, clock_ticks_per_second, descendants, parse_ppid


def parse_cpu_ticks_with_children(stat_text: str) -> int:
    """utime + stime + cutime + cstime (fields 14-17 of ``/proc/PID/stat``), in ticks.

    Counted from the last ``)``: the command name (field 2) may contain both spaces
    and parentheses.
    """
    rest = stat_text[stat_text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): fields 14..17 are rest[11..14].
    return sum(int(value) for value in rest[11:15])


def tree_ticks(stats: Mapping[int, str], root: int) -> int:
    """CPU ticks of ``root`` and its descendants, from their ``stat`` texts by pid.

    A child that exited and was reaped is in its parent's cutime; one not yet
    reaped (a zombie) still has its own stat: either way it is counted once.
    """
    parents = {}
    for pid, text in stats.items():
        with contextlib.suppress(ValueError, IndexError):
            parents[pid] = parse_ppid(text)
    return sum(
        parse_cpu_ticks_with_children(stats[pid])
        for pid in descendants(parents, root)
        if pid in stats
    )


def read_stats() -> dict[int, str]:
    """Every process's ``/proc/PID/stat`` text now (those that exit meanwhile are left out)."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                stats[int(name)] = Path(f"/proc/{name}/stat").read_text()
    return stats


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of the process tree under ``root`` so far."""
    return tree_ticks(read_stats(), root) / clock_ticks_per_second()


@dataclass(frozen=True)
class Measured:
    """A command run to its end: exit status, wall time and CPU time."""

    returncode: int
    #: Seconds from starting the process to reaping it.
    wall: float
    #: User + system CPU seconds of the process and the children it waited for.
    cpu: float
    output: str


def run_measured(
    command: Command,
    timeout: float = 120.0,
    stdin: int | None = subprocess.DEVNULL,
    cwd: Path | None = None,
) -> Measured:
    """Run ``command`` to its end; wall time, and its rusage from wait4(2).

    ``stdin`` may be a descriptor (inetd hands the receiver its connection so).
    """
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command.argv,
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=command.environment(),
            cwd=cwd,
        )
        cpu = reap(process, timeout)
        wall = time.perf_counter() - started
        log.seek(0)
        output = log.read().decode(errors="replace")
    return Measured(process.returncode, wall, cpu, output)


def reap(process: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for ``process`` with wait4(2); its user + system CPU seconds.

    subprocess's own wait would discard the rusage, so the process is reaped here
    (and its return code set on it); a timer kills it past ``timeout``.
    """
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        watchdog.cancel()
    # Popen must not wait for a process reaped here.
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime
