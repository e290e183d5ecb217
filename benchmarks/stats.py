"""Pure result logic: medians, ratios, goals and the markdown tables.

Nothing here touches processes or files, so it is tested directly
(tests/test_benchmarks.py).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: Variant names, one per receiver configuration measured in a scenario.
OURS = "ours"  # our receiver, --no-fsync (like DCMTK, which never fsyncs)
DCMTK = "dcmtk"  # DCMTK's dcmrecv
OURS_DURABLE = "ours-durable"  # our receiver's default: fsync before Success
OURS_IGNORE = "ours-ignore"  # our receiver, --ignore: the sender floor through us
DCMTK_IGNORE = "dcmtk-ignore"  # DCMTK's dcmrecv --ignore: the sender floor
STORESCP = "storescp"  # DCMTK's storescp, one association at a time
STORESCP_FORK = "storescp-fork"  # DCMTK's storescp --fork: a child process per association
PYNETDICOM = "pynetdicom"  # pynetdicom's storescp app (python -m pynetdicom storescp)
ORTHANC = "orthanc"  # Orthanc, started with a configuration file of its own
OURS_HTTP = "ours-http"  # our receiver --no-fsync with the HTTP endpoint on (--http-port 0)
#: Issue 20 (scale-out), measured once our --help lists the option:
OURS_WORKERS = "ours-workers-2"  # our receiver --no-fsync --workers 2
OURS_WORKERS_4 = "ours-workers-4"  # our receiver --no-fsync --workers 4
OURS_STATE = "ours-state"  # --no-fsync --eostudy-timeout 5: study state in the embedded store
OURS_POSTGRESQL = "ours-postgresql"  # the same with --state postgresql://... on loopback

#: What each variant is called in tables and charts.
LABELS = {
    OURS: "ours --no-fsync",
    OURS_DURABLE: "ours default (fsync)",
    DCMTK: "DCMTK dcmrecv",
    OURS_IGNORE: "ours --ignore",
    DCMTK_IGNORE: "DCMTK dcmrecv --ignore",
    STORESCP: "DCMTK storescp",
    STORESCP_FORK: "DCMTK storescp --fork",
    PYNETDICOM: "pynetdicom storescp",
    ORTHANC: "Orthanc",
    OURS_HTTP: "ours --no-fsync --http-port 0",
    OURS_WORKERS: "ours --no-fsync --workers 2",
    OURS_WORKERS_4: "ours --no-fsync --workers 4",
    OURS_STATE: "ours --no-fsync, study state embedded",
    OURS_POSTGRESQL: "ours --no-fsync, study state in PostgreSQL",
}
#: Our receiver with 1, 2 and 4 workers (1 is the default): the workers scale curve.
WORKERS = {OURS: 1, OURS_WORKERS: 2, OURS_WORKERS_4: 4}

#: Kinds of goal.
RATIO_AT_MOST = "ratio<="  # ours / DCMTK must not exceed the limit
OURS_AT_MOST = "ours<="  # our absolute value must not exceed the limit
OURS_AT_LEAST = "ours>="  # our absolute value must reach the limit
NO_GOAL = "info"  # measured and shown, no goal set


@dataclass(frozen=True)
class Goal:
    kind: str
    limit: float

    def met(self, ours: float | None, ratio_value: float | None) -> bool | None:
        """True or False, or None when the value it needs was not measured."""
        value = ratio_value if self.kind == RATIO_AT_MOST else ours
        if self.kind == NO_GOAL or value is None or math.isnan(value):
            return None
        if self.kind == OURS_AT_LEAST:
            return value >= self.limit
        return value <= self.limit

    def describe(self, unit: str) -> str:
        if self.kind == NO_GOAL:
            return "(no goal)"
        if self.kind == RATIO_AT_MOST:
            return f"<= {self.limit:g}"
        if self.kind == OURS_AT_LEAST:
            return f"ours >= {self.limit:g}{_unit_suffix(unit)}"
        return f"ours <= {self.limit:g}{_unit_suffix(unit)}"


INFO = Goal(NO_GOAL, 0.0)
#: Unit of a row that counts things (associations, threads): shown as an integer.
COUNT = "count"


def _unit_suffix(unit: str) -> str:
    return f" {unit}" if unit and unit != COUNT else ""


@dataclass
class Samples:
    """Measurements of one metric in one scenario: variant -> one value per round."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, variant: str, value: float) -> None:
        self.values.setdefault(variant, []).append(value)

    def median(self, variant: str) -> float | None:
        return median_or_none(self.values.get(variant, []))


