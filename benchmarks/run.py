"""Benchmark our receiver against DCMTK and the other peers: ``python3 -m benchmarks.run``.

Each round starts every receiver variant fresh on a free port, sends the scenario's
data with DCMTK's storescu, reads the receiver's peak RSS, stops it with SIGTERM,
checks that every instance arrived, and deletes the output.  The order of the
variants rotates round by round; the report shows medians.  The flush counts (under
strace), the scale curve and the held associations are measured after the transfer
scenarios, each on its own.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import (
    commands,
    concurrency,
    cputime,
    disk,
    flushes,
    goals,
    idle,
    issue_rows,
    peers,
    plot,
    postgres,
    report,
    startup,
)
from benchmarks.commands import (
    DEFAULT_CONFIG,
    NEEDS_OPTION,
    OURS_DEFAULT,
    REPO,
    Tools,
    available,
    ours_environment,
    receiver_command,
    sender_command,
    stores_nothing,
)
from benchmarks.datasets import Dataset, count_files, prepare, shares, subset
from benchmarks.procs import (
    BenchmarkError,
    Command,
    TreeSampler,
    find_dcmtk_tool,
    run_senders,
)
from benchmarks.scenarios import (
    FLUSHES,
    FULL,
    GIB,
    HELD,
    HTTP,
    IDLE,
    LARGE,
    QUICK,
    SCALE,
    SLOW_PEERS,
    STARTUP,
    STATE,
    Scenario,
    Sizes,
    instances_sent,
    scenario_keys,
    scenarios,
    select,
)
from benchmarks.stats import (
    COUNT,
    DCMTK,
    INFO,
    LABELS,
    OURS,
    OURS_AT_LEAST,
    OURS_AT_MOST,
    OURS_DURABLE,
    OURS_HTTP,
    OURS_POSTGRESQL,
    OURS_STATE,
    OURS_WORKERS,
    STORESCP_FORK,
    DetailRow,
    FlushRow,
    Goal,
    HeldResult,
    PeerRow,
    Row,
    Samples,
    ScalePoint,
    StartupResults,
    median_or_none,
    round_order,
    throughput_kept,
)

__all__ = [
    "OURS_DEFAULT",
    "REPO",
    "Dataset",
    "Tools",
    "prepare",
    "receiver_command",
    "sender_command",
]

RESULTS = REPO / "benchmarks" / "results"
#: A sampler in the timed run only where VmHWM cannot say it: a forking server's
#: children are gone (with their high-water marks) when the run ends.
SAMPLED_VARIANTS = (STORESCP_FORK,)
#: Not available: the report's text for a scenario that could not run at all.
OPTION_MISSING = "n/a (option not available)"


@dataclass
class Results:
    seconds: dict[str, Samples] = field(default_factory=dict)
    ms_per_instance: dict[str, Samples] = field(default_factory=dict)
    #: Instances each variant was sent per run, per scenario.
    instances: dict[str, dict[str, int]] = field(default_factory=dict)
    rss_mb: dict[str, Samples] = field(default_factory=dict)
    cpu_percent: dict[str, Samples] = field(default_factory=dict)
    flushes: list[FlushRow] = field(default_factory=list)
    scale: list[ScalePoint] = field(default_factory=list)
    held: list[tuple[str, HeldResult]] = field(default_factory=list)
    #: Receiver CPU (process tree, utime + stime) in ms per instance sent.
    cpu_ms: dict[str, Samples] = field(default_factory=dict)
    #: This disk's cost of one fdatasync of a fresh small file, measured before each
    #: round of a scenario with a durable-overhead row: scenario -> one median per round.
    flush_seconds: dict[str, list[float]] = field(default_factory=dict)
    startup: StartupResults = field(default_factory=StartupResults)
    #: Scenario keys that could not run, and why (shown in place of our value).
    missing: dict[str, str] = field(default_factory=dict)
    #: Variants that could not run, and why (e.g. no --state option, no PostgreSQL).
    variants_missing: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def measure_transfer(
    tools: Tools,
    scenario: Scenario,
    dataset: Dataset,
    variant: str,
    out: Path,
    results: Results,
) -> None:
    out.mkdir(parents=True)
    with commands.start(tools, variant, scenario, out) as receiver:
        port = receiver.port
        senders = [sender_command(tools, scenario, d, port) for d in dataset.directories]
        # Nothing dirty left for this run's flushes to write back (issue 21: a durable
        # run after a --no-fsync one was inflated by the other's pages otherwise).
        os.sync()
        cpu_before = cputime.tree_cpu_seconds(receiver.pid)
        if variant in SAMPLED_VARIANTS:
            with TreeSampler(receiver.pid) as sampler:
                sent = run_senders(senders)
            peak = sampler.peak.rss_kib if sampler.peak else None
        else:
            sent = run_senders(senders)
            peak = receiver.peak_rss_kib()
        cpu = cputime.tree_cpu_seconds(receiver.pid) - cpu_before
    if any(sent.returncodes):
        raise BenchmarkError(
            f"{scenario.key}/{variant}: sender exit codes {sent.returncodes}:"
            f" {sent.output[-2000:]}\nreceiver log: {receiver.log_tail()}"
        )
    expected = 0 if stores_nothing(variant) else dataset.instances
    received = count_files(out)
    if received != expected:
        raise BenchmarkError(
            f"{scenario.key}/{variant}: {received} files stored, expected {expected}:"
            f" {sent.output[-2000:]}\nreceiver log: {receiver.log_tail()}"
        )
    results.seconds.setdefault(scenario.key, Samples()).add(variant, sent.elapsed)
    per_instance = 1000.0 * sent.elapsed / dataset.instances
    results.ms_per_instance.setdefault(scenario.key, Samples()).add(variant, per_instance)
    results.instances.setdefault(scenario.key, {})[variant] = dataset.instances
    cpu_ms = 1000.0 * cpu / dataset.instances
    results.cpu_ms.setdefault(scenario.key, Samples()).add(variant, cpu_ms)
    if peak is not None:
        results.rss_mb.setdefault(scenario.key, Samples()).add(variant, peak / 1024)
    print(
        f"    {variant:15s} {sent.elapsed:8.3f} s  {per_instance:7.3f} ms/instance"
        f"  CPU {cpu_ms:6.3f} ms/instance  peak RSS {(peak or 0) / 1024:7.1f} MB",
        flush=True,
    )


def measure_idle(
    tools: Tools, scenario: Scenario, sizes: Sizes, variant: str, out: Path, results: Results
) -> None:
    out.mkdir(parents=True)
    with commands.start(tools, variant, scenario, out) as receiver:
        sockets, accepted = idle.open_associations(receiver.port, sizes.idle_associations)
        try:
            cpu_before, started = receiver.cpu_seconds(), time.monotonic()
            time.sleep(sizes.idle_seconds)  # the idle window itself
            cpu_after, ended = receiver.cpu_seconds(), time.monotonic()
        finally:
            idle.close_associations(sockets)
    outcome = idle.IdleOutcome(
        sizes.idle_associations, accepted, cpu_after - cpu_before, ended - started
    )
    results.cpu_percent.setdefault(scenario.key, Samples()).add(variant, outcome.cpu_percent)
    results.note(f"idle/{variant}: {outcome.accepted} of {outcome.opened} associations accepted")
    print(
        f"    {variant:13s} CPU {outcome.cpu_percent:6.2f} % of a core,"
        f" {accepted}/{sizes.idle_associations} accepted",
        flush=True,
    )


def round_variants(
    tools: Tools, scenario: Scenario, sizes: Sizes, round_index: int, floors: bool, with_peers: bool
) -> list[str]:
    """The variants of one round: the scenario's own, then the peers that take part."""
    variants = [
        v for v in scenario.variants if (floors or not stores_nothing(v)) and available(tools, v)
    ]
    if with_peers:
        variants += [
            peer
            for peer in scenario.peers
            if available(tools, peer)
            and (peer not in SLOW_PEERS or round_index < sizes.peer_rounds)
        ]
    return round_order(variants, round_index)


