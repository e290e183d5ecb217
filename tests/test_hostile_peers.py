"""Hostile and broken peers against our receiver: nothing escapes, nothing brings it down.

Every case drives the in-process receiver with the scripted raw peer
(``tests/rawpeer.py``) and checks what a user would notice: the DICOM answer on
the wire (A-ABORT, A-ASSOCIATE-RJ, a failure status or a closed connection), a
log line that says what happened, and that the receiver goes on serving: after
each case a normal C-ECHO from pynetdicom must succeed.

A-ABORT reasons are those of PS3.8 9.3.8 for source 2 (service provider):
1 unrecognized PDU, 2 unexpected PDU, 4 unrecognized PDU parameter,
5 unexpected PDU parameter, 6 invalid PDU parameter value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import socket
import struct
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pynetdicom import pdu as pn_pdu

from dcmrecv.config import SubdirectoryMode
from dcmrecv.negotiation.asconfig import Profile
from tests import rawpeer
from tests.conftest import running_receiver
from tests.helpers import everything_under
from tests.rawpeer import (
    CT_IMAGE_STORAGE,
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    MR_IMAGE_STORAGE,
    VERIFICATION,
    RawPeer,
    associate_rq,
    c_echo_rq,
    c_store_rq,
    command_set,
    ct_data_set,
    element,
    item,
    message,
    p_data_tf,
    pdu,
    pdv,
    presentation_context,
    ui,
    us,
    user_information,
)

PROVIDER = 2  # A-ABORT source 2: DICOM UL service-provider (PS3.8 9.3.8)
UNRECOGNIZED_PDU = 1
UNEXPECTED_PDU = 2
UNRECOGNIZED_PDU_PARAMETER = 4
UNEXPECTED_PDU_PARAMETER = 5
INVALID_PDU_PARAMETER_VALUE = 6

#: Seconds within which an answer counts as "at once": far inside the ACSE timeout
#: (30 s by default) that a receiver still waiting for the rest of a request would
#: run into.  Not a speed figure: on the loaded 2-core test machine, under
#: tracemalloc, answers took over 0.5 s.
AT_ONCE = 5.0

#: Contexts of the storage association most tests here open (odd IDs, PS3.8 9.3.2.2).
CT_CONTEXT = 1
ECHO_CONTEXT = 3
DEFLATED_CONTEXT = 5
STORAGE_RQ = associate_rq(
    [
        (CT_CONTEXT, CT_IMAGE_STORAGE, [EXPLICIT_VR_LE]),
        (ECHO_CONTEXT, VERIFICATION, [IMPLICIT_VR_LE]),
        (DEFLATED_CONTEXT, CT_IMAGE_STORAGE, [DEFLATED_EXPLICIT_VR_LE]),
    ]
)


@pytest.fixture(autouse=True)
def log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The receiver's log; no hostile input may reach its last-resort handler."""
    caplog.set_level(logging.INFO, logger="dcmrecv")
    yield caplog
    crashes = [r for r in caplog.records if r.getMessage().startswith("Internal error")]
    assert not crashes, f"the receiver hit a bug: {crashes[0].getMessage()}"


def assert_still_serving(port: int) -> None:
    """A well-behaved SCU (pynetdicom) still gets its C-ECHO answered."""
    status = rawpeer.pynetdicom_echo(port)
    assert status == 0x0000, f"C-ECHO after the hostile peer: status {status}"


def is_failure(status: int) -> bool:
    """Failure statuses of C-STORE (PS3.4 B.2.3, PS3.7 C): A7xx, A9xx, Cxxx, 01xx, 02xx."""
    return status & 0xF000 in (0xA000, 0xC000) or 0x0100 <= status <= 0x02FF


@contextlib.contextmanager
def traced_peak() -> Iterator[list[int]]:
    """Peak Python memory allocated by this process (all threads) inside the block."""
    tracemalloc.start()
    result: list[int] = []
    try:
        start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        yield result
        result.append(tracemalloc.get_traced_memory()[1] - start)
    finally:
        tracemalloc.stop()


def open_storage(port: int) -> RawPeer:
    peer = RawPeer(port)
    accepted = peer.associate(STORAGE_RQ)
    assert accepted == {
        CT_CONTEXT: EXPLICIT_VR_LE,
        ECHO_CONTEXT: IMPLICIT_VR_LE,
        DEFLATED_CONTEXT: DEFLATED_EXPLICIT_VR_LE,
    }
    return peer


# --- the raw peer itself ---------------------------------------------------------------


def test_raw_peer_request_matches_the_hand_decoded_fixture() -> None:
    # The builder against hand-decoded bytes, the bytes against pynetdicom's
    # decoder: the tests below send what they claim to send.
    assert associate_rq() == rawpeer.ECHO_RQ_FIXTURE
    decoded = pn_pdu.A_ASSOCIATE_RQ()
    decoded.decode(rawpeer.ECHO_RQ_FIXTURE)
    assert decoded.called_ae_title == "ANY-SCP"
    assert decoded.calling_ae_title == "RAWPEER"
    [context] = decoded.presentation_context
    assert (context.context_id, context.abstract_syntax) == (1, VERIFICATION)
    assert context.transfer_syntax == [IMPLICIT_VR_LE]
    assert decoded.user_information is not None
    assert decoded.user_information.maximum_length == 16384


# --- association establishment: time ------------------------------------------------------


def test_silent_connection_is_closed_at_the_acse_timeout(log: pytest.LogCaptureFixture) -> None:
    with running_receiver(acse_timeout=1.0) as server, RawPeer(server.port) as peer:
        # ARTIM expiry in Sta2 closes the transport without any PDU (PS3.8 9.2, AA-2).
        peer.expect_closed()
        elapsed = time.monotonic() - peer.connected_at
        assert 0.9 <= elapsed <= 5.0, f"closed after {elapsed:.2f} s, ACSE timeout is 1 s"
        assert "No A-ASSOCIATE-RQ from 127.0.0.1" in log.text
        assert "within the ACSE timeout (1 s)" in log.text
        assert_still_serving(server.port)


