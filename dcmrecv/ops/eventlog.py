"""``--event-log FILE``: one JSON object per line for what the receiver did.

Every stored instance, every failed one, every association end and every study
completion becomes one line.  A line is appended with one ``write`` on a file
opened ``O_APPEND`` (lines from concurrent associations never interleave), and
when the receiver fsyncs its files the event log is flushed (``fdatasync``) before
the C-STORE response too: after a Success, the event is on disk as durably as the
file.  A write that fails (disk full) raises, and the engine answers the C-STORE
with a failure status instead of losing the event.

Values are JSON strings, so peer text (AE titles, UIDs) can never break a line:
``json.dumps`` escapes control characters and quotes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from dcmrecv import events
from dcmrecv.events import AssociationInfo, EventBus, Veto
from dcmrecv.status import Status, is_stored

log = logging.getLogger(__name__)

#: Field names, the same in every kind of event.
EVENT = "event"
TIME = "time"


def now_iso() -> str:
    """The current time as ISO 8601 with microseconds and the UTC offset."""
    return datetime.now(UTC).astimezone().isoformat(timespec="microseconds")


def encode_event(kind: str, fields: Mapping[str, object], time: str | None = None) -> bytes:
    """One event as a JSON line (pure): ``{"event": kind, "time": ..., **fields}``."""
    record: dict[str, object] = {EVENT: kind, TIME: time or now_iso()}
    record.update(fields)
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


class EventLog:
    """An append-only JSON lines file shared by all associations (thread-safe)."""

    def __init__(self, path: str, *, durable: bool) -> None:
        self.path = path
        self.durable = durable
        # O_APPEND: every write lands at the end, whoever else appends (logrotate's
        # copytruncate included).  0o640: events name patients' studies.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._lock = threading.Lock()

    def write(self, kind: str, fields: Mapping[str, object]) -> None:
        """Append one event; with ``durable``, on disk when this returns.  OSError on failure."""
        line = encode_event(kind, fields)
        with self._lock:
            end = os.lseek(self._fd, 0, os.SEEK_END)
            written = os.write(self._fd, line)
            if written != len(line):
                # A short append (disk full in the middle): cut the torn line off
                # again, so the next event does not start in the middle of a line
                # and the log stays whole lines; then say so rather than pretend.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, end)
                raise OSError(f"event log: wrote {written} of {len(line)} bytes")
            if self.durable:
                os.fdatasync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class EventLogWriter:
    """The event log as a subscriber: one line per instance (written before its
    response, a veto point), association end and study."""

    def __init__(self, log_file: EventLog) -> None:
        self.log_file = log_file

    def subscribe(self, bus: EventBus, *, instances: bool = True, studies: bool = True) -> None:
        """``instances``: instance and association lines; ``studies``: study lines."""
        if instances:
            bus.subscribe_veto(events.InstanceAnswered, self.instance_answered)
            bus.subscribe(events.AssociationEnded, self.association_ended)
        if studies:
            bus.subscribe(events.StudyCompleted, self.study_completed)
            bus.subscribe(events.StudyOpenAtShutdown, self.study_open_at_shutdown)

    def instance_answered(self, event: events.InstanceAnswered) -> Veto | None:
        """Written (and flushed) before the C-STORE response, so that a Success is
        never sent for an instance the log does not record; when it cannot be written
        (its disk is full) the answer becomes 0xA700, Out of Resources (PS3.4 B.2.3),
        and the sender keeps the instance."""
        stored = is_stored(event.status)
        # Absolute: the hook and a log reader need not know the receiver's directory.
        path = os.path.abspath(event.path) if event.path else None
        size = file_size(path) if stored and path is not None else None
        fields = association_fields(event.association)
        fields.update(
            path=path,
            sop_class_uid=event.sop_class_uid,
            sop_instance_uid=event.sop_instance_uid,
            study_instance_uid=event.study_instance_uid,
            series_instance_uid=event.series_instance_uid,
            transfer_syntax_uid=event.transfer_syntax_uid,
            size=size,
            received_bytes=event.received_bytes,
            status=f"0x{event.status:04X}",
        )
        if event.reason is not None:
            fields["reason"] = event.reason
        try:
            self.log_file.write("instance_stored" if stored else "instance_failed", fields)
        except OSError as exc:
            why = f"cannot write the event log: {exc.strerror or exc}"
            return Veto(Status.OUT_OF_RESOURCES, "Event log not writable", why)
        return None

    def association_ended(self, event: events.AssociationEnded) -> None:
        fields = association_fields(event.association)
        fields.update(
            instances=event.instances,
            failures=event.failures,
            received_bytes=event.received_bytes,
            seconds=round(event.seconds, 6),
            end="aborted" if event.aborted else "released",
        )
        self._write("association_ended", fields)

    def study_completed(self, event: events.StudyCompleted) -> None:
        summary = dict(event.manifest)
        summary.pop("files", None)
        summary.pop("state", None)
        self._write("study_updated" if event.followup else "study_complete", summary)

    def study_open_at_shutdown(self, event: events.StudyOpenAtShutdown) -> None:
        summary = dict(event.manifest)
        summary.pop("files", None)
        summary.pop("state", None)
        self._write("study_open_at_shutdown", summary)

    def _write(self, kind: str, fields: dict[str, object]) -> None:
        try:
            self.log_file.write(kind, fields)
        except OSError as exc:
            log.error(
                "cannot write %s event to the event log %s: %s", kind, self.log_file.path, exc
            )


def association_fields(association: AssociationInfo) -> dict[str, object]:
    return {
        "association": association.serial,
        "calling_ae_title": association.calling_ae_title,
        "called_ae_title": association.called_ae_title,
        "peer": association.peer_address,
    }


def file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None
