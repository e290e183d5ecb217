"""DCMDICTPATH: DCMTK's .dic format, read as DCMTK reads it and installed into pydicom."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
from pydicom.datadict import get_private_entry, keyword_for_tag

from dcmrecv.storage.dictionary import (
    DictionaryError,
    dictionary_paths,
    install,
    parse_dictionary,
    sequence_tags,
)

SITE = (
    "# a site's own dictionary\n"
    '(0029,"ACME 1.0",10)\tSQ\tAcmeSequence\t1\tPrivateTag\n'
    '(0029,"ACME 1.0",11)\tLO\tAcmeLabel\t1-n\tPrivateTag\n'
    "(6001-o-60ff,0010)\tSQ\tRangeOfSequences\t1\n"
    "(0071,1001)\tSQ\tGroupWithoutCreator\t1\n"
    "\n"
    "(7FE1,0010)\tLO\tAcmeOther\n"
)


def test_site_dictionary_entries_and_sequences() -> None:
    entries = parse_dictionary(SITE, "site.dic")
    assert [e.keyword for e in entries] == [
        "AcmeSequence",
        "AcmeLabel",
        "RangeOfSequences",
        "GroupWithoutCreator",
        "AcmeOther",
    ]
    assert entries[0].private_creator == "ACME 1.0" and entries[1].vm == "1-n"
    assert entries[2].group.parity == "odd" and 0x6003 in entries[2].group
    assert 0x6004 not in entries[2].group and entries[4].version == "DICOM"
    sq = sequence_tags(entries)
    assert (0x0029, "ACME 1.0", 0x10) in sq.private
    assert 0x00711001 in sq.public


def test_install_names_private_attributes_for_pydicom() -> None:
    added = install(parse_dictionary(SITE, "site.dic"))
    assert added >= 2
    assert get_private_entry(0x00291010, "ACME 1.0")[2] == "AcmeSequence"
    assert get_private_entry(0x00294211, "ACME 1.0")[2] == "AcmeLabel"  # any block
    assert keyword_for_tag(0x7FE10010) in ("", "AcmeOther")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("(0010,0010) PN PatientName", "too few fields"),
        ("(0010,0010)\tPN\tA\t1\tDICOM\textra", "too many fields"),
        ("0010,0010\tPN\tPatientName", "bad Tag field"),
        ("(0010,00G0)\tPN\tPatientName", "bad tag part"),
        ("(0010,0010)\tPQ\tPatientName", "bad VR field"),
        ("(0010,0010)\tPN\tPatientName\tx", "bad VM field"),
        ("(0010,0010)\tPN\t \t1", "empty name"),
        ("(6010-o-6000,0010)\tSQ\tX", "ends before"),
    ],
)
def test_bad_lines_name_file_and_line(line: str, why: str) -> None:
    with pytest.raises(DictionaryError, match=rf"^my\.dic:3: .*{why}"):
        parse_dictionary("# one\n\n" + line + "\n", "my.dic")


def test_path_list_as_dcmtk_splits_it() -> None:
    assert dictionary_paths("/a.dic:/b.dic") == ["/a.dic", "/b.dic"]
    assert dictionary_paths("/a.dic::") == ["/a.dic"]
    assert dictionary_paths("") == []


# Debian ships them with the library up to DCMTK 3.6.7 (libdcmtk17: /usr/share/libdcmtk17)
# and in dcmtk-data from 3.6.9 on (Debian 13: /usr/share/dcmtk).
DCMTK_DICTIONARIES = sorted(
    glob.glob("/usr/share/libdcmtk*/*.dic") + glob.glob("/usr/share/dcmtk/*.dic")
)


@pytest.mark.dcmtk
@pytest.mark.skipif(not DCMTK_DICTIONARIES, reason="DCMTK's dictionaries are not installed")
@pytest.mark.parametrize("path", DCMTK_DICTIONARIES)
def test_dcmtks_own_dictionaries_parse(path: str) -> None:
    entries = parse_dictionary(Path(path).read_text(encoding="latin-1"), path)
    assert len(entries) > 100
    if path.endswith("dicom.dic"):
        keywords = {e.keyword for e in entries}
        assert {"PatientName", "StudyInstanceUID", "ReferencedSeriesSequence"} <= keywords
        assert 0x00081115 in sequence_tags(entries).public  # ReferencedSeriesSequence
    if path.endswith("private.dic"):
        assert sequence_tags(entries).private
