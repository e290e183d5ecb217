"""--output-template, the pure part: checking a template and filling it safely."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcmrecv.storage.template import (
    MAX_COMPONENT_BYTES,
    TemplateError,
    check_fallback,
    parse_template,
    render,
)
from tests.helpers import changed

EXAMPLE = (
    "{PatientID}/{StudyDate}_{AccessionNumber}/{SeriesNumber:04d}_{Modality}/{SOPInstanceUID}.dcm"
)


def test_the_readme_example() -> None:
    template = parse_template(EXAMPLE)
    values = {
        "PatientID": "PAT001",
        "StudyDate": "20240131",
        "AccessionNumber": "ACC9 ",
        "SeriesNumber": "7",
        "Modality": "CT",
        "SOPInstanceUID": "1.2.3.4",
    }
    assert render(template, values, "UNKNOWN") == "PAT001/20240131_ACC9/0007_CT/1.2.3.4.dcm"
    assert template.tags == {0x00100020, 0x00080020, 0x00080050, 0x00200011, 0x00080060, 0x00080018}


def test_tags_and_association_fields() -> None:
    template = parse_template("{CallingAETitle}/{00100020}/{ReceivedDate}/{Prefix}.{UniqueName}")
    assert template.tags == {0x00100020}
    values = {
        "CallingAETitle": "STORESCU",
        "00100020": "P1",
        "ReceivedDate": "20261128",
        "Prefix": "CT",
        "UniqueName": "2.25.1",
    }
    assert render(template, values, "X") == "STORESCU/P1/20261128/CT.2.25.1"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("/abs/{PatientID}", "relative"),
        ("../{PatientID}", "'..'"),
        ("a/./{PatientID}", "'..'"),
        ("a//{PatientID}", "empty path component"),
        ("{PatientID}/", "empty path component"),
        ("{NoSuchKeyword}", "not a DICOM keyword"),
        ("{PatientID!r}", "conversions"),
        ("{PatientID.x}", "attribute"),
        ("{PatientID[0]}", "attribute"),
        ("{}", "needs a name"),
        ("{PatientID", "'{PatientID'"),
        ("{FileMetaInformationVersion}", "data set attributes"),
        ("", "empty"),
    ],
)
def test_unusable_templates_are_refused(text: str, why: str) -> None:
    with pytest.raises(TemplateError, match=why.replace("[", r"\[").replace(".", r"\.")):
        parse_template(text)


@pytest.mark.parametrize(
    ("value", "component"),
    [
        ("..", changed("_.", "..")),
        (".", changed("_", ".")),
        ("../../etc/passwd", changed("_._.._etc_passwd", "../../etc/passwd")),
        ("a/b\\c", changed("a_b_c", "a/b\\c")),
        ("line\nbreak\x1b", changed("line_break_", "line\nbreak\x1b")),
        ("   ", "UNKNOWN"),
        (".hidden", changed("_hidden", ".hidden")),
        (None, "UNKNOWN"),
        ("a_b", "a_b"),
        # A value that looks like another's changed form is changed too.
        (changed("a_b", "a/b"), changed(changed("a_b", "a/b"), changed("a_b", "a/b"))),
    ],
)
def test_hostile_and_missing_values(value: str | None, component: str) -> None:
    template = parse_template("{PatientID}/x")
    assert render(template, {"PatientID": value}, "UNKNOWN") == f"{component}/x"


def test_distinct_values_give_distinct_names_as_the_default_naming_does() -> None:
    from dcmrecv.storage.naming import sanitize_uid

    template = parse_template("{PatientID}/S/{SOPInstanceUID}.dcm")
    paths = {
        render(template, {"PatientID": pid, "SOPInstanceUID": uid}, "UNKNOWN")
        for pid, uid in [("A/B", "1.2.3/4"), ("A_B", "1.2.3_4"), ("A\\B", "1.2.3\\4")]
    }
    assert len(paths) == 3
    assert "A_B/S/1.2.3_4.dcm" in paths
    assert f"{changed('A_B', 'A/B')}/S/{sanitize_uid('1.2.3/4')}.dcm" in paths


@given(st.text(max_size=40), st.text(max_size=40))
def test_no_two_values_share_a_component(first: str, second: str) -> None:
    template = parse_template("{PatientID}")
    one = render(template, {"PatientID": first}, "UNKNOWN")
    other = render(template, {"PatientID": second}, "UNKNOWN")
    same = first.strip(" \x00") == second.strip(" \x00")  # padding is not a value
    empty = {first.strip(" \x00"), second.strip(" \x00")} <= {"", "UNKNOWN"}
    assert (one == other) == (same or empty)


def test_numbers_that_are_not_numbers_fall_back() -> None:
    template = parse_template("{SeriesNumber:04d}")
    assert render(template, {"SeriesNumber": "12"}, "NA") == "0012"
    assert render(template, {"SeriesNumber": "twelve"}, "NA") == "NA"


def test_long_values_are_cut_and_stay_distinct() -> None:
    template = parse_template("{PatientName}")
    first = render(template, {"PatientName": "A" * 300 + "1"}, "U")
    second = render(template, {"PatientName": "A" * 300 + "2"}, "U")
    assert len(first.encode()) <= MAX_COMPONENT_BYTES and first != second


def test_fallback_word_must_be_plain() -> None:
    assert check_fallback("MISSING") == "MISSING"
    for bad in ("", "a/b", "..", ".x", "a\nb"):
        with pytest.raises(TemplateError):
            check_fallback(bad)


@given(st.lists(st.text(max_size=300), min_size=3, max_size=3))
def test_no_value_escapes_the_output_directory(values: list[str]) -> None:
    template = parse_template("{PatientID}/{StudyDescription}_{SeriesNumber:03d}/{SOPInstanceUID}")
    names = ["PatientID", "StudyDescription", "SeriesNumber", "SOPInstanceUID"]
    path = render(template, dict(zip(names, [*values, values[0]], strict=True)), "UNKNOWN")
    assert not path.startswith("/")
    parts = path.split("/")
    assert len(parts) == 3
    assert all(p not in ("", ".", "..") and not p.startswith(".") for p in parts)
    assert all(len(p.encode("utf-8", "surrogateescape")) <= MAX_COMPONENT_BYTES for p in parts)
    assert posixpath.normpath("/out/" + path).startswith("/out/")
    assert not any(ord(c) < 32 or c == "\\" for c in path)