def run_scenario(
    tools: Tools,
    scenario: Scenario,
    sizes: Sizes,
    rounds: int,
    work: Path,
    cache: dict[str, Dataset],
    results: Results,
    floors: bool,
    with_peers: bool = True,
) -> None:
    print(f"{scenario.title}", flush=True)
    if scenario.dataset == FLUSHES:
        run_flushes(tools, scenario, sizes, work, cache, results)
        return
    if scenario.dataset == SCALE:
        run_scale(tools, scenario, sizes, rounds, work, cache, results)
        return
    if scenario.dataset == HELD:
        run_held(tools, scenario, sizes, work, results)
        return
    if scenario.dataset == STARTUP:
        one = prepare(scenario, sizes, work, cache)
        results.startup = startup.measure(tools, scenario, one, sizes.startup_runs, work)
        return
    if scenario.key == STATE:
        run_state(tools, scenario, sizes, rounds, work, cache, results)
        return
    if scenario.key == HTTP and not available(tools, OURS_HTTP):
        results.missing[scenario.key] = OPTION_MISSING
        results.note(f"{scenario.key}: our dcmrecv --help has no --http-port yet; not measured")
        print(f"  skipped: {OPTION_MISSING}", flush=True)
        return
    for peer, reason in tools_missing(tools).items():
        if with_peers and peer in scenario.peers:
            results.note(f"{LABELS[peer]} skipped: {reason}")
    for variant in scenario.variants:
        if not available(tools, variant) and variant in NEEDS_OPTION and variant != OURS_HTTP:
            results.variants_missing[variant] = issue_rows.NOT_AVAILABLE
    run_rounds(tools, scenario, sizes, rounds, work, cache, results, floors, with_peers)


