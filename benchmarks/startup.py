"""Start-up costs (issue 21): ``--version``, one ``storescp --inetd`` connection, the probe.

Each is a short process, measured to its end with wait4(2) (cputime.run_measured):
its wall time and its user + system CPU.

- ``dcmrecv --version`` and ``storescp --version``: ours and DCMTK's, wall time.
- One ``storescp --inetd`` connection, ours and DCMTK's, emulated as inetd works
  (as tests/test_inetd.py does): a listener of our own accepts the connection of
  DCMTK's ``storescu`` sending one tiny instance, and the receiver is started with
  the accepted socket as standard input.  The time is the sender's, from starting
  ``storescu`` to its exit: the start of the receiver is inside it, as it is for a
  site that runs the receiver from inetd.
- The container's health probe (``python -m dcmrecv.commands.healthcheck``, one
  C-ECHO) against our running receiver: the probe's CPU time, beside DCMTK's
  ``echoscu`` doing the same.

Runs alternate ours and DCMTK's; the report shows medians.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.commands import (
    OURS_DEFAULT,
    OURS_STORESCP,
    REPO,
    Tools,
    ours_environment,
    start,
)
from benchmarks.cputime import Measured, reap, run_measured
from benchmarks.datasets import Dataset, count_files
from benchmarks.peers import CALLED_AE
from benchmarks.procs import BenchmarkError, Command
from benchmarks.scenarios import Scenario
from benchmarks.stats import (
    BARE_PYTHON,
    DCMRECV_VERSION,
    DCMTK,
    INETD,
    OURS,
    PROBE,
    STORESCP_VERSION,
    Samples,
    StartupResults,
)

#: Seconds any one of these may take before it counts as hung.
TIMEOUT = 60.0


def ours_storescp(tools: Tools) -> tuple[str, ...] | None:
    """Our storescp command: from this checkout by default, DCMTK's in a stand-in run,
    unknown (None) when ``--ours`` names another dcmrecv."""
    if tools.stand_in:
        return (tools.storescp,) if tools.storescp else None
    return OURS_STORESCP if tools.ours == OURS_DEFAULT else None


def probe_command(tools: Tools, port: int) -> Command:
    """The container's health probe from this checkout (echoscu in a stand-in run)."""
    if tools.stand_in:
        return echo_command(tools, port)
    argv = (sys.executable, "-m", "dcmrecv.commands.healthcheck", "--aec", CALLED_AE)
    return Command((*argv, "127.0.0.1", str(port)), {"PYTHONPATH": str(REPO)})


def echo_command(tools: Tools, port: int) -> Command:
    return Command((tools.echoscu, "-aec", CALLED_AE, "127.0.0.1", str(port)), {})


