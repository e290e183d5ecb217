"""--min-free-space, the pure part: parsing the watermark and the cached check."""

from __future__ import annotations

import pytest

from dcmrecv.storage.freespace import FreeSpace, Space, Watermark, parse_watermark


@pytest.mark.parametrize(
    ("text", "size", "percent"),
    [
        ("5G", 5 << 30, None),
        ("500M", 500 << 20, None),
        ("1.5T", int(1.5 * (1 << 40)), None),
        ("4096", 4096, None),
        ("2GiB", 2 << 30, None),
        ("10%", None, 10.0),
        (" 2.5 % ", None, 2.5),
    ],
)
def test_watermarks(text: str, size: int | None, percent: float | None) -> None:
    mark = parse_watermark(text)
    assert (mark.size, mark.percent) == (size, percent)


@pytest.mark.parametrize("text", ["", "G", "5X", "-1G", "0%", "100%", "150%", "five"])
def test_bad_watermarks(text: str) -> None:
    with pytest.raises(ValueError):
        parse_watermark(text)


def test_statvfs_is_asked_at_most_once_per_interval() -> None:
    calls: list[str] = []
    now = [0.0]
    free = [10 << 30]

    def measure(path: str) -> Space:
        calls.append(path)
        return Space(free[0], 100 << 30)

    space = FreeSpace("/data", Watermark("5G", size=5 << 30), 1.0, measure, lambda: now[0])
    for _ in range(1000):
        assert space.shortage() is None
    assert len(calls) == 1
    free[0] = 1 << 30
    now[0] = 0.5
    assert space.shortage() is None  # still the cached figure
    now[0] = 1.0
    assert space.shortage() == ("free space 1.0G in /data is below --min-free-space 5G (5.0G)")
    assert len(calls) == 2


def test_percentage_of_the_file_system() -> None:
    space = FreeSpace("/d", parse_watermark("10%"), 0, lambda p: Space(9, 100))
    assert space.shortage() == "free space 9 in /d is below --min-free-space 10% (10)"
    assert FreeSpace("/d", None, 0, lambda p: Space(0, 100)).shortage() is None


def test_the_real_file_system(tmp_path: object) -> None:
    space = FreeSpace(str(tmp_path), parse_watermark("1"))
    assert space.free_bytes() > 0 and space.shortage() is None