def run_rounds(
    tools: Tools,
    scenario: Scenario,
    sizes: Sizes,
    rounds: int,
    work: Path,
    cache: dict[str, Dataset],
    results: Results,
    floors: bool,
    with_peers: bool,
) -> None:
    """The rounds of a transfer (or idle) scenario: every variant, order rotating."""
    dataset = prepare(scenario, sizes, work, cache)
    if scenario.max_rounds is not None:
        rounds = min(rounds, scenario.max_rounds)
    for round_index in range(rounds):
        print(f"  round {round_index + 1}/{rounds}", flush=True)
        if scenario.overhead_goal is not None:
            measure_flush_cost(scenario, sizes, work, results)
        for variant in round_variants(tools, scenario, sizes, round_index, floors, with_peers):
            divisor = scenario.peers.get(variant, 1)
            sent = subset(dataset, divisor, work / f"{scenario.dataset}-1of{divisor}")
            out = work / "out" / f"{scenario.key}-{variant}-{round_index}"
            try:
                if scenario.dataset == IDLE:
                    measure_idle(tools, scenario, sizes, variant, out, results)
                else:
                    measure_transfer(tools, scenario, sent, variant, out, results)
            finally:
                _clean(out)


def measure_flush_cost(scenario: Scenario, sizes: Sizes, work: Path, results: Results) -> None:
    """This disk's cost of one flush now, where the receivers write (disk.py)."""
    seconds = disk.fdatasync_seconds(work / "out" / "flush-probe", sizes.flush_probes)
    results.flush_seconds.setdefault(scenario.key, []).append(seconds)
    size = f"{disk.FLUSH_BYTES // 1024} KiB"
    print(f"    fdatasync of a fresh {size} file: {1000 * seconds:.3f} ms (median)", flush=True)


