"""Group commit (dcmrecv/storage/durability.py): who flushes, and who waits for whom.

The flush calls are replaced by recorders that can be held, so that "callers
arriving during a flush share the next one" is tested by construction, not by
timing.  The real syncfs is exercised at the end, on a real file.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dcmrecv.storage.durability import GroupCommit, _load_syncfs, mount_type
from tests.helpers import wait_until


class Flushes:
    """Recorded fsync and syncfs calls; ``hold`` makes the next fsync wait."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.hold = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()
        self.fail: OSError | None = None

    def fsync(self, fd: int) -> None:
        self.calls.append(("fsync", fd))
        if self.hold.is_set():
            self.hold.clear()
            self.holding.set()
            assert self.release.wait(10)

    def syncfs(self, fd: int) -> None:
        self.calls.append(("syncfs", fd))
        if self.fail is not None:
            raise self.fail


def _start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_a_caller_alone_flushes_only_its_own_file() -> None:
    flushes = Flushes()
    commit = GroupCommit(flushes.syncfs, flushes.fsync, fsync_keeps_names=True)
    commit.flush(7)
    commit.flush(8)
    assert flushes.calls == [("fsync", 7), ("fsync", 8)]
    assert (commit.flushes, commit.served) == (2, 2)


def test_alone_on_another_file_system_the_caller_syncs_the_file_system() -> None:
    # Where a file's fsync may leave its new name behind (POSIX does not promise it),
    # syncfs covers both.
    flushes = Flushes()
    commit = GroupCommit(flushes.syncfs, flushes.fsync, fsync_keeps_names=False)
    commit.flush(7)
    assert flushes.calls == [("syncfs", 7)]
    assert commit.covers_names
    assert not GroupCommit(None, flushes.fsync, fsync_keeps_names=False).covers_names


def test_mount_type_reads_the_mount_of_the_device() -> None:
    mountinfo = (
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "90 27 0:45 / /data rw,relatime - xfs /dev/sdb1 rw\n"
    )
    assert mount_type(mountinfo, (254, 0)) == "ext4"
    assert mount_type(mountinfo, (0, 45)) == "xfs"
    assert mount_type(mountinfo, (8, 1)) is None


def test_callers_arriving_during_a_flush_share_the_next_one() -> None:
    flushes = Flushes()
    commit = GroupCommit(flushes.syncfs, flushes.fsync, fsync_keeps_names=True)
    flushes.hold.set()
    first = _start(lambda: commit.flush(1))
    assert flushes.holding.wait(10)
    # Four more files are complete while the first flush runs: that flush began
    # before their writes, so it must not count for them.
    others = [_start(lambda fd=fd: commit.flush(fd)) for fd in (2, 3, 4, 5)]
    wait_until(lambda: commit._arrived == 5, "five callers", timeout=10)
    assert all(thread.is_alive() for thread in others)
    flushes.release.set()
    for thread in [first, *others]:
        thread.join(10)
        assert not thread.is_alive()
    # One fsync for the first, then one syncfs (on whichever waiter led) for the other four.
    assert [name for name, _fd in flushes.calls] == ["fsync", "syncfs"]
    assert flushes.calls[1][1] in (2, 3, 4, 5)
    assert (commit.flushes, commit.served) == (2, 5)


def test_a_failed_shared_flush_fails_every_caller_it_was_to_cover() -> None:
    flushes = Flushes()
    commit = GroupCommit(flushes.syncfs, flushes.fsync, fsync_keeps_names=True)
    flushes.fail = OSError(errno.EIO, "Input/output error")
    flushes.hold.set()
    errors: list[OSError] = []

    def flush(fd: int) -> None:
        try:
            commit.flush(fd)
        except OSError as exc:
            errors.append(exc)

    first = _start(lambda: flush(1))
    assert flushes.holding.wait(10)
    others = [_start(lambda fd=fd: flush(fd)) for fd in (2, 3, 4)]
    wait_until(lambda: commit._arrived == 4, "four callers", timeout=10)
    flushes.release.set()
    for thread in [first, *others]:
        thread.join(10)
    # The first caller's own fsync succeeded; the three that shared the syncfs all fail.
    assert len(errors) == 3
    assert all(error.errno == errno.EIO for error in errors)
    # The next caller is not blamed for an earlier failure.
    flushes.fail = None
    commit.flush(9)
    assert flushes.calls[-1] == ("fsync", 9)


def test_without_syncfs_every_caller_flushes_its_own_file() -> None:
    flushes = Flushes()
    commit = GroupCommit(None, flushes.fsync)
    threads = [_start(lambda fd=fd: commit.flush(fd)) for fd in range(6)]
    for thread in threads:
        thread.join(10)
    assert sorted(fd for _name, fd in flushes.calls) == list(range(6))
    assert commit.flushes == 6


def test_the_c_library_syncfs_flushes_a_real_file(tmp_path: Path) -> None:
    syncfs = _load_syncfs()
    if syncfs is None:
        pytest.skip("this C library has no syncfs")
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x")
        syncfs(fd)
        with pytest.raises(OSError) as raised:
            syncfs(-1)
        assert raised.value.errno == errno.EBADF
    finally:
        os.close(fd)
