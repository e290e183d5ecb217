"""What one ``record_instance`` costs: the state store's share of a C-STORE.

Issue 20 allows the state 10% of the no-state time for 1000 tiny instances
(embedded) and 30% (PostgreSQL on loopback); a tiny instance costs about 0.6 ms end
to end, so ``record_instance`` has about 60 and 180 microseconds.  This measures
the call alone, in one thread: the median (and 90th percentile) of N calls, each a
new instance of one study as a series sender makes them, for SQLite and a throwaway
PostgreSQL cluster (``benchmarks/postgres.py``), with ``durable`` on and off.

    .venv/bin/python -m benchmarks.state_store [--calls 1000] [--dir DIR]

``--dir`` puts the SQLite file on the file system to be measured (default: a
temporary directory).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import postgres
from dcmrecv.state.model import InstanceRecord, StateStore
from dcmrecv.state.url import open_state

STUDY = "1.2.826.0.1.3680043.10.1078.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def record(index: int) -> InstanceRecord:
    return InstanceRecord(
        study_instance_uid=STUDY,
        sop_instance_uid=f"{STUDY}.{index}",
        sop_class_uid=CT_IMAGE,
        series_instance_uid=f"{STUDY}.0",
        transfer_syntax_uid=EXPLICIT_LE,
        path=f"/srv/dicom/incoming/CT.{STUDY}.{index}",
        size=1234,
        sha256="0" * 64,
        received="2024-05-01T12:00:00.000000+00:00",
        calling_ae_title="STORESCU",
        replica="bench:1",
    )


def measure(store: StateStore, calls: int) -> list[float]:
    """Seconds of each of ``calls`` record_instance calls (after a warm-up)."""
    store.check()
    for index in range(20):  # connection, prepared statements, first pages
        store.record_instance(record(-index - 1), time.time())
    seconds = []
    for index in range(calls):
        started = time.perf_counter()
        store.record_instance(record(index), time.time())
        seconds.append(time.perf_counter() - started)
    store.close()
    return seconds


def line(label: str, seconds: list[float]) -> str:
    p90 = statistics.quantiles(seconds, n=10)[-1]
    return (
        f"{label:<32} median {statistics.median(seconds) * 1e6:7.0f} us"
        f"   p90 {p90 * 1e6:7.0f} us   mean {statistics.fmean(seconds) * 1e6:7.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=arguments.dir, prefix="dcmrecv-state-") as work:
        for durable in (False, True):
            url = f"sqlite://{work}/state-{durable}.sqlite"
            seconds = measure(open_state(url, durable=durable), arguments.calls)
            print(line(f"sqlite durable={durable}", seconds), flush=True)
    bin_dir = postgres.find_bin_dir()
    reason = postgres.missing_reason(bin_dir)
    if reason is not None or bin_dir is None:
        print(f"postgresql: skipped ({reason})")
        return
    with postgres.Cluster(bin_dir) as cluster:
        for durable in (False, True):
            seconds = measure(open_state(cluster.url, durable=durable), arguments.calls)
            print(line(f"postgresql durable={durable}", seconds), flush=True)


if __name__ == "__main__":
    main()