def test_request_dribbled_a_byte_at_a_time_is_cut_off_from_connect(
    log: pytest.LogCaptureFixture,
) -> None:
    # 166 bytes at 0.2 s each would take 33 s: each byte must not restart the timer.
    with running_receiver(acse_timeout=1.0) as server, RawPeer(server.port) as peer:
        completed = peer.dribble(rawpeer.ECHO_RQ_FIXTURE, interval=0.2)
        elapsed = time.monotonic() - peer.connected_at
        assert not completed, "the receiver waited for the whole dribbled request"
        assert 0.9 <= elapsed <= 5.0, f"cut off after {elapsed:.2f} s, ACSE timeout is 1 s"
        assert "within the ACSE timeout" in log.text
        assert_still_serving(server.port)


# --- association establishment: size -------------------------------------------------------


@pytest.mark.parametrize("declared", [0xFFFFFFFF, 1024 * 1024 + 1], ids=["4GiB", "1MiB+1"])
def test_huge_declared_request_is_aborted_before_allocating(
    declared: int, log: pytest.LogCaptureFixture
) -> None:
    with running_receiver() as server, RawPeer(server.port) as peer:
        with traced_peak() as peak:
            # Only the header and the fixed fields: a greedy reader would now
            # allocate the declared length and wait for it.
            peer.send(struct.pack(">BxL", rawpeer.A_ASSOCIATE_RQ, declared))
            peer.send(rawpeer.ECHO_RQ_FIXTURE[6:74])
            started = time.monotonic()
            assert peer.expect_abort() == (PROVIDER, INVALID_PDU_PARAMETER_VALUE)
            elapsed = time.monotonic() - started
        assert elapsed < AT_ONCE, f"answered after {elapsed:.3f} s"
        assert peak[0] < 256 * 1024, f"{peak[0]} bytes allocated for a {declared} byte header"
        assert f"A-ASSOCIATE-RQ of {declared} bytes exceeds the maximum" in log.text
        assert_still_serving(server.port)


def test_request_buffer_follows_the_data_when_a_peer_dribbles() -> None:
    # 1,000,000 bytes is within the allowed size of a request, so the receiver
    # waits for them; what it holds meanwhile must follow what actually arrived.
    # The receive loop of association.py, fed the reads that a peer sending 4
    # bytes at a time produces over TCP; driven directly, so that every read is
    # exactly 4 bytes and the figure does not depend on thread timing.
    from dcmrecv.wire.pdu import PDUBuffer

    buffer = PDUBuffer()
    buffer.max_lengths = {rawpeer.A_ASSOCIATE_RQ: 1024 * 1024}
    incoming = struct.pack(">BxL", rawpeer.A_ASSOCIATE_RQ, 1_000_000) + bytes(1600)
    with traced_peak() as peak:
        for start in range(0, len(incoming), 4):
            piece = incoming[start : start + 4]
            view = buffer.writable()
            view[: len(piece)] = piece
            del view
            buffer.advance(len(piece))
            assert buffer.next_pdu() is None
    assert peak[0] < 64 * 1024, f"{peak[0]} bytes held for {len(incoming)} bytes received"


# --- not DICOM at all -------------------------------------------------------------------------

TLS_CLIENT_HELLO = bytes.fromhex(
    # TLS record: handshake (16), TLS 1.0 record version (0301), length 0x2F;
    # handshake type 1 (ClientHello), length 0x2B, version 0303 (TLS 1.2),
    # 32 bytes of random, empty session ID, one cipher suite (C02F), null compression.
    "16 0301 002f 01 00002b 0303" + "11" * 32 + "00 0002 c02f 01 00"
)


@pytest.mark.parametrize(
    ("first_bytes", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", UNRECOGNIZED_PDU),
        (TLS_CLIENT_HELLO, UNRECOGNIZED_PDU),
        (b"\x00" * 10, UNRECOGNIZED_PDU),
        # Valid PDUs in the wrong place: before an A-ASSOCIATE-RQ (Sta2).
        (pdu(rawpeer.A_ASSOCIATE_AC, bytes(68)), UNEXPECTED_PDU),
        (p_data_tf(pdv(1, 3, c_echo_rq())), UNEXPECTED_PDU),
        (rawpeer.RELEASE_RQ, UNEXPECTED_PDU),
    ],
    ids=["http", "tls", "zeros", "associate-ac", "p-data", "release-rq"],
)
def test_not_an_association_request_is_aborted(
    first_bytes: bytes, reason: int, log: pytest.LogCaptureFixture
) -> None:
    with running_receiver() as server, RawPeer(server.port) as peer:
        peer.send(first_bytes)
        assert peer.expect_abort() == (PROVIDER, reason)
        assert "Expected A-ASSOCIATE-RQ from 127.0.0.1" in log.text
        assert_still_serving(server.port)


def test_abort_before_a_request_just_closes(log: pytest.LogCaptureFixture) -> None:
    # PS3.8 9.2 state table: A-ABORT received in Sta2 is AA-2, close the
    # transport; nothing is sent back to a peer that has given up.
    with running_receiver() as server, RawPeer(server.port) as peer:
        peer.send(rawpeer.abort())
        peer.expect_closed()
        assert_still_serving(server.port)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_aborted_or_closed(seed: int) -> None:
    noise = random.Random(seed).randbytes(200)
    with running_receiver() as server, RawPeer(server.port) as peer:
        peer.send(noise)
        # End of input: a receiver still waiting for more must not wait for the
        # ACSE timeout but close on end of stream.
        peer.sock.shutdown(socket.SHUT_WR)
        answer = peer.receive()
        if answer is not None:
            assert answer.pdu_type == rawpeer.A_ABORT
            assert answer.abort_fields()[0] == PROVIDER
            peer.expect_closed()
        assert_still_serving(server.port)


# --- malformed A-ASSOCIATE-RQ ------------------------------------------------------------------

