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

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dcmrecv.config import ReceiverConfig
from dcmrecv.exitcodes import (
    EXITCODE_CANNOT_CREATE_TRANSPORT_LAYER,
    EXITCODE_CANNOT_START_SCP_AND_LISTEN,
    EXITCODE_CANNOT_WRITE_OUTPUT_FILE,
)
from dcmrecv.ops import process
from dcmrecv.ops.eventlog import EventLog, EventLogWriter
from dcmrecv.ops.studies import EndOfStudy
from dcmrecv.storage.writer import InstanceStore
from dcmrecv.wire import server as wire_server
from dcmrecv.wire.association import Services
from dcmrecv.wire.tls import TLSError

if TYPE_CHECKING:
    from dcmrecv.ops.http import OpsEndpoint
    from dcmrecv.ops.metrics import ReceiverMetrics
    from dcmrecv.ops.storescp_hooks import StorescpHooks

log = logging.getLogger(__name__)


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
    store: InstanceStore | None = None
    hooks: StorescpHooks | None = None
    metrics: ReceiverMetrics | None = None
    endpoint: OpsEndpoint | None = None
    event_log: EventLog | None = None
    studies: EndOfStudy | None = None
    ready: _Readiness = field(init=False)

    def __post_init__(self) -> None:
        self.ready = _Readiness(self.config.output_directory)

    @classmethod
    def load(cls, config: ReceiverConfig) -> Runtime:
        """Build what ``config`` asks for; raises StartError (logged) when it cannot."""
        bus = wire_server.dialect_bus(config)
        try:
            services = wire_server.default_services(config, bus)
        except TLSError as exc:
            wire_server.log_tls_error(exc)
            raise StartError(EXITCODE_CANNOT_CREATE_TRANSPORT_LAYER) from None
        runtime = cls(config, services)
        try:
            runtime._build()
        except BaseException:
            runtime.stop()
            raise
        return runtime

    def _build(self) -> None:
        config, bus = self.config, self.services.bus
        if config.storescp is None:
            self.store = InstanceStore(config)
        else:
            self._build_storescp()
        if config.http_port is not None:
            from dcmrecv.ops.http import OpsEndpoint
            from dcmrecv.ops.metrics import ReceiverMetrics

            ready = self.ready
            self.metrics = ReceiverMetrics(
                free_bytes=ready.free_bytes, flush_counts=ready.flush_counts
            )
            self.metrics.subscribe(bus)
            try:
                self.endpoint = OpsEndpoint(
                    config.http_address, config.http_port, self.metrics, ready
                )
            except OSError as exc:
                log.critical(
                    "cannot listen for HTTP on %s port %d: %s",
                    config.http_address,
                    config.http_port,
                    exc.strerror or exc,
                )
                raise StartError(EXITCODE_CANNOT_START_SCP_AND_LISTEN) from None
        if config.event_log is not None:
            try:
                self.event_log = EventLog(str(config.event_log), durable=config.fsync)
            except OSError as exc:
                log.critical("cannot open event log %s: %s", config.event_log, exc.strerror or exc)
                raise StartError(EXITCODE_CANNOT_WRITE_OUTPUT_FILE) from None
            EventLogWriter(self.event_log).subscribe(bus)
        if config.study_timeout is not None:
            self.studies = EndOfStudy(
                config.study_timeout,
                command=config.study_command,
                command_timeout=config.study_command_timeout,
                bus=bus,
            )
            self.studies.subscribe(bus)

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
        if self.endpoint is not None:
            self.endpoint.start()
            log.info(
                "serving /metrics, /healthz, /readyz on %s port %d",
                self.config.http_address,
                self.endpoint.port,
            )

    def listening(self, server: wire_server.Server) -> None:
        self.ready.server = server
        # Hook processes end by the shut-down's deadline (issue 22: ops/process.py).
        server.on_stop(process.RUNNER.shutdown)

    def stop(self) -> None:
        """Stop what runs, in order: endpoint, studies (open ones to the event log), log."""
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.studies is not None:
            self.studies.stop()
        if self.event_log is not None:
            self.event_log.close()
        if self.hooks is not None:
            self.hooks.close()


def serve(config: ReceiverConfig) -> int:
    """Run the receiver with the parts the configuration asks for; the exit code."""
    try:
        runtime = Runtime.load(config)
    except StartError as exc:
        return exc.code
    runtime.start()
    try:
        return wire_server.serve(
            config,
            runtime.listening,
            services=runtime.services,
            store=runtime.store,
        )
    finally:
        runtime.stop()
