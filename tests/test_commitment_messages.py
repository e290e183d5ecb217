"""Storage commitment's pure parts: the data sets (as pydicom writes and reads them),
the peer table, and what counts as committed."""

from __future__ import annotations

import dataclasses
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from dcmrecv.commitment import messages as m
from dcmrecv.commitment.peers import Peer, PeerError, parse_peer, parse_peer_file, peer_table
from dcmrecv.commitment.verdict import FileFacts, evaluate, failure_reason
from dcmrecv.state.model import InstanceRecord
from tests.helpers import action_information

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SYNTAXES = [m.IMPLICIT_VR_LITTLE_ENDIAN, m.EXPLICIT_VR_LITTLE_ENDIAN]


def pydicom_bytes(dataset: Dataset, transfer_syntax: str) -> bytes:
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = transfer_syntax == m.IMPLICIT_VR_LITTLE_ENDIAN
    write_dataset(out, dataset)
    return out.getvalue()


def pydicom_reads(data: bytes, transfer_syntax: str) -> Dataset:
    return read_dataset(io.BytesIO(data), transfer_syntax == m.IMPLICIT_VR_LITTLE_ENDIAN, True)


def action(count: int, transaction: str = "2.25.7") -> Dataset:
    dataset = action_information(transaction, [(CT, f"1.2.3.{n}") for n in range(count)])
    for item in dataset.ReferencedSOPSequence:
        item.ReferencedFrameNumber = "1"  # other elements of an item are skipped
    return dataset


# --- the N-ACTION's data set --------------------------------------------------------------


@pytest.mark.parametrize("transfer_syntax", SYNTAXES)
@pytest.mark.parametrize("undefined_lengths", [False, True], ids=["defined", "undefined"])
def test_a_request_written_by_pydicom_is_read_whatever_its_lengths(
    transfer_syntax: str, undefined_lengths: bool
) -> None:
    dataset = action(3)
    dataset.RetrieveAETitle = "ARCHIVE"  # an element we do not need, before the sequence
    if undefined_lengths:
        dataset["ReferencedSOPSequence"].is_undefined_length = True
        for item in dataset.ReferencedSOPSequence:
            item.is_undefined_length_sequence_item = True

    request = m.decode_request(pydicom_bytes(dataset, transfer_syntax), transfer_syntax)

    assert request.transaction_uid == "2.25.7"
    assert request.references == tuple(m.Reference(CT, f"1.2.3.{n}") for n in range(3))


@pytest.mark.parametrize("transfer_syntax", SYNTAXES)
def test_a_report_is_read_by_pydicom_as_ps3_4_describes_it(transfer_syntax: str) -> None:
    committed = (m.Reference(CT, "1.2.3.1"), m.Reference(MR, "1.2.3.2"))
    failed = (m.Failure(m.Reference(CT, "1.2.3.3"), 0x0112),)
    report = m.Report("2.25.7", committed, failed)

    dataset = pydicom_reads(m.encode_report(report, transfer_syntax), transfer_syntax)

    assert report.event_type_id == m.EVENT_FAILURES_EXIST
    assert dataset.TransactionUID == "2.25.7"
    assert [i.ReferencedSOPInstanceUID for i in dataset.ReferencedSOPSequence] == [
        "1.2.3.1",
        "1.2.3.2",
    ]
    assert dataset.ReferencedSOPSequence[1].ReferencedSOPClassUID == MR
    (item,) = dataset.FailedSOPSequence
    assert (item.ReferencedSOPInstanceUID, item.FailureReason) == ("1.2.3.3", 0x0112)
    assert m.decode_report(m.encode_report(report, transfer_syntax), transfer_syntax) == report


def test_a_report_without_failures_is_event_type_1_and_has_no_failed_sequence() -> None:
    report = m.Report("2.25.7", (m.Reference(CT, "1.2.3.1"),), ())
    dataset = pydicom_reads(
        m.encode_report(report, m.EXPLICIT_VR_LITTLE_ENDIAN), m.EXPLICIT_VR_LITTLE_ENDIAN
    )
    assert report.event_type_id == m.EVENT_ALL_COMMITTED
    assert "FailedSOPSequence" not in dataset


