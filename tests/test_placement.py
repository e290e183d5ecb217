"""The template's values, read in the data set check's one walk, and rename's names."""

from __future__ import annotations

import io
from datetime import datetime

import pydicom
import pytest

from dcmrecv.storage.dataset import scan_buffer, scan_dataset, wanted_tags
from dcmrecv.storage.placement import Arrival, renamed, template_plan, template_values
from dcmrecv.storage.template import parse_template
from tests.helpers import data_set_and_syntax, pydicom_file

TEMPLATE = parse_template(
    "{PatientID}/{StudyDate}_{SeriesNumber:04d}/{Rows}x{Columns}_{Modality}/{SOPInstanceUID}"
)
ARRIVAL = Arrival("SENDER", "DCMRECV", "127.0.0.1", datetime(2024, 5, 6, 7, 8, 9), "CT", "")


def _data_set(name: str) -> tuple[bytes, str, pydicom.Dataset]:
    path = pydicom_file(name)
    data, syntax = data_set_and_syntax(path)
    return data, syntax, pydicom.dcmread(path)


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"]
)
def test_both_scanners_collect_the_template_values_in_their_one_walk(name: str) -> None:
    data, syntax, dataset = _data_set(name)
    wanted = wanted_tags(TEMPLATE.tags)
    streamed = scan_dataset(io.BytesIO(data), len(data), syntax, wanted=wanted)
    buffered = scan_buffer(data, syntax, wanted=wanted)
    assert streamed.values == buffered.values
    little = syntax != "1.2.840.10008.1.2.2"
    values = template_values(TEMPLATE, buffered, ARRIVAL, little_endian=little)
    plan = template_plan(TEMPLATE, values, "UNKNOWN")
    expected = (
        f"{dataset.PatientID}/{dataset.StudyDate}_{int(dataset.SeriesNumber):04d}/"
        f"{dataset.Rows}x{dataset.Columns}_{dataset.Modality}/{dataset.SOPInstanceUID}"
    )
    assert str(plan.relative) == expected


def test_without_a_template_the_scan_collects_only_its_own_attributes() -> None:
    data, syntax, _dataset = _data_set("CT_small.dcm")
    assert wanted_tags(None) is wanted_tags(frozenset())
    summary = scan_buffer(data, syntax)
    assert set(summary.values) <= wanted_tags(None)
    assert 0x00280010 not in summary.values  # Rows: not asked for


def test_association_and_time_fields() -> None:
    template = parse_template(
        "{CallingAETitle}/{CalledAETitle}/{PeerAddress}/{ReceivedDate}{ReceivedTime}_{Prefix}"
    )
    plan = template_plan(template, template_values(template, None, ARRIVAL), "UNKNOWN")
    assert str(plan.relative) == "SENDER/DCMRECV/127.0.0.1/20240506070809_CT"


@pytest.mark.parametrize(
    ("name", "copy", "expected"),
    [
        ("CT.1.2.3", 1, "CT.1.2.3~1"),
        ("x.dcm", 2, "x~2.dcm"),
        ("CT.1.2.840.10008.5", 1, "CT.1.2.840.10008.5~1"),
        ("a" * 255, 1, "a" * 253 + "~1"),
    ],
)
def test_renamed_copies_keep_their_extension(name: str, copy: int, expected: str) -> None:
    assert renamed(name, copy) == expected
