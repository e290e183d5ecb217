"""What one device flush costs on this disk: the unit of the durable overhead.

Issue 21: our durable default flushes once per instance, so its overhead over
``--no-fsync`` should be about one flush per instance; but "one flush" is a
property of the disk, not of the receiver.  This measures it where the receivers
write, in the output directory's file system: a small file written fresh (create,
write 4 KiB) and then ``fdatasync``'d, the time of the fdatasync alone, median of
``count``.  ``sync`` first, so the flushes do not write back what an earlier
scenario left dirty (ext4's ordered mode would make them).
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path

#: The size of the file flushed: a page, a small DICOM instance's order of size.
FLUSH_BYTES = 4096


def fdatasync_seconds(directory: Path, count: int, size: int = FLUSH_BYTES) -> float:
    """Median seconds of ``fdatasync`` on ``count`` freshly written ``size``-byte files."""
    if count < 1:
        raise ValueError("count must be at least 1")
    directory.mkdir(parents=True, exist_ok=True)
    payload = os.urandom(size)
    os.sync()
    timings = []
    for index in range(count):
        path = directory / f"flush-probe-{index}"
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(descriptor, payload)
            started = time.perf_counter()
            os.fdatasync(descriptor)
            timings.append(time.perf_counter() - started)
        finally:
            os.close(descriptor)
            path.unlink()
    return statistics.median(timings)


#: An output larger than this is deleted at once (the 1 GiB instance); smaller ones
#: are set aside until the run ends.
SET_ASIDE_LIMIT = 512 * 1024 * 1024


def set_aside(out: Path, trash: Path) -> None:
    """Remove ``out`` from the next measurement's way without deleting its files now.

    On ext4 without a journal (this project's test VMs) a freshly deleted inode is
    skipped, one by one, by every file created in the next minutes: deleting a
    run's 1000 files made each create of the next run cost 150-300 us instead of
    8 us, for both receivers alike, which pulled their ratio toward 1.  So outputs
    are moved aside (a rename) and deleted with the work directory at the end; a
    large one (few files, many bytes) is deleted at once, to keep the disk free.
    """
    if not out.exists():
        return
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    if size > SET_ASIDE_LIMIT:
        shutil.rmtree(out, ignore_errors=True)
        return
    trash.mkdir(parents=True, exist_ok=True)
    out.rename(trash / f"{out.name}-{len(list(trash.iterdir()))}")
