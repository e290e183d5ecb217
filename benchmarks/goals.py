"""The goals table: every goal of the current issues, met or not, beside the previous run.

A goal counts when it holds in two runs in a row (issue 21: the spread is the
machine's), so each goal's figure from the previous report (``latest.md`` before
this run overwrites it) is shown beside this run's.  Rows are matched by their
title, which names the sizes: a ``--quick`` run is not compared with a full one.
Pure: text and rows in, markdown out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from benchmarks.stats import (
    RATIO_AT_MOST,
    Row,
    format_met,
    format_ratio,
    format_value,
    markdown_table,
)

#: The main table's header, as stats.main_table writes it.
MAIN_HEADER = ["scenario", "ours", "against", "theirs", "ratio (ours/theirs)", "goal", "met?"]


@dataclass(frozen=True)
class Figure:
    """What a goal is judged on in one run (the ratio, or our value), and the verdict."""

    value: str
    met: str


def figure(row: Row) -> Figure:
    """The figure a row's goal looks at, as the main table prints it."""
    if row.missing:
        return Figure(row.missing, format_met(row.met))
    if row.goal.kind == RATIO_AT_MOST:
        return Figure(format_ratio(row.ratio), format_met(row.met))
    return Figure(format_value(row.ours, row.unit), format_met(row.met))


def previous_figures(text: str) -> dict[str, Figure]:
    """Scenario title -> figure, from the main table of an earlier report."""
    figures: dict[str, Figure] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if _cells(line) == MAIN_HEADER:
            break
    else:
        return figures
    next(lines, None)  # the |---| rule
    for line in lines:
        cells = _cells(line)
        if len(cells) != len(MAIN_HEADER):
            break
        scenario, ours, _, _, ratio_text, goal, met = cells
        # A ratio goal is written "<= 0.9", an absolute one "ours <= ..."; without a
        # ratio, "ours" says why (e.g. "not available in this build").
        value = ratio_text if goal.startswith("<=") and ratio_text != "n/a" else ours
        figures[scenario] = Figure(value, met)
    return figures


def _cells(line: str) -> list[str]:
    line = line.strip()
    if not line.startswith("|"):
        return []
    return [cell.strip() for cell in line.strip("|").split("|")]


def goals_table(rows: Sequence[Row], previous: Mapping[str, Figure] | None) -> str:
    """issue | scenario | goal | this run | met? | previous run | met in both?

    ``previous`` is None when there is no earlier report to compare with.
    """
    header = ["issue", "scenario", "goal", "this run", "met?", "previous run", "met in both?"]
    body = []
    for row in rows:
        if not row.issue:
            continue
        now = figure(row)
        before = None if previous is None else previous.get(row.scenario)
        both = "n/a" if before is None else _both(now.met, before.met)
        body.append(
            [
                row.issue,
                row.scenario,
                row.goal.describe(row.unit),
                now.value,
                now.met,
                "-" if before is None else f"{before.value} ({before.met})",
                both,
            ]
        )
    return markdown_table(header, body)


def _both(now: str, before: str) -> str:
    yes = format_met(True)
    if now == yes and before == yes:
        return yes
    if format_met(None) in (now, before):
        return format_met(None)
    return format_met(False)