def run_state(
    tools: Tools,
    scenario: Scenario,
    sizes: Sizes,
    rounds: int,
    work: Path,
    cache: dict[str, Dataset],
    results: Results,
) -> None:
    """Issue 20: study state on (embedded, PostgreSQL) against off, once --state exists."""
    if not available(tools, OURS_STATE):
        for variant in (OURS_STATE, OURS_POSTGRESQL):
            results.variants_missing[variant] = issue_rows.NOT_AVAILABLE
        results.note(f"{scenario.key}: our dcmrecv --help has no --state yet; not measured")
        print(f"  skipped: {issue_rows.NOT_AVAILABLE}", flush=True)
        return
    bin_dir = postgres.find_bin_dir()
    reason = "stand-in run" if tools.stand_in else postgres.missing_reason(bin_dir)
    if reason is not None or bin_dir is None:
        results.variants_missing[OURS_POSTGRESQL] = f"skipped ({reason})"
        results.note(f"{scenario.key}: PostgreSQL row skipped: {reason}")
        run_rounds(tools, scenario, sizes, rounds, work, cache, results, False, False)
        return
    with postgres.Cluster(bin_dir) as cluster:
        print(f"  PostgreSQL {bin_dir.parent.name} on {cluster.url}", flush=True)
        with_cluster = dataclasses.replace(tools, state_url=cluster.url)
        run_rounds(with_cluster, scenario, sizes, rounds, work, cache, results, False, False)


def _clean(out: Path) -> None:
    disk.set_aside(out, out.parent.parent / "set-aside")
    config, index = peers.orthanc_files(out)
    config.unlink(missing_ok=True)
    shutil.rmtree(index, ignore_errors=True)
    # Write back what the no-fsync receivers left dirty, outside the timing, so it
    # does not land on the next measurement.
    os.sync()


def tools_missing(tools: Tools) -> dict[str, str]:
    return dict(peers.PeerTools(tools.storescp, tools.pynetdicom, tools.orthanc).missing())


def run_flushes(
    tools: Tools,
    scenario: Scenario,
    sizes: Sizes,
    work: Path,
    cache: dict[str, Dataset],
    results: Results,
) -> None:
    if tools.strace is None:
        results.missing[scenario.key] = "n/a (strace not installed)"
        results.note("flushes: not counted, strace not installed (Debian package strace)")
        print("  skipped: strace not installed", flush=True)
        return
    if tools.stand_in:
        results.note("flushes: stand-in run, DCMTK's dcmrecv makes no flush calls")
    single = prepare(scenario, sizes, work, cache)
    series = prepare(_scale_scenario(sizes), sizes, work, cache)
    group = shares(series, sizes.flush_senders, work / f"scale-{sizes.flush_senders}")
    cases = [
        (f"1 sender, {single.instances} CT", single, flushes.SINGLE_SENDER_LIMIT),
        (
            f"{sizes.flush_senders} senders, {group.instances} x"
            f" {sizes.scale_side * sizes.scale_side * 2 // 1024} KB",
            group,
            flushes.GROUP_COMMIT_LIMIT,
        ),
    ]
    for index, (case, dataset, limit) in enumerate(cases):
        out = work / "out" / f"flushes-{index}"
        try:
            row = flushes.count_flushes(tools, tools.strace, scenario, case, dataset, out, limit)
        finally:
            _clean(out)
        results.flushes.append(row)
        print(f"    {case}: {row.calls} -> {row.per_instance or 0:.2f} per instance", flush=True)


def _scale_scenario(sizes: Sizes) -> Scenario:
    (scale,) = select(scenarios(sizes), [SCALE])
    return scale


