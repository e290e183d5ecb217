"""Benchmark our receiver against DCMTK's dcmrecv: ``python3 -m benchmarks.run``.

Each round starts every receiver variant fresh on a free port, sends the scenario's
data with DCMTK's storescu, reads the receiver's peak RSS, stops it with SIGTERM,
checks that every instance arrived, and deletes the output.  The order of the
variants rotates round by round; the report shows medians.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import data, idle, plot, report
from benchmarks.procs import (
    BenchmarkError,
    Command,
    Receiver,
    find_dcmtk_tool,
    free_port,
    run_senders,
)
from benchmarks.scenarios import (
    CONCURRENT,
    CT,
    FULL,
    GIB,
    IDLE,
    LARGE,
    QUICK,
    TINY,
    TINY_DEFAULTS,
    Scenario,
    Sizes,
    instances_sent,
    scenario_keys,
    scenarios,
    select,
)
from benchmarks.stats import (
    DCMTK,
    DCMTK_IGNORE,
    OURS,
    OURS_AT_MOST,
    OURS_DURABLE,
    OURS_IGNORE,
    DetailRow,
    Goal,
    Row,
    Samples,
    round_order,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
#: Runs our CLI from this checkout without installing it (an installed ``dcmrecv``
#: console script could shadow DCMTK's on PATH, or be another version).
OURS_DEFAULT = (
    sys.executable,
    "-c",
    "import sys; from dcmrecv.commands.dcmrecv import main; "
    "sys.argv[0] = 'dcmrecv'; sys.exit(main())",
)
DEFAULT_CONFIG = Path("/etc/dcmtk/storescp.cfg")
#: Our options that DCMTK's dcmrecv does not have.
OURS_ONLY_OPTIONS = ("--no-fsync",)


@dataclass(frozen=True)
class Tools:
    dcmrecv: str
    storescu: str
    echoscu: str
    ours: tuple[str, ...]
    #: True: "ours" is DCMTK's dcmrecv too (developing the harness before ours works).
    stand_in: bool
    config: Path


@dataclass
class Dataset:
    """Input of one scenario: one directory per sender, and the instance count."""

    directories: list[Path]
    instances: int


@dataclass
class Results:
    seconds: dict[str, Samples] = field(default_factory=dict)
    rss_mb: dict[str, Samples] = field(default_factory=dict)
    cpu_percent: dict[str, Samples] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def receiver_command(
    tools: Tools, variant: str, scenario: Scenario, out: Path, port: int
) -> Command:
    """argv for one receiver variant: DCMTK's options, plus ours where they apply."""
    ours = variant in (OURS, OURS_DURABLE, OURS_IGNORE)
    argv: list[str] = list(tools.ours) if ours else [tools.dcmrecv]
    argv += ["-xf", str(tools.config), "Default", "-od", str(out)]
    if scenario.max_pdu is not None:
        argv += ["-pdu", str(scenario.max_pdu)]
    if variant in (OURS_IGNORE, DCMTK_IGNORE):
        argv.append("--ignore")
    if variant in (OURS, OURS_IGNORE) and not tools.stand_in:
        # Like with like: DCMTK never fsyncs.
        argv.append("--no-fsync")
    argv.append(str(port))
    env: dict[str, str | None] = {"TCP_NODELAY": "1" if scenario.nodelay else None}
    if ours and not tools.stand_in and tools.ours == OURS_DEFAULT:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
        )
    return Command(tuple(argv), env)


