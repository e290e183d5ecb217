"""``--min-free-space``: the watermark, and a cheap, cached look at the free space.

The watermark is a size (``5G``, ``500M``, ``1.5T``, plain bytes; powers of 1024 as
``df -h`` counts) or a percentage of the file system (``10%``).  ``FreeSpace`` asks
the file system (``statvfs``) at most once per ``interval`` seconds, whoever asks and
however often: a C-STORE or an A-ASSOCIATE-RQ costs a clock read, not a system call.
Space counts as the unprivileged user sees it (``f_bavail``), as the receiver runs.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?)(?:i?B)?\s*", re.IGNORECASE)
_PERCENT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


@dataclass(frozen=True)
class Watermark:
    """Free space to keep: ``size`` bytes, or ``percent`` of the file system."""

    text: str
    size: int | None = None
    percent: float | None = None

    def bytes_for(self, total: int) -> int:
        if self.percent is not None:
            return int(total * self.percent / 100)
        return self.size or 0

    def share(self, parts: int) -> Watermark:
        """One of ``parts`` equal shares of this mark (each worker's, ``--workers``)."""
        text = f"{self.text}/{parts}"
        if self.percent is not None:
            return Watermark(text, percent=self.percent / parts)
        return Watermark(text, size=(self.size or 0) // parts)


def parse_watermark(text: str) -> Watermark:
    """``5G``, ``500M``, ``10%``... -> Watermark; ValueError with the reason otherwise."""
    percent = _PERCENT.fullmatch(text)
    if percent:
        value = float(percent.group(1))
        if not 0 < value < 100:
            raise ValueError(f"{text!r}: a percentage must be between 0 and 100")
        return Watermark(text.strip(), percent=value)
    size = _SIZE.fullmatch(text)
    if not size:
        raise ValueError(f"{text!r}: expected a size such as 5G, 500M, 1.5T or 10%")
    return Watermark(text.strip(), size=int(float(size.group(1)) * _UNITS[size.group(2).upper()]))


def human(size: float) -> str:
    """Bytes as ``df -h`` shows them (1.5G)."""
    for unit in ("", "K", "M", "G", "T"):
        if abs(size) < 1024 or unit == "T":
            return f"{size:.0f}" if not unit else f"{size:.1f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Space:
    free: int
    total: int


def statvfs_space(path: str) -> Space:
    info = os.statvfs(path)
    return Space(info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize)


class FreeSpace:
    """The output file system's free space, refreshed at most every ``interval`` s."""

    def __init__(
        self,
        path: str,
        watermark: Watermark | None,
        interval: float = 1.0,
        measure: Callable[[str], Space] = statvfs_space,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.watermark = watermark
        self.interval = interval
        self._measure = measure
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = -float("inf")
        self._space = Space(0, 0)

    def space(self) -> Space:
        now = self._clock()
        with self._lock:
            if now - self._checked >= self.interval:
                self._space = self._measure(self.path)
                self._checked = now
            return self._space

    def free_bytes(self) -> float:
        return float(self.space().free)

    def shortage(self) -> str | None:
        """None while above the watermark; else a sentence naming both figures."""
        if self.watermark is None:
            return None
        space = self.space()
        needed = self.watermark.bytes_for(space.total)
        if space.free >= needed:
            return None
        return (
            f"free space {human(space.free)} in {self.path} is below "
            f"--min-free-space {self.watermark.text} ({human(needed)})"
        )