def _bytes_of(
    transaction: str | None, references: list[tuple[str | None, str | None]] | None
) -> bytes:
    return pydicom_bytes(action_information(transaction, references), m.EXPLICIT_VR_LITTLE_ENDIAN)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (lambda: b"", 0x0120, "no Transaction UID"),
        (lambda: _bytes_of("2.25.1", None), 0x0120, "no Referenced SOP Sequence"),
        (lambda: _bytes_of("2.25.1", []), 0x0121, "is empty"),
        (lambda: _bytes_of("2.25.x", [(None, None)]), 0x0115, "is not a valid UID"),
        (
            lambda: _bytes_of("2.25.1", [(None, "1.2")]),
            0x0120,
            "no Referenced SOP Class UID in item 1 of the Referenced SOP Sequence",
        ),
        (lambda: _bytes_of("2.25.1", [(None, None)])[:-3], 0x0110, "cannot decode"),
        (lambda: b"\x08\x00\x95\x11UI\xff\x00", 0x0110, "runs past the end"),
        (lambda: b"\xfe\xff\x0d\xe0\x00\x00\x00\x00", 0x0110, "unexpected delimiter"),
    ],
    ids=[
        "nothing",
        "no sequence",
        "empty sequence",
        "bad UID",
        "item lacks its class",
        "cut short",
        "length past the end",
        "stray delimiter",
    ],
)
def test_a_malformed_request_raises_the_status_to_answer(
    data: object, status: int, words: str
) -> None:
    assert callable(data)
    with pytest.raises(m.InvalidRequest, match=words) as raised:
        m.decode_request(data(), m.EXPLICIT_VR_LITTLE_ENDIAN)
    assert raised.value.status == status


def test_sequences_nested_too_deep_are_refused_not_recursed() -> None:
    # Undefined-length sequences (implicit VR), one inside the other, 100 deep.
    opening = b"\x08\x00\x99\x11\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    data = opening * 100
    with pytest.raises(m.InvalidRequest, match="nested deeper"):
        m.decode_request(data, m.IMPLICIT_VR_LITTLE_ENDIAN)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(SYNTAXES))
def test_any_bytes_give_a_request_or_invalid_request_never_anything_else(
    data: bytes, transfer_syntax: str
) -> None:
    try:
        m.decode_request(data, transfer_syntax)
    except m.InvalidRequest as exc:
        assert 0x0110 <= exc.status <= 0x0213


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.integers(min_value=0, max_value=200))
def test_a_cut_or_flipped_valid_request_never_raises_anything_else(cut: int, flip: int) -> None:
    data = bytearray(pydicom_bytes(action(5), m.EXPLICIT_VR_LITTLE_ENDIAN))
    if flip < len(data):
        data[flip] ^= 0xFF
    try:
        m.decode_request(bytes(data[: len(data) - cut % len(data)]), m.EXPLICIT_VR_LITTLE_ENDIAN)
    except m.InvalidRequest:
        pass


def test_the_command_set_checks_class_instance_and_action_type() -> None:
    m.check_action(m.SOP_CLASS_UID, m.SOP_INSTANCE_UID, 1)
    with pytest.raises(m.InvalidRequest) as wrong_class:
        m.check_action(CT, m.SOP_INSTANCE_UID, 1)
    with pytest.raises(m.InvalidRequest) as wrong_instance:
        m.check_action(m.SOP_CLASS_UID, "1.2.3", 1)
    with pytest.raises(m.InvalidRequest) as wrong_action:
        m.check_action(m.SOP_CLASS_UID, m.SOP_INSTANCE_UID, 2)
    assert [e.value.status for e in (wrong_class, wrong_instance, wrong_action)] == [
        0x0118,
        0x0112,
        0x0123,
    ]


