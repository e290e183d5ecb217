"""The receiver as the configuration asks for it: built once, run, stopped in order.

:class:`Runtime` is uvicorn's ``Config.load()`` for this receiver: from the plain
values of a :class:`ReceiverConfig` it builds the objects that run, once, when the
receiver starts: the TLS context, the event bus and its subscribers (the command's
log dialect, the metrics, the event log, study completion, storescp's hooks), and
the HTTP endpoint.  :func:`serve` runs the DICOM server with them and stops them in
the order that loses nothing: the server drains its associations first, then the
studies still open are written to the event log, then the log is closed.  With
none of the operations options it is the plain server.
"""

from __future__ import annotations

import enum
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcmrecv.config import ReceiverConfig
from dcmrecv.exitcodes import (
    EXITCODE_CANNOT_CREATE_TRANSPORT_LAYER,
    EXITCODE_CANNOT_START_SCP_AND_LISTEN,
    EXITCODE_CANNOT_WRITE_OUTPUT_FILE,
    EXITCODE_INVALID_ASSOCIATION_CONFIG,
)
from dcmrecv.storage.writer import InstanceStore
from dcmrecv.wire import server as wire_server
from dcmrecv.wire.association import Services
from dcmrecv.wire.tls import TLSError

if TYPE_CHECKING:
    # The services below are imported when the configuration asks for them: one
    # storescp --inetd connection pays for what it uses (issue 21, start-up).
    from dcmrecv.ops.commitment import Deliverer
    from dcmrecv.ops.completion import EndOfStudy
    from dcmrecv.ops.eventlog import EventLog
    from dcmrecv.ops.http import OpsEndpoint
    from dcmrecv.ops.metrics import ReceiverMetrics, WorkersMetrics
    from dcmrecv.ops.storescp_hooks import StorescpHooks
    from dcmrecv.state.model import StateStore
    from dcmrecv.wire.workers import WorkerPool

log = logging.getLogger(__name__)


class Role(enum.Enum):
    """Which part of the receiver this process is (``--workers``, wire/workers.py)."""

    #: One process does everything (``--workers 1``, the default).
    SINGLE = "single"
    #: The parent of ``--workers``: listener and admission, HTTP, study completion.
    PARENT = "parent"
    #: One of the workers: serves the connections the parent hands it.
    WORKER = "worker"


class StartError(Exception):
    """The receiver cannot start; already logged; ``code`` is the exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def free_bytes(directory: Path) -> float:
    """Bytes an unprivileged writer may still use in ``directory``'s file system."""
    stats = os.statvfs(directory)
    return float(stats.f_bavail * stats.f_frsize)


class _Readiness:
    """/readyz: listening, not stopping, output directory writable, free space above
    ``--min-free-space`` (the store's own FreeSpace, so both see the same figure)."""

    def __init__(self, output_directory: Path) -> None:
        self.output_directory = output_directory
        self.server: wire_server.Server | None = None

    def __call__(self) -> str | None:
        server = self.server
        if server is None:
            return "not listening yet"
        if server.stopping:
            return "stopping"
        if not server.serving:
            return "no worker process serves yet"
        if not os.access(self.output_directory, os.W_OK):
            return f"output directory {self.output_directory} is not writable"
        free_space = server.store.free_space
        return free_space.shortage() if free_space is not None else None

    def flush_counts(self) -> tuple[int, int] | None:
        """dcmrecv_flushes and dcmrecv_flush_waits; None with --no-fsync."""
        server = self.server
        durability = server.store.durability if server is not None else None
        if durability is None:
            return None
        return durability.flushes, durability.served

    def free_bytes(self) -> float:
        """dcmrecv_output_free_bytes: the store's cached figure under --min-free-space."""
        server = self.server
        if server is not None and server.store.free_space is not None:
            return server.store.free_space.free_bytes()
        return free_bytes(self.output_directory)


