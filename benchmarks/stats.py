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

#: Kinds of goal.
RATIO_AT_MOST = "ratio<="  # ours / DCMTK must not exceed the limit
OURS_AT_MOST = "ours<="  # our absolute value must not exceed the limit


@dataclass(frozen=True)
class Goal:
    kind: str
    limit: float

    def met(self, ours: float | None, ratio_value: float | None) -> bool | None:
        """True or False, or None when the value it needs was not measured."""
        value = ratio_value if self.kind == RATIO_AT_MOST else ours
        if value is None or math.isnan(value):
            return None
        return value <= self.limit

    def describe(self, unit: str) -> str:
        if self.kind == RATIO_AT_MOST:
            return f"<= {self.limit:g}"
        return f"ours <= {self.limit:g} {unit}"


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
    """One line of the main table."""

    scenario: str
    unit: str
    ours: float | None
    dcmtk: float | None
    goal: Goal

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
    """scenario | ours | DCMTK | ratio | goal | met?"""
    return markdown_table(
        ["scenario", "ours", "DCMTK", "ratio (ours/DCMTK)", "goal", "met?"],
        (
            [
                row.scenario,
                format_value(row.ours, row.unit),
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
        "DCMTK",
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
                format_value(seconds.get(OURS_IGNORE), "s"),
                format_value(seconds.get(DCMTK_IGNORE), "s"),
                f"{format_value(rss_ours, 'MB')} / {format_value(rss_dcmtk, 'MB')}",
            ]
        )
    return markdown_table(header, body)
