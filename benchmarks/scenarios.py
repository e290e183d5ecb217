"""The scenarios, their sizes (full and ``--quick``) and their goals.

Pure data: what each scenario sends, with which socket settings, which receiver
variants it measures and what counts as success.  ``run.py`` executes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.stats import (
    DCMTK,
    DCMTK_IGNORE,
    OURS,
    OURS_AT_MOST,
    OURS_DURABLE,
    OURS_IGNORE,
    RATIO_AT_MOST,
    Goal,
)

MIB = 1024 * 1024
GIB = 1024 * MIB

#: Data sets a scenario can send.
TINY_DEFAULTS = "tiny-defaults"
TINY = "tiny"
CT = "ct"
CONCURRENT = "concurrent"
LARGE = "large"
IDLE = "idle"  # no data: associations held open


@dataclass(frozen=True)
class Sizes:
    """How much each scenario sends; ``FULL`` for the report, ``QUICK`` for a check."""

    tiny_defaults: int
    tiny: int
    #: Side of the square tiny images, 16-bit pixels (32 -> about 3 KB a file).
    tiny_side: int
    ct: int
    #: Side of the CT images (512 -> 512 KB of pixel data).
    ct_side: int
    concurrent_senders: int
    concurrent_each: int
    large_bytes: int
    idle_associations: int
    idle_seconds: float


FULL = Sizes(
    tiny_defaults=100,
    tiny=1000,
    tiny_side=32,
    ct=200,
    ct_side=512,
    concurrent_senders=4,
    concurrent_each=50,
    large_bytes=GIB,
    idle_associations=50,
    idle_seconds=4.0,
)
QUICK = Sizes(
    tiny_defaults=20,
    tiny=200,
    tiny_side=32,
    ct=40,
    ct_side=512,
    concurrent_senders=4,
    concurrent_each=10,
    large_bytes=64 * MIB,
    idle_associations=10,
    idle_seconds=1.5,
)

ALL_VARIANTS = (OURS, DCMTK, OURS_DURABLE, OURS_IGNORE, DCMTK_IGNORE)
#: Without the --ignore floors: where the floor says nothing new or costs too long.
NO_FLOOR = (OURS, DCMTK, OURS_DURABLE)


@dataclass(frozen=True)
class Scenario:
    key: str
    #: What is sent, for the table.
    title: str
    dataset: str
    #: TCP_NODELAY=1 in the environment of DCMTK's sender and receiver.
    nodelay: bool
    #: ``-pdu`` for sender and receivers; None keeps the tools' defaults.
    max_pdu: int | None
    goal: Goal
    variants: tuple[str, ...]
    #: Absolute ceiling for our peak RSS in MB, reported as a row of its own.
    rss_goal_mb: float | None = None


def scenarios(sizes: Sizes) -> list[Scenario]:
    """All scenarios in report order, titled with the sizes they will use."""
    ct_kb = sizes.ct_side * sizes.ct_side * 2 // 1024
    large = (
        f"{sizes.large_bytes // GIB} GiB"
        if sizes.large_bytes >= GIB
        else f"{sizes.large_bytes // MIB} MiB"
    )
    return [
        Scenario(
            key=TINY_DEFAULTS,
            title=f"tiny, defaults: {sizes.tiny_defaults} small instances, Nagle on",
            dataset=TINY_DEFAULTS,
            nodelay=False,
            max_pdu=None,
            goal=Goal(RATIO_AT_MOST, 0.1),
            variants=NO_FLOOR,
        ),
        Scenario(
            key=TINY,
            title=f"tiny, best: {sizes.tiny} small instances, TCP_NODELAY=1",
            dataset=TINY,
            nodelay=True,
            max_pdu=None,
            goal=Goal(RATIO_AT_MOST, 1.0),
            variants=ALL_VARIANTS,
        ),
        Scenario(
            key=CT,
            title=f"CT series: {sizes.ct} x {ct_kb} KB, TCP_NODELAY=1",
            dataset=CT,
            nodelay=True,
            max_pdu=None,
            goal=Goal(RATIO_AT_MOST, 1.0),
            variants=ALL_VARIANTS,
        ),
        Scenario(
            key=LARGE,
            title=f"one large instance: {large} multi-frame, TCP_NODELAY=1",
            dataset=LARGE,
            nodelay=True,
            max_pdu=None,
            goal=Goal(RATIO_AT_MOST, 1.0),
            variants=NO_FLOOR,
            rss_goal_mb=150.0,
        ),
        Scenario(
            key=CONCURRENT,
            title=(
                f"concurrent: {sizes.concurrent_senders} senders x {sizes.concurrent_each} CT,"
                " TCP_NODELAY=1"
            ),
            dataset=CONCURRENT,
            nodelay=True,
            max_pdu=None,
            goal=Goal(RATIO_AT_MOST, 0.8),
            variants=ALL_VARIANTS,
        ),
        Scenario(
            key=IDLE,
            title=(
                f"idle: {sizes.idle_associations} associations held"
                f" {sizes.idle_seconds:g} s, CPU % of one core"
            ),
            dataset=IDLE,
            nodelay=True,
            max_pdu=None,
            goal=Goal(OURS_AT_MOST, 1.0),
            variants=(OURS, DCMTK),
        ),
        Scenario(
            key="max-pdu",
            title="max-PDU: CT series with -pdu 131072 on both",
            dataset=CT,
            nodelay=True,
            max_pdu=131072,
            goal=Goal(RATIO_AT_MOST, 1.0),
            variants=ALL_VARIANTS,
        ),
    ]


def scenario_keys() -> list[str]:
    return [scenario.key for scenario in scenarios(FULL)]


def select(all_scenarios: list[Scenario], only: list[str]) -> list[Scenario]:
    """The scenarios named in ``only`` (all when empty), in report order."""
    if not only:
        return list(all_scenarios)
    known = {scenario.key for scenario in all_scenarios}
    unknown = [key for key in only if key not in known]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; choose from {sorted(known)}")
    return [scenario for scenario in all_scenarios if scenario.key in only]


def instances_sent(scenario: Scenario, sizes: Sizes) -> int:
    """How many instances one round of ``scenario`` sends (0 for idle)."""
    return {
        TINY_DEFAULTS: sizes.tiny_defaults,
        TINY: sizes.tiny,
        CT: sizes.ct,
        CONCURRENT: sizes.concurrent_senders * sizes.concurrent_each,
        LARGE: 1,
        IDLE: 0,
    }[scenario.dataset]
