"""What each scenario sends: generated once per run, one directory per sender.

Subsets for slow peers and the scale curve's shares are hard links to the same
files, so they cost no disk and no generation time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import data
from benchmarks.scenarios import (
    CONCURRENT,
    CT,
    FLUSHES,
    LARGE,
    SCALE,
    STARTUP,
    TINY,
    TINY_DEFAULTS,
    Scenario,
    Sizes,
    peer_instances,
)


@dataclass
class Dataset:
    """Input of one scenario: one directory per sender, and the instance count."""

    directories: list[Path]
    instances: int

    @property
    def megabytes(self) -> float:
        """Size of all files sent, in MB (10^6 bytes), for throughput in MB/s."""
        total = sum(
            entry.stat().st_size
            for directory in self.directories
            for entry in os.scandir(directory)
            if entry.is_file()
        )
        return total / 1e6


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
    elif name == STARTUP:
        # One tiny instance: an inetd connection measures the start, not the data.
        spec = data.SeriesSpec(1, sizes.tiny_side, sizes.tiny_side)
        dataset = Dataset([work / name], len(data.write_series(work / name, spec, seed=5)))
    elif name in (CT, CONCURRENT, FLUSHES):
        ct = _ct_paths(sizes, work)
        if name in (CT, FLUSHES):
            dataset = Dataset([work / CT], sizes.ct)
        else:
            total = sizes.concurrent_senders * sizes.concurrent_each
            parts = data.split_into(ct[:total], sizes.concurrent_senders, work / CONCURRENT)
            dataset = Dataset(parts, total)
    elif name == SCALE:
        spec = data.SeriesSpec(sizes.scale_instances, sizes.scale_side, sizes.scale_side)
        paths = data.write_series(work / SCALE, spec, seed=4)
        dataset = Dataset([work / SCALE], len(paths))
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


def _ct_paths(sizes: Sizes, work: Path) -> list[Path]:
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


def subset(dataset: Dataset, divisor: int, root: Path) -> Dataset:
    """The first 1/``divisor`` of each sender's files, hard-linked under ``root``.

    Slow peers get a share of the data (scenarios.py says which); ``divisor`` 1 is
    the data set itself.
    """
    if divisor <= 1:
        return dataset
    directories, instances = [], 0
    for index, directory in enumerate(dataset.directories):
        files = sorted(p for p in directory.iterdir() if p.is_file())
        keep = files[: peer_instances(len(files), divisor)]
        target = root / f"part{index}"
        if not target.exists():
            target.mkdir(parents=True)
            for source in keep:
                (target / source.name).hardlink_to(source)
        directories.append(target)
        instances += len(keep)
    return Dataset(directories, instances)


def shares(dataset: Dataset, senders: int, root: Path) -> Dataset:
    """The data set dealt out to ``senders`` directories (hard links), all of it sent."""
    files = sorted(p for d in dataset.directories for p in d.iterdir() if p.is_file())
    if not root.exists():
        return Dataset(data.split_into(files, senders, root), len(files))
    return Dataset([root / f"part{index}" for index in range(senders)], len(files))


def count_files(root: Path) -> int:
    """Stored files under ``root``: not the dot files a receiver keeps beside them
    (our embedded state store, ``.dcmrecv-state.sqlite``), which readers skip."""
    return sum(
        sum(1 for name in files if not name.startswith(".")) for _, _, files in os.walk(root)
    )