def sender_command(tools: Tools, scenario: Scenario, directory: Path, port: int) -> Command:
    # storescu +sd sends a whole directory in one association; it was a little faster
    # than dcmsend on this machine for both tiny and CT instances.
    argv = [tools.storescu, "-aet", "BENCHSCU", "-aec", "DCMRECV"]
    if scenario.max_pdu is not None:
        argv += ["-pdu", str(scenario.max_pdu)]
    argv += ["+sd", "127.0.0.1", str(port), str(directory)]
    return Command(tuple(argv), {"TCP_NODELAY": "1" if scenario.nodelay else None})


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def prepare(scenario: Scenario, sizes: Sizes, work: Path, cache: dict[str, Dataset]) -> Dataset:
    """Generate (once) the data set a scenario sends."""
    if scenario.dataset in cache:
        return cache[scenario.dataset]
    started = time.perf_counter()
    name = scenario.dataset
    if name == TINY_DEFAULTS:
        spec = data.SeriesSpec(sizes.tiny_defaults, sizes.tiny_side, sizes.tiny_side)
        dataset = Dataset([work / name], len(data.write_series(work / name, spec, seed=1)))
    elif name == TINY:
        spec = data.SeriesSpec(sizes.tiny, sizes.tiny_side, sizes.tiny_side)
        dataset = Dataset([work / name], len(data.write_series(work / name, spec, seed=2)))
    elif name in (CT, CONCURRENT):
        ct = _ct_paths(sizes, work, cache)
        if name == CT:
            dataset = Dataset([work / CT], sizes.ct)
        else:
            total = sizes.concurrent_senders * sizes.concurrent_each
            parts = data.split_into(ct[:total], sizes.concurrent_senders, work / CONCURRENT)
            dataset = Dataset(parts, total)
    elif name == LARGE:
        path = data.write_large_multiframe(work / LARGE / "large.dcm", sizes.large_bytes)
        dataset = Dataset([path.parent], 1)
    else:
        dataset = Dataset([], 0)
    cache[name] = dataset
    # Write the new files back now, so their write-back does not slow the first round.
    os.sync()
    print(f"  data {name}: {time.perf_counter() - started:.1f} s to generate", flush=True)
    return dataset


def _ct_paths(sizes: Sizes, work: Path, cache: dict[str, Dataset]) -> list[Path]:
    count = max(sizes.ct, sizes.concurrent_senders * sizes.concurrent_each)
    directory = work / CT
    if not directory.exists():
        spec = data.SeriesSpec(count, sizes.ct_side, sizes.ct_side)
        paths = data.write_series(directory, spec, seed=3)
        # The CT scenario sends exactly sizes.ct; extra instances only feed "concurrent".
        for extra in paths[sizes.ct :]:
            target = work / "ct-extra" / extra.name
            target.parent.mkdir(parents=True, exist_ok=True)
            extra.rename(target)
    return sorted(directory.glob("*.dcm")) + sorted((work / "ct-extra").glob("*.dcm"))


def measure_transfer(
    tools: Tools,
    scenario: Scenario,
    dataset: Dataset,
    variant: str,
    out: Path,
    results: Results,
) -> None:
    out.mkdir(parents=True)
    port = free_port()
    command = receiver_command(tools, variant, scenario, out, port)
    log = out.parent / f"{out.name}.log"
    with Receiver(command, port, tools.echoscu, log) as receiver:
        senders = [sender_command(tools, scenario, d, port) for d in dataset.directories]
        sent = run_senders(senders)
        peak = receiver.peak_rss_kib()
    if any(sent.returncodes):
        raise BenchmarkError(
            f"{scenario.key}/{variant}: sender exit codes {sent.returncodes}:"
            f" {sent.output[-2000:]}\nreceiver log: {receiver.log_tail()}"
        )
    expected = 0 if variant in (OURS_IGNORE, DCMTK_IGNORE) else dataset.instances
    received = count_files(out)
    if received != expected:
        raise BenchmarkError(
            f"{scenario.key}/{variant}: {received} files stored, expected {expected}:"
            f" {sent.output[-2000:]}\nreceiver log: {receiver.log_tail()}"
        )
    results.seconds.setdefault(scenario.key, Samples()).add(variant, sent.elapsed)
    if peak is not None:
        results.rss_mb.setdefault(scenario.key, Samples()).add(variant, peak / 1024)
    print(
        f"    {variant:13s} {sent.elapsed:8.3f} s  peak RSS {(peak or 0) / 1024:7.1f} MB",
        flush=True,
    )


def measure_idle(
    tools: Tools, scenario: Scenario, sizes: Sizes, variant: str, out: Path, results: Results
) -> None:
    out.mkdir(parents=True)
    port = free_port()
    command = receiver_command(tools, variant, scenario, out, port)
    with Receiver(command, port, tools.echoscu, out.parent / f"{out.name}.log") as receiver:
        sockets, accepted = idle.open_associations(port, sizes.idle_associations)
        try:
            cpu_before, started = receiver.cpu_seconds(), time.monotonic()
            time.sleep(sizes.idle_seconds)  # the idle window itself
            cpu_after, ended = receiver.cpu_seconds(), time.monotonic()
        finally:
            idle.close_associations(sockets)
    outcome = idle.IdleOutcome(len(sockets), accepted, cpu_after - cpu_before, ended - started)
    results.cpu_percent.setdefault(scenario.key, Samples()).add(variant, outcome.cpu_percent)
    note = f"idle/{variant}: {outcome.accepted} of {outcome.opened} associations accepted"
    if note not in results.notes:
        results.notes.append(note)
    print(
        f"    {variant:13s} CPU {outcome.cpu_percent:6.2f} % of a core,"
        f" {accepted}/{len(sockets)} accepted",
        flush=True,
    )


