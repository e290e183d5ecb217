"""The receiver with its operations parts: metrics, HTTP endpoint, event log, studies.

:func:`serve` builds what the configuration asks for (``--http-port``,
``--event-log``, ``--eostudy-timeout``), hands the association threads an
:class:`Operations` observer through the configuration, runs the DICOM server and
stops the parts after it, in the order that loses nothing: the server drains its
associations first, then the studies still open are written to the event log, then
the log is closed.  With none of the options set it is the plain server.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from dcmrecv.config import AssociationEnd, AssociationInfo, ReceiverConfig, StoreAnswer
from dcmrecv.exitcodes import (
    EXITCODE_CANNOT_START_SCP_AND_LISTEN,
    EXITCODE_CANNOT_WRITE_OUTPUT_FILE,
)
from dcmrecv.ops import process
from dcmrecv.ops.eventlog import EventLog, now_iso, store_event_failure
from dcmrecv.ops.studies import StudyCompletion, StudyFile
from dcmrecv.status import is_stored
from dcmrecv.wire import server as wire_server

if TYPE_CHECKING:
    from dcmrecv.ops.metrics import ReceiverMetrics

log = logging.getLogger(__name__)


def free_bytes(directory: Path) -> float:
    """Bytes an unprivileged writer may still use in ``directory``'s file system."""
    stats = os.statvfs(directory)
    return float(stats.f_bavail * stats.f_frsize)


class Operations:
    """The association observer: counts in the metrics, lines in the event log, studies."""

    def __init__(
        self,
        metrics: ReceiverMetrics | None,
        events: EventLog | None,
        studies: StudyCompletion | None,
    ) -> None:
        self.metrics = metrics
        self.events = events
        self.studies = studies

    def association_accepted(self, association: AssociationInfo) -> None:
        if self.metrics is not None:
            self.metrics.association_accepted()

    def association_rejected(self) -> None:
        if self.metrics is not None:
            self.metrics.association_rejected()

    def instance_answered(self, association: AssociationInfo, answer: StoreAnswer) -> None:
        result = answer.result
        # Absolute: the hook and a log reader need not know the receiver's directory.
        path = os.path.abspath(result.path) if result is not None and result.path else None
        stored = is_stored(answer.status)
        size: int | None = None
        if stored and path is not None and (self.events or self.studies):
            try:
                size = os.stat(path).st_size
            except OSError:
                size = None
        started = time.monotonic()
        try:
            if self.events is not None:
                self.events.write(
                    "instance_stored" if stored else "instance_failed",
                    _instance_fields(association, answer, path, size),
                )
        except OSError as exc:
            # The association answers 0xA700 instead: count that, not the Success.
            if self.metrics is not None:
                self.metrics.instance_answered(0xA700, answer.received_bytes, answer.seconds)
            # ... and its E: line says what became of the file (issue 22).
            raise store_event_failure(exc, path if stored else None, answer.reason) from exc
        if self.metrics is not None:
            # The event line is written (and flushed) before the response: its time
            # is part of the store's.
            seconds = answer.seconds
            if seconds is not None:
                seconds += time.monotonic() - started
            self.metrics.instance_answered(answer.status, answer.received_bytes, seconds)
        study_uid = result.study_instance_uid if result is not None else None
        if self.studies is not None and stored and path is not None and study_uid:
            file = StudyFile(
                path=path,
                sop_class_uid=answer.sop_class_uid,
                sop_instance_uid=answer.sop_instance_uid,
                series_instance_uid=result.series_instance_uid if result is not None else None,
                size=size if size is not None else answer.received_bytes,
                received=now_iso(),
            )
            self.studies.instance_stored(study_uid, file, association.calling_ae_title)

    def association_ended(self, association: AssociationInfo, end: AssociationEnd) -> None:
        if self.metrics is not None:
            self.metrics.association_ended(aborted=end.aborted)
        if self.events is not None:
            fields = _association_fields(association)
            fields.update(
                instances=end.instances,
                failures=end.failures,
                received_bytes=end.received_bytes,
                seconds=round(end.seconds, 6),
                end="aborted" if end.aborted else "released",
            )
            try:
                self.events.write("association_ended", fields)
            except OSError as exc:
                log.error("cannot write the event log %s: %s", self.events.path, exc)


def _association_fields(association: AssociationInfo) -> dict[str, object]:
    return {
        "association": association.serial,
        "calling_ae_title": association.calling_ae_title,
        "called_ae_title": association.called_ae_title,
        "peer": association.peer_address,
    }


def _instance_fields(
    association: AssociationInfo, answer: StoreAnswer, path: str | None, size: int | None
) -> dict[str, object]:
    result = answer.result
    fields = _association_fields(association)
    fields.update(
        path=path,
        sop_class_uid=answer.sop_class_uid,
        sop_instance_uid=answer.sop_instance_uid,
        study_instance_uid=result.study_instance_uid if result is not None else None,
        series_instance_uid=result.series_instance_uid if result is not None else None,
        transfer_syntax_uid=answer.transfer_syntax_uid,
        size=size,
        received_bytes=answer.received_bytes,
        status=f"0x{answer.status:04X}",
    )
    if answer.reason is not None:
        fields["reason"] = answer.reason
    return fields


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


def _hooks_end_by_the_shutdown(server: wire_server.Server) -> None:
    """Hook processes (study and storescp hooks) are killed by --shutdown-timeout."""
    server.on_stop(process.RUNNER.shutdown)


def serve(config: ReceiverConfig) -> int:
    """Run the receiver with the operations parts the configuration asks for."""
    wanted = (
        config.http_port is not None
        or config.event_log is not None
        or config.study_timeout is not None
    )
    if not wanted:
        return wire_server.serve(config, _hooks_end_by_the_shutdown)

    metrics = None
    endpoint = None
    ready = _Readiness(config.output_directory)
    if config.http_port is not None:
        from dcmrecv.ops.http import OpsEndpoint
        from dcmrecv.ops.metrics import ReceiverMetrics

        metrics = ReceiverMetrics(free_bytes=ready.free_bytes, flush_counts=ready.flush_counts)
        try:
            endpoint = OpsEndpoint(config.http_address, config.http_port, metrics, ready)
        except OSError as exc:
            log.critical(
                "cannot listen for HTTP on %s port %d: %s",
                config.http_address,
                config.http_port,
                exc.strerror or exc,
            )
            return EXITCODE_CANNOT_START_SCP_AND_LISTEN
    events = None
    if config.event_log is not None:
        try:
            events = EventLog(str(config.event_log), durable=config.fsync)
        except OSError as exc:
            if endpoint is not None:
                endpoint.stop()
            log.critical("cannot open event log %s: %s", config.event_log, exc.strerror or exc)
            return EXITCODE_CANNOT_WRITE_OUTPUT_FILE
    studies = None
    if config.study_timeout is not None:
        studies = StudyCompletion(
            config.study_timeout,
            command=config.study_command,
            command_timeout=config.study_command_timeout,
            write_event=events.write if events is not None else None,
        )
        studies.start()
    if endpoint is not None:
        endpoint.start()
        log.info(
            "serving /metrics, /healthz, /readyz on %s port %d", config.http_address, endpoint.port
        )

    def listening(server: wire_server.Server) -> None:
        ready.server = server
        _hooks_end_by_the_shutdown(server)

    try:
        return wire_server.serve(
            replace(config, observer=Operations(metrics, events, studies)), listening
        )
    finally:
        if endpoint is not None:
            endpoint.stop()
        if studies is not None:
            studies.stop()
        if events is not None:
            events.close()
