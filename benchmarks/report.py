"""The report: machine facts and the markdown document written to results/latest.md."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.stats import DetailRow, Row, detail_table, main_table


def dcmtk_version(dcmrecv: str) -> str:
    """First line of ``dcmrecv --version``, e.g. ``$dcmtk: dcmrecv v3.6.7 2022-04-22 $``."""
    result = subprocess.run(
        [dcmrecv, "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    for line in (result.stdout + result.stderr).splitlines():
        if "dcmtk" in line.lower():
            return line.strip().strip("$").strip()
    return "unknown"


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
    machine: Sequence[tuple[str, str]],
    settings: Sequence[tuple[str, str]],
    notes: Sequence[str],
) -> str:
    """The whole markdown report."""
    parts = [
        "# Benchmark: our dcmrecv against DCMTK's dcmrecv",
        "",
        "Medians over rounds; the receivers alternate round by round. Times are the"
        ' sender\'s wall time (DCMTK storescu, one association per sender). "ours" runs'
        " with `--no-fsync`, like DCMTK, which never fsyncs; our durable default is in"
        " the second table.",
        "",
        main_table(rows),
        "",
        "## Durability, sender floor and memory",
        "",
        detail_table(details) if details else "(no transfer scenario run)",
        "",
        "## Machine and settings",
        "",
        *[f"- {key}: {value}" for key, value in [*machine, *settings]],
    ]
    if notes:
        parts += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    return "\n".join(parts) + "\n"