def run_scenario(
    tools: Tools,
    scenario: Scenario,
    sizes: Sizes,
    rounds: int,
    work: Path,
    cache: dict[str, Dataset],
    results: Results,
    floors: bool,
) -> None:
    print(f"{scenario.title}", flush=True)
    dataset = prepare(scenario, sizes, work, cache)
    variants = [v for v in scenario.variants if floors or v not in (OURS_IGNORE, DCMTK_IGNORE)]
    for round_index in range(rounds):
        print(f"  round {round_index + 1}/{rounds}", flush=True)
        for variant in round_order(variants, round_index):
            out = work / "out" / f"{scenario.key}-{variant}-{round_index}"
            try:
                if scenario.dataset == IDLE:
                    measure_idle(tools, scenario, sizes, variant, out, results)
                else:
                    measure_transfer(tools, scenario, dataset, variant, out, results)
            finally:
                shutil.rmtree(out, ignore_errors=True)
                # Write back what the no-fsync receivers left dirty, outside the timing,
                # so it does not land on the next measurement.
                os.sync()


def build_rows(selected: Sequence[Scenario], results: Results) -> list[Row]:
    rows: list[Row] = []
    for scenario in selected:
        if scenario.dataset == IDLE:
            samples = results.cpu_percent.get(scenario.key, Samples())
            rows.append(
                Row(scenario.title, "%", samples.median(OURS), samples.median(DCMTK), scenario.goal)
            )
            continue
        seconds = results.seconds.get(scenario.key, Samples())
        rows.append(
            Row(scenario.title, "s", seconds.median(OURS), seconds.median(DCMTK), scenario.goal)
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
                )
            )
    return rows


def build_details(selected: Sequence[Scenario], sizes: Sizes, results: Results) -> list[DetailRow]:
    details = []
    for scenario in selected:
        if scenario.dataset == IDLE or scenario.key not in results.seconds:
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m benchmarks.run",
        description="Benchmark our dcmrecv against DCMTK's dcmrecv (see benchmarks/README.md).",
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.large_mib:
        sizes = Sizes(**{**sizes.__dict__, "large_bytes": args.large_mib * 1024 * 1024})
    rounds = args.rounds or (1 if args.quick else 5)
    only = [key for item in args.only for key in item.split(",") if key]
    selected = select(scenarios(sizes), only)

    dcmrecv = find_dcmtk_tool("dcmrecv")
    tools = Tools(
        dcmrecv=dcmrecv,
        storescu=find_dcmtk_tool("storescu"),
        echoscu=find_dcmtk_tool("echoscu"),
        ours=(dcmrecv,)
        if args.stand_in_dcmtk
        else tuple(shlex.split(args.ours))
        if args.ours
        else OURS_DEFAULT,
        stand_in=args.stand_in_dcmtk,
        config=args.config,
    )
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
            run_scenario(tools, scenario, sizes, rounds, work, cache, results, not args.no_floor)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started

    rows = build_rows(selected, results)
    details = build_details(selected, sizes, results)
    settings = [
        ("rounds", f"{rounds} (median){' --quick' if args.quick else ''}"),
        ("sender", f"{tools.storescu} +sd (one association per sender)"),
        (
            "ours",
            shlex.join(tools.ours)
            if tools.ours != OURS_DEFAULT
            else "python -c 'dcmrecv.commands.dcmrecv.main()' from this checkout",
        ),
        ("config", f"-xf {tools.config} Default"),
        ("benchmark wall time", f"{elapsed:.0f} s"),
        # Other work on a shared machine shows here; compare runs with similar load.
        ("load average (1 min) before / after", f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"),
    ]
    text = report.document(
        rows=rows,
        details=details,
        machine=report.machine_info(tools.dcmrecv, REPO),
        settings=settings,
        notes=results.notes,
    )
    print()
    print(text)
    if not args.no_write:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "latest.md").write_text(text)
        if plot.plot_rows(rows, args.results / "latest.png"):
            print(f"wrote {args.results / 'latest.md'} and latest.png")
        else:
            print(f"wrote {args.results / 'latest.md'} (no plot: pip install matplotlib)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        sys.exit(1)