def median_or_none(values: Sequence[float]) -> float | None:
    """The median, robust to the odd slow round on a shared machine; None if empty."""
    return statistics.median(values) if values else None


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None when either is missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def per_instance_ms(slower: float | None, faster: float | None, instances: int) -> float | None:
    """(slower - faster) / instances in milliseconds: e.g. the cost of fsync per instance."""
    if slower is None or faster is None or instances <= 0:
        return None
    return 1000.0 * (slower - faster) / instances


def round_order(variants: Sequence[str], round_index: int) -> list[str]:
    """Rotate the variants each round so no receiver always runs first (or second).

    Shared machines drift (page cache, CPU frequency, neighbours); alternating the
    order spreads that drift over all receivers instead of favouring one.
    """
    if not variants:
        return []
    shift = round_index % len(variants)
    return [*variants[shift:], *variants[:shift]]


@dataclass(frozen=True)
class Row:
    """One line of the main table: our value against a reference value.

    ``against`` names the reference (DCMTK's dcmrecv for most rows, DCMTK's
    ``storescp --fork`` for the concurrent one, ours without the HTTP endpoint
    for the endpoint's cost); ``missing`` replaces our value when the scenario
    could not run at all.
    """

    scenario: str
    unit: str
    ours: float | None
    dcmtk: float | None
    goal: Goal
    against: str = LABELS[DCMTK]
    missing: str | None = None
    #: The issue whose goal this row checks, for the goals table ("" for earlier ones).
    issue: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.ours, self.dcmtk)

    @property
    def met(self) -> bool | None:
        return self.goal.met(self.ours, self.ratio)


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "":
        return f"{value:.2f}"
    if unit == COUNT:
        return f"{value:.0f}"
    return f"{value:g} {unit}"


def format_ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if value < 0.1 else f"{value:.2f}"


def format_met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[met]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(cells) + " |" for cells in rows)
    return "\n".join(lines)


def main_table(rows: Sequence[Row]) -> str:
    """scenario | ours | against | theirs | ratio | goal | met?"""
    return markdown_table(
        ["scenario", "ours", "against", "theirs", "ratio (ours/theirs)", "goal", "met?"],
        (
            [
                row.scenario,
                row.missing or format_value(row.ours, row.unit),
                row.against,
                format_value(row.dcmtk, row.unit),
                format_ratio(row.ratio),
                row.goal.describe(row.unit),
                format_met(row.met),
            ]
            for row in rows
        ),
    )


@dataclass(frozen=True)
class DetailRow:
    """Everything measured for one transfer scenario (median seconds, peak RSS in MB)."""

    scenario: str
    instances: int
    seconds: Mapping[str, float | None]
    peak_rss_mb: Mapping[str, float | None]


DETAIL_VARIANTS = (OURS, OURS_DURABLE, DCMTK, OURS_IGNORE, DCMTK_IGNORE)


def detail_table(rows: Sequence[DetailRow]) -> str:
    """Durability cost, sender floors and memory, per scenario."""
    header = [
        "scenario",
        "ours --no-fsync",
        "ours default (fsync)",
        "fsync cost / instance",
        "DCMTK dcmrecv",
        "ratio --no-fsync / default, to dcmrecv",
        "floor: ours --ignore",
        "floor: DCMTK --ignore",
        "peak RSS ours / DCMTK",
    ]
    body = []
    for row in rows:
        seconds = row.seconds
        cost = per_instance_ms(seconds.get(OURS_DURABLE), seconds.get(OURS), row.instances)
        rss_ours = row.peak_rss_mb.get(OURS)
        rss_dcmtk = row.peak_rss_mb.get(DCMTK)
        body.append(
            [
                row.scenario,
                format_value(seconds.get(OURS), "s"),
                format_value(seconds.get(OURS_DURABLE), "s"),
                format_value(cost, "ms"),
                format_value(seconds.get(DCMTK), "s"),
                f"{format_ratio(ratio(seconds.get(OURS), seconds.get(DCMTK)))} /"
                f" {format_ratio(ratio(seconds.get(OURS_DURABLE), seconds.get(DCMTK)))}",
                format_value(seconds.get(OURS_IGNORE), "s"),
                format_value(seconds.get(DCMTK_IGNORE), "s"),
                f"{format_value(rss_ours, 'MB')} / {format_value(rss_dcmtk, 'MB')}",
            ]
        )
    return markdown_table(header, body)


# --- Peers: every receiver on the same data, per instance -------------------------

