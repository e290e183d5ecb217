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
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

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
