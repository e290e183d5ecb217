"""Prometheus metrics of one receiver process (``--http-port``, ``/metrics``).

prometheus-client keeps the counters and writes the text exposition format; this
module names them and decides their labels.  Labels never carry text a peer
controls: an AE title or a SOP class as a label would let any peer create time
series without bound, so the only labels are small closed sets (result, status
category).  The collectors live in a registry of their own, not the library's
global one, so two receivers in one process (the tests) never share counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dcmrecv import events
from dcmrecv.events import EventBus
from dcmrecv.status import Category, category

#: The Content-Type of the text exposition format (version 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: What became of an association: accepted (A-ASSOCIATE-AC sent), rejected
#: (A-ASSOCIATE-RJ sent), aborted (ended by an A-ABORT either way, a timeout or a
#: broken connection after it was accepted).
ASSOCIATION_RESULTS = ("accepted", "rejected", "aborted")
#: PS3.7 C.1 categories a C-STORE response falls into.
INSTANCE_STATUSES = ("success", "warning", "failure")

#: Seconds from the last fragment of a data set to its response: parsing, naming,
#: fsync, rename.  From 100 us (no fsync, tiny) to several seconds (a slow disk).
_STORE_BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01)
_STORE_BUCKETS += (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_FLUSHES_HELP = "Device flushes (fsync or syncfs) run to make stored files durable."
_FLUSH_WAITS_HELP = (
    "Waits for a flush by stored files; a flush shared by several counts once above."
)

#: (device flushes run, flush waits they served), read when scraped.
FlushCounts = Callable[[], "tuple[int, int] | None"]


class _FlushCollector(Collector):
    """The group commit's own counts (storage/durability.py), read at each scrape."""

    def __init__(self, counts: FlushCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self._counts()
        if counts is None:  # --no-fsync
            return
        flushes, waits = counts
        yield CounterMetricFamily("dcmrecv_flushes", _FLUSHES_HELP, value=flushes)
        yield CounterMetricFamily("dcmrecv_flush_waits", _FLUSH_WAITS_HELP, value=waits)


class Exposition(Protocol):
    """What ``/metrics`` serves: the text format of one registry."""

    def exposition(self) -> bytes: ...


class _FreeSpaceCollector(Collector):
    """``dcmrecv_output_free_bytes``, measured when scraped."""

    def __init__(self, free_bytes: Callable[[], float]) -> None:
        self._free_bytes = free_bytes

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "dcmrecv_output_free_bytes",
            "Bytes available to the receiver in the output directory's file system.",
            value=self._free_bytes(),
        )