#: Column order of the peer table.
PEER_COLUMNS = (OURS, OURS_DURABLE, DCMTK, STORESCP, STORESCP_FORK, PYNETDICOM, ORTHANC)
#: Column order of the receiver CPU table: the floors and the workers too.
CPU_COLUMNS = (
    OURS,
    OURS_DURABLE,
    DCMTK,
    OURS_IGNORE,
    DCMTK_IGNORE,
    STORESCP,
    STORESCP_FORK,
    OURS_WORKERS,
    OURS_STATE,
    OURS_POSTGRESQL,
    OURS_HTTP,
    PYNETDICOM,
    ORTHANC,
)


@dataclass(frozen=True)
class PeerRow:
    """One scenario across receivers: median milliseconds per instance, and how many
    instances each receiver was sent per run (slow peers get fewer, see scenarios.py)."""

    scenario: str
    ms_per_instance: Mapping[str, float | None]
    instances: Mapping[str, int]


def peer_table(rows: Sequence[PeerRow], order: Sequence[str] = PEER_COLUMNS) -> str:
    """ms per instance per receiver; in brackets ours --no-fsync / that receiver.

    The receiver CPU table has the same shape (CPU ms per instance, ``CPU_COLUMNS``).
    """
    columns = [v for v in order if any(v in row.ms_per_instance for row in rows)]
    body = []
    for row in rows:
        ours = row.ms_per_instance.get(OURS)
        full = row.instances.get(OURS)
        cells = [row.scenario]
        for variant in columns:
            value = row.ms_per_instance.get(variant)
            if value is None:
                cells.append("n/a" if variant in row.ms_per_instance else "-")
                continue
            cell = f"{value:.3f} ms [{format_ratio(ratio(ours, value))}]"
            count = row.instances.get(variant)
            if count is not None and count != full:
                cell += f" n={count}"
            cells.append(cell)
        body.append(cells)
    return markdown_table(["scenario", *(LABELS[v] for v in columns)], body)


# --- Device flushes counted with strace -------------------------------------------

#: System calls that make the kernel write data to the device and wait for it.
FLUSH_CALLS = ("fsync", "fdatasync", "sync_file_range", "syncfs", "sync", "msync")


@dataclass(frozen=True)
class FlushRow:
    """Flush system calls our receiver made while receiving ``instances`` instances."""

    case: str
    instances: int
    calls: Mapping[str, int]
    limit: float

    @property
    def total(self) -> int:
        return sum(self.calls.get(name, 0) for name in FLUSH_CALLS)

    @property
    def per_instance(self) -> float | None:
        return self.total / self.instances if self.instances > 0 else None

    @property
    def met(self) -> bool | None:
        per_instance = self.per_instance
        return None if per_instance is None else per_instance <= self.limit


def flush_table(rows: Sequence[FlushRow]) -> str:
    shown = ("fsync", "fdatasync", "sync_file_range", "syncfs")
    header = ["case", "instances", *shown, "flushes / instance", "goal", "met?"]
    body = [
        [
            row.case,
            str(row.instances),
            *(str(row.calls.get(name, 0)) for name in shown),
            format_value(row.per_instance, ""),
            f"<= {row.limit:g}",
            format_met(row.met),
        ]
        for row in rows
    ]
    return markdown_table(header, body)


# --- Scale: 1 to 64 concurrent senders -----------------------------------------------


@dataclass(frozen=True)
class ScalePoint:
    """One receiver with ``senders`` storescu processes at once (median of rounds)."""

    variant: str
    senders: int
    instances: int
    megabytes: float
    seconds: float | None
    #: Peak of the summed resident sets of the receiver's process tree, sampled.
    peak_rss_mb: float | None
    #: Peak of the summed thread counts over that tree.
    peak_threads: int | None
    #: Peak number of processes in the tree (1 for a threaded receiver).
    peak_processes: int | None

    @property
    def instances_per_second(self) -> float | None:
        return self.instances / self.seconds if self.seconds else None

    @property
    def megabytes_per_second(self) -> float | None:
        return self.megabytes / self.seconds if self.seconds else None


def throughput_kept(points: Sequence[ScalePoint], variant: str) -> float | None:
    """Throughput at the most senders as a fraction of the best point: 1.0 = no loss.

    "No collapse as senders grow" (issue 14): this stays near 1 when a receiver keeps
    its throughput up to the largest sender count.
    """
    mine = [p for p in points if p.variant == variant and p.instances_per_second is not None]
    if not mine:
        return None
    best = max(p.instances_per_second or 0.0 for p in mine)
    last = max(mine, key=lambda p: p.senders).instances_per_second
    return last / best if best and last is not None else None


