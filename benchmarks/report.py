"""The report: machine facts and the markdown document written to results/latest.md."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.goals import Figure, goals_table
from benchmarks.stats import (
    CPU_COLUMNS,
    OURS,
    WORKERS,
    DetailRow,
    FlushRow,
    HeldResult,
    PeerRow,
    Row,
    ScalePoint,
    StartupResults,
    detail_table,
    flush_table,
    held_table,
    main_table,
    peer_table,
    scale_table,
    startup_table,
    workers_table,
)


def dcmtk_version(dcmrecv: str) -> str:
    """First line of ``dcmrecv --version``, e.g. ``$dcmtk: dcmrecv v3.6.7 2022-04-22 $``."""
    result = subprocess.run(
        [dcmrecv, "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    for line in (result.stdout + result.stderr).splitlines():
        if "dcmtk" in line.lower():
            return line.strip().strip("$").strip()
    return "unknown"


def orthanc_version(orthanc: str) -> str:
    """First line of ``Orthanc --version``, e.g. ``Orthanc 1.10.1``."""
    try:
        result = subprocess.run(
            [orthanc, "--version"], capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return orthanc
    lines = (result.stdout + result.stderr).splitlines()
    return lines[0].strip() if lines else orthanc


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit(repo: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def machine_info(dcmrecv: str, repo: Path) -> list[tuple[str, str]]:
    import pydicom

    return [
        ("date (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M")),
        ("CPUs", f"{os.cpu_count()} x {cpu_model()}"),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("pydicom", pydicom.__version__),
        ("DCMTK", dcmtk_version(dcmrecv)),
        ("commit", git_commit(repo)),
    ]


def document(
    *,
    rows: Sequence[Row],
    details: Sequence[DetailRow],
    peers: Sequence[PeerRow] = (),
    cpu: Sequence[PeerRow] = (),
    flushes: Sequence[FlushRow] = (),
    scale: Sequence[ScalePoint] = (),
    held: Sequence[tuple[str, HeldResult]] = (),
    startup: StartupResults | None = None,
    previous: Mapping[str, Figure] | None = None,
    machine: Sequence[tuple[str, str]],
    settings: Sequence[tuple[str, str]],
    notes: Sequence[str],
) -> str:
    """The whole markdown report."""
    parts = [
        "# Benchmark: our dcmrecv against DCMTK, pynetdicom and Orthanc",
        "",
        "Medians over rounds; the receivers alternate round by round. Times are the"
        ' sender\'s wall time (DCMTK storescu, one association per sender). "ours" runs'
        " with `--no-fsync`, like DCMTK, which never fsyncs; rows marked durable are our"
        " default, which fsyncs before answering Success.",
        "",
        main_table(rows),
    ]
    if any(row.issue for row in rows):
        parts += [
            "",
            "## Goals of issues 20 and 21",
            "",
            "Each goal of the current issues, from the table above; a goal counts when it"
            " holds in two runs in a row, so the previous report's figure (the"
            " `latest.md` this run replaces, matched by row title) stands beside this"
            " run's." + ("" if previous is not None else " No previous report to compare with."),
            "",
            goals_table(rows, previous),
        ]
    if peers:
        parts += [
            "",
            "## Every receiver, per instance",
            "",
            "Median milliseconds per instance; in brackets ours `--no-fsync` / that"
            " receiver (below 1: we are faster). `n=` marks a receiver sent fewer instances"
            " per run than ours (slow peers, see benchmarks/README.md); `-` not measured.",
            "",
            peer_table(peers),
        ]
    if cpu:
        parts += [
            "",
            "## Receiver CPU per instance",
            "",
            "Milliseconds of CPU (utime + stime of the receiver's process tree, including"
            " children it reaped, from /proc) per instance sent, from just before the"
            " first sender starts to just after the last one exits; medians of rounds. In"
            " brackets ours `--no-fsync` / that receiver. One clock tick is 10 ms, so a"
            " small run's figures are coarse.",
            "",
            peer_table(cpu, CPU_COLUMNS),
        ]
    parts += [
        "",
        "## Durability, sender floor and memory",
        "",
        detail_table(details) if details else "(no transfer scenario run)",
    ]
    if flushes:
        parts += [
            "",
            "## Device flushes (strace, untimed runs of our default)",
            "",
            flush_table(flushes),
        ]
    if scale:
        parts += [
            "",
            "## Scale: concurrent senders",
            "",
            "One series dealt out to N associations opened at once by one sender process"
            " (benchmarks/sender.py); time from its first A-ASSOCIATE-RQ to its last"
            " A-RELEASE-RP. Ours `--no-fsync` against DCMTK's `storescp --fork`. Memory"
            " and threads: peaks over the receiver's process tree, sampled every 20 ms;"
            " memory is the sum of RssAnon + RssShmem plus the largest RssFile, so the"
            " pages forked children share are counted once.",
            "",
            scale_table(scale),
        ]
        if any(point.variant in WORKERS and point.variant != OURS for point in scale):
            parts += ["", "Workers (issue 20), instances per second:", "", workers_table(scale)]
    if held:
        parts += ["", "## Held associations", "", held_table(held)]
    if startup is not None:
        parts += [
            "",
            "## Start-up",
            "",
            "Short processes measured to their end (wait4): wall time and user + system"
            " CPU, medians. The inetd connection's wall time is the sender's (storescu"
            " started, one tiny instance sent, storescu exited), its CPU the receiver's;"
            " the probe runs against our running receiver.",
            "",
            startup_table(startup),
        ]
    parts += [
        "",
        "## Machine and settings",
        "",
        *[f"- {key}: {value}" for key, value in [*machine, *settings]],
    ]
    if notes:
        parts += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    return "\n".join(parts) + "\n"