def run_scale(
    tools: Tools,
    scenario: Scenario,
    sizes: Sizes,
    rounds: int,
    work: Path,
    cache: dict[str, Dataset],
    results: Results,
) -> None:
    series = prepare(scenario, sizes, work, cache)
    variants = [v for v in scenario.variants if available(tools, v)]
    for missing in (v for v in scenario.variants if v not in variants):
        if missing in NEEDS_OPTION:
            results.variants_missing[missing] = issue_rows.NOT_AVAILABLE
            results.note(f"scale: {LABELS[missing]} skipped, {issue_rows.NOT_AVAILABLE}")
        else:
            results.note(f"scale: {LABELS[missing]} skipped, not installed")
    # Two rounds at most: the curve has many points, and a collapse is not subtle.
    scale_rounds = min(rounds, 2)
    results.scale = concurrency.scale_points(
        tools, scenario, series, sizes.scale_senders, variants, scale_rounds, work
    )


def run_held(tools: Tools, scenario: Scenario, sizes: Sizes, work: Path, results: Results) -> None:
    # Every association is a socket on both sides: make room for them.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * sizes.held_associations + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    out = work / "out" / "held"
    try:
        held = concurrency.measure_held(
            tools, scenario, OURS, sizes.held_associations, sizes.held_seconds, out
        )
    finally:
        _clean(out)
    results.held.append((OURS, held))
    print(
        f"    {OURS}: {held.accepted}/{held.opened} accepted, RSS {held.rss_mb or 0:.1f} MB,"
        f" {held.threads} threads, CPU {held.cpu_percent:.2f} %",
        flush=True,
    )


def build_rows(selected: Sequence[Scenario], sizes: Sizes, results: Results) -> list[Row]:
    rows: list[Row] = []
    for scenario in selected:
        missing = results.missing.get(scenario.key)
        if scenario.dataset == IDLE:
            samples = results.cpu_percent.get(scenario.key, Samples())
            rows.append(
                Row(
                    scenario.title,
                    "%",
                    samples.median(OURS),
                    samples.median(DCMTK),
                    scenario.goal,
                    issue=scenario.issue,
                )
            )
        elif scenario.dataset == FLUSHES:
            rows += _flush_rows(scenario, results.flushes, missing)
        elif scenario.dataset == SCALE:
            rows.append(
                Row(
                    f"scale: inst/s at {max(p.senders for p in results.scale or [_NO_POINT])}"
                    " senders / best point",
                    "",
                    throughput_kept(results.scale, OURS),
                    throughput_kept(results.scale, STORESCP_FORK),
                    scenario.goal,
                    against=LABELS[STORESCP_FORK],
                    missing=missing,
                )
            )
            workers = OURS_WORKERS not in results.variants_missing
            rows += issue_rows.workers_scale_rows(scenario, results.scale, workers)
        elif scenario.dataset == HELD:
            rows += _held_rows(scenario, results.held)
        elif scenario.dataset == STARTUP:
            rows += issue_rows.startup_rows(results.startup)
        elif scenario.key == STATE:
            seconds = results.seconds.get(scenario.key, Samples())
            rows += issue_rows.state_rows(seconds, results.variants_missing)
        else:
            rows += _transfer_rows(scenario, results, missing)
            rows += _issue_transfer_rows(scenario, sizes, results)
    return rows


def _issue_transfer_rows(scenario: Scenario, sizes: Sizes, results: Results) -> list[Row]:
    """Receiver CPU, the durable overhead in flushes and --workers 2 (issues 20, 21)."""
    seconds = results.seconds.get(scenario.key, Samples())
    flush = median_or_none(results.flush_seconds.get(scenario.key, []))
    added = issue_rows.cpu_rows(scenario, results.cpu_ms.get(scenario.key, Samples()))
    added += issue_rows.overhead_row(scenario, seconds, instances_sent(scenario, sizes), flush)
    if OURS_WORKERS in scenario.variants:
        workers = OURS_WORKERS not in results.variants_missing
        added.append(issue_rows.workers_row(scenario, seconds, workers))
    return added


_NO_POINT = ScalePoint("none", 0, 0, 0.0, None, None, None, None)


