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
