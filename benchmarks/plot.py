"""The PNG chart (matplotlib, optional): goals, every receiver per instance, scale curve.

Four panels: time ratios against their goals; goals on our absolute values (peak
RSS, idle CPU, flushes per instance, throughput kept at 64 senders); milliseconds
per instance for every receiver and scenario; the scale curve (throughput and
memory against the number of senders).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.stats import (
    LABELS,
    NO_GOAL,
    PEER_COLUMNS,
    RATIO_AT_MOST,
    PeerRow,
    Row,
    ScalePoint,
)


def plot_rows(rows: Sequence[Row], path: Path) -> bool:
    """The chart with the goal panels only (kept for callers without peers or scale)."""
    return plot_all(rows, [], [], path)


def plot_all(
    rows: Sequence[Row], peers: Sequence[PeerRow], scale: Sequence[ScalePoint], path: Path
) -> bool:
    """Write the chart to ``path``; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    figure, axes = plt.subplots(
        2, 2, figsize=(16, 11), gridspec_kw={"width_ratios": [3, 2]}, constrained_layout=True
    )
    (ratios, absolute), (per_instance, curve) = axes
    # Log scale: a ratio at or below 0 (a durable overhead lost in the noise) is left out.
    ratio_rows = [r for r in rows if r.goal.kind == RATIO_AT_MOST and (r.ratio or 0.0) > 0]
    _bars(
        ratios,
        [_short(r.scenario) for r in ratio_rows],
        [r.ratio or 0.0 for r in ratio_rows],
        [r.goal.limit for r in ratio_rows],
        [r.met for r in ratio_rows],
    )
    ratios.set_yscale("log")
    ratios.set_ylabel("ours / reference: time, CPU, flushes (lower is better)")
    ratios.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ratios.set_title("ratios against DCMTK and the disk (tick = goal)")

    absolute_rows = [
        r
        for r in rows
        if r.goal.kind not in (RATIO_AT_MOST, NO_GOAL) and r.ours is not None and r.goal.limit
    ]
    _bars(
        absolute,
        [_short(r.scenario) for r in absolute_rows],
        [(r.ours or 0.0) / r.goal.limit for r in absolute_rows],
        [1.0 for _ in absolute_rows],
        [r.met for r in absolute_rows],
    )
    absolute.set_ylabel("ours / absolute goal")
    absolute.set_title("absolute goals (RSS, CPU, flushes, scale)")

    _peers(per_instance, peers)
    _curve(curve, scale)
    figure.suptitle("dcmrecv benchmark (medians of rounds)")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def _short(scenario: str) -> str:
    """A tick label: the row's words, cut to fit, on up to three lines."""
    return "\n".join(textwrap.wrap(textwrap.shorten(scenario, 75, placeholder="..."), 28))


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
    axes.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)


def _peers(axes: Any, rows: Sequence[PeerRow]) -> None:
    """Grouped bars: ms per instance, one group per scenario, one bar per receiver."""
    variants = [v for v in PEER_COLUMNS if any(row.ms_per_instance.get(v) for row in rows)]
    if not rows or not variants:
        axes.set_axis_off()
        axes.set_title("every receiver: not measured")
        return
    width = 0.8 / len(variants)
    for offset, variant in enumerate(variants):
        values = [row.ms_per_instance.get(variant) or 0.0 for row in rows]
        positions = [i + (offset - (len(variants) - 1) / 2) * width for i in range(len(rows))]
        axes.bar(positions, values, width, label=LABELS[variant])
    axes.set_xticks(list(range(len(rows))))
    axes.set_xticklabels([row.scenario for row in rows], fontsize=8)
    axes.set_yscale("log")
    axes.set_ylabel("ms per instance (lower is better)")
    axes.set_title("every receiver, per instance")
    axes.legend(fontsize=7)


def _curve(axes: Any, points: Sequence[ScalePoint]) -> None:
    """Throughput (solid) and peak RSS (dashed, right axis) against senders."""
    if not points:
        axes.set_axis_off()
        axes.set_title("scale curve: not measured")
        return
    memory = axes.twinx()
    for variant in dict.fromkeys(p.variant for p in points):
        mine = sorted((p for p in points if p.variant == variant), key=lambda p: p.senders)
        senders = [p.senders for p in mine]
        (line,) = axes.plot(
            senders,
            [p.instances_per_second or 0.0 for p in mine],
            marker="o",
            label=f"{LABELS.get(variant, variant)}: inst/s",
        )
        memory.plot(
            senders,
            [p.peak_rss_mb or 0.0 for p in mine],
            marker="x",
            linestyle="--",
            color=line.get_color(),
            label=f"{LABELS.get(variant, variant)}: peak RSS",
        )
    axes.set_ylim(bottom=0)
    memory.set_ylim(bottom=0)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("concurrent senders")
    axes.set_ylabel("instances / s (solid)")
    memory.set_ylabel("peak RSS of the process tree, MB (dashed)")
    axes.set_title("scale curve")
    handles, labels = axes.get_legend_handles_labels()
    more_handles, more_labels = memory.get_legend_handles_labels()
    axes.legend(handles + more_handles, labels + more_labels, fontsize=7, loc="best")
