"""What a crash leaves in the output directory, and putting it right at start-up.

The writer (storage/writer.py) receives each instance into a hidden temporary file
``.dcmrecv-<16 hex>.part`` in the output directory.  Where one flush makes both a
file and its names durable (storage/durability.py), the temporary file is first
renamed ``.dcmrecv-<16 hex>-<size>.part``, then linked to its final name, then
flushed, and only then unlinked and Success answered.  So after a power cut a
temporary file that still has a second name is one of two things:

* its flush completed (Success may have been sent): the file has all ``<size>``
  bytes, and only the temporary name must go;
* its flush did not complete (no Success was sent): the journal may hold the new
  name while the data never reached the disk, so the file is shorter than
  ``<size>``.  The final name is removed too: a reader must never find a truncated
  file, and the sender, which got no Success, sends the instance again.

A temporary file with no other name is removed, as before.  One that a live
receiver still holds (its ``flock``) is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

TEMP_PREFIX: Final = ".dcmrecv-"
TEMP_SUFFIX: Final = ".part"
_TEMP_NAME: Final = re.compile(r"\.dcmrecv-[0-9a-f]{16}(?:-([0-9]{1,20}))?\.part")


def new_temp_name() -> str:
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"


def sized_temp_name(name: str, size: int) -> str:
    """``name`` with the size the file must reach, for recovery to check."""
    return f"{name.removesuffix(TEMP_SUFFIX)}-{size}{TEMP_SUFFIX}"


def expected_size(name: str) -> int | None:
    """The size a temporary file's name records; None if it records none."""
    match = _TEMP_NAME.fullmatch(name)
    if match is None or match.group(1) is None:
        return None
    return int(match.group(1))


def is_temp_name(name: str) -> bool:
    return _TEMP_NAME.fullmatch(name) is not None


@dataclass
class Recovery:
    """What ``recover()`` did."""

    #: Temporary files removed.
    removed: int = 0
    #: Final names removed because their data did not survive the crash.
    truncated: int = 0


def recover(root: str, *, top_only: bool = False) -> Recovery:
    """Remove the leftovers of a crash anywhere under ``root`` (see the module).

    The whole tree is walked once (a temporary file moved deeper by hand is found
    too); symbolic links are not followed.  ``top_only`` looks at ``root`` itself
    only, where the writer makes its temporary files: after one worker of several
    died, the others' files are in use (locked) and left alone.  A second walk, only
    when a truncated file was found, looks for its final names by inode number,
    which the directory listing gives without a stat per file.
    """
    outcome = Recovery()
    #: (device, inode) of files whose final names must go.
    truncated: set[tuple[int, int]] = set()
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames:
            if is_temp_name(name):
                _recover_temp(dirpath, name, outcome, truncated)
        if top_only:
            break
    if truncated:
        _remove_truncated(root, truncated, outcome)
    return outcome


def _recover_temp(
    dirpath: str, name: str, outcome: Recovery, truncated: set[tuple[int, int]]
) -> None:
    path = os.path.join(dirpath, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a live receiver holds it
        except OSError:
            # No flock on this file system (ENOLCK, ...): nothing can be in use
            # across a restart that we could tell apart.
            pass
        status = os.fstat(fd)
        size = expected_size(name)
        if status.st_nlink > 1 and size is not None and status.st_size != size:
            truncated.add((status.st_dev, status.st_ino))
            log.warning(
                "%s has %d of its %d bytes after a crash: removing it and its final name"
                " (no Success was sent for it)",
                path,
                status.st_size,
                size,
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            outcome.removed += 1
    finally:
        os.close(fd)


def _remove_truncated(root: str, truncated: set[tuple[int, int]], outcome: Recovery) -> None:
    inodes = {inode for _device, inode in truncated}
    directories = [root]
    while directories:
        try:
            entries = list(os.scandir(directories.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    directories.append(entry.path)
                    continue
                if entry.inode() not in inodes:
                    continue
                status = entry.stat(follow_symlinks=False)
                if (status.st_dev, status.st_ino) in truncated:
                    os.unlink(entry.path)
                    outcome.truncated += 1
                    log.warning(
                        "removed %s: truncated by a crash before it was acknowledged",
                        entry.path,
                    )
            except OSError:
                continue