def _transfer_rows(scenario: Scenario, results: Results, missing: str | None) -> list[Row]:
    seconds = results.seconds.get(scenario.key, Samples())
    rows = [
        Row(
            scenario.title,
            "s",
            seconds.median(OURS_HTTP if scenario.key == HTTP else OURS),
            seconds.median(scenario.reference),
            scenario.goal,
            against=LABELS[scenario.reference],
            missing=missing,
            issue=scenario.issue,
        )
    ]
    if scenario.durable_goal is not None:
        rows.append(
            Row(
                f"{scenario.title.split(':')[0]}, durable default (fsync)",
                "s",
                seconds.median(OURS_DURABLE),
                seconds.median(DCMTK),
                scenario.durable_goal,
            )
        )
    if scenario.rss_goal_mb is not None:
        rss = results.rss_mb.get(scenario.key, Samples())
        rows.append(
            Row(
                f"{scenario.title.split(':')[0]}, peak RSS",
                "MB",
                rss.median(OURS),
                rss.median(DCMTK),
                Goal(OURS_AT_MOST, scenario.rss_goal_mb),
                issue=scenario.issue,
            )
        )
    return rows


def _flush_rows(scenario: Scenario, rows: Sequence[FlushRow], missing: str | None) -> list[Row]:
    if missing:
        return [Row(scenario.title, "", None, None, scenario.goal, against="-", missing=missing)]
    return [
        Row(
            f"flushes per instance, ours default: {row.case}",
            "",
            row.per_instance,
            None,
            Goal(OURS_AT_MOST, row.limit),
            against="DCMTK (never flushes)",
            # Issue 21 restates the group-commit goal (8 senders).
            issue="21" if row.limit == flushes.GROUP_COMMIT_LIMIT else "",
        )
        for row in rows
    ]


def _held_rows(scenario: Scenario, held: Sequence[tuple[str, HeldResult]]) -> list[Row]:
    rows = []
    for _, result in held:
        name = f"held: {result.opened} associations opened"
        rows += [
            Row(
                f"{name}, accepted and held",
                COUNT,
                float(result.accepted),
                None,
                Goal(OURS_AT_LEAST, float(result.opened)),
                "-",
                issue=scenario.issue,
            ),
            Row(
                f"{name}, CPU % of one core",
                "%",
                result.cpu_percent,
                None,
                scenario.goal,
                "-",
                issue=scenario.issue,
            ),
            Row(f"{name}, RSS while held", "MB", result.rss_mb, None, INFO, "-"),
            Row(
                f"{name}, threads",
                COUNT,
                None if result.threads is None else float(result.threads),
                None,
                INFO,
                "-",
            ),
        ]
    return rows


def build_details(selected: Sequence[Scenario], sizes: Sizes, results: Results) -> list[DetailRow]:
    details = []
    for scenario in selected:
        if scenario.key not in results.seconds or scenario.key in (HTTP, STATE):
            continue
        seconds = results.seconds[scenario.key]
        rss = results.rss_mb.get(scenario.key, Samples())
        variants = seconds.values.keys()
        details.append(
            DetailRow(
                scenario.key,
                instances_sent(scenario, sizes),
                {v: seconds.median(v) for v in variants},
                {v: rss.median(v) for v in variants},
            )
        )
    return details


def build_peer_rows(selected: Sequence[Scenario], results: Results) -> list[PeerRow]:
    rows = []
    for scenario in selected:
        if not scenario.peers or scenario.key not in results.ms_per_instance:
            continue
        samples = results.ms_per_instance[scenario.key]
        variants = [v for v in samples.values if v in (OURS, OURS_DURABLE, DCMTK)] + [
            v for v in scenario.peers if v in samples.values
        ]
        rows.append(
            PeerRow(
                scenario.key,
                {v: samples.median(v) for v in variants},
                dict(results.instances.get(scenario.key, {})),
            )
        )
    return rows


