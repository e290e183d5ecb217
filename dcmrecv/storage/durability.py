"""Group commit: one device flush makes every file waiting for it durable at once.

Before answering Success the writer waits for a ``GroupCommit.flush()`` that makes
the file's bytes and its final name durable (storage/writer.py says in which order
it names and flushes, and how a crash in between is recovered).  A caller that is
alone flushes just its own file (``fsync``) where that also makes the file's new
name durable, and the whole file system (``syncfs(2)``) elsewhere; callers that
arrive while a flush is running wait for the next one, which one of them runs for
all with ``syncfs``.  Every call returns only after a flush that *began after* its
own writes has completed, so Success keeps meaning "this file survives a power cut".

Which file systems make a new name durable with the file's fsync: ext4 and XFS
journal the link with the inode it changes, and fsync commits the journal up to
that change (ext4 without a journal, as on this project's test VMs, instead writes
out the directories of a newly created file with it, up through any directory just
made: the temporary file is created in its final directory, so that is the one);
btrfs logs an inode's new names when it is fsync'ed.  POSIX does not
promise it, so any other type gets syncfs.  syncfs is Linux's (2.6.39; it reports
write-back errors since 5.8); where the C library lacks it, and the file system is
not one of those three, every flush is the file's fsync plus its directory's.
"""

from __future__ import annotations

import collections
import ctypes
import os
import threading
import time
from collections.abc import Callable
from typing import Final

#: How long a flush may wait for other files that are being committed at the same
#: moment (PostgreSQL's commit_delay, for the same reason): about one flush of this
#: project's disk, so the wait costs at most what it can save.
COMMIT_DELAY: Final = 0.001
#: File systems whose fsync of a file also makes its new names durable (see above).
FSYNC_KEEPS_NAMES: Final = frozenset({"ext4", "xfs", "btrfs"})
#: Failed flushes remembered for the callers that waited on them.
_REMEMBERED_FAILURES: Final = 64

SyncFs = Callable[[int], None]


def _load_syncfs() -> SyncFs | None:
    """``syncfs(2)`` from the C library, or None where there is none."""
    try:
        # The process's own symbols include the C library's: no library search (which
        # would run ldconfig in a subprocess).
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int,)
    function.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        # ctypes releases the GIL for the call: other associations go on meanwhile.
        if function(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs: {os.strerror(code)}")

    return syncfs


class GroupCommit:
    """Flushes of one file system, shared by the callers that wait at the same time."""

    def __init__(
        self,
        syncfs: SyncFs | None = None,
        fsync: SyncFs | None = None,
        *,
        fsync_keeps_names: bool = False,
    ) -> None:
        self._syncfs = syncfs
        self._fsync_keeps_names = fsync_keeps_names
        #: None: ``os.fsync``, looked up at each call.
        self._fsync = fsync
        self._changed = threading.Condition(threading.Lock())
        #: Callers numbered in order of arrival; every number up to ``_covered`` is
        #: durable (or was failed, see ``_failures``).
        self._arrived = 0
        self._covered = 0
        self._flushing = False
        #: Files between ``committing()`` and ``committed()``: each will call
        #: ``flush`` within moments, so a flush waits for them (up to COMMIT_DELAY).
        self._committing = 0
        self._failures: collections.deque[tuple[int, int, OSError]] = collections.deque(
            maxlen=_REMEMBERED_FAILURES
        )
        #: Device flushes run and callers served, for the metrics and the benchmark.
        self.flushes = 0
        self.served = 0

    @classmethod
    def for_directory(cls, directory: str) -> GroupCommit:
        """For the file system that holds ``directory``."""
        kind = filesystem_type(directory)
        return cls(_load_syncfs(), fsync_keeps_names=kind in FSYNC_KEEPS_NAMES)

    @property
    def covers_names(self) -> bool:
        """Whether one ``flush(file)`` also makes the file's new names durable."""
        return self._syncfs is not None or self._fsync_keeps_names

    def committing(self) -> None:
        """A file's last byte has arrived; it will flush soon."""
        with self._changed:
            self._committing += 1

    def committed(self) -> None:
        """That file has its answer (Success or not); a flush no longer waits for it."""
        with self._changed:
            self._committing -= 1
            self._changed.notify_all()

    def flush(self, fd: int) -> None:
        """Return once ``fd`` and everything else written before the call is durable.

        ``fd`` is the caller's file or directory; alone, the caller fsyncs just
        that.  Raises the flush's OSError, also to every caller whose writes that
        failed flush was to cover.  All callers must be on one file system.
        """
        if self._syncfs is None:
            self._own(fd)
            with self._changed:
                self.flushes += 1
                self.served += 1
            return
        with self._changed:
            self._arrived += 1
            ticket = self._arrived
            self._changed.notify_all()  # a leader may be waiting for us
            while self._flushing and self._covered < ticket:
                self._changed.wait()
            if self._covered >= ticket:
                # A flush that began after our writes has covered them.
                self.served += 1
                self._raise_if_failed(ticket)
                return
            self._flushing = True
            self._await_siblings()
            first, last = self._covered + 1, self._arrived
        error: OSError | None = None
        try:
            if first == last and self._fsync_keeps_names:
                self._own(fd)
            else:
                self._syncfs(fd)
        except OSError as exc:
            error = exc
        with self._changed:
            self._flushing = False
            self._covered = last
            self.flushes += 1
            self.served += 1
            if error is not None:
                self._failures.append((first, last, error))
            self._changed.notify_all()
        if error is not None:
            raise error

    def _own(self, fd: int) -> None:
        """The caller's own flush: its file or directory only."""
        (self._fsync or os.fsync)(fd)

    def _await_siblings(self) -> None:
        """Hold the flush while files being committed now have not all arrived."""
        deadline: float | None = None
        while self._arrived - self._covered < self._committing:
            now = time.monotonic()
            if deadline is None:
                deadline = now + COMMIT_DELAY
            elif now >= deadline:
                return
            self._changed.wait(deadline - now)

    def _raise_if_failed(self, ticket: int) -> None:
        for first, last, error in self._failures:
            if first <= ticket <= last:
                raise OSError(error.errno, f"{error.strerror or error} (flush shared with others)")


def mount_type(mountinfo: str, device: tuple[int, int]) -> str | None:
    """The file system type of the mount of ``device`` (major, minor) in the text of
    ``/proc/self/mountinfo`` (proc(5): field 3 is major:minor, the type follows the
    " - " separator), or None when it is not listed."""
    wanted = f"{device[0]}:{device[1]}"
    for line in mountinfo.splitlines():
        before, separator, after = line.partition(" - ")
        fields = before.split()
        if separator and len(fields) >= 3 and fields[2] == wanted:
            return after.split(maxsplit=1)[0] if after.strip() else None
    return None


def filesystem_type(directory: str) -> str | None:
    """The type of the file system holding ``directory`` (Linux), or None."""
    try:
        device = os.stat(directory).st_dev
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as file:
            return mount_type(file.read(), (os.major(device), os.minor(device)))
    except OSError:
        return None
