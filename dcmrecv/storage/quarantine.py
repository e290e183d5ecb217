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
so nothing refused ever appears under a stored instance's name.  It holds at most
``limit`` bytes: after each addition the oldest pairs go first.  A file alone
larger than the limit is not kept (the log says so).  Moving is a rename when both
directories share a file system, else a copy and unlink.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

DATA_SUFFIX: Final = ".dcm"
SIDECAR_SUFFIX: Final = ".json"
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def entry_name(now: datetime, token: str) -> str:
    """``20240506T070809.123456Z-<token>``: sorts by time, so oldest first."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}-{token}"


def oldest_to_remove(sizes: Mapping[str, int], limit: int) -> list[str]:
    """Entry names (oldest first) to remove so the total stays within ``limit`` (pure)."""
    total = sum(sizes.values())
    remove = []
    for name in sorted(sizes):
        if total <= limit:
            break
        remove.append(name)
        total -= sizes[name]
    return remove


class Quarantine:
    """The quarantine directory; safe to use from several associations at once."""

    def __init__(self, directory: Path, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        self._lock = threading.Lock()

    def keep(
        self, source_dir_fd: int, source_name: str, source_fd: int, record: Mapping[str, object]
    ) -> str | None:
        """Move the file ``source_name`` (open as ``source_fd``) here with its sidecar.

        Returns the entry's data file name, or None when the file alone is larger
        than the limit (it is then left where it was).  OSError when moving fails.
        """
        size = os.fstat(source_fd).st_size
        if size > self.limit:
            return None
        name = entry_name(datetime.now(UTC), secrets.token_hex(8))
        data_name, sidecar_name = name + DATA_SUFFIX, name + SIDECAR_SUFFIX
        target_fd = os.open(self.directory, _DIR_FLAGS)
        try:
            try:
                os.rename(source_name, data_name, src_dir_fd=source_dir_fd, dst_dir_fd=target_fd)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                self._copy(source_fd, target_fd, data_name)
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
        finally:
            os.close(target_fd)
        self._trim()
        return data_name

    @staticmethod
    def _copy(source_fd: int, target_fd: int, name: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o644, dir_fd=target_fd)
        try:
            os.lseek(source_fd, 0, os.SEEK_SET)
            with (
                open(source_fd, "rb", closefd=False) as source,
                open(fd, "wb", closefd=False) as target,
            ):
                shutil.copyfileobj(source, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=target_fd)
            raise
        finally:
            os.close(fd)

    def _trim(self) -> None:
        """Remove the oldest entries until the quarantine is within its limit."""
        with self._lock:
            sizes: dict[str, int] = {}
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    stem, dot, suffix = entry.name.rpartition(".")
                    if not dot or "." + suffix not in (DATA_SUFFIX, SIDECAR_SUFFIX):
                        continue
                    with contextlib.suppress(OSError):
                        size = entry.stat(follow_symlinks=False).st_size
                        sizes[stem] = sizes.get(stem, 0) + size
            for stem in oldest_to_remove(sizes, self.limit):
                for suffix in (DATA_SUFFIX, SIDECAR_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.directory / (stem + suffix))