APP_CONTEXT = item(0x10, rawpeer.APPLICATION_CONTEXT.encode())
ECHO_CONTEXT_ITEM = presentation_context(1, VERIFICATION, [IMPLICIT_VR_LE])
ABSTRACT = item(0x30, VERIFICATION.encode())
TRANSFER = item(0x40, IMPLICIT_VR_LE.encode())
USER = user_information()

MALFORMED_REQUESTS = {
    # The presentation context item claims 200 bytes; 46 follow before the user item.
    "item-length-past-end": APP_CONTEXT
    + item(0x20, bytes((1, 0, 0, 0)) + ABSTRACT + TRANSFER, length=200)
    + USER,
    # The abstract syntax sub-item claims 40 bytes inside a 46-byte context item.
    "sub-item-past-its-item": APP_CONTEXT
    + item(0x20, bytes((1, 0, 0, 0)) + item(0x30, VERIFICATION.encode(), length=40) + TRANSFER)
    + USER,
    "truncated-sub-item-header": APP_CONTEXT
    + item(0x20, bytes((1, 0, 0, 0)) + ABSTRACT + TRANSFER + b"\x40\x00")
    + USER,
    "zero-length-application-context": item(0x10, b"") + ECHO_CONTEXT_ITEM + USER,
    "zero-length-abstract-syntax": APP_CONTEXT
    + item(0x20, bytes((1, 0, 0, 0)) + item(0x30, b"") + TRANSFER)
    + USER,
    "zero-length-context-item": APP_CONTEXT + item(0x20, b"") + USER,
    "uid-over-64-characters": APP_CONTEXT
    + item(0x20, bytes((1, 0, 0, 0)) + item(0x30, b"1." * 40) + TRANSFER)
    + USER,
    "even-context-id": APP_CONTEXT + presentation_context(2, VERIFICATION, [IMPLICIT_VR_LE]) + USER,
    "context-id-twice": APP_CONTEXT + ECHO_CONTEXT_ITEM + ECHO_CONTEXT_ITEM + USER,
    "no-transfer-syntax": APP_CONTEXT + item(0x20, bytes((1, 0, 0, 0)) + ABSTRACT) + USER,
    "no-presentation-context": APP_CONTEXT + USER,
    "no-application-context": ECHO_CONTEXT_ITEM + USER,
    "no-maximum-length": APP_CONTEXT + ECHO_CONTEXT_ITEM + user_information(max_length=None),
    "maximum-length-of-2-bytes": APP_CONTEXT
    + ECHO_CONTEXT_ITEM
    + item(0x50, item(0x51, b"\x40\x00")),
    # 2000 contexts: IDs 1..255 run out after 128, so IDs repeat.
    "thousands-of-contexts": APP_CONTEXT
    + b"".join(
        presentation_context(1 + 2 * (n % 128), CT_IMAGE_STORAGE, [IMPLICIT_VR_LE])
        for n in range(2000)
    )
    + USER,
}


@pytest.mark.parametrize("name", sorted(MALFORMED_REQUESTS))
def test_malformed_request_is_aborted_at_once(name: str, log: pytest.LogCaptureFixture) -> None:
    request = associate_rq(items=MALFORMED_REQUESTS[name])
    with running_receiver() as server, RawPeer(server.port) as peer:
        with traced_peak() as peak:
            started = time.monotonic()
            peer.send(request)
            fields = peer.expect_abort()
            elapsed = time.monotonic() - started
        assert fields == (PROVIDER, INVALID_PDU_PARAMETER_VALUE)
        assert elapsed < AT_ONCE, f"answered after {elapsed:.3f} s"
        assert peak[0] < 4 * len(request) + 256 * 1024
        assert "Protocol error from 127.0.0.1" in log.text
        assert_still_serving(server.port)


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        # Item type 0x99 is not defined for an A-ASSOCIATE-RQ (PS3.8 9.3.2).
        (APP_CONTEXT + ECHO_CONTEXT_ITEM + item(0x99, b"??") + USER, UNRECOGNIZED_PDU_PARAMETER),
        # A user information item inside a presentation context (PS3.8 9.3.2.2).
        (
            APP_CONTEXT + item(0x20, bytes((1, 0, 0, 0)) + ABSTRACT + TRANSFER + USER) + USER,
            UNEXPECTED_PDU_PARAMETER,
        ),
    ],
    ids=["unrecognized-item", "unexpected-sub-item"],
)
def test_request_with_foreign_items_is_aborted_with_the_matching_reason(
    items: bytes, reason: int, log: pytest.LogCaptureFixture
) -> None:
    with running_receiver() as server, RawPeer(server.port) as peer:
        peer.send(associate_rq(items=items))
        assert peer.expect_abort() == (PROVIDER, reason)
        assert "Protocol error from 127.0.0.1" in log.text
        assert_still_serving(server.port)


def test_many_transfer_syntaxes_on_every_context_are_negotiated_quickly(
    default_profile: Profile,
) -> None:
    # 128 contexts (all odd IDs) of 60 transfer syntaxes each: about 400 KB,
    # within the request limit; the answer must still come at once.
    junk = [f"1.2.3.4.{n}" for n in range(59)]
    contexts = [(2 * n + 1, CT_IMAGE_STORAGE, [*junk, EXPLICIT_VR_LE]) for n in range(128)]
    request = associate_rq(contexts)
    with running_receiver(profile=default_profile) as server, RawPeer(server.port) as peer:
        started = time.monotonic()
        accepted = peer.associate(request)
        elapsed = time.monotonic() - started
        assert accepted == {2 * n + 1: EXPLICIT_VR_LE for n in range(128)}
        # About 0.1 s on an idle machine; work growing with the square of the
        # request's 7,680 items would take minutes.
        assert elapsed < AT_ONCE, f"negotiation took {elapsed:.2f} s"
        peer.release()
        assert_still_serving(server.port)


