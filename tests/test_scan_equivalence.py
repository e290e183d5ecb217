"""The in-memory data set check accepts and refuses exactly what the stream check does.

scan_buffer() is the fast path for instances small enough to stay in memory;
scan_dataset() walks a file.  Both implement the same PS3.5 rules, so for any bytes
they must give the same summary or both raise DatasetError.
"""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcmrecv.storage.dataset import DatasetError, DatasetSummary, scan_buffer, scan_dataset
from tests.helpers import data_set_and_syntax, pydicom_file

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG = "1.2.840.10008.1.2.4.50"


SAMPLES = [
    data_set_and_syntax(pydicom_file(name))
    for name in ("CT_small.dcm", "rtplan.dcm", "MR_small_bigendian.dcm", "JPEG-lossy.dcm")
]
_JPEG_DATA, _ = SAMPLES[3]
#: Encapsulated Pixel Data received with VR OW: both scanners must report where.
SAMPLES.append((_JPEG_DATA.replace(b"\xe0\x7f\x10\x00OB", b"\xe0\x7f\x10\x00OW"), JPEG))


def _outcome(scan: object) -> DatasetSummary | str:
    try:
        return scan()  # type: ignore[operator,no-any-return]
    except DatasetError:
        return "refused"


def _both(data: bytes, syntax: str, stop_after: int | None = None) -> tuple[object, object]:
    streamed = _outcome(
        lambda: scan_dataset(io.BytesIO(data), len(data), syntax, stop_after=stop_after)
    )
    buffered = _outcome(lambda: scan_buffer(data, syntax, stop_after=stop_after))
    return streamed, buffered


@pytest.mark.parametrize(("data", "syntax"), SAMPLES)
def test_real_data_sets_give_the_same_summary(data: bytes, syntax: str) -> None:
    streamed, buffered = _both(data, syntax)
    assert isinstance(streamed, DatasetSummary)
    assert streamed == buffered
    is_ow = syntax == JPEG and b"\xe0\x7f\x10\x00OW" in data
    assert (streamed.encapsulated_ow_offset is not None) == is_ow
    assert buffered.study_instance_uid == streamed.study_instance_uid  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(
    sample=st.sampled_from(range(len(SAMPLES))),
    seed=st.integers(0, 2**32 - 1),
    edits=st.integers(1, 6),
    syntax=st.sampled_from([None, IMPLICIT, EXPLICIT, BIG_ENDIAN, JPEG]),
    stop_after=st.sampled_from([None, 0x00080021]),
)
def test_mutated_data_sets_give_the_same_answer(
    sample: int, seed: int, edits: int, syntax: str | None, stop_after: int | None
) -> None:
    data, own_syntax = SAMPLES[sample]
    rng = random.Random(seed)
    mutated = bytearray(data[: rng.randrange(1, len(data) + 1)] if rng.random() < 0.3 else data)
    for _ in range(edits):
        if not mutated:
            break
        position = rng.randrange(len(mutated))
        mutated[position] = rng.randrange(256)
    streamed, buffered = _both(bytes(mutated), syntax or own_syntax, stop_after)
    assert streamed == buffered


@pytest.mark.parametrize(("data", "own_syntax"), SAMPLES)
@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT, BIG_ENDIAN, JPEG, "1.2.840.10008.1.2.5"])
def test_pixel_data_in_the_wrong_transfer_syntax_gets_the_same_answer(
    data: bytes, own_syntax: str, syntax: str
) -> None:
    streamed, buffered = _both(data, syntax)
    assert streamed == buffered


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), syntax=st.sampled_from([IMPLICIT, EXPLICIT, BIG_ENDIAN]))
def test_arbitrary_bytes_give_the_same_answer(data: bytes, syntax: str) -> None:
    streamed, buffered = _both(data, syntax)
    assert streamed == buffered
