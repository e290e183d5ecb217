"""The scenarios, their sizes (full and ``--quick``) and their goals.

Pure data: what each scenario sends, with which socket settings, which receiver
variants it measures and what counts as success.  ``run.py`` executes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from benchmarks.stats import (
    DCMTK,
    DCMTK_IGNORE,
    INFO,
    ORTHANC,
    OURS,
    OURS_AT_LEAST,
    OURS_AT_MOST,
    OURS_DURABLE,
    OURS_HTTP,
    OURS_IGNORE,
    OURS_POSTGRESQL,
    OURS_STATE,
    OURS_WORKERS,
    OURS_WORKERS_4,
    PYNETDICOM,
    RATIO_AT_MOST,
    STORESCP,
    STORESCP_FORK,
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
SCALE = "scale"  # 1 to 64 senders sharing one series
FLUSHES = "flushes"  # strace counts of our flush calls, 1 and 8 senders
HELD = "held"  # 1000 associations held open: memory and threads
HTTP = "http"  # ours with and without the HTTP endpoint
STATE = "state"  # ours with study state (embedded, PostgreSQL) and without
STARTUP = "startup"  # no data but one tiny instance: --version, one inetd connection, the probe


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
    #: The scale curve: one series of ``scale_instances`` images of ``scale_side``
    #: squared 16-bit pixels, shared out among each count of senders.
    scale_instances: int
    scale_side: int
    scale_senders: tuple[int, ...]
    #: Senders for the group-commit flush count (issue 14: 8).
    flush_senders: int
    held_associations: int
    held_seconds: float
    #: Rounds the slow peers (pynetdicom, Orthanc) take part in, from the first.
    peer_rounds: int
    #: Runs of each start-up measurement (--version, inetd, probe); the median is shown.
    startup_runs: int
    #: fdatasync calls timed per measurement of this disk's flush cost.
    flush_probes: int


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
    scale_instances=1024,
    scale_side=256,
    scale_senders=(1, 4, 16, 64),
    flush_senders=8,
    held_associations=1000,
    held_seconds=4.0,
    peer_rounds=2,
    startup_runs=7,
    flush_probes=64,
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
    scale_instances=128,
    scale_side=256,
    scale_senders=(1, 4, 16, 64),
    flush_senders=8,
    held_associations=100,
    held_seconds=1.5,
    peer_rounds=1,
    startup_runs=3,
    flush_probes=16,
)

ALL_VARIANTS = (OURS, DCMTK, OURS_DURABLE, OURS_IGNORE, DCMTK_IGNORE)
#: Without the --ignore floors: where the floor says nothing new or costs too long.
NO_FLOOR = (OURS, DCMTK, OURS_DURABLE)
#: Slow peers: they take part in the first ``Sizes.peer_rounds`` rounds only.
SLOW_PEERS = (PYNETDICOM, ORTHANC)

#: Peers -> the divisor of the instances they are sent (1: all of them).  pynetdicom's
#: storescp takes ~6 ms and Orthanc ~45 ms per tiny instance, so Orthanc gets a fifth
#: (tiny) or a quarter (CT) of the series; tables compare per instance.
TRANSFER_PEERS: Mapping[str, int] = {STORESCP: 1, PYNETDICOM: 1, ORTHANC: 5}
CT_PEERS: Mapping[str, int] = {STORESCP: 1, PYNETDICOM: 1, ORTHANC: 4}
#: The concurrent scenario compares with DCMTK's concurrent server, storescp --fork.
CONCURRENT_PEERS: Mapping[str, int] = {STORESCP_FORK: 1, PYNETDICOM: 1, ORTHANC: 4}
#: pynetdicom's storescp and Orthanc hold a whole instance in memory; 1 GiB is left
#: to DCMTK's two receivers.
LARGE_PEERS: Mapping[str, int] = {STORESCP: 1}

#: Issue 21: receiver CPU per stored instance at or below DCMTK dcmrecv's.
CPU_GOAL = Goal(RATIO_AT_MOST, 1.0)
#: Issue 21: our durable overhead per instance (durable - --no-fsync) at most one
#: fdatasync of a fresh small file on this disk, for one sender.
ONE_FLUSH = Goal(RATIO_AT_MOST, 1.0)
#: Issue 21, start-up: --version at most 0.15 s wall, one storescp --inetd connection
#: at most 0.3 s end to end, the container's health probe at most 0.2 s of CPU.
VERSION_GOAL = Goal(OURS_AT_MOST, 0.15)
INETD_GOAL = Goal(OURS_AT_MOST, 0.3)
PROBE_CPU_GOAL = Goal(OURS_AT_MOST, 0.2)
#: Issue 20: with --workers 2, four concurrent senders of the CT series in at most
#: 0.8 of storescp --fork's time; 1000 tiny instances with study state embedded at
#: most 1.1 of the time without, with PostgreSQL on loopback at most 1.3.
WORKERS_GOAL = Goal(RATIO_AT_MOST, 0.8)
STATE_GOAL = Goal(RATIO_AT_MOST, 1.1)
POSTGRESQL_GOAL = Goal(RATIO_AT_MOST, 1.3)
#: --eostudy-timeout of the state variants: study completion on, so the state is used.
STUDY_TIMEOUT_SECONDS = 5


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
    #: Our durable default (fsync) against DCMTK dcmrecv, a row of its own.
    durable_goal: Goal | None = None
    #: Other receivers measured on the same data (peer -> divisor of the instances).
    peers: Mapping[str, int] = field(default_factory=dict)
    #: The receiver the main row compares with (DCMTK's dcmrecv unless said).
    reference: str = DCMTK
    #: At most this many rounds, whatever --rounds says (None: no cap).
    max_rounds: int | None = None
    #: The issue whose goal the main row checks ("" for earlier issues' goals): the
    #: goals table lists these rows.
    issue: str = ""
    #: Receiver CPU per stored instance, ours --no-fsync against DCMTK dcmrecv.
    cpu_goal: Goal | None = None
    #: Our durable overhead per instance against one fdatasync of a small fresh file.
    overhead_goal: Goal | None = None


def scenarios(sizes: Sizes) -> list[Scenario]:
    """All scenarios in report order, titled with the sizes they will use."""
    ct_kb = sizes.ct_side * sizes.ct_side * 2 // 1024
    scale_kb = sizes.scale_side * sizes.scale_side * 2 // 1024
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
            # DCMTK takes ~9 s here (40 ms per message), against a goal of 0.1: three
            # rounds show it as well as five.
            max_rounds=3,
            issue="21",  # the Nagle scenario must not regress
        ),
        Scenario(
            key=TINY,
            title=f"tiny, best: {sizes.tiny} small instances, TCP_NODELAY=1",
            dataset=TINY,
            nodelay=True,
            max_pdu=None,
            goal=Goal(RATIO_AT_MOST, 0.9),
            variants=ALL_VARIANTS,
            durable_goal=Goal(RATIO_AT_MOST, 1.3),
            peers=TRANSFER_PEERS,
            issue="21",
            cpu_goal=CPU_GOAL,
            overhead_goal=ONE_FLUSH,
        ),
        Scenario(
            key=CT,
            title=f"CT series: {sizes.ct} x {ct_kb} KB, TCP_NODELAY=1",
            dataset=CT,
            nodelay=True,
            max_pdu=None,
            goal=Goal(RATIO_AT_MOST, 0.9),
            variants=ALL_VARIANTS,
            durable_goal=Goal(RATIO_AT_MOST, 1.1),
            peers=CT_PEERS,
            issue="21",
            cpu_goal=CPU_GOAL,
            # 512 KB written back per flush: more than the 4 KiB flush, shown only.
            overhead_goal=INFO,
        ),
        Scenario(
            key=LARGE,
            title=f"one large instance: {large} multi-frame, TCP_NODELAY=1",
            dataset=LARGE,
            nodelay=True,
            max_pdu=None,
            goal=Goal(RATIO_AT_MOST, 0.9),
            variants=NO_FLOOR,
            rss_goal_mb=150.0,
            durable_goal=Goal(RATIO_AT_MOST, 1.0),
            peers=LARGE_PEERS,
            issue="21",  # time and peak RSS must not regress
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
            # --workers 2 joins once our --help lists it (run.py leaves it out before).
            variants=(*ALL_VARIANTS, OURS_WORKERS),
            peers=CONCURRENT_PEERS,
            reference=STORESCP_FORK,
            overhead_goal=INFO,
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
            issue="21",  # idle CPU must not regress
        ),
        Scenario(
            key="max-pdu",
            title="max-PDU: CT series with -pdu 131072 on both",
            dataset=CT,
            nodelay=True,
            max_pdu=131072,
            goal=Goal(RATIO_AT_MOST, 0.9),
            variants=ALL_VARIANTS,
            peers={STORESCP: 1},
        ),
        Scenario(
            key=FLUSHES,
            title=(
                f"flushes: ours default, 1 sender x {sizes.ct} CT and"
                f" {sizes.flush_senders} senders x {scale_each(sizes, sizes.flush_senders)}"
            ),
            dataset=FLUSHES,
            nodelay=True,
            max_pdu=None,
            goal=Goal(OURS_AT_MOST, 1.0),
            variants=(OURS_DURABLE,),
        ),
        Scenario(
            key=SCALE,
            title=(
                f"scale: {sizes.scale_instances} x {scale_kb} KB shared by"
                f" {', '.join(map(str, sizes.scale_senders))} senders"
            ),
            dataset=SCALE,
            nodelay=True,
            max_pdu=None,
            # Throughput with the most senders as a fraction of the best point.
            goal=Goal(OURS_AT_LEAST, 0.8),
            # The workers curve (issue 20) joins once our --help lists --workers.
            variants=(OURS, STORESCP_FORK, OURS_WORKERS, OURS_WORKERS_4),
            reference=STORESCP_FORK,
        ),
        Scenario(
            key=HELD,
            title=f"held: {sizes.held_associations} associations held {sizes.held_seconds:g} s",
            dataset=HELD,
            nodelay=True,
            max_pdu=None,
            goal=Goal(OURS_AT_MOST, 1.0),
            variants=(OURS,),
            issue="21",  # 1000 held associations must not regress
        ),
        Scenario(
            key=HTTP,
            title=f"HTTP endpoint: {sizes.tiny} small instances, --http-port 0 on / off",
            dataset=TINY,
            nodelay=True,
            max_pdu=None,
            goal=INFO,
            variants=(OURS, OURS_HTTP),
            reference=OURS,
        ),
        Scenario(
            key=STATE,
            title=(
                f"study state: {sizes.tiny} small instances, --eostudy-timeout"
                f" {STUDY_TIMEOUT_SECONDS}, state on / off"
            ),
            dataset=TINY,
            nodelay=True,
            max_pdu=None,
            goal=STATE_GOAL,
            variants=(OURS, OURS_STATE, OURS_POSTGRESQL),
            reference=OURS,
            issue="20",
        ),
        Scenario(
            key=STARTUP,
            title=(
                "start-up: --version, one inetd connection, the health probe"
                f" ({sizes.startup_runs} runs)"
            ),
            dataset=STARTUP,
            nodelay=True,
            max_pdu=None,
            goal=VERSION_GOAL,
            variants=(OURS, DCMTK),
            issue="21",
        ),
    ]


def scale_each(sizes: Sizes, senders: int) -> int:
    """Instances each of ``senders`` gets of the scale series (the last may get fewer)."""
    return -(-sizes.scale_instances // senders)


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
        SCALE: sizes.scale_instances,
        FLUSHES: sizes.ct,
        HELD: 0,
        STARTUP: 1,
    }[scenario.dataset]


def peer_instances(total: int, divisor: int) -> int:
    """How many of ``total`` instances a peer with ``divisor`` is sent (at least 1)."""
    return max(1, total // divisor)