@pytest.mark.parametrize("version", [0x0000, 0x0002, 0x8000])
def test_unsupported_protocol_version_is_rejected(
    version: int, log: pytest.LogCaptureFixture
) -> None:
    with running_receiver() as server, RawPeer(server.port) as peer:
        peer.send(associate_rq(protocol_version=version))
        # PS3.8 9.3.4: permanent (1), ACSE related (2), protocol version not supported (2).
        assert peer.expect(rawpeer.A_ASSOCIATE_RJ).reject_fields() == (1, 2, 2)
        peer.expect_closed()
        assert "Refusing Association (protocol version not supported)" in log.text
        assert_still_serving(server.port)


def test_protocol_version_with_bit_0_set_is_accepted() -> None:
    # PS3.8 9.3.2: a receiver implementing version 1 tests only bit 0.
    with running_receiver() as server, RawPeer(server.port) as peer:
        assert peer.associate(associate_rq(protocol_version=0x0003)) == {1: IMPLICIT_VR_LE}
        assert peer.echo() == 0x0000
        peer.release()


def test_unknown_user_information_sub_items_are_ignored() -> None:
    extra = (
        item(0x5F, b"not defined by PS3.7")  # unknown sub-item type
        + item(0x58, bytes((1, 0)) + struct.pack(">H", 4) + b"user" + struct.pack(">H", 0))
        + item(0x57, struct.pack(">H", 4) + b"1.23" + struct.pack(">H", 0) + struct.pack(">H", 0))
    )
    with running_receiver() as server, RawPeer(server.port) as peer:
        accepted = peer.associate(associate_rq(user=user_information(extra=extra)))
        assert accepted == {1: IMPLICIT_VR_LE}
        assert peer.echo() == 0x0000
        peer.release()


def test_reserved_fields_are_not_tested() -> None:
    # PS3.8 9.3.1/9.3.2: reserved fields are sent as 00 "but not tested to this
    # value when received".  Set every one of them in the request to FF.
    request = bytearray(rawpeer.ECHO_RQ_FIXTURE)
    reserved = [1, 8, 9, *range(42, 74)]  # PDU header, after the version, 32 bytes
    offset = 74
    while offset < len(request):  # items: the byte after each item type
        reserved.append(offset + 1)
        if request[offset] in (0x20,):  # presentation context: 3 bytes after its ID
            reserved += [offset + 5, offset + 6, offset + 7]
            offset += 8
            continue
        if request[offset] == 0x50:  # descend into the user information sub-items
            offset += 4
            continue
        offset += 4 + struct.unpack_from(">H", request, offset + 2)[0]
    for index in reserved:
        request[index] = 0xFF
    with running_receiver() as server, RawPeer(server.port) as peer:
        assert peer.associate(bytes(request)) == {1: IMPLICIT_VR_LE}
        assert peer.echo() == 0x0000
        peer.release()


# --- established association: PDU level -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # PDV length runs 100 bytes past the end of its P-DATA-TF.
        (p_data_tf(pdv(1, 3, c_echo_rq(), length=len(c_echo_rq()) + 102)), 6),
        # PDV length 1: shorter than its own context ID and control byte (PS3.8 9.3.5.1).
        (p_data_tf(pdv(1, 3, b"", length=1)), 6),
        # Three stray bytes after a PDV (a first fragment: nothing to answer before).
        (p_data_tf(pdv(1, rawpeer.COMMAND, c_echo_rq()[:20]) + b"\x00\x00\x00"), 6),
        # A P-DATA-TF with no PDV at all.
        (pdu(rawpeer.P_DATA_TF, b""), 6),
        # Context 3 was never proposed.
        (p_data_tf(pdv(3, 3, c_echo_rq())), 6),
        # PDUs that have no place in Sta6 (PS3.8 9.2 state table).
        (associate_rq(), UNEXPECTED_PDU),
        (pdu(rawpeer.A_ASSOCIATE_AC, bytes(68)), UNEXPECTED_PDU),
        (pdu(rawpeer.A_ASSOCIATE_RJ, bytes(4)), UNEXPECTED_PDU),
        (rawpeer.RELEASE_RP, UNEXPECTED_PDU),
        (pdu(0x08, bytes(4)), UNRECOGNIZED_PDU),
        (pdu(0xFF, bytes(4)), UNRECOGNIZED_PDU),
    ],
    ids=[
        "pdv-past-pdu",
        "pdv-length-1",
        "trailing-bytes",
        "empty-p-data",
        "unknown-context",
        "associate-rq",
        "associate-ac",
        "associate-rj",
        "release-rp",
        "pdu-type-08",
        "pdu-type-ff",
    ],
)
def test_broken_pdu_on_an_established_association_is_aborted(
    data: bytes, reason: int, log: pytest.LogCaptureFixture
) -> None:
    with running_receiver() as server, RawPeer(server.port) as peer:
        peer.associate()
        peer.send(data)
        assert peer.expect_abort() == (PROVIDER, reason)
        assert "Protocol error from 127.0.0.1" in log.text
        assert_still_serving(server.port)


def test_p_data_larger_than_our_maximum_is_aborted_on_its_header(
    log: pytest.LogCaptureFixture,
) -> None:
    with running_receiver(max_pdu=16384) as server, RawPeer(server.port) as peer:
        peer.associate()
        # The header alone: the receiver must not wait for 16385 bytes to refuse them.
        peer.send(struct.pack(">BxL", rawpeer.P_DATA_TF, 16385))
        assert peer.expect_abort() == (PROVIDER, INVALID_PDU_PARAMETER_VALUE)
        assert "P-DATA-TF of 16385 bytes exceeds the maximum of 16384" in log.text
        assert_still_serving(server.port)


def test_pdv_on_a_rejected_context_is_aborted(log: pytest.LogCaptureFixture) -> None:
    # Context 3 is proposed but rejected (no storage without a profile).
    request = associate_rq(
        [(1, VERIFICATION, [IMPLICIT_VR_LE]), (3, CT_IMAGE_STORAGE, [IMPLICIT_VR_LE])]
    )
    with running_receiver() as server, RawPeer(server.port) as peer:
        assert peer.associate(request) == {1: IMPLICIT_VR_LE}
        peer.send(message(3, True, c_store_rq(CT_IMAGE_STORAGE, "1.2.3")))
        assert peer.expect_abort()[0] == PROVIDER
        assert "presentation context 3, which is not accepted" in log.text
        assert_still_serving(server.port)