class ReceiverMetrics:
    """The receiver's counters, updated from the association threads (thread-safe)."""

    def __init__(
        self,
        free_bytes: Callable[[], float] | None = None,
        flush_counts: FlushCounts | None = None,
        *,
        worker: bool = False,
    ) -> None:
        """``worker``: one of ``--workers``' processes, whose values prometheus-client
        keeps in files its parent sums (multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR``
        was set before this process imported it).  Then the flush counts are counters
        brought up to date after each instance, and the free space is the parent's."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._flush_counts = flush_counts
        self._flushes_seen = (0, 0)
        self._flush_lock = threading.Lock()
        self._flushes: Counter | None = None
        self._flush_waits: Counter | None = None
        if flush_counts is not None and not worker:
            self.registry.register(_FlushCollector(flush_counts))
        elif flush_counts is not None:
            self._flushes = Counter("dcmrecv_flushes", _FLUSHES_HELP, registry=self.registry)
            self._flush_waits = Counter(
                "dcmrecv_flush_waits", _FLUSH_WAITS_HELP, registry=self.registry
            )
        self._associations = Counter(
            "dcmrecv_associations",
            "Associations by what became of them.",
            ["result"],
            registry=self.registry,
        )
        self._active = Gauge(
            "dcmrecv_associations_active",
            "Associations accepted and not yet ended.",
            registry=self.registry,
            # --workers: the sum over the workers alive (ignored in one process).
            multiprocess_mode="livesum",
        )
        self._instances = Counter(
            "dcmrecv_instances",
            "C-STORE requests answered, by the category of the status sent (PS3.7 C.1).",
            ["status"],
            registry=self.registry,
        )
        self._bytes = Counter(
            "dcmrecv_received_bytes",
            "Data set bytes received in C-STORE requests.",
            registry=self.registry,
        )
        self._store_seconds = Histogram(
            "dcmrecv_store_duration_seconds",
            "Seconds from the last fragment of a data set to its C-STORE response.",
            buckets=_STORE_BUCKETS,
            registry=self.registry,
        )
        if free_bytes is not None:
            # Read when scraped, not per instance: one statvfs per scrape.
            self.registry.register(_FreeSpaceCollector(free_bytes))
        # Every label value exists from the start, so a dashboard shows 0, not "no data".
        for result in ASSOCIATION_RESULTS:
            self._associations.labels(result)
        for status in INSTANCE_STATUSES:
            self._instances.labels(status)

    # --- what the engine reports ---------------------------------------------------

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(events.AssociationAccepted, lambda _: self.association_accepted())
        bus.subscribe(events.AssociationRejected, lambda _: self.association_rejected())
        bus.subscribe(events.AssociationEnded, lambda e: self.association_ended(aborted=e.aborted))
        bus.subscribe(
            events.InstanceAnswered,
            lambda e: self.instance_answered(e.status, e.received_bytes, e.seconds),
        )

    def association_accepted(self) -> None:
        self._associations.labels("accepted").inc()
        self._active.inc()

    def association_rejected(self) -> None:
        self._associations.labels("rejected").inc()

    def association_ended(self, *, aborted: bool) -> None:
        """An accepted association is over; ``aborted`` unless it was released."""
        if aborted:
            self._associations.labels("aborted").inc()
        self._active.dec()

    def instance_answered(self, status: int, received_bytes: int, seconds: float | None) -> None:
        """A C-STORE response with ``status`` was sent for ``received_bytes`` of data set."""
        kind = category(status)
        label = "success" if kind is Category.SUCCESS else "warning"
        if kind not in (Category.SUCCESS, Category.WARNING):
            label = "failure"
        self._instances.labels(label).inc()
        self._bytes.inc(received_bytes)
        if seconds is not None:
            self._store_seconds.observe(seconds)
        if self._flushes is not None:
            self._count_flushes()

    def _count_flushes(self) -> None:
        """A worker's flush counters, brought up to the group commit's own counts."""
        assert self._flush_counts is not None and self._flush_waits is not None
        counts = self._flush_counts()
        if counts is None:
            return
        with self._flush_lock:
            flushes, waits = counts
            seen_flushes, seen_waits = self._flushes_seen
            self._flushes_seen = (flushes, waits)
        if flushes > seen_flushes:
            assert self._flushes is not None
            self._flushes.inc(flushes - seen_flushes)
        if waits > seen_waits:
            self._flush_waits.inc(waits - seen_waits)

    # --- exposition -------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class CommitmentMetrics:
    """Storage commitment's counters (``--storage-commitment``), in ``registry``.

    Under ``--workers`` every process counts what it did (requests in the workers,
    reports wherever delivered) into prometheus-client's multiprocess files, which
    the parent's ``/metrics`` sums."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "dcmrecv_commitment_requests",
            "Storage commitment requests (N-ACTION) answered, by result.",
            ["result"],
            registry=registry,
        )
        self._instances = Counter(
            "dcmrecv_commitment_instances",
            "Instances in delivered storage commitment reports, by result.",
            ["result"],
            registry=registry,
        )
        self._reports = Counter(
            "dcmrecv_commitment_reports",
            "Storage commitment reports by outcome (sent, or failed for good).",
            ["outcome"],
            registry=registry,
        )
        for result in ("accepted", "refused"):
            self._requests.labels(result)
        for result in ("committed", "failed"):
            self._instances.labels(result)
        for outcome in ("sent", "failed"):
            self._reports.labels(outcome)

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(events.CommitmentRequested, self.requested)
        bus.subscribe(events.CommitmentReported, self.reported)

    def requested(self, event: events.CommitmentRequested) -> None:
        self._requests.labels("accepted" if event.status == 0 else "refused").inc()

    def reported(self, event: events.CommitmentReported) -> None:
        if not event.delivered:
            self._reports.labels("failed").inc()
            return
        self._reports.labels("sent").inc()
        self._instances.labels("committed").inc(event.committed)
        self._instances.labels("failed").inc(event.failed)


class WorkersMetrics:
    """``/metrics`` of the parent of ``--workers``: the sum of its workers' values
    (prometheus-client's multiprocess mode reads the files they write) and the free
    space, measured here."""

    def __init__(self, directory: str, free_bytes: Callable[[], float] | None = None) -> None:
        from prometheus_client import multiprocess

        self.registry = CollectorRegistry(auto_describe=False)
        # The library leaves this constructor unannotated; it registers itself.
        collector: Any = multiprocess.MultiProcessCollector
        collector(self.registry, path=directory)
        if free_bytes is not None:
            self.registry.register(_FreeSpaceCollector(free_bytes))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
