"""The PNG chart: ours / DCMTK per scenario against its goal (matplotlib, optional)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.stats import RATIO_AT_MOST, Row


def plot_rows(rows: Sequence[Row], path: Path) -> bool:
    """Write a bar chart of ``rows``; False when matplotlib is not installed.

    Left: time ratios ours/DCMTK on a log scale (the Nagle scenario is far below
    1). Right: goals on our absolute value (peak RSS, idle CPU), as a fraction of
    the limit.  Bars are green when the goal is met; the goal is a black tick.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    ratio_rows = [r for r in rows if r.goal.kind == RATIO_AT_MOST and r.ratio is not None]
    absolute_rows = [r for r in rows if r.goal.kind != RATIO_AT_MOST and r.ours is not None]
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 1]}, constrained_layout=True
    )
    _bars(
        left,
        [r.scenario.split(":")[0] for r in ratio_rows],
        [r.ratio or 0.0 for r in ratio_rows],
        [r.goal.limit for r in ratio_rows],
        [r.met for r in ratio_rows],
    )
    left.set_yscale("log")
    left.set_ylabel("time ours / DCMTK (lower is better)")
    left.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    _bars(
        right,
        [f"{r.scenario.split(':')[0]} ({r.unit})" for r in absolute_rows],
        [(r.ours or 0.0) / r.goal.limit for r in absolute_rows],
        [1.0 for _ in absolute_rows],
        [r.met for r in absolute_rows],
    )
    right.set_ylabel("ours / absolute goal")
    figure.suptitle("dcmrecv benchmark (median of rounds; tick = goal)")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _bars(
    axes: Any,
    labels: Sequence[str],
    values: Sequence[float],
    goals: Sequence[float],
    met: Sequence[bool | None],
) -> None:
    colors = ["tab:green" if m else "tab:red" if m is False else "tab:grey" for m in met]
    positions = range(len(labels))
    axes.bar(positions, values, color=colors)
    for x, goal in zip(positions, goals, strict=True):
        axes.hlines(goal, x - 0.4, x + 0.4, colors="black", linewidth=2)
    for x, value in zip(positions, values, strict=True):
        axes.annotate(f"{value:.2g}", (x, value), ha="center", va="bottom", fontsize=8)
    axes.set_xticks(list(positions))
    axes.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