# --- the peer table ---------------------------------------------------------------------------


def test_peers_on_the_command_line_and_in_files() -> None:
    assert parse_peer("MODALITY=10.0.0.7:104") == Peer("MODALITY", "10.0.0.7", 104)
    assert parse_peer("CT=[::1]:11113") == Peer("CT", "::1", 11113)
    assert str(Peer("CT", "::1", 11113)) == "CT=[::1]:11113"
    text = "# requesters\nCT_1 ct1.example 104\n\nMR_1 10.0.0.8 11112  # the MR\n"
    assert parse_peer_file(text, "peers.txt") == (
        Peer("CT_1", "ct1.example", 104),
        Peer("MR_1", "10.0.0.8", 11112),
    )
    # A title listed twice keeps its last address.
    table = peer_table([Peer("A", "h1", 1), Peer("A", "h2", 2)])
    assert table == {"A": Peer("A", "h2", 2)}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("MODALITY", "is not AET=HOST:PORT"),
        ("MODALITY=host", "is not AET=HOST:PORT"),
        ("=host:104", "is not an AE title"),
        ("SEVENTEEN_CHARS_X=host:104", "is not an AE title"),
        ("A\\B=host:104", "is not an AE title"),
        ("MODALITY=host:0", "is not a port number"),
        ("MODALITY=:104", "is not a host name"),
    ],
)
def test_a_bad_peer_says_why(text: str, words: str) -> None:
    with pytest.raises(PeerError, match=words):
        parse_peer(text)


def test_a_bad_line_in_a_peer_file_names_the_file_and_line() -> None:
    with pytest.raises(PeerError, match=r"peers.txt:2: expected 'AET HOST PORT'"):
        parse_peer_file("CT host 104\nMR host\n", "peers.txt")


# --- what counts as committed ------------------------------------------------------------


def record(**changes: object) -> InstanceRecord:
    stored = InstanceRecord(
        study_instance_uid="1.2",
        sop_instance_uid="1.2.3",
        sop_class_uid=CT,
        series_instance_uid=None,
        transfer_syntax_uid=m.EXPLICIT_VR_LITTLE_ENDIAN,
        path="/srv/CT.1.2.3",
        size=1000,
        sha256="ab" * 32,
        received="2026-12-04T10:00:00+00:00",
        calling_ae_title="MODALITY",
        replica="host:1",
    )
    return dataclasses.replace(stored, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stored", "facts", "verify", "reason"),
    [
        (record(), FileFacts(1000), False, None),
        (record(), FileFacts(1000, "ab" * 32), True, None),
        (None, None, False, 0x0112),
        (record(sop_class_uid=MR), FileFacts(1000), False, 0x0119),
        (record(), None, False, 0x0112),
        (record(), FileFacts(999), False, 0x0110),
        (record(), FileFacts(1000, "cd" * 32), True, 0x0110),
        (record(sha256=None), FileFacts(1000, "ab" * 32), True, 0x0110),
    ],
    ids=[
        "stored",
        "stored, digest verified",
        "never stored",
        "stored as another class",
        "file gone",
        "size changed",
        "content changed",
        "no digest to verify",
    ],
)
def test_what_counts_as_committed(
    stored: InstanceRecord | None, facts: FileFacts | None, verify: bool, reason: int | None
) -> None:
    assert failure_reason(m.Reference(CT, "1.2.3"), stored, facts, verify=verify) == reason


def test_a_duplicate_transaction_fails_every_instance_with_0131() -> None:
    references = [m.Reference(CT, "1.2.3"), m.Reference(CT, "1.2.4")]
    report = evaluate(
        "2.25.1",
        references,
        {"1.2.3": record()},
        lambda _: FileFacts(1000),
        verify=False,
        duplicate=True,
    )
    assert report.committed == ()
    assert [(f.reference.sop_instance_uid, f.reason) for f in report.failed] == [
        ("1.2.3", 0x0131),
        ("1.2.4", 0x0131),
    ]
