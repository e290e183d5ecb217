"""The association as a protocol object: whole DIMSE exchanges in memory (tests/wirepair.py).

PS3.8 (the upper layer) and PS3.7 (DIMSE message assembly) without sockets: what
the peer sends becomes typed events, what we answer becomes bytes, and a peer that
breaks either standard gets the A-ABORT PS3.8 prescribes.  The socket-level
behaviour (timeouts, the abort reaching the peer, the server going on) is in
test_hostile_peers.py; the state table itself in test_acceptor_core.py.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcmrecv.status import Status
from dcmrecv.wire import dimse, pdu
from dcmrecv.wire import protocol as p
from dcmrecv.wire import requestor as r
from dcmrecv.wire.pdu import AbortSource, ProtocolError
from tests import rawpeer
from tests.rawpeer import command_set, element, message, p_data_tf, pdv, ui, us
from tests.wirepair import (
    CT_IMAGE_STORAGE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    VERIFICATION,
    Pair,
    echo_rq,
    store_rq,
)

CT_CONTEXT = 3


def established(**kwargs: int) -> Pair:
    pair = Pair(**kwargs)
    pair.associate()
    return pair


def store_events(pair: Pair, uid: str, data_set: bytes, chunk: int | None = None) -> list[p.Event]:
    return pair.to_acceptor(pair.request(CT_CONTEXT, store_rq(uid), data_set), chunk=chunk)


def data_of(events: list[p.Event]) -> bytes:
    return b"".join(bytes(e.fragment) for e in events if isinstance(e, p.StoreData))


# --- association establishment and release ------------------------------------------------


def test_an_accepted_association_gives_the_requestor_its_contexts() -> None:
    pair = Pair()
    accepted = pair.associate({1: (VERIFICATION, IMPLICIT_VR_LE)})
    assert accepted.accepted == {1: (VERIFICATION, IMPLICIT_VR_LE)}
    assert pair.acceptor.state.value == "Sta6" and pair.acceptor.idle
    assert pair.acceptor.accepted == {1: (VERIFICATION, IMPLICIT_VR_LE)}


def test_a_rejected_association_reaches_the_requestor_with_its_reason() -> None:
    pair = Pair()
    (requested,) = pair.to_acceptor(pair.requestor.associate())
    assert isinstance(requested, p.AssociationRequested)
    assert requested.request.calling_ae_title == "SCU"
    (rejected,) = pair.answer(p.Reject(1, 1, 3))
    assert rejected == r.Rejected(1, 1, 3)
    assert pair.acceptor.state.value == "Sta13"


def test_release_is_answered_and_ends_the_association() -> None:
    pair = established()
    (release,) = pair.to_acceptor(pair.requestor.release())
    assert release == p.ReleaseRequested(p.DimseState.IDLE)
    assert pair.answer(p.ReleaseResponse()) == [r.ReleaseReplied()]
    assert pair.acceptor.state.value == "Sta13"


def test_release_in_the_middle_of_a_data_set_says_so() -> None:
    pair = established()
    command = pair.request(CT_CONTEXT, store_rq("1.2.3.4"))
    partial = p_data_tf(pdv(CT_CONTEXT, 0, b"\x08\x00\x16\x00"))
    events = pair.to_acceptor(command + partial + pair.requestor.release())
    assert isinstance(events[0], p.StoreStarted)
    assert events[-1] == p.ReleaseRequested(p.DimseState.STORE_DATA)
    assert pair.acceptor.idle


def test_a_peer_abort_is_an_event_and_ends_the_association() -> None:
    pair = established()
    events = pair.to_acceptor(pair.requestor.abort())
    assert events == [p.Aborted(AbortSource.SERVICE_USER, 0, p.DimseState.IDLE)]
    assert pair.acceptor.state.value == "Sta1"


# --- C-ECHO and C-STORE -------------------------------------------------------------------


def test_c_echo_round_trip() -> None:
    pair = established()
    (echo,) = pair.to_acceptor(pair.request(1, echo_rq(message_id=7)))
    assert isinstance(echo, p.EchoRequested) and echo.command.message_id == 7
    (reply,) = pair.answer(p.Response(1, dimse.C_ECHO_RSP, 7, Status.SUCCESS, VERIFICATION))
    assert isinstance(reply, r.MessageReceived)
    assert reply.command.command_field == dimse.C_ECHO_RSP
    assert reply.command.message_id_being_responded_to == 7
    assert reply.command.status == Status.SUCCESS and reply.data_set is None


def test_c_store_gives_start_data_and_complete_then_a_response() -> None:
    pair = established()
    data_set = bytes(range(256)) * 40
    events = store_events(pair, "1.2.3.4", data_set)
    started, *_, complete = events
    assert isinstance(started, p.StoreStarted)
    assert (started.abstract_syntax, started.transfer_syntax) == (CT_IMAGE_STORAGE, EXPLICIT_VR_LE)
    assert started.command.affected_sop_instance_uid == "1.2.3.4"
    assert complete == p.StoreComplete(CT_CONTEXT, started.command, len(data_set))
    assert data_of(events) == data_set
    assert pair.acceptor.idle
    (reply,) = pair.answer(
        p.Response(CT_CONTEXT, dimse.C_STORE_RSP, 1, 0xA700, CT_IMAGE_STORAGE, "1.2.3.4", "full")
    )
    assert isinstance(reply, r.MessageReceived)
    assert (reply.command.status, reply.command.error_comment) == (0xA700, "full")
    assert reply.command.affected_sop_instance_uid == "1.2.3.4"


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_a_data_set_in_many_pdus_arrives_whole_however_the_bytes_are_cut(chunk: int) -> None:
    # The requestor's PDUs are 4096 bytes; the bytes reach us in pieces of any size.
    pair = Pair(max_pdu=4096)
    pair.associate()
    pair.requestor.peer_max_length = 4096
    data_set = bytes(i % 251 for i in range(20000))
    events = store_events(pair, "1.2.3.5", data_set, chunk=chunk)
    assert data_of(events) == data_set
    assert isinstance(events[-1], p.StoreComplete) and events[-1].received == len(data_set)


def test_an_empty_last_fragment_completes_the_data_set() -> None:
    pair = established()
    command = pair.request(CT_CONTEXT, store_rq("1.2.3.6"))
    data = p_data_tf(pdv(CT_CONTEXT, 0, b"ab")) + p_data_tf(pdv(CT_CONTEXT, rawpeer.LAST, b""))
    events = pair.to_acceptor(command + data)
    assert [type(e) for e in events] == [p.StoreStarted, p.StoreData, p.StoreComplete]
    assert data_of(events) == b"ab"


def test_two_stores_in_a_row_keep_their_messages_apart() -> None:
    pair = established()
    both = pair.request(CT_CONTEXT, store_rq("1.1", 1), b"first") + pair.request(
        CT_CONTEXT, store_rq("1.2", 2), b"second"
    )
    events = pair.to_acceptor(both)
    completes = [e for e in events if isinstance(e, p.StoreComplete)]
    assert [c.command.affected_sop_instance_uid for c in completes] == ["1.1", "1.2"]
    assert [c.received for c in completes] == [5, 6]


def test_an_unknown_request_with_a_data_set_arrives_whole() -> None:
    pair = established()
    action = dimse.encode_request(
        dimse.N_ACTION_RQ,
        4,
        VERIFICATION,
        "1.2.3",
        has_data_set=True,
        requested=True,
        action_type_id=1,
    )
    (received,) = pair.to_acceptor(pair.request(1, action, b"\x08\x00\x55\x11" * 10))
    assert isinstance(received, p.RequestReceived)
    assert received.command.command_field == dimse.N_ACTION_RQ
    assert received.command.requested_sop_instance_uid == "1.2.3"
    assert received.command.action_type_id == 1
    assert received.data_set == b"\x08\x00\x55\x11" * 10 and not received.truncated


def test_a_request_data_set_beyond_the_bound_is_drained_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(p, "MAX_REQUEST_DATA_SET", 100)
    pair = established()
    action = dimse.encode_request(dimse.N_ACTION_RQ, 4, VERIFICATION, has_data_set=True)
    (received,) = pair.to_acceptor(pair.request(1, action, bytes(101)))
    assert isinstance(received, p.RequestReceived)
    assert received.data_set is None and received.truncated
    assert pair.acceptor.idle


def test_a_request_of_ours_reaches_the_requestor_and_its_response_comes_back() -> None:
    """The acceptor's N-EVENT-REPORT on the association (PS3.4 J.3.3): the requestor
    gets the request, and its response is matched to ours by Message ID."""
    pair = established()
    report = p.Request(1, dimse.N_EVENT_REPORT_RQ, VERIFICATION, "1.2.3", b"\x00" * 8, 2, "job")
    (message_received,) = pair.answer(report)
    assert isinstance(message_received, r.MessageReceived)
    command = message_received.command
    assert (command.command_field, command.event_type_id) == (dimse.N_EVENT_REPORT_RQ, 2)
    assert message_received.data_set == b"\x00" * 8
    assert pair.acceptor.outstanding == (report,)

    response = dimse.encode_response(
        dimse.N_EVENT_REPORT_RSP, command.message_id, 0, VERIFICATION, "1.2.3", event_type_id=2
    )
    (received,) = pair.to_acceptor(pair.request(1, response))

    assert isinstance(received, p.ResponseReceived)
    assert received.request is report and received.command.status == 0
    assert pair.acceptor.outstanding == ()


def test_a_response_to_nothing_we_sent_is_aborted() -> None:
    pair = established()
    response = dimse.encode_response(dimse.N_EVENT_REPORT_RSP, 1, 0, VERIFICATION)
    with pytest.raises(ProtocolError, match="unexpected DIMSE response 0x8100"):
        pair.to_acceptor(pair.request(1, response))


def test_c_cancel_is_an_event_without_an_answer() -> None:
    pair = established()
    cancel = command_set(
        element(0x0100, us(0x0FFF)), element(0x0120, us(9)), element(0x0800, us(0x0101))
    )
    (event,) = pair.to_acceptor(message(1, True, cancel))
    assert isinstance(event, p.CancelRequested)
    assert event.command.message_id_being_responded_to == 9


def test_reserved_bits_of_the_message_control_header_are_not_checked() -> None:
    # PS3.8 E.2: bits 2-7 "are always set to 0 by the sender and never checked by
    # the receiver".
    pair = established()
    (echo,) = pair.to_acceptor(p_data_tf(pdv(1, 0xFF, echo_rq())))
    assert isinstance(echo, p.EchoRequested)


# --- what breaks PS3.7: A-ABORT --------------------------------------------------------------


def aborted_by(pair: Pair, data: bytes) -> ProtocolError | dimse.CommandError:
    with pytest.raises((ProtocolError, dimse.CommandError)) as caught:
        pair.to_acceptor(data)
    return caught.value


MALFORMED_COMMANDS = {
    "no-message-id": command_set(
        element(0x0002, ui(VERIFICATION)),
        element(0x0100, us(rawpeer.C_ECHO_RQ)),
        element(0x0800, us(rawpeer.NO_DATA_SET)),
    ),
    "no-command-field": command_set(
        element(0x0002, ui(VERIFICATION)),
        element(0x0110, us(1)),
        element(0x0800, us(rawpeer.NO_DATA_SET)),
    ),
    "command-field-of-4-bytes": command_set(
        element(0x0100, struct.pack("<L", rawpeer.C_ECHO_RQ)),
        element(0x0110, us(1)),
        element(0x0800, us(rawpeer.NO_DATA_SET)),
    ),
    "element-past-the-end": rawpeer.c_echo_rq()[:-2],
    "truncated-element-header": rawpeer.c_echo_rq() + b"\x00\x00\x00\x09",
    "element-outside-group-0000": rawpeer.c_echo_rq() + struct.pack("<HHL", 0x0008, 0x0016, 0),
    "echo-announcing-a-data-set": command_set(
        element(0x0002, ui(VERIFICATION)),
        element(0x0100, us(rawpeer.C_ECHO_RQ)),
        element(0x0110, us(1)),
        element(0x0800, us(0x0000)),
    ),
    "store-announcing-no-data-set": command_set(
        element(0x0002, ui(CT_IMAGE_STORAGE)),
        element(0x0100, us(rawpeer.C_STORE_RQ)),
        element(0x0110, us(1)),
        element(0x0800, us(rawpeer.NO_DATA_SET)),
        element(0x1000, ui("1.2.3")),
    ),
    "response-from-the-requestor": command_set(
        element(0x0002, ui(VERIFICATION)),
        element(0x0100, us(rawpeer.C_ECHO_RSP)),
        element(0x0120, us(1)),
        element(0x0800, us(rawpeer.NO_DATA_SET)),
        element(0x0900, us(0)),
    ),
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(MALFORMED_COMMANDS))
def test_a_malformed_command_set_is_a_protocol_error(name: str) -> None:
    pair = established()
    context = CT_CONTEXT if "store" in name else 1
    error = aborted_by(pair, message(context, True, MALFORMED_COMMANDS[name]))
    assert isinstance(error, (ProtocolError, dimse.CommandError))


def test_data_before_any_command_is_aborted() -> None:
    error = aborted_by(established(), message(1, False, b"\x08\x00\x18\x00\x02\x00\x00\x00"))
    assert "data set fragment without a command" in str(error)
    assert isinstance(error, ProtocolError) and error.answer is not None


def test_an_endless_command_set_is_aborted() -> None:
    fragment = p_data_tf(pdv(1, rawpeer.COMMAND, bytes(16000)))  # never the last one
    error = aborted_by(established(), fragment * 5)
    assert "command set longer than" in str(error)


def test_command_fragments_on_two_contexts_are_aborted() -> None:
    pair = Pair(
        contexts=(
            r.ProposedContext(1, VERIFICATION, (IMPLICIT_VR_LE,)),
            r.ProposedContext(3, VERIFICATION, (IMPLICIT_VR_LE,)),
        )
    )
    pair.associate()
    command = rawpeer.c_echo_rq()
    data = p_data_tf(pdv(1, rawpeer.COMMAND, command[:20]))
    data += p_data_tf(pdv(3, rawpeer.COMMAND | rawpeer.LAST, command[20:]))
    assert "command fragments on two presentation contexts" in str(aborted_by(pair, data))


def test_a_new_command_while_a_data_set_is_incomplete_is_aborted() -> None:
    # PS3.7 9.1 without asynchronous operations: one message at a time.
    pair = established()
    data = pair.request(CT_CONTEXT, store_rq("1.1"))
    data += p_data_tf(pdv(CT_CONTEXT, 0, bytes(100)))
    data += pair.request(CT_CONTEXT, store_rq("1.2"))
    assert "command fragment while a data set is still expected" in str(aborted_by(pair, data))


def test_a_data_set_on_another_context_than_its_command_is_aborted() -> None:
    pair = established()
    data = pair.request(CT_CONTEXT, store_rq("1.1")) + message(1, False, bytes(10))
    assert "data set on presentation context 1, command on 3" in str(aborted_by(pair, data))


def test_a_pdv_on_a_context_that_was_not_accepted_is_aborted() -> None:
    pair = Pair()
    pair.associate({1: (VERIFICATION, IMPLICIT_VR_LE)})
    data = message(CT_CONTEXT, True, rawpeer.c_store_rq(CT_IMAGE_STORAGE, "1.2.3"))
    error = aborted_by(pair, data)
    assert "presentation context 3, which is not accepted" in str(error)
    # The answer is the service provider's A-ABORT (PS3.8 AA-8).
    assert isinstance(error, ProtocolError) and error.answer is not None
    assert error.answer[:2] == bytes((pdu.A_ABORT, 0)) and error.answer[8] == 2


# --- the invariant ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_any_bytes_give_events_or_a_protocol_error_never_anything_else(
    data: bytes, chunk: int
) -> None:
    """h11's fuzz invariant for the established association: bytes in, events out, or
    ProtocolError/CommandError; no other exception, whatever the peer sends."""
    pair = established()
    try:
        pair.to_acceptor(
            p_data_tf(pdv(CT_CONTEXT, rawpeer.COMMAND, data[:100])) + data, chunk=chunk
        )
    except (ProtocolError, dimse.CommandError):
        pass