def inetd_connection(
    receiver: Command, storescu: str, instance: Path, out: Path, log: Path
) -> Measured:
    """One connection served as inetd would: the sender's wall time, the receiver's CPU.

    Output goes to ``log``, not the socket: in inetd mode standard input is the
    connection, and DCMTK's storescp writes nothing to standard output.
    """
    sender_env = Command((), {"TCP_NODELAY": "1"}).environment()
    sender_argv = [storescu, "-aet", "BENCHSCU", "-aec", CALLED_AE, "127.0.0.1"]
    with socket.create_server(("127.0.0.1", 0)) as listener, log.open("wb") as output:
        listener.settimeout(TIMEOUT)
        started = time.perf_counter()
        sender = subprocess.Popen(
            [*sender_argv, str(listener.getsockname()[1]), str(instance)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=sender_env,
        )
        try:
            connection, _ = listener.accept()
        except BaseException as error:
            sender.kill()
            sender.wait()
            if isinstance(error, OSError):  # e.g. the timeout: storescu never connected
                raise BenchmarkError(f"inetd: storescu did not connect: {error}") from error
            raise
        with connection:
            served = subprocess.Popen(
                receiver.argv,
                stdin=connection.fileno(),
                stdout=output,
                stderr=subprocess.STDOUT,
                env=receiver.environment(),
            )
        # Our copy of the connection is closed: the receiver holds the only one.
        reap(sender, TIMEOUT)
        elapsed = time.perf_counter() - started
        cpu = reap(served, TIMEOUT)
    if sender.returncode != 0 or served.returncode != 0 or count_files(out) != 1:
        raise BenchmarkError(
            f"inetd: storescu exit {sender.returncode}, receiver exit {served.returncode},"
            f" {count_files(out)} of 1 stored: {log.read_text(errors='replace')[-2000:]}"
        )
    return Measured(served.returncode, elapsed, cpu, "")


def measure(
    tools: Tools,
    scenario: Scenario,
    one_instance: Dataset,
    runs: int,
    work: Path,
    report: Callable[[str], None] = print,
) -> StartupResults:
    """Every start-up measurement, ``runs`` times each, ours and DCMTK's alternating."""
    results = StartupResults()
    ours_env = Command((), ours_environment(tools))
    storescp = ours_storescp(tools)
    versions: dict[str, dict[str, tuple[str, ...] | None]] = {
        DCMRECV_VERSION: {OURS: tools.ours, DCMTK: (tools.dcmrecv,)},
        STORESCP_VERSION: {OURS: storescp, DCMTK: (tools.storescp,) if tools.storescp else None},
    }
    if storescp is None:
        reason = "n/a (--ours names no storescp of ours)"
        results.missing[STORESCP_VERSION] = results.missing[INETD] = reason
    if tools.storescp is None:
        results.missing[INETD] = "n/a (DCMTK storescp not installed)"
    (instance,) = (p for d in one_instance.directories for p in sorted(d.iterdir()))
    profile = ["-xf", str(tools.config), "Default"]
    for run in range(runs):
        order = [OURS, DCMTK] if run % 2 == 0 else [DCMTK, OURS]
        for name, commands in versions.items():
            for variant in order:
                argv = commands[variant]
                if argv is None:
                    continue
                env = ours_env.env if variant == OURS else {}
                measured = run_measured(Command((*argv, "--version"), env), TIMEOUT)
                _check(measured, f"{name} ({variant})")
                results.add(name, variant, measured.wall, measured.cpu)
        bare = run_measured(Command((sys.executable, "-c", "pass"), {}), TIMEOUT)
        results.add(BARE_PYTHON, OURS, bare.wall, bare.cpu)
        if INETD not in results.missing:
            for variant in order:
                argv = storescp if variant == OURS else versions[STORESCP_VERSION][DCMTK]
                assert argv is not None  # both exist, or INETD is missing
                env = ours_env.env if variant == OURS else {}
                out = Path(tempfile.mkdtemp(prefix=f"inetd-{variant}-", dir=work))
                command = Command((*argv, "--inetd", *profile, "-od", str(out)), env)
                try:
                    measured = inetd_connection(
                        command, tools.storescu, instance, out, work / f"inetd-{variant}.log"
                    )
                finally:
                    shutil.rmtree(out, ignore_errors=True)
                results.add(INETD, variant, measured.wall, measured.cpu)
    probe_runs(tools, scenario, runs, work, results)
    for name in (DCMRECV_VERSION, STORESCP_VERSION, INETD):
        samples = results.wall.get(name, Samples())
        report(
            f"    {name}: ours {_seconds(samples.median(OURS))},"
            f" DCMTK {_seconds(samples.median(DCMTK))} (wall, median)"
        )
    cpu = results.cpu.get(PROBE, Samples())
    report(
        f"    {PROBE}: ours {_seconds(cpu.median(OURS))},"
        f" echoscu {_seconds(cpu.median(DCMTK))} (CPU, median)"
    )
    return results


def probe_runs(
    tools: Tools, scenario: Scenario, runs: int, work: Path, results: StartupResults
) -> None:
    """The health probe and echoscu against our receiver, started once for all runs."""
    out = work / "out" / "startup-probe"
    out.mkdir(parents=True)
    try:
        with start(tools, OURS, scenario, out) as receiver:
            for run in range(runs):
                order = [OURS, DCMTK] if run % 2 == 0 else [DCMTK, OURS]
                for variant in order:
                    command = (
                        probe_command(tools, receiver.port)
                        if variant == OURS
                        else echo_command(tools, receiver.port)
                    )
                    measured = run_measured(command, TIMEOUT)
                    _check(measured, f"{PROBE} ({variant})")
                    results.add(PROBE, variant, measured.wall, measured.cpu)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        os.sync()


def _check(measured: Measured, what: str) -> None:
    if measured.returncode != 0:
        raise BenchmarkError(f"{what}: exit code {measured.returncode}: {measured.output[-2000:]}")


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"
