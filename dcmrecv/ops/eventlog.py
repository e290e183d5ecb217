"""``--event-log FILE``: one JSON object per line for what the receiver did.

Every stored instance, every failed one, every association end and every study
completion becomes one line.  A line is appended with one ``write`` on a file
opened ``O_APPEND`` (lines from concurrent associations never interleave), and
when the receiver fsyncs its files the event log is flushed (``fdatasync``) before
the C-STORE response too: after a Success, the event is on disk as durably as the
file.  A write that fails (disk full) raises, and the engine answers the C-STORE
with a failure status instead of losing the event.

The log may also be a stream: ``-`` (standard output, as containers log), a pipe
such as ``/dev/stdout`` under docker, a FIFO, a terminal.  A stream cannot seek, be
truncated or be flushed to disk, so a line is handed to the reader (the Success
waits for that, not for a disk) and nothing else is asked of it.  A stream never
blocks the receiver silently: a FIFO nobody reads is refused when the log is opened
(``O_NONBLOCK``: ENXIO, where a plain open would wait for a reader forever), and a
reader that takes nothing for ``write_timeout`` seconds fails the write like a full
disk.  A line cut off that way (or by a reader that went away) is ended by the next
write, so a reader skips one broken line and no more.

Values are JSON strings, so peer text (AE titles, UIDs) can never break a line:
``json.dumps`` escapes control characters and quotes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import select
import stat
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from dcmrecv import events
from dcmrecv.events import AssociationInfo, EventBus, Veto
from dcmrecv.status import Status, is_stored

log = logging.getLogger(__name__)

#: Field names, the same in every kind of event.
EVENT = "event"
TIME = "time"
#: ``--event-log -``: standard output.
STANDARD_OUTPUT: Final = "-"
#: Seconds a stream's reader may take nothing before a write fails.
WRITE_TIMEOUT: Final = 10.0


def now_iso() -> str:
    """The current time as ISO 8601 with microseconds and the UTC offset."""
    return datetime.now(UTC).astimezone().isoformat(timespec="microseconds")


def encode_event(kind: str, fields: Mapping[str, object], time: str | None = None) -> bytes:
    """One event as a JSON line (pure): ``{"event": kind, "time": ..., **fields}``."""
    record: dict[str, object] = {EVENT: kind, TIME: time or now_iso()}
    record.update(fields)
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def store_event_failure(exc: OSError, stored_path: str | None, reason: str | None) -> OSError:
    """The error a C-STORE is failed with when its event cannot be written (pure).

    The answer becomes a failure, so the sender keeps the instance; the message says
    what became of what arrived, so that a file on disk whose store was answered
    with a failure is never a mystery (the file stays: removing it could not bring
    back an earlier copy it replaced, and a re-send finds it and succeeds).
    """
    why = exc.strerror or str(exc)
    if stored_path is not None:
        fate = f"the received file stays as {stored_path}"
    else:
        fate = f"nothing was stored ({reason})" if reason else "nothing was stored"
    return OSError(exc.errno or errno.EIO, f"{why}; {fate}")


def _open(path: str) -> tuple[int, bool]:
    """A descriptor for ``path`` and whether it is a regular file.  OSError with the
    reason, also for a FIFO that nobody reads (never a silent wait)."""
    if path == STANDARD_OUTPUT:
        # Our own open file description where the system gives one (a pipe, as
        # under docker), so that our non-blocking mode is not also that of
        # everything else writing to standard output (hooks do); else a duplicate.
        if stat.S_ISFIFO(os.fstat(1).st_mode):
            with contextlib.suppress(OSError):
                fd = os.open("/proc/self/fd/1", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                return fd, False
        fd = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
        return fd, stat.S_ISREG(os.fstat(fd).st_mode)
    # O_APPEND: every write lands at the end, whoever else appends (logrotate's
    # copytruncate included).  0o640: events name patients' studies.  O_NONBLOCK:
    # opening a FIFO without a reader fails (ENXIO) instead of waiting for one.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o640)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(
                errno.ENXIO,
                "no process is reading it (a FIFO needs its reader first; "
                "for standard output use --event-log -)",
            ) from None
        raise
    regular = stat.S_ISREG(os.fstat(fd).st_mode)
    if regular:
        os.set_blocking(fd, True)
    return fd, regular


class EventLog:
    """An append-only JSON lines file or stream shared by all associations (thread-safe)."""

    def __init__(self, path: str, *, durable: bool, write_timeout: float = WRITE_TIMEOUT) -> None:
        self.path = path
        self._fd, self.regular = _open(path)
        #: A stream cannot be flushed to a disk: the line is with its reader.
        self.durable = durable and self.regular
        self.write_timeout = write_timeout
        #: A stream's last line was cut off: the next write ends it first.
        self._torn = False
        self._lock = threading.Lock()

    def write(self, kind: str, fields: Mapping[str, object]) -> None:
        """Append one event; with ``durable``, on disk when this returns.  OSError on failure."""
        line = encode_event(kind, fields)
        with self._lock:
            if not self.regular:
                self._write_stream(line)
                return
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

    def _write_stream(self, line: bytes) -> None:
        """Hand ``line`` to the stream's reader within ``write_timeout``.  Holds the lock."""
        # A line cut off before is ended first: the reader skips one broken line.
        prefix = 1 if self._torn else 0
        data = memoryview(b"\n" + line if prefix else line)
        total = len(data)
        deadline = time.monotonic() + self.write_timeout
        try:
            while data:
                left = deadline - time.monotonic()
                if left <= 0 or not _writable(self._fd, left):
                    raise OSError(
                        errno.ETIMEDOUT, f"its reader took nothing for {self.write_timeout:g} s"
                    )
                try:
                    data = data[os.write(self._fd, data) :]
                except BlockingIOError:
                    continue
        finally:
            # Broken pipe, a reader that stopped: is a line left cut off?
            sent = total - len(data)
            self._torn = (sent == 0 and prefix == 1) or (sent > prefix and len(data) > 0)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _writable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` takes data within ``timeout`` seconds (POLLERR/POLLHUP count:
    the write then says what is wrong)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(max(timeout, 0.0) * 1000))


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
        # Storage commitment: each process writes what it did (a worker answers
        # requests and may report on their association; any process delivers).
        bus.subscribe(events.CommitmentRequested, self.commitment_requested)
        bus.subscribe(events.CommitmentReported, self.commitment_reported)

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
            # ... and the E: line says what became of the file (issue 22).
            lost = store_event_failure(exc, path if stored else None, event.reason)
            why = f"cannot write the event log: {lost.strerror}"
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

    def commitment_requested(self, event: events.CommitmentRequested) -> None:
        fields = association_fields(event.association)
        fields.update(
            transaction_uid=event.transaction_uid or None,
            instances=event.instances,
            status=f"0x{event.status:04X}",
        )
        if event.duplicate:
            fields["duplicate"] = True
        if event.reason is not None:
            fields["reason"] = event.reason
        self._write("commitment_requested" if event.status == 0 else "commitment_refused", fields)

    def commitment_reported(self, event: events.CommitmentReported) -> None:
        fields: dict[str, object] = {
            "transaction_uid": event.transaction_uid,
            "requester": event.requester,
            "committed": event.committed,
            "failed": event.failed,
            "via": event.via,
            "attempts": event.attempts,
        }
        if event.reason is not None:
            fields["reason"] = event.reason
        self._write("commitment_reported" if event.delivered else "commitment_failed", fields)

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
