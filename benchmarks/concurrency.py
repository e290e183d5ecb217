"""Many senders and many held associations: the scale curve and the held scenario.

Scale: one series is dealt out to 1, 4, 16 and 64 associations opened at once by
one sender process (sender.py, which says why not 64 storescu processes); each
point is the sender's time from the first A-ASSOCIATE-RQ to the last A-RELEASE-RP,
with the receiver's process tree sampled meanwhile (procs.TreeSampler: summed
VmRSS and threads, and the number of processes, which DCMTK's ``storescp --fork``
grows).  Ours runs with
``--no-fsync`` like the DCMTK server it is compared with.

Held: thousands of raw-socket Verification associations (idle.py) held open; our
RSS and thread count while they are held, and the CPU time it burns meanwhile.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import disk, idle, sender
from benchmarks.commands import REPO, Tools, start, stores_nothing
from benchmarks.datasets import Dataset, count_files, shares
from benchmarks.procs import (
    BenchmarkError,
    Command,
    TreeSampler,
    parse_status_kib,
    parse_threads,
    run_senders,
)
from benchmarks.scenarios import Scenario
from benchmarks.stats import HeldResult, ScalePoint, median_or_none

#: Seconds between samples of the receiver's process tree during a scale run.
SAMPLE_INTERVAL = 0.02


@dataclass
class ScaleSamples:
    """Rounds of one (receiver, senders) point."""

    seconds: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)


def measure_scale_point(
    tools: Tools,
    scenario: Scenario,
    variant: str,
    dataset: Dataset,
    out: Path,
    samples: ScaleSamples,
) -> None:
    out.mkdir(parents=True)
    associations = len(dataset.directories)
    with start(tools, variant, scenario, out) as receiver:
        load = sender_command(receiver.port, dataset.directories)
        with TreeSampler(receiver.pid, SAMPLE_INTERVAL) as sampler:
            sent = run_senders([load])
    outcome = sender.parse_outcome(sent.output)
    expected = 0 if stores_nothing(variant) else dataset.instances
    received = count_files(out)
    if outcome is None or any(sent.returncodes) or received != expected:
        raise BenchmarkError(
            f"scale/{variant}/{associations}: exit code {sent.returncodes}, {received} of"
            f" {expected} stored: {sent.output[-2000:]}\nreceiver log: {receiver.log_tail()}"
        )
    samples.seconds.append(outcome.seconds)
    if sampler.peak is not None:
        samples.rss_kib.append(sampler.peak.rss_kib)
        samples.threads.append(sampler.peak.threads)
        samples.processes.append(sampler.peak.processes)
    peak = sampler.peak
    print(
        f"    {variant:13s} {associations:3d} senders {outcome.seconds:8.3f} s"
        f"  peak RSS {(peak.rss_kib if peak else 0) / 1024:7.1f} MB"
        f"  threads {peak.threads if peak else 0} processes {peak.processes if peak else 0}",
        flush=True,
    )


def sender_command(port: int, directories: list[Path]) -> Command:
    """The multi-association sender (sender.py), run from this checkout."""
    argv = (sys.executable, "-m", "benchmarks.sender", str(port), *map(str, directories))
    return Command(argv, {"PYTHONPATH": str(REPO)})


def scale_points(
    tools: Tools,
    scenario: Scenario,
    series: Dataset,
    senders: tuple[int, ...],
    variants: list[str],
    rounds: int,
    work: Path,
) -> list[ScalePoint]:
    """The curve: every receiver at every sender count, ``rounds`` times, medians."""
    megabytes = series.megabytes
    collected: dict[tuple[str, int], ScaleSamples] = {}
    for round_index in range(rounds):
        print(f"  round {round_index + 1}/{rounds}", flush=True)
        for count in senders:
            dealt = shares(series, count, work / f"scale-{count}")
            order = variants if round_index % 2 == 0 else list(reversed(variants))
            for variant in order:
                out = work / "out" / f"scale-{variant}-{count}-{round_index}"
                try:
                    samples = collected.setdefault((variant, count), ScaleSamples())
                    measure_scale_point(tools, scenario, variant, dealt, out, samples)
                finally:
                    disk.set_aside(out, work / "set-aside")
                    _sync()
    return [
        ScalePoint(
            variant=variant,
            senders=count,
            instances=series.instances,
            megabytes=megabytes,
            seconds=median_or_none(samples.seconds),
            peak_rss_mb=max(samples.rss_kib) / 1024 if samples.rss_kib else None,
            peak_threads=max(samples.threads) if samples.threads else None,
            peak_processes=max(samples.processes) if samples.processes else None,
        )
        for (variant, count), samples in collected.items()
    ]


def measure_held(
    tools: Tools, scenario: Scenario, variant: str, associations: int, seconds: float, out: Path
) -> HeldResult:
    """Hold ``associations`` open for ``seconds``: RSS and threads, and CPU meanwhile."""
    out.mkdir(parents=True)
    with start(tools, variant, scenario, out) as receiver:
        sockets, accepted = idle.open_associations(receiver.port, associations)
        try:
            cpu_before, started = receiver.cpu_seconds(), time.monotonic()
            time.sleep(seconds)  # the holding window itself
            cpu_after, ended = receiver.cpu_seconds(), time.monotonic()
            status = receiver.status()
        finally:
            idle.close_associations(sockets)
    rss = parse_status_kib(status, "VmRSS")
    window = ended - started
    return HeldResult(
        opened=associations,
        accepted=accepted,
        rss_mb=rss / 1024 if rss is not None else None,
        threads=parse_threads(status),
        cpu_percent=100.0 * (cpu_after - cpu_before) / window if window > 0 else 0.0,
        seconds=window,
    )


def _sync() -> None:
    # Write back what the receiver left dirty, outside the timing (see run.py).
    os.sync()