# --- established association: DIMSE level -------------------------------------------------------


def test_a_dimse_protocol_error_is_aborted_and_the_receiver_goes_on(
    log: pytest.LogCaptureFixture,
) -> None:
    # The cases of PS3.7 that end an association are in test_protocol.py (in memory);
    # here one of them over a real socket: the A-ABORT reaches the peer.
    no_message_id = command_set(
        element(0x0002, ui(VERIFICATION)),
        element(0x0100, us(rawpeer.C_ECHO_RQ)),
        element(0x0800, us(rawpeer.NO_DATA_SET)),
    )
    with running_receiver() as server, RawPeer(server.port) as peer:
        peer.associate()
        peer.send(message(1, True, no_message_id))
        assert peer.expect_abort()[0] == PROVIDER
        assert "Malformed DIMSE command from 127.0.0.1" in log.text
        assert "aborting association" in log.text
        assert_still_serving(server.port)


def test_unsupported_dimse_service_gets_a_failure_status_and_the_association_goes_on(
    log: pytest.LogCaptureFixture,
) -> None:
    find = command_set(
        element(0x0002, ui(VERIFICATION)),
        element(0x0100, us(0x0020)),  # C-FIND-RQ
        element(0x0110, us(7)),
        element(0x0800, us(rawpeer.NO_DATA_SET)),
    )
    with running_receiver() as server, RawPeer(server.port) as peer:
        peer.associate()
        peer.send(message(1, True, find))
        fields = peer.receive_command()
        assert struct.unpack("<H", fields[0x0100])[0] == 0x8020  # C-FIND-RSP
        assert struct.unpack("<H", fields[0x0120])[0] == 7
        assert rawpeer.status_of(fields) == 0x0211  # unrecognized operation (PS3.7 C.5.9)
        assert "cannot handle this kind of DIMSE command (0x0020)" in log.text
        assert peer.echo(message_id=8) == 0x0000
        peer.release()


# --- time and numbers on established associations -----------------------------------------------


def test_silent_association_is_aborted_at_the_dimse_timeout_while_others_go_on(
    log: pytest.LogCaptureFixture,
) -> None:
    with running_receiver(dimse_timeout=2.0) as server:
        with RawPeer(server.port) as silent, RawPeer(server.port) as busy:
            silent.associate()
            established = time.monotonic()
            busy.associate()
            # The busy one keeps talking, every quarter second, until the silent one
            # is aborted: a single pause of a fixed length could outlast the DIMSE
            # timeout on a loaded machine and lose the busy one too.
            message_id = 1
            while not select.select([silent.sock], [], [], 0.25)[0]:
                assert busy.echo(message_id=message_id) == 0x0000
                message_id += 1
                assert time.monotonic() - established < 30, "the silent one was never aborted"
            assert silent.expect_abort()[0] in (0, PROVIDER)
            elapsed = time.monotonic() - established
            assert 1.9 <= elapsed <= 7.0, f"aborted after {elapsed:.2f} s, DIMSE timeout is 2 s"
            assert busy.echo(message_id=message_id) == 0x0000
            busy.release()
        assert "DIMSE timeout: no data from 127.0.0.1" in log.text
        assert_still_serving(server.port)


def test_association_over_the_limit_is_rejected(log: pytest.LogCaptureFixture) -> None:
    with (
        running_receiver(max_associations=2) as server,
        RawPeer(server.port) as first,
        RawPeer(server.port) as second,
    ):
        first.associate()
        second.associate()
        with RawPeer(server.port) as third:
            third.send(rawpeer.ECHO_RQ_FIXTURE)
            # PS3.8 9.3.4: transient (2), presentation related (3), local limit exceeded (2).
            assert third.expect(rawpeer.A_ASSOCIATE_RJ).reject_fields() == (2, 3, 2)
            third.expect_closed()
        assert "Refusing Association (too many associations)" in log.text
        first.release()
        # The slot is free again once the first association has ended; the
        # receiver's bookkeeping may lag our seeing the close by a moment.
        deadline = time.monotonic() + 10.0
        while True:
            with RawPeer(server.port) as fourth:
                fourth.send(rawpeer.ECHO_RQ_FIXTURE)
                answer = fourth.receive()
                assert answer is not None
                if answer.pdu_type == rawpeer.A_ASSOCIATE_AC:
                    assert fourth.echo() == 0x0000
                    fourth.release()
                    break
                assert answer.reject_fields() == (2, 3, 2)
                assert time.monotonic() < deadline, "the slot was never freed"
        assert second.echo() == 0x0000
        second.release()


# --- hostile C-STORE requests and data sets -------------------------------------------------


def test_new_command_while_a_data_set_is_incomplete_is_aborted(
    tmp_path: Path, default_profile: Profile, log: pytest.LogCaptureFixture
) -> None:
    data_set = ct_data_set("1.2.3.4.100", pixel_data=bytes(4096))
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        with open_storage(server.port) as peer:
            peer.send(message(CT_CONTEXT, True, c_store_rq(CT_IMAGE_STORAGE, "1.2.3.4.100")))
            peer.send(p_data_tf(pdv(CT_CONTEXT, 0, data_set[:1000])))
            # PS3.7 9.1 without asynchronous operations: one message at a time.
            peer.send(message(CT_CONTEXT, True, c_store_rq(CT_IMAGE_STORAGE, "1.2.3.4.101")))
            assert peer.expect_abort()[0] == PROVIDER
        assert "command fragment while a data set is still expected" in log.text
        assert_still_serving(server.port)
    assert everything_under(tmp_path) == []