def build_cpu_rows(selected: Sequence[Scenario], results: Results) -> list[PeerRow]:
    """Receiver CPU per instance, every variant measured, per transfer scenario."""
    rows = []
    for scenario in selected:
        samples = results.cpu_ms.get(scenario.key)
        if samples is None:
            continue
        rows.append(
            PeerRow(
                scenario.key,
                {v: samples.median(v) for v in samples.values},
                dict(results.instances.get(scenario.key, {})),
            )
        )
    return rows


def listed_options(ours: Sequence[str], env: dict[str, str], options: Sequence[str]) -> set[str]:
    """Which of ``options`` our receiver's ``--help`` lists (the ones still to come:
    ``--http-port`` of issue 15, ``--workers`` and ``--state`` of issue 20)."""
    try:
        result = subprocess.run(
            [*ours, "--help"], capture_output=True, text=True, timeout=30, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return set()
    # Whole words only: "--state-dir" or "--workers-limit" would not be --state or --workers.
    words = set(re.split(r"[\s,=\[\]]+", result.stdout + result.stderr))
    return {option for option in options if option in words}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m benchmarks.run",
        description="Benchmark our dcmrecv against DCMTK and other receivers"
        " (see benchmarks/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="1 round, small sizes: a check")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 5; --quick 1)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help=f"run only these (repeatable or comma-separated): {', '.join(scenario_keys())}",
    )
    parser.add_argument("--no-large", action="store_true", help="skip the large-instance scenario")
    parser.add_argument(
        "--large-mib", type=int, help="size of the large instance in MiB (default 1024; --quick 64)"
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the --ignore sender floors")
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the peers (DCMTK storescp, pynetdicom, Orthanc) in the transfer scenarios",
    )
    parser.add_argument(
        "--workdir", type=Path, help="where to put data and output (default: TMPDIR)"
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="storescp.cfg for -xf")
    parser.add_argument(
        "--ours",
        default=None,
        help="command that runs our receiver (default: this checkout's dcmrecv via python)",
    )
    parser.add_argument(
        "--stand-in-dcmtk",
        action="store_true",
        help="use DCMTK's dcmrecv as 'ours' too (to check the harness itself)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where latest.md/.png go")
    parser.add_argument("--no-write", action="store_true", help="print only, write no results")
    return parser.parse_args(argv)