def scale_table(points: Sequence[ScalePoint]) -> str:
    """senders | per receiver: instances/s, MB/s, peak RSS, peak threads (processes)."""
    variants = list(dict.fromkeys(p.variant for p in points))
    senders = sorted({p.senders for p in points})
    by_key = {(p.variant, p.senders): p for p in points}
    header = ["senders"]
    for variant in variants:
        name = LABELS.get(variant, variant)
        header += [f"{name}: inst/s", "MB/s", "peak RSS", "peak threads (processes)"]
    body = []
    for count in senders:
        cells = [str(count)]
        for variant in variants:
            point = by_key.get((variant, count))
            if point is None:
                cells += ["-", "-", "-", "-"]
                continue
            rate, mbps = point.instances_per_second, point.megabytes_per_second
            cells += [
                "n/a" if rate is None else f"{rate:.0f}",
                "n/a" if mbps is None else f"{mbps:.0f}",
                format_value(point.peak_rss_mb, "MB"),
                f"{_count(point.peak_threads)} ({_count(point.peak_processes)})",
            ]
        body.append(cells)
    return markdown_table(header, body)


def workers_table(points: Sequence[ScalePoint]) -> str:
    """The workers curve: senders | inst/s with 1, 2 and 4 workers | storescp --fork."""
    variants = [*WORKERS, STORESCP_FORK]
    by_key = {(p.variant, p.senders): p for p in points}
    header = ["senders", *(f"{n} worker{'s' if n > 1 else ''}: inst/s" for n in WORKERS.values())]
    header.append(f"{LABELS[STORESCP_FORK]}: inst/s")
    body = []
    for count in sorted({p.senders for p in points}):
        cells = [str(count)]
        for variant in variants:
            point = by_key.get((variant, count))
            rate = None if point is None else point.instances_per_second
            cells.append("-" if point is None else "n/a" if rate is None else f"{rate:.0f}")
        body.append(cells)
    return markdown_table(header, body)


def _count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


# --- Held associations ---------------------------------------------------------------


@dataclass(frozen=True)
class HeldResult:
    """Many Verification associations held open at once, and what they cost."""

    opened: int
    accepted: int
    rss_mb: float | None
    threads: int | None
    cpu_percent: float
    seconds: float


def held_table(results: Sequence[tuple[str, HeldResult]]) -> str:
    header = ["receiver", "opened", "accepted", "RSS while held", "threads", "CPU % of a core"]
    body = [
        [
            LABELS.get(variant, variant),
            str(held.opened),
            str(held.accepted),
            format_value(held.rss_mb, "MB"),
            _count(held.threads),
            f"{held.cpu_percent:.2f} % over {held.seconds:.1f} s",
        ]
        for variant, held in results
    ]
    return markdown_table(header, body)


# --- Start-up: short processes measured to their end ---------------------------------

#: What is measured (the keys of StartupResults.wall and .cpu).
DCMRECV_VERSION = "dcmrecv --version"
STORESCP_VERSION = "storescp --version"
INETD = "storescp --inetd, one connection"
PROBE = "health probe, one C-ECHO"
BARE_PYTHON = "bare python3 -c pass"
#: What DCMTK's side of each is.
STARTUP_REFERENCE = {
    DCMRECV_VERSION: "DCMTK dcmrecv --version",
    STORESCP_VERSION: "DCMTK storescp --version",
    INETD: "DCMTK storescp --inetd",
    PROBE: "DCMTK echoscu",
    BARE_PYTHON: "-",
}


@dataclass
class StartupResults:
    """Per measurement: variant (ours, dcmtk) -> wall and CPU seconds, one per run."""

    wall: dict[str, Samples] = field(default_factory=dict)
    cpu: dict[str, Samples] = field(default_factory=dict)
    #: Measurements that could not run, and why.
    missing: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, variant: str, wall: float, cpu: float) -> None:
        self.wall.setdefault(name, Samples()).add(variant, wall)
        self.cpu.setdefault(name, Samples()).add(variant, cpu)


def startup_table(results: StartupResults) -> str:
    """measurement | ours wall, CPU | DCMTK's counterpart | its wall, CPU."""
    header = ["measurement", "ours: wall", "ours: CPU", "against", "theirs: wall", "theirs: CPU"]
    body = []
    for name, reference in STARTUP_REFERENCE.items():
        if name in results.missing:
            body.append([name, results.missing[name], "", reference, "", ""])
            continue
        wall = results.wall.get(name, Samples())
        cpu = results.cpu.get(name, Samples())
        body.append(
            [
                name,
                format_value(wall.median(OURS), "s"),
                format_value(cpu.median(OURS), "s"),
                reference,
                format_value(wall.median(DCMTK), "s"),
                format_value(cpu.median(DCMTK), "s"),
            ]
        )
    return markdown_table(header, body)