@pytest.mark.parametrize(
    "command",
    [
        command_set(  # no Affected SOP Instance UID
            element(0x0002, ui(CT_IMAGE_STORAGE)),
            element(0x0100, us(rawpeer.C_STORE_RQ)),
            element(0x0110, us(1)),
            element(0x0700, us(0)),
            element(0x0800, us(0)),
        ),
        command_set(  # no Affected SOP Class UID
            element(0x0100, us(rawpeer.C_STORE_RQ)),
            element(0x0110, us(1)),
            element(0x0700, us(0)),
            element(0x0800, us(0)),
            element(0x1000, ui("1.2.3.4.103")),
        ),
        c_store_rq(CT_IMAGE_STORAGE, b""),  # present but empty
    ],
    ids=["no-instance-uid", "no-class-uid", "empty-instance-uid"],
)
def test_store_request_without_uids_fails_and_stores_nothing(
    command: bytes, tmp_path: Path, default_profile: Profile, log: pytest.LogCaptureFixture
) -> None:
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        with open_storage(server.port) as peer:
            status = peer.store(CT_CONTEXT, command, ct_data_set("1.2.3.4.103"))
            assert is_failure(status), f"status 0x{status:04X}"
            assert peer.echo(ECHO_CONTEXT) == 0x0000
            peer.release()
        assert "Sending C-STORE Response (" in log.text
        assert_still_serving(server.port)
    assert everything_under(tmp_path) == []


def test_store_of_another_sop_class_than_the_context_fails(
    tmp_path: Path, default_profile: Profile
) -> None:
    with (
        running_receiver(output_directory=tmp_path, profile=default_profile) as server,
        open_storage(server.port) as peer,
    ):
        command = c_store_rq(MR_IMAGE_STORAGE, "1.2.3.4.104")
        data_set = ct_data_set("1.2.3.4.104", sop_class_uid=MR_IMAGE_STORAGE)
        status = peer.store(CT_CONTEXT, command, data_set)
        assert is_failure(status), f"status 0x{status:04X}"
        peer.release()
    assert everything_under(tmp_path) == []


UNPARSABLE_DATA_SETS = {
    # SOP Instance UID declares 64 bytes, 6 follow.
    "value-past-the-end": rawpeer.explicit(0x00080016, "UI", rawpeer.text(CT_IMAGE_STORAGE, b"\0"))
    + rawpeer.explicit(0x00080018, "UI", b"1.2.3\0", length=64),
    # A VR of two lower-case letters (PS3.5 6.2: VRs are two upper-case characters).
    "bad-vr": ct_data_set(
        "1.2.3.4.105", extra=struct.pack("<HH2sH", 0x0009, 0x0010, b"ab", 4) + b"ABCD"
    ),
    "stray-item-delimiter": ct_data_set("1.2.3.4.105") + struct.pack("<HHL", 0xFFFE, 0xE00D, 0),
    # Undefined length is for sequences and encapsulated pixel data only (PS3.5 7.1.1).
    "undefined-length-ob": ct_data_set(
        "1.2.3.4.105", extra=rawpeer.explicit(0x00091010, "OB", b"", rawpeer.UNDEFINED_LENGTH)
    ),
    "truncated-header": ct_data_set("1.2.3.4.105") + b"\xe0\x7f",
}


@pytest.mark.parametrize("name", sorted(UNPARSABLE_DATA_SETS))
def test_unparsable_data_set_fails_with_cannot_understand(
    name: str, tmp_path: Path, default_profile: Profile, log: pytest.LogCaptureFixture
) -> None:
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        with open_storage(server.port) as peer:
            command = c_store_rq(CT_IMAGE_STORAGE, "1.2.3.4.105")
            status = peer.store(CT_CONTEXT, command, UNPARSABLE_DATA_SETS[name])
            # PS3.4 B.2.3: Cxxx, cannot understand.
            assert status & 0xF000 == 0xC000, f"status 0x{status:04X}"
            assert peer.echo(ECHO_CONTEXT) == 0x0000
            peer.release()
        assert "Sending C-STORE Response (Error: CannotUnderstand)" in log.text
        assert_still_serving(server.port)
    assert everything_under(tmp_path) == []


@pytest.mark.parametrize(
    ("command_uids", "data_set_uids"),
    [
        ((CT_IMAGE_STORAGE, "1.2.3.4.106"), (CT_IMAGE_STORAGE, "1.2.3.4.107")),
        ((CT_IMAGE_STORAGE, "1.2.3.4.106"), (MR_IMAGE_STORAGE, "1.2.3.4.106")),
    ],
    ids=["instance-uid", "class-uid"],
)
def test_data_set_uids_differing_from_the_command_fail_with_a900(
    command_uids: tuple[str, str],
    data_set_uids: tuple[str, str],
    tmp_path: Path,
    default_profile: Profile,
    log: pytest.LogCaptureFixture,
) -> None:
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        with open_storage(server.port) as peer:
            command = c_store_rq(*command_uids)
            data_set = ct_data_set(data_set_uids[1], sop_class_uid=data_set_uids[0])
            status = peer.store(CT_CONTEXT, command, data_set)
            # PS3.4 B.2.3: A900, data set does not match SOP class.
            assert status == 0xA900, f"status 0x{status:04X}"
            peer.release()
        assert "Sending C-STORE Response (Error: DataSetDoesNotMatchSOPClass)" in log.text
    assert everything_under(tmp_path) == []


@pytest.mark.parametrize(("depth", "stored"), [(64, True), (65, False), (1000, False)])
def test_sequences_nested_deeper_than_64_are_refused(
    depth: int, stored: bool, tmp_path: Path, default_profile: Profile
) -> None:
    # The nested sequence is Content Sequence (0040,A730): after (0010,0010)
    # in tag order, so it goes at the end, before the pixel data.
    data_set = ct_data_set("1.2.3.4.108")
    pixel_at = data_set.rindex(b"\xe0\x7f\x10\x00")
    data_set = data_set[:pixel_at] + rawpeer.nested_sequences(depth) + data_set[pixel_at:]
    with (
        running_receiver(output_directory=tmp_path, profile=default_profile) as server,
        open_storage(server.port) as peer,
    ):
        status = peer.store(CT_CONTEXT, c_store_rq(CT_IMAGE_STORAGE, "1.2.3.4.108"), data_set)
        peer.release()
    if stored:
        assert status == 0x0000, f"status 0x{status:04X}"
        [path] = everything_under(tmp_path)
        assert pydicom.dcmread(path).SOPInstanceUID == "1.2.3.4.108"
    else:
        assert is_failure(status), f"status 0x{status:04X}"
        assert everything_under(tmp_path) == []


