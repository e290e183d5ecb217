"""Main-table rows of issues 20 and 21: receiver CPU, the durable overhead in flushes,
start-up, workers and study state.  Pure: medians in, ``Row`` objects out.

A row whose option our receiver does not have yet (``--workers``, ``--state``) is
still shown, saying so, and fills in by itself once ``--help`` lists the option.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.disk import FLUSH_BYTES
from benchmarks.scenarios import (
    INETD_GOAL,
    POSTGRESQL_GOAL,
    PROBE_CPU_GOAL,
    STATE_GOAL,
    STUDY_TIMEOUT_SECONDS,
    VERSION_GOAL,
    WORKERS_GOAL,
    Scenario,
)
from benchmarks.stats import (
    DCMRECV_VERSION,
    DCMTK,
    DCMTK_IGNORE,
    INETD,
    INFO,
    LABELS,
    OURS,
    OURS_DURABLE,
    OURS_IGNORE,
    OURS_POSTGRESQL,
    OURS_STATE,
    OURS_WORKERS,
    PROBE,
    STARTUP_REFERENCE,
    STORESCP_FORK,
    STORESCP_VERSION,
    WORKERS,
    Goal,
    Row,
    Samples,
    ScalePoint,
    StartupResults,
    per_instance_ms,
    throughput_kept,
)

#: Our value of a row whose option our receiver's --help does not list yet.
NOT_AVAILABLE = "not available in this build"
#: What the durable overhead is compared with.
ONE_FLUSH = f"one fdatasync of a fresh {FLUSH_BYTES // 1024} KiB file"


def short_title(scenario: Scenario) -> str:
    """The scenario's title up to the colon: "tiny, best", "CT series", ..."""
    return scenario.title.split(":")[0]


def cpu_rows(scenario: Scenario, cpu_ms: Samples) -> list[Row]:
    """Receiver CPU per instance (utime + stime, process tree), ours against DCMTK's,
    and the same for the ``--ignore`` floors when they ran."""
    if scenario.cpu_goal is None:
        return []
    name = short_title(scenario)
    rows = [
        Row(
            f"{name}, receiver CPU per instance (utime+stime)",
            "ms",
            cpu_ms.median(OURS),
            cpu_ms.median(DCMTK),
            scenario.cpu_goal,
            issue="21",
        )
    ]
    if OURS_IGNORE in cpu_ms.values or DCMTK_IGNORE in cpu_ms.values:
        rows.append(
            Row(
                f"{name}, --ignore floor: receiver CPU per instance",
                "ms",
                cpu_ms.median(OURS_IGNORE),
                cpu_ms.median(DCMTK_IGNORE),
                INFO,
                against=LABELS[DCMTK_IGNORE],
            )
        )
    return rows


def overhead_row(
    scenario: Scenario, seconds: Samples, instances: int, flush_seconds: float | None
) -> list[Row]:
    """(durable - --no-fsync) / instances against this disk's cost of one flush: the
    ratio is the durable overhead in flushes per instance."""
    goal = scenario.overhead_goal
    if goal is None:
        return []
    return [
        Row(
            f"{short_title(scenario)}, durable overhead per instance (default - --no-fsync)",
            "ms",
            per_instance_ms(seconds.median(OURS_DURABLE), seconds.median(OURS), instances),
            None if flush_seconds is None else 1000.0 * flush_seconds,
            goal,
            against=ONE_FLUSH,
            issue="" if goal == INFO else "21",
        )
    ]


def workers_row(scenario: Scenario, seconds: Samples, available: bool) -> Row:
    """Issue 20: --workers 2 with the concurrent senders against storescp --fork."""
    return Row(
        f"{short_title(scenario)}, --workers 2",
        "s",
        seconds.median(OURS_WORKERS),
        seconds.median(STORESCP_FORK),
        WORKERS_GOAL,
        against=LABELS[STORESCP_FORK],
        missing=None if available else NOT_AVAILABLE,
        issue="20",
    )


def workers_scale_rows(
    scenario: Scenario, points: Sequence[ScalePoint], available: bool
) -> list[Row]:
    """The workers curve in one figure per worker count: throughput kept at the most
    senders, as for 1 worker (the existing scale row)."""
    variants = [v for v in WORKERS if v != OURS]
    if not available:
        counts = " and ".join(str(WORKERS[v]) for v in variants)
        return [
            Row(
                f"scale, --workers {counts}: inst/s at the most senders / best point",
                "",
                None,
                None,
                INFO,
                against="-",
                missing=NOT_AVAILABLE,
            )
        ]
    most = max((p.senders for p in points), default=0)
    return [
        Row(
            f"scale, --workers {WORKERS[variant]}: inst/s at {most} senders / best point",
            "",
            throughput_kept(points, variant),
            throughput_kept(points, STORESCP_FORK),
            scenario.goal,
            against=LABELS[STORESCP_FORK],
        )
        for variant in variants
    ]


def state_rows(seconds: Samples, missing: dict[str, str]) -> list[Row]:
    """Issue 20: 1000 tiny instances with study state on (embedded, PostgreSQL) / off.

    "On" is ``--eostudy-timeout``, which is what uses the state; "off" is ours
    without it, where nothing needs the store.
    """
    off = f"{LABELS[OURS]}, no --eostudy-timeout"
    return [
        Row(
            f"study state embedded (--eostudy-timeout {STUDY_TIMEOUT_SECONDS}): time on / off",
            "s",
            seconds.median(OURS_STATE),
            seconds.median(OURS),
            STATE_GOAL,
            against=off,
            missing=missing.get(OURS_STATE),
            issue="20",
        ),
        Row(
            "study state in PostgreSQL on loopback (--state postgresql://...): time on / off",
            "s",
            seconds.median(OURS_POSTGRESQL),
            seconds.median(OURS),
            POSTGRESQL_GOAL,
            against=off,
            missing=missing.get(OURS_POSTGRESQL),
            issue="20",
        ),
    ]


def startup_rows(results: StartupResults) -> list[Row]:
    """Issue 21: --version wall time, one inetd connection, the probe's CPU."""
    rows = []
    for name, goal in ((DCMRECV_VERSION, VERSION_GOAL), (STORESCP_VERSION, VERSION_GOAL)):
        wall = results.wall.get(name, Samples())
        rows.append(_startup_row(f"start-up: {name}, wall", wall, name, goal, results))
    inetd = results.wall.get(INETD, Samples())
    rows.append(
        _startup_row(
            "start-up: storescp --inetd, one connection (1 tiny instance), end to end",
            inetd,
            INETD,
            INETD_GOAL,
            results,
        )
    )
    probe = results.cpu.get(PROBE, Samples())
    title = "start-up: health probe (one C-ECHO), CPU (utime+stime)"
    rows.append(_startup_row(title, probe, PROBE, PROBE_CPU_GOAL, results))
    return rows


def _startup_row(
    title: str, samples: Samples, name: str, goal: Goal, results: StartupResults
) -> Row:
    return Row(
        title,
        "s",
        samples.median(OURS),
        samples.median(DCMTK),
        goal,
        against=STARTUP_REFERENCE[name],
        missing=results.missing.get(name),
        issue="21",
    )
