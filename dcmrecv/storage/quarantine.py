"""``--quarantine-dir``: data sets refused after they arrived, kept with the reason.

A C-STORE whose data set arrived but is refused (0xC000 cannot understand, 0xA900
does not match the request, the normal mode's consistency checks, a rejected
duplicate) would otherwise leave no trace but a log line.  With a quarantine the
received file moves there, under ``<UTC time>-<16 hex>.dcm`` (a Part 10 file as
it would have been stored, or the bare data set when no file meta could be made),
with ``<same>.json`` beside it: the association (calling and called AE title,
peer, serial), the status, the reason, the time, and the SOP class and instance
as the request named them, made printable.

The quarantine is outside the output directory (the command refuses one inside),
so nothing refused ever appears under a stored instance's name.  Moving is a
rename when both directories share a file system, else a copy and unlink.

What a peer sends cannot take the store's disk through it (issue 22: 25 refused
1 MB data sets filled a 30 MB file system past ``--min-free-space``):

* It holds at most ``limit`` of allocated blocks (``st_blocks``, what the file
  system gives: a 1 KB refusal and its sidecar take 8 KiB on ext4, not 1 KB), its
  sidecars counted; the default is :data:`SHARE` percent of its file system.
* An entry is kept only while the quarantine's file system keeps ``--min-free-space``
  plus :data:`SHARE` percent of its blocks and of its inodes free afterwards.  So the
  quarantine never takes the last free space above the store's mark: legitimate
  senders keep that much room whatever peers send.
* To make room the oldest entries go first; when no removal makes enough room, the
  data set is not kept (the refusal's log line says why).

Entries are indexed in memory, oldest first, from one scan of the directory when the
receiver starts; after that an addition costs one ``statvfs`` and the removals it
needs, the same at 10 entries as at 100,000 (it rescanned the whole directory under
one lock before: 18 ms a refusal at 4000 entries).  Files put into the directory or
removed from it by hand are seen at the next start.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from dcmrecv.storage.freespace import Watermark, human

DATA_SUFFIX: Final = ".dcm"
SIDECAR_SUFFIX: Final = ".json"
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Percent of the quarantine's file system: the default limit, and the free blocks
#: and inodes (above ``--min-free-space``) it never takes.
SHARE: Final = 5.0
DEFAULT_LIMIT: Final = Watermark(f"{SHARE:g}%", percent=SHARE)
#: stat(2): st_blocks counts 512-byte units whatever the file system's block size.
_STAT_BLOCK: Final = 512


def entry_name(now: datetime, token: str) -> str:
    """``20240506T070809.123456Z-<token>``: sorts by time, so oldest first."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}-{token}"


@dataclass(frozen=True)
class Usage:
    """What one entry (data file and sidecar) takes: allocated bytes and files (inodes)."""

    allocated: int
    files: int


@dataclass(frozen=True)
class Room:
    """What an addition may take (pure input of :func:`make_room`)."""

    #: Allocated bytes and files the quarantine holds now, and its limit in bytes.
    held: int
    limit: int
    #: Free bytes and inodes of its file system once the new entry is in, and the
    #: least of each that must stay free.
    free_after: int
    free_floor: int
    inodes_after: int
    inodes_floor: int


