"""``DCMDICTPATH``: site dictionaries at start-up, in templates and in the data set check.

Installing a dictionary changes pydicom's process-wide dictionaries, so the
receiver that uses one runs as its own process (``python -m dcmrecv``); the data
set check's sequences are registered and reset around each test.
"""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pynetdicom import AE

from dcmrecv.storage.dataset import DatasetError, register_sequences, scan_buffer, scan_dataset
from dcmrecv.storage.dictionary import DictionaryError, parse_dictionary, sequence_tags
from dcmrecv.storage.dictionary_files import read_dictionaries
from tests.conftest import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
IMPLICIT = "1.2.840.10008.1.2"
SITE_DICTIONARY = (
    "# a site's own attributes\n"
    "(7776,0010)\tLO\tSiteRoutingCode\t1\tPRIVATE\n"
    '(0009,"ACME 1.0",10)\tSQ\tAcmeCalibrationSequence\t1\tPRIVATE\n'
)


@pytest.fixture
def private_sequences() -> Iterator[None]:
    tags = sequence_tags(parse_dictionary(SITE_DICTIONARY, "site.dic"))
    register_sequences(tags.public, tags.private)
    try:
        yield
    finally:
        register_sequences(frozenset(), frozenset())


def element(group: int, elem: int, value: bytes) -> bytes:
    """One implicit VR LE element (PS3.5 7.1.3)."""
    return struct.pack("<HHI", group, elem, len(value)) + value


def item(content: bytes) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(content)) + content


def data_set(creator: bytes, sequence_item: bytes) -> bytes:
    """SOP Class/Instance UID, then a private block whose (0009,xx10) holds one item."""
    return (
        element(0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.7\0")
        + element(0x0008, 0x0018, b"1.2.3.4\0")
        + element(0x0009, 0x0010, creator)
        + element(0x0009, 0x1010, item(sequence_item))
    )


#: An item whose only element claims 100 bytes but has 2: broken if read as a sequence.
BROKEN_ITEM = struct.pack("<HHI", 0x0010, 0x0010, 100) + b"AB"


def scans(data: bytes) -> list[object]:
    outcomes: list[object] = []
    for scan in (
        lambda: scan_buffer(data, IMPLICIT),
        lambda: scan_dataset(io.BytesIO(data), len(data), IMPLICIT),
    ):
        try:
            outcomes.append(scan().sop_instance_uid)
        except DatasetError:
            outcomes.append("refused")
    return outcomes


def test_without_the_dictionary_a_private_value_is_opaque() -> None:
    assert scans(data_set(b"ACME 1.0", BROKEN_ITEM)) == ["1.2.3.4", "1.2.3.4"]


def test_a_private_sequence_from_the_dictionary_is_checked(private_sequences: None) -> None:
    assert scans(data_set(b"ACME 1.0", BROKEN_ITEM)) == ["refused", "refused"]
    good_item = element(0x0010, 0x0010, b"AB")
    assert scans(data_set(b"ACME 1.0", good_item)) == ["1.2.3.4", "1.2.3.4"]


def test_the_private_creator_decides(private_sequences: None) -> None:
    # Same element, another creator's block: opaque bytes, as before.
    assert scans(data_set(b"OTHER CO", BROKEN_ITEM)) == ["1.2.3.4", "1.2.3.4"]


def test_creators_are_per_item(private_sequences: None) -> None:
    # Inside the ACME sequence's item, block 10 of group 0009 belongs to OTHER CO.
    nested = element(0x0009, 0x0010, b"OTHER CO") + element(0x0009, 0x1010, BROKEN_ITEM)
    assert scans(data_set(b"ACME 1.0", nested)) == ["1.2.3.4", "1.2.3.4"]
    nested = element(0x0009, 0x0010, b"ACME 1.0") + element(0x0009, 0x1010, item(BROKEN_ITEM))
    assert scans(data_set(b"ACME 1.0", nested)) == ["refused", "refused"]


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "site.dic"
    path.write_text(SITE_DICTIONARY + "(7776,0012)\tXX\tBadVR\n")
    with pytest.raises(DictionaryError, match=rf"{path}:4: bad VR field 'XX'"):
        # Empty entries in the path are skipped, as in PATH.
        read_dictionaries(f":{path}:")


def run_dcmrecv(*args: str, dictionary: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "DCMDICTPATH": dictionary}
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", "dcmrecv", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(7776,0012)\tXX\tBadVR\n", "site.dic:1: bad VR field 'XX'"),
        ("(7776,0012) LO BadSeparator\n", "site.dic:1: too few fields"),
    ],
)
def test_a_bad_dictionary_refuses_to_start_with_exit_1(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "site.dic").write_text(text)
    process = run_dcmrecv("104", dictionary=str(tmp_path / "site.dic"), cwd=tmp_path)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"error: cannot load data dictionary: {tmp_path / 'site.dic'}:" in err
    assert message.split(":", 1)[1] in err


def test_missing_dictionary_file_refuses_to_start(tmp_path: Path) -> None:
    process = run_dcmrecv("104", dictionary=str(tmp_path / "none.dic"), cwd=tmp_path)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"{tmp_path / 'none.dic'}: cannot read: No such file or directory" in err


def test_template_uses_a_name_from_the_dictionary(tmp_path: Path) -> None:
    (tmp_path / "site.dic").write_text(SITE_DICTIONARY)
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    process = run_dcmrecv(
        *("-od", str(out), "-xf", str(ROOT / "storescp.cfg"), "Default"),
        *("--output-template", "{SiteRoutingCode}/{SOPInstanceUID}", str(port)),
        dictionary=str(tmp_path / "site.dic"),
        cwd=tmp_path,
    )
    try:
        wait_for_port(port, process)  # type: ignore[arg-type]
        ds: Dataset = pydicom.dcmread(CT_SMALL)
        ds.add_new(0x77760010, "LO", "ROUTE-7")
        ae = AE()
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", port)
        assert assoc.is_established
        try:
            assert int(assoc.send_c_store(ds).Status) == 0
        finally:
            assoc.release()
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()] == [
        f"ROUTE-7/{ds.SOPInstanceUID}"
    ]


def test_dcmtks_own_dictionaries_load() -> None:
    dictionaries = [Path("/usr/share/libdcmtk17") / name for name in ("dicom.dic", "private.dic")]
    if not all(path.is_file() for path in dictionaries):
        pytest.skip("DCMTK's dictionaries are not installed (Debian's libdcmtk17)")
    entries = read_dictionaries(":".join(str(path) for path in dictionaries))
    tags = sequence_tags(entries)
    assert len(entries) > 7000
    assert tags.private  # private.dic names private sequences


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    edits=st.integers(0, 6),
    creator=st.sampled_from([b"ACME 1.0", b"OTHER CO"]),
)
def test_both_scanners_agree_on_private_sequences(seed: int, edits: int, creator: bytes) -> None:
    """The creator tracking lives in both walkers; mutated data sets get one answer."""
    nested = element(0x0009, 0x0010, b"ACME 1.0") + element(0x0009, 0x1010, item(BROKEN_ITEM))
    data = bytearray(data_set(creator, nested + element(0x0010, 0x0010, b"AB")))
    rng = random.Random(seed)
    for _ in range(edits):
        data[rng.randrange(len(data))] = rng.randrange(256)
    tags = sequence_tags(parse_dictionary(SITE_DICTIONARY, "site.dic"))
    register_sequences(tags.public, tags.private)
    try:
        streamed, buffered = scans(bytes(data))
    finally:
        register_sequences(frozenset(), frozenset())
    assert streamed == buffered
