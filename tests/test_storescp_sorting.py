"""storescp's study directories and time names (pure functions).

Expected names are written from storescp.man's patterns and storescp.cc's tables, not
produced by the code under test.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcmrecv.storage import sorting
from dcmrecv.storage.sorting import SortMode

NOW = datetime(2024, 3, 5, 7, 8, 9, 123456)


def test_conc_studies_name_is_prefix_date_and_milliseconds() -> None:
    name = sorting.study_directory(
        SortMode.TIMESTAMP, "pre", study_instance_uid="1.2", patient_name=None, now=NOW
    )
    assert name == "pre_20240305_070809123"


def test_empty_prefix_drops_the_first_underscore() -> None:
    name = sorting.study_directory(
        SortMode.TIMESTAMP, "", study_instance_uid="1.2", patient_name=None, now=NOW
    )
    assert name == "20240305_070809123"


def test_study_uid_name() -> None:
    name = sorting.study_directory(
        SortMode.STUDY_UID, "st", study_instance_uid="1.2.840.5", patient_name=None, now=NOW
    )
    assert name == "st_1.2.840.5"


@pytest.mark.parametrize("uid", [".", ".."])
def test_dot_study_uids_are_refused(uid: str) -> None:
    with pytest.raises(sorting.SortError, match="Refusing to use subdirectory name"):
        sorting.study_directory(
            SortMode.STUDY_UID, "", study_instance_uid=uid, patient_name=None, now=NOW
        )


def test_study_uid_with_separators_cannot_leave_the_directory() -> None:
    name = sorting.study_directory(
        SortMode.STUDY_UID, "", study_instance_uid="../../etc", patient_name=None, now=NOW
    )
    assert "/" not in name
    assert name == ".._.._etc"


def test_patient_name_mapped_to_ascii_as_storescp_does() -> None:
    raw = "Müller^Jürgen Ä.".encode("latin-1")
    name = sorting.study_directory(
        SortMode.PATIENT_NAME, "", study_instance_uid="1", patient_name=raw, now=NOW
    )
    # ü -> ue, ^ space and . -> _, Ä -> Ae (storescp.cc's Latin-1 table)
    assert name == "Mueller_Juergen_Ae__20240305_070809123"


def test_missing_patient_name_is_anonymous() -> None:
    name = sorting.study_directory(
        SortMode.PATIENT_NAME, "", study_instance_uid="1", patient_name=None, now=NOW
    )
    assert name == "ANONYMOUS_20240305_070809123"


@given(st.binary(min_size=1, max_size=64))
def test_patient_names_give_safe_directory_names(raw: bytes) -> None:
    name = sorting.study_directory(
        SortMode.PATIENT_NAME, "", study_instance_uid="1", patient_name=raw, now=NOW
    )
    assert name.isascii()
    assert "/" not in name and "\0" not in name
    assert name not in ("", ".", "..")


@given(st.text(min_size=1, max_size=64))
def test_study_uid_names_never_contain_separators(uid: str) -> None:
    try:
        name = sorting.study_directory(
            SortMode.STUDY_UID, "", study_instance_uid=uid, patient_name=None, now=NOW
        )
    except sorting.SortError:
        return
    assert "/" not in name and "\0" not in name and name not in (".", "..")


def test_charset_warning_only_for_non_latin1_and_non_ascii() -> None:
    assert not sorting.needs_charset_warning("Müller".encode("latin-1"), "ISO_IR 100")
    assert not sorting.needs_charset_warning(b"Smith", "ISO_IR 192")
    assert sorting.needs_charset_warning("Müller".encode(), "ISO_IR 192")
    assert not sorting.needs_charset_warning("Müller".encode("latin-1"), None)


@pytest.mark.parametrize(("prefix", "bad"), [("a/b", True), ("..", True), ("ok", False)])
def test_prefix_check(prefix: str, bad: bool) -> None:
    assert (sorting.check_prefix(prefix) is not None) is bad


def test_time_names_serial_number_rule() -> None:
    # storescp.man: no serial for the first file of a time stamp, then _0000, _0001 ...
    first = sorting.time_name(NOW, "CT", ".dcm", None, -1)
    assert first == sorting.TimeName("20240305070809123.CT.dcm", -1)
    second = sorting.time_name(NOW, "CT", ".dcm", first.name, first.counter)
    assert second == sorting.TimeName("20240305070809123_0000.CT.dcm", 0)
    third = sorting.time_name(NOW, "CT", ".dcm", second.name, second.counter)
    assert third.name == "20240305070809123_0001.CT.dcm"
    later = datetime(2024, 3, 5, 7, 8, 9, 124000)
    assert sorting.time_name(later, "CT", ".dcm", third.name, third.counter) == sorting.TimeName(
        "20240305070809124.CT.dcm", -1
    )


def test_time_names_of_another_kind_in_the_same_millisecond_have_no_serial() -> None:
    first = sorting.time_name(NOW, "CT", "", None, -1)
    assert sorting.time_name(NOW, "MR", "", first.name, first.counter).name == (
        "20240305070809123.MR"
    )


@pytest.mark.parametrize(
    ("filename", "time_names", "prefix"),
    [
        ("CT.1.2.3", False, "CT"),
        ("UNKNOWN.1.2", False, "UN"),
        ("20240305070809123.MR", True, "MR"),
        ("20240305070809123_0002.SC.dcm", True, "SC"),
    ],
)
def test_rename_prefix(filename: str, time_names: bool, prefix: str) -> None:
    assert sorting.renamed_prefix(filename, time_names) == prefix
    assert sorting.renamed_name(prefix, 7) == f"{prefix}000007"