@dataclass
class Runtime:
    """The running parts of one receiver, built from its configuration."""

    config: ReceiverConfig
    services: Services
    role: Role = Role.SINGLE
    store: InstanceStore | None = None
    hooks: StorescpHooks | None = None
    metrics: ReceiverMetrics | WorkersMetrics | None = None
    #: --workers: where the workers' metrics files go (prometheus-client multiprocess).
    metrics_directory: str | None = None
    endpoint: OpsEndpoint | None = None
    event_log: EventLog | None = None
    studies: EndOfStudy | None = None
    #: The state store (dcmrecv/state), when something needs it.
    state: StateStore | None = None
    #: ``--storage-commitment``'s delivery thread (not in a worker).
    deliverer: Deliverer | None = None
    ready: _Readiness = field(init=False)

    def __post_init__(self) -> None:
        self.ready = _Readiness(self.config.output_directory)

    @property
    def replica(self) -> str:
        """This receiver in the state store: ``host:pid`` (its workers say their
        parent's, so that the receiver is one replica)."""
        from dcmrecv.state.model import replica_name

        return self.config.replica or replica_name()

    @classmethod
    def load(cls, config: ReceiverConfig, role: Role = Role.SINGLE) -> Runtime:
        """Build what ``config`` asks for; raises StartError (logged) when it cannot."""
        bus = wire_server.dialect_bus(config)
        try:
            services = wire_server.default_services(config, bus)
        except TLSError as exc:
            wire_server.log_tls_error(exc)
            raise StartError(EXITCODE_CANNOT_CREATE_TRANSPORT_LAYER) from None
        runtime = cls(config, services, role)
        try:
            runtime._build()
        except BaseException:
            runtime.stop()
            raise
        return runtime

    def _build(self) -> None:
        config, bus, role = self.config, self.services.bus, self.role
        if config.storescp is None:
            self.store = InstanceStore(config)
        else:
            self._build_storescp()
        if config.http_port is not None:
            self._build_metrics()
        if config.uses_state:
            self._build_state()
        if config.event_log is not None:
            from dcmrecv.ops.eventlog import EventLog, EventLogWriter

            try:
                self.event_log = EventLog(str(config.event_log), durable=config.fsync)
            except OSError as exc:
                log.critical("cannot open event log %s: %s", config.event_log, exc.strerror or exc)
                raise StartError(EXITCODE_CANNOT_WRITE_OUTPUT_FILE) from None
            # Instances and associations are the workers' to record; studies the
            # parent's, which completes them.
            EventLogWriter(self.event_log).subscribe(
                bus, instances=role is not Role.PARENT, studies=role is not Role.WORKER
            )
        if config.storage_commitment:
            self._build_commitment()
        if config.study_timeout is not None and role is not Role.WORKER:
            assert self.state is not None
            from dcmrecv.ops.completion import EndOfStudy

            self.studies = EndOfStudy(
                self.state,
                config.study_timeout,
                replica=self.replica,
                command=config.study_command,
                command_timeout=config.study_command_timeout,
                bus=bus,
            )

    def _build_state(self) -> None:
        """The state store (``--state``, else the embedded default) and the instance
        index that records every stored instance there before its Success."""
        from dcmrecv.ops.index import InstanceIndex
        from dcmrecv.state.model import StateUnavailable
        from dcmrecv.state.url import open_state

        config = self.config
        try:
            self.state = open_state(config.state_url, durable=config.fsync)
        except ValueError as exc:
            log.critical("cannot use the state store: %s", exc)
            raise StartError(EXITCODE_INVALID_ASSOCIATION_CONFIG) from None
        if self.role is not Role.WORKER:
            # Creates or migrates the schema.  A store that is down now is used as
            # soon as it answers (C-STOREs that need it get 0xA700 until then).
            try:
                log.info("%s", self.state.check())
            except StateUnavailable as exc:
                log.error("%s; C-STOREs are answered 0xA700 until it answers", exc)
        if self.role is not Role.PARENT:
            # Storage commitment checks each file against its recorded SHA-256, and
            # needs every instance indexed, whether or not studies are tracked.
            InstanceIndex(
                self.state,
                self.replica,
                digests=config.storage_commitment,
                studies=config.study_timeout is not None,
            ).subscribe(self.services.bus)

    def _build_commitment(self) -> None:
        """``--storage-commitment``: its handler on every association this process
        serves, and (unless a worker) the thread that delivers reports."""
        from dcmrecv.commitment.messages import SOP_CLASS_UID
        from dcmrecv.ops.commitment import Deliverer, StorageCommitment

        assert self.state is not None
        service = StorageCommitment(self.config, self.state, self.services.bus)
        handlers = {**self.services.services, SOP_CLASS_UID: service.factory()}
        self.services = replace(self.services, services=handlers)
        if self.role is not Role.WORKER:
            self.deliverer = Deliverer(service)

    def _build_metrics(self) -> None:
        """/metrics: this process's counters; the parent of --workers sums its workers'."""
        config, ready, bus = self.config, self.ready, self.services.bus
        if self.role is Role.PARENT:
            self.metrics_directory = tempfile.mkdtemp(prefix="dcmrecv-metrics-")
            if config.storage_commitment:
                # The parent delivers reports too: its counters go to files beside
                # its workers' (read when prometheus-client is first imported).
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_directory
        from dcmrecv.ops.metrics import CommitmentMetrics, ReceiverMetrics, WorkersMetrics

        if self.role is Role.WORKER:
            store = self.store
            durability = store.durability if store is not None else None
            counts = (lambda: (durability.flushes, durability.served)) if durability else None
            self.metrics = ReceiverMetrics(flush_counts=counts, worker=True)
            self.metrics.subscribe(bus)
            if config.storage_commitment:
                CommitmentMetrics(self.metrics.registry).subscribe(bus)
            return  # the parent serves them
        if self.role is Role.PARENT:
            assert self.metrics_directory is not None
            self.metrics = WorkersMetrics(self.metrics_directory, ready.free_bytes)
            if config.storage_commitment:
                from prometheus_client import CollectorRegistry

                # Counted into the files (multiprocess mode), served by the collector.
                CommitmentMetrics(CollectorRegistry()).subscribe(bus)
        else:
            metrics = ReceiverMetrics(free_bytes=ready.free_bytes, flush_counts=ready.flush_counts)
            metrics.subscribe(bus)
            if config.storage_commitment:
                CommitmentMetrics(metrics.registry).subscribe(bus)
            self.metrics = metrics
        from dcmrecv.ops.http import OpsEndpoint

        assert config.http_port is not None
        try:
            self.endpoint = OpsEndpoint(config.http_address, config.http_port, self.metrics, ready)
        except OSError as exc:
            log.critical(
                "cannot listen for HTTP on %s port %d: %s",
                config.http_address,
                config.http_port,
                exc.strerror or exc,
            )
            raise StartError(EXITCODE_CANNOT_START_SCP_AND_LISTEN) from None

    def _build_storescp(self) -> None:
        """storescp's naming, conversions and hooks (its ``config.storescp``)."""
        from dcmrecv.ops.storescp_hooks import StorescpHooks
        from dcmrecv.storage.convert import EncodingConverter, configure_pydicom
        from dcmrecv.storage.namer import StorescpNamer

        settings = self.config.storescp
        assert settings is not None
        configure_pydicom(settings.convert_un)
        naming = settings.naming
        namer = StorescpNamer(
            settings.output_directory,
            naming.sort_mode,
            naming.sort_prefix,
            unique_filenames=naming.unique_filenames,
            time_names=naming.time_names,
            extension=naming.extension,
        )
        converter = EncodingConverter(settings.encoding) if settings.encoding is not None else None
        self.store = InstanceStore(self.config, namer=namer, converter=converter)
        self.hooks = StorescpHooks(settings.events, namer)
        self.hooks.subscribe(self.services.bus)

    def start(self) -> None:
        if self.hooks is not None:
            self.hooks.start()
        if self.studies is not None:
            self.studies.start()
        if self.deliverer is not None:
            self.deliverer.start()
        if self.endpoint is not None:
            self.endpoint.start()
            log.info(
                "serving /metrics, /healthz, /readyz on %s port %d",
                self.config.http_address,
                self.endpoint.port,
            )

    def listening(self, server: wire_server.Server) -> None:
        self.ready.server = server
        if self.hooks is not None or self.config.study_command is not None:
            from dcmrecv.ops import process

            # Hook processes end by the shut-down's deadline (issue 22: ops/process.py).
            server.on_stop(process.RUNNER.shutdown)

    def stop(self) -> None:
        """Stop what runs, in order: endpoint, studies (open ones to the event log), log."""
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.studies is not None:
            self.studies.stop()
        if self.deliverer is not None:
            self.deliverer.stop()
        if self.event_log is not None:
            self.event_log.close()
        if self.state is not None:
            self.state.close()
        if self.hooks is not None:
            self.hooks.close()
        if self.metrics_directory is not None:
            shutil.rmtree(self.metrics_directory, ignore_errors=True)

    # --- the parent of --workers ---------------------------------------------------------

    def workers(self) -> WorkerPool:
        """The worker processes of ``--workers`` (started by the server when it listens)."""
        from dcmrecv.wire.workers import WorkerPool

        return WorkerPool(self.config.workers, self._spawn, on_death=self._worker_ended)

    def _spawn(self, index: int, control: socket.socket) -> subprocess.Popen[bytes]:
        """Worker ``index``: a fresh interpreter with the control socket, the
        configuration on its standard input (ops/worker.py)."""
        env = dict(os.environ)
        if self.metrics_directory is not None:
            # Before the worker imports prometheus-client: its values go to files.
            env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_directory
        fd = control.fileno()
        from dcmrecv.storage import quarantine

        command = [sys.executable, "-m", "dcmrecv.ops.worker"]
        process = subprocess.Popen(
            [*command, "--control", str(fd), "--index", str(index)],
            stdin=subprocess.PIPE,
            pass_fds=(fd,),
            env=env,
        )
        assert process.stdin is not None
        with process.stdin:
            worker = replace(
                self.config,
                workers=1,
                replica=self.replica,
                # One --quarantine-limit for the whole receiver: each worker's index
                # (storage/quarantine.py) keeps its share.
                quarantine_limit=(self.config.quarantine_limit or quarantine.DEFAULT_LIMIT).share(
                    self.config.workers
                ),
            )
            process.stdin.write(pickle.dumps(worker))
        return process

    def _worker_ended(self, pid: int) -> None:
        if self.metrics_directory is not None:
            from prometheus_client import multiprocess

            # Its gauges leave the sums (livesum); its counters stay counted.  (The
            # library leaves this function unannotated.)
            mark_dead: Any = multiprocess.mark_process_dead
            mark_dead(pid, self.metrics_directory)


def serve(config: ReceiverConfig) -> int:
    """Run the receiver with the parts the configuration asks for; the exit code."""
    role = Role.PARENT if config.workers > 1 else Role.SINGLE
    try:
        runtime = Runtime.load(config, role)
    except StartError as exc:
        return exc.code
    runtime.start()
    try:
        return wire_server.serve(
            config,
            runtime.listening,
            services=runtime.services,
            store=runtime.store,
            pool=runtime.workers() if role is Role.PARENT else None,
        )
    finally:
        runtime.stop()