class NotKept(OSError):
    """The data set is not quarantined; ``strerror`` says why (for the refusal's line)."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.ENOSPC, reason)


def make_room(oldest_first: Iterable[tuple[str, Usage]], need: int, room: Room) -> list[str]:
    """The entries to remove, oldest first, so that an entry taking ``need`` bytes fits
    within the limit and leaves the floors free (pure).  Looks at no more entries than
    it removes, plus one.  NotKept when even removing every entry is not enough."""
    if need > room.limit:
        raise NotKept(f"larger than --quarantine-limit ({human(need)} > {human(room.limit)})")
    held, free, inodes = room.held, room.free_after, room.inodes_after
    remove: list[str] = []
    entries = iter(oldest_first)
    while held + need > room.limit or free < room.free_floor or inodes < room.inodes_floor:
        try:
            name, usage = next(entries)
        except StopIteration:
            if free < room.free_floor:
                raise NotKept(
                    f"it would leave {human(max(free, 0))} free, less than"
                    f" {human(room.free_floor)} (--min-free-space plus {SHARE:g}% of the"
                    " file system)"
                ) from None
            raise NotKept(
                f"it would leave {max(inodes, 0)} free inodes, less than {room.inodes_floor}"
                f" ({SHARE:g}% of the file system's)"
            ) from None
        remove.append(name)
        held -= usage.allocated
        free += usage.allocated
        inodes += usage.files
    return remove


Measure = Callable[[str], os.statvfs_result]


class Quarantine:
    """The quarantine directory; safe to use from several associations at once."""

    def __init__(
        self,
        directory: Path,
        limit: Watermark | None = None,
        min_free_space: Watermark | None = None,
        *,
        measure: Measure = os.statvfs,
    ) -> None:
        self.directory = directory
        self._measure = measure
        fs = measure(str(directory))
        total = fs.f_blocks * fs.f_frsize
        #: Bytes of allocated blocks the quarantine may hold (a percentage: of its
        #: file system, as at start-up).
        self.limit = (limit or DEFAULT_LIMIT).bytes_for(total)
        self._free_floor = (min_free_space.bytes_for(total) if min_free_space else 0) + int(
            total * SHARE / 100
        )
        self._inodes_floor = int(fs.f_files * SHARE / 100)
        #: A sidecar's allocation before it is written: one block.
        self._block = max(fs.f_frsize, _STAT_BLOCK)
        self._device = os.stat(directory).st_dev
        self._lock = threading.Lock()
        #: Entry (name without suffix) -> what it takes; oldest first.
        self._index: OrderedDict[str, Usage] = OrderedDict()
        #: Allocated bytes of every entry in the index.
        self.held = 0
        for stem, usage in sorted(_scan(directory).items()):
            self._index[stem] = usage
            self.held += usage.allocated

    def __len__(self) -> int:
        return len(self._index)

    def keep(
        self, source_dir_fd: int, source_name: str, source_fd: int, record: Mapping[str, object]
    ) -> str:
        """Move the file ``source_name`` (open as ``source_fd``) here with its sidecar.

        Returns the entry's data file name.  NotKept (an OSError) when it may not be
        kept (too large, not enough free space): it is then left where it was; another
        OSError when moving fails.
        """
        info = os.fstat(source_fd)
        data = max(info.st_blocks * _STAT_BLOCK, self._block)
        need = data + self._block
        # What keeping takes from the file system: on the same one, the data's blocks
        # are in use already (a rename), only the sidecar is new.
        same = info.st_dev == self._device
        name = entry_name(datetime.now(UTC), secrets.token_hex(8))
        with self._lock:
            fs = self._measure(str(self.directory))
            room = Room(
                held=self.held,
                limit=self.limit,
                free_after=fs.f_bavail * fs.f_frsize - (self._block if same else need),
                free_floor=self._free_floor,
                inodes_after=fs.f_favail - (1 if same else 2),
                inodes_floor=self._inodes_floor,
            )
            for old in make_room(self._index.items(), need, room):
                self._remove(old)
            # Reserved before the move, so that concurrent additions see it.
            self._index[name] = Usage(need, 2)
            self.held += need
        try:
            data_name = self._move(source_dir_fd, source_name, source_fd, name, record)
        except BaseException:
            with self._lock:
                self.held -= self._index.pop(name).allocated
            raise
        return data_name

    def _move(
        self,
        source_dir_fd: int,
        source_name: str,
        source_fd: int,
        name: str,
        record: Mapping[str, object],
    ) -> str:
        data_name, sidecar_name = name + DATA_SUFFIX, name + SIDECAR_SUFFIX
        target_fd = os.open(self.directory, _DIR_FLAGS)
        try:
            try:
                os.rename(source_name, data_name, src_dir_fd=source_dir_fd, dst_dir_fd=target_fd)
                allocated = os.fstat(source_fd).st_blocks * _STAT_BLOCK
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                allocated = self._copy(source_fd, target_fd, data_name)
                os.unlink(source_name, dir_fd=source_dir_fd)
            text = json.dumps({**record, "file": data_name}, indent=2, ensure_ascii=True)
            sidecar = os.open(
                sidecar_name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=target_fd,
            )
            with open(sidecar, "w", encoding="ascii") as handle:
                handle.write(text + "\n")
                handle.flush()
                allocated += os.fstat(handle.fileno()).st_blocks * _STAT_BLOCK
        finally:
            os.close(target_fd)
        with self._lock:
            if name in self._index:  # not removed meanwhile to make room
                self.held += allocated - self._index[name].allocated
                self._index[name] = Usage(allocated, 2)
        return data_name

    def _remove(self, stem: str) -> None:
        """Forget an entry and delete its files.  Holds the lock."""
        self.held -= self._index.pop(stem).allocated
        for suffix in (DATA_SUFFIX, SIDECAR_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / (stem + suffix))

    @staticmethod
    def _copy(source_fd: int, target_fd: int, name: str) -> int:
        """Copy into a new file ``name``; its allocated bytes."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o644, dir_fd=target_fd)
        try:
            os.lseek(source_fd, 0, os.SEEK_SET)
            with (
                open(source_fd, "rb", closefd=False) as source,
                open(fd, "wb", closefd=False) as target,
            ):
                shutil.copyfileobj(source, target)
            return os.fstat(fd).st_blocks * _STAT_BLOCK
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=target_fd)
            raise
        finally:
            os.close(fd)


def _scan(directory: Path) -> dict[str, Usage]:
    """Every entry in the directory with what it takes (once, at start-up)."""
    found: dict[str, Usage] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            stem, dot, suffix = entry.name.rpartition(".")
            if not dot or "." + suffix not in (DATA_SUFFIX, SIDECAR_SUFFIX):
                continue
            with contextlib.suppress(OSError):
                blocks = entry.stat(follow_symlinks=False).st_blocks * _STAT_BLOCK
                before = found.get(stem, Usage(0, 0))
                found[stem] = Usage(before.allocated + blocks, before.files + 1)
    return found