def find_tools(args: argparse.Namespace) -> Tools:
    dcmrecv = find_dcmtk_tool("dcmrecv")
    ours = (
        (dcmrecv,)
        if args.stand_in_dcmtk
        else tuple(shlex.split(args.ours))
        if args.ours
        else OURS_DEFAULT
    )
    try:
        storescp: str | None = find_dcmtk_tool("storescp")
    except BenchmarkError:
        storescp = None
    probe = Tools(dcmrecv, "", "", ours, args.stand_in_dcmtk, args.config)
    env = Command((), ours_environment(probe)).environment()
    listed = (
        set()
        if args.stand_in_dcmtk
        else listed_options(ours, env, sorted(set(NEEDS_OPTION.values())))
    )
    return Tools(
        dcmrecv=dcmrecv,
        storescu=find_dcmtk_tool("storescu"),
        echoscu=find_dcmtk_tool("echoscu"),
        ours=ours,
        stand_in=args.stand_in_dcmtk,
        config=args.config,
        storescp=storescp,
        pynetdicom=peers.pynetdicom_storescp(),
        orthanc=peers.find_orthanc(),
        strace=shutil.which("strace"),
        http_option="--http-port" in listed,
        options=frozenset(listed),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.large_mib:
        sizes = Sizes(**{**sizes.__dict__, "large_bytes": args.large_mib * 1024 * 1024})
    rounds = args.rounds or (1 if args.quick else 5)
    only = [key for item in args.only for key in item.split(",") if key]
    selected = select(scenarios(sizes), only)

    tools = find_tools(args)
    notes: list[str] = []
    if tools.stand_in:
        notes.append("STAND-IN RUN: 'ours' is DCMTK's dcmrecv; this only checks the harness.")

    base = args.workdir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dcmrecv-bench-", dir=base))
    if any(s.key == LARGE for s in selected):
        free = shutil.disk_usage(work).free
        needed = 2 * sizes.large_bytes + GIB  # the source, one received copy, and slack
        if args.no_large or free < needed:
            reason = "--no-large" if args.no_large else f"only {free / GIB:.1f} GiB free in {work}"
            notes.append(f"large-instance scenario skipped ({reason})")
            selected = [s for s in selected if s.key != LARGE]

    results = Results(notes=notes)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        cache: dict[str, Dataset] = {}
        for scenario in selected:
            run_scenario(
                tools,
                scenario,
                sizes,
                rounds,
                work,
                cache,
                results,
                not args.no_floor,
                not args.no_peers,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started

    rows = build_rows(selected, sizes, results)
    # The goals table compares with the report this run replaces (if any).
    previous = args.results / "latest.md"
    text = report.document(
        rows=rows,
        details=build_details(selected, sizes, results),
        peers=build_peer_rows(selected, results),
        cpu=build_cpu_rows(selected, results),
        flushes=results.flushes,
        scale=results.scale,
        held=results.held,
        startup=results.startup if results.startup.wall else None,
        previous=goals.previous_figures(previous.read_text()) if previous.is_file() else None,
        machine=report.machine_info(tools.dcmrecv, REPO),
        settings=settings(args, tools, rounds, sizes, elapsed, load_before, results),
        notes=results.notes,
    )
    print()
    print(text)
    if not args.no_write:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "latest.md").write_text(text)
        chart = args.results / "latest.png"
        if plot.plot_all(rows, build_peer_rows(selected, results), results.scale, chart):
            print(f"wrote {args.results / 'latest.md'} and latest.png")
        else:
            print(f"wrote {args.results / 'latest.md'} (no plot: pip install matplotlib)")
    return 0


def settings(
    args: argparse.Namespace,
    tools: Tools,
    rounds: int,
    sizes: Sizes,
    elapsed: float,
    load_before: float,
    results: Results,
) -> list[tuple[str, str]]:
    flushes_ms = [
        f"{key} {', '.join(f'{1000 * seconds:.3f}' for seconds in values)}"
        for key, values in results.flush_seconds.items()
    ]
    options = ", ".join(sorted(tools.options)) or "none of them"
    return [
        ("rounds", f"{rounds} (median){' --quick' if args.quick else ''}"),
        (
            "rounds of the slow peers (pynetdicom, Orthanc)",
            f"{min(rounds, sizes.peer_rounds)}; scale curve: {min(rounds, 2)};"
            " tiny-defaults: at most 3",
        ),
        ("sender", f"{tools.storescu} +sd (one association per sender)"),
        (
            "ours",
            shlex.join(tools.ours)
            if tools.ours != OURS_DEFAULT
            else "python -c 'dcmrecv.commands.dcmrecv.main()' from this checkout",
        ),
        ("config", f"-xf {tools.config} Default"),
        ("DCMTK storescp", tools.storescp or "not found"),
        ("pynetdicom storescp", shlex.join(tools.pynetdicom) if tools.pynetdicom else "not found"),
        ("Orthanc", report.orthanc_version(tools.orthanc) if tools.orthanc else "not installed"),
        ("strace", tools.strace or "not installed"),
        (
            f"this disk: fdatasync of a fresh {disk.FLUSH_BYTES // 1024} KiB file, ms"
            f" (median of {sizes.flush_probes}, before each round)",
            "; ".join(flushes_ms) or "not measured",
        ),
        (
            f"options of ours still to come ({', '.join(sorted(set(NEEDS_OPTION.values())))})",
            f"--help lists {options}",
        ),
        ("benchmark wall time", f"{elapsed:.0f} s"),
        # Other work on a shared machine shows here; compare runs with similar load.
        ("load average (1 min) before / after", f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"),
    ]


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        sys.exit(1)