def deflate(data_chunks: Iterator[bytes]) -> bytes:
    """Raw deflate (RFC 1951, no zlib header) as Deflated Explicit VR LE uses (PS3.5 A.5)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [compressor.compress(chunk) for chunk in data_chunks]
    out.append(compressor.flush())
    deflated = b"".join(out)
    return deflated + b"\x00" if len(deflated) % 2 else deflated


def test_deflated_data_set_is_stored(tmp_path: Path, default_profile: Profile) -> None:
    plain = ct_data_set("1.2.3.4.109", pixel_data=bytes(100_000))
    with (
        running_receiver(output_directory=tmp_path, profile=default_profile) as server,
        open_storage(server.port) as peer,
    ):
        command = c_store_rq(CT_IMAGE_STORAGE, "1.2.3.4.109")
        status = peer.store(DEFLATED_CONTEXT, command, deflate(iter([plain])))
        peer.release()
    assert status == 0x0000
    [path] = everything_under(tmp_path)
    stored = pydicom.dcmread(path)
    assert stored.file_meta.TransferSyntaxUID == DEFLATED_EXPLICIT_VR_LE
    assert stored.PixelData == bytes(100_000)


def test_deflate_bomb_is_refused(
    tmp_path: Path, default_profile: Profile, log: pytest.LogCaptureFixture
) -> None:
    # About 100 KB on the wire that inflate to 100 MiB of pixel data, over the
    # receiver's inflate limit (64 MiB, or 256 times the received size).
    pixel_length = 100 * 1024 * 1024
    head = ct_data_set("1.2.3.4.110")
    head = head[: head.rindex(b"\xe0\x7f\x10\x00")]
    zeros = bytes(1024 * 1024)
    chunks = iter(
        [head, rawpeer.explicit(0x7FE00010, "OB", b"", pixel_length)]
        + [zeros] * (pixel_length // len(zeros))
    )
    bomb = deflate(chunks)
    assert len(bomb) < 256 * 1024
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        with open_storage(server.port) as peer:
            started = time.monotonic()
            command = c_store_rq(CT_IMAGE_STORAGE, "1.2.3.4.110")
            status = peer.store(DEFLATED_CONTEXT, command, bomb)
            elapsed = time.monotonic() - started
            assert is_failure(status), f"status 0x{status:04X}"
            assert elapsed < 5.0
            assert peer.echo(ECHO_CONTEXT) == 0x0000
            peer.release()
        assert "Sending C-STORE Response (" in log.text
        assert_still_serving(server.port)
    assert everything_under(tmp_path) == []


def test_p_data_of_exactly_our_maximum_is_accepted_one_byte_more_is_not(
    tmp_path: Path, default_profile: Profile
) -> None:
    # PS3.8 D.1: the maximum bounds the PDU length field of each P-DATA-TF.
    # A data set of 16378 bytes in one PDV makes a P-DATA-TF of exactly 16384.
    head = ct_data_set("1.2.3.4.111", pixel_data=b"")
    pixels = 16378 - len(head)
    data_set = ct_data_set("1.2.3.4.111", pixel_data=bytes(pixels))
    assert len(data_set) == 16378
    with (
        running_receiver(
            output_directory=tmp_path, profile=default_profile, max_pdu=16384
        ) as server,
        open_storage(server.port) as peer,
    ):
        peer.send(message(CT_CONTEXT, True, c_store_rq(CT_IMAGE_STORAGE, "1.2.3.4.111")))
        exact = p_data_tf(pdv(CT_CONTEXT, rawpeer.LAST, data_set))
        assert struct.unpack_from(">L", exact, 2)[0] == 16384
        peer.send(exact)
        assert rawpeer.status_of(peer.receive_command()) == 0x0000
        peer.send(message(CT_CONTEXT, True, c_store_rq(CT_IMAGE_STORAGE, "1.2.3.4.112")))
        over = p_data_tf(pdv(CT_CONTEXT, rawpeer.LAST, data_set + b"\x00"))
        peer.send(over)
        assert peer.expect_abort() == (PROVIDER, INVALID_PDU_PARAMETER_VALUE)
    assert len(everything_under(tmp_path)) == 1


# --- peer values never leave the output directory -----------------------------------------------

HOSTILE_VALUES = [
    "../../../../../../tmp/escaped",
    "/etc/passwd",
    "/tmp/escaped",
    "..",
    ".",
    "..\\..\\..\\escaped",
    "1.2.3/../../../escaped",
    "1.2.3\x00/../../escaped",
    "~/escaped",
    "1." * 127 + "1",  # 255 characters
    "9" * 1000,
]
HOSTILE_DATES = [
    "../../../escaped",
    "/tmp",
    "2024/../../..",
    "20240101/../../..",
    "..\\..",
    "2024\x00../..",
    "1" * 300,
    "..",
]


def test_peer_values_never_name_a_path_outside_the_output_directory(
    tmp_path: Path, default_profile: Profile
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    statuses = []
    with running_receiver(
        output_directory=output,
        profile=default_profile,
        subdirectory=SubdirectoryMode.SERIES_DATE,
    ) as server:
        peer = RawPeer(server.port)
        request = associate_rq(
            [(CT_CONTEXT, CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])],
            calling="../../../..",
            called="/tmp/x\\..",
        )
        with peer:
            assert peer.associate(request) == {CT_CONTEXT: EXPLICIT_VR_LE}
            for index, uid in enumerate(HOSTILE_VALUES):
                date = HOSTILE_DATES[index % len(HOSTILE_DATES)]
                command = c_store_rq(CT_IMAGE_STORAGE, uid.encode(), message_id=index + 1)
                data_set = ct_data_set(uid.encode(), series_date=date.encode())
                statuses.append(peer.store(CT_CONTEXT, command, data_set))
            peer.release()
        assert_still_serving(server.port)
    assert all(s == 0x0000 or is_failure(s) for s in statuses), [hex(s) for s in statuses]
    assert any(s == 0x0000 for s in statuses), "nothing stored at all: the test proves nothing"
    written = [p for p in tmp_path.rglob("*") if not p.is_dir()]
    assert len(written) == statuses.count(0x0000)
    for path in written:
        real = Path(os.path.realpath(path))
        assert real.is_relative_to(output.resolve()), f"{path} is outside {output}"
        assert not path.is_symlink()
        assert real.relative_to(output.resolve()).parts[0] in ("data", "undef")


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_distinct_instances_whose_uids_sanitise_alike_are_both_kept(
    tmp_path: Path, default_profile: Profile, log: pytest.LogCaptureFixture
) -> None:
    # Not valid UIDs (PS3.5 9.1), but DCMTK stores them (3.6.7 names the first two
    # alike: "CT.1.2.3_4"); each is stored under its own name, and a W: line says so.
    uids = ["1.2.3/4", "1.2.3_4", "1.2.3a4", "A1B2C3D4" * 8]
    with (
        running_receiver(output_directory=tmp_path, profile=default_profile) as server,
        open_storage(server.port) as peer,
    ):
        statuses = [
            peer.store(CT_CONTEXT, c_store_rq(CT_IMAGE_STORAGE, uid), ct_data_set(uid))
            for uid in uids
        ]
        # The same value again replaces its file, as DCMTK does.
        statuses.append(
            peer.store(CT_CONTEXT, c_store_rq(CT_IMAGE_STORAGE, uids[0]), ct_data_set(uids[0]))
        )
        peer.release()
    assert statuses == [0x0000] * 5
    files = everything_under(tmp_path)
    assert {pydicom.dcmread(path).SOPInstanceUID for path in files} == set(uids)
    assert len(files) == len(uids)
    assert tmp_path / ("CT." + "A1B2C3D4" * 8) in files  # DCMTK's name where it is safe
    warnings = [r.getMessage() for r in log.records if r.levelno == logging.WARNING]
    for uid in uids:
        assert any(
            f"C-STORE of SOP instance {uid}: SOP Instance UID is not a valid UID" in w
            for w in warnings
        ), uid


# --- fuzzing the request over a real socket ------------------------------------------------------


def _mutations() -> st.SearchStrategy[bytes]:
    base = STORAGE_RQ

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "length"]))
            position = draw(st.integers(0, len(data) - 1))
            if kind == "flip":
                data[position] = draw(st.integers(0, 255))
            elif kind == "truncate":
                del data[position:]
            elif kind == "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=40))
            elif kind == "delete":
                del data[position : position + draw(st.integers(1, 20))]
            else:  # rewrite a 16-bit length somewhere with an extreme value
                value = draw(st.sampled_from([0, 1, 3, 0x7FFF, 0xFFFF]))
                data[position : position + 2] = struct.pack(">H", value)
            if not data:
                data = bytearray(b"\x01")
        return bytes(data)

    return mutate()


def test_mutated_requests_get_an_answer_and_the_receiver_keeps_serving(
    default_profile: Profile,
) -> None:
    outcomes: dict[str, int] = {}
    with running_receiver(profile=default_profile, acse_timeout=5.0) as server:

        @settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        @given(request=_mutations())
        def check(request: bytes) -> None:
            with RawPeer(server.port) as peer:
                peer.send(request)
                # End of stream: a receiver waiting for more must give up at once.
                peer.sock.shutdown(socket.SHUT_WR)
                answer = peer.receive()
                name = "closed" if answer is None else answer.name
                assert name in ("closed", "A-ASSOCIATE-AC", "A-ASSOCIATE-RJ", "A-ABORT")
                if answer is not None and answer.pdu_type == rawpeer.A_ABORT:
                    assert answer.abort_fields()[0] == PROVIDER
                if answer is not None and answer.pdu_type == rawpeer.A_ASSOCIATE_AC:
                    # Bytes past the request's declared length are the next PDU
                    # of an established association: garbage there is aborted.
                    after = peer.receive()
                    if after is not None:
                        assert after.abort_fields()[0] == PROVIDER
                        peer.expect_closed()
                elif answer is not None:
                    peer.expect_closed()
                outcomes[name] = outcomes.get(name, 0) + 1

        check()
        assert_still_serving(server.port)
    # The mutations must reach more than one outcome, or they test nothing.
    assert len(outcomes) >= 2, outcomes


def _mutated(base: bytes) -> st.SearchStrategy[bytes]:
    """``base`` with a few bytes replaced, inserted or deleted."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 3))):
            position = draw(st.integers(0, max(len(data) - 1, 0)))
            kind = draw(st.sampled_from(["flip", "insert", "delete"]))
            if kind == "flip" and data:
                data[position] = draw(st.integers(0, 255))
            elif kind == "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=8))
            else:
                del data[position : position + draw(st.integers(1, 8))]
        return bytes(data)

    return mutate()


def test_mutated_commands_on_an_established_association_never_crash_the_receiver() -> None:
    base = message(1, True, c_echo_rq())
    outcomes: dict[str, int] = {}
    with running_receiver() as server:

        @settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        @given(data=_mutated(base))
        def check(data: bytes) -> None:
            with RawPeer(server.port) as peer:
                peer.associate()
                peer.send(data)
                peer.sock.shutdown(socket.SHUT_WR)
                while (answer := peer.receive()) is not None:
                    assert answer.name in ("P-DATA-TF", "A-ABORT", "A-RELEASE-RP")
                    outcomes[answer.name] = outcomes.get(answer.name, 0) + 1

        check()
        assert_still_serving(server.port)
    assert len(outcomes) >= 2, outcomes
