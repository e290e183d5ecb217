"""The sans-I/O acceptor core in memory: PS3.8's state machine with no socket.

Two parts, as pynetdicom's FSM tests: a connection pair (our core and a minimal
requestor built from ``rawpeer``'s byte builders, which share no code with the
receiver) walks an association through establishment, data and release; and a
matrix sends every PDU type in every state the acceptor can reach and checks the
answer PS3.8 Table 9-10 prescribes.  The expected answers are written out here
from the standard, not derived from the module's own table.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
import rawpeer

from dcmrecv.config import ReceiverConfig
from dcmrecv.wire import acceptance, dimse, pdu
from dcmrecv.wire.connection import TRANSITIONS, AcceptorConnection, State, StateError
from dcmrecv.wire.pdu import AbortReason, AbortSource, ProtocolError

MAX_PDU = 16384

#: One of each PDU type, as a requestor (or a confused peer) would send it, and a
#: type PS3.8 does not define.
PDUS: dict[str, bytes] = {
    "A-ASSOCIATE-RQ": rawpeer.ECHO_RQ_FIXTURE,
    # A-ASSOCIATE-AC: only its header matters to an acceptor, which refuses it.
    "A-ASSOCIATE-AC": rawpeer.pdu(rawpeer.A_ASSOCIATE_AC, bytes(68)),
    # A-ASSOCIATE-RJ: reserved, result 1, source 1, reason 1.
    "A-ASSOCIATE-RJ": bytes.fromhex("03 00 00000004 00 01 01 01"),
    "P-DATA-TF": rawpeer.message(1, True, rawpeer.c_echo_rq()),
    "A-RELEASE-RQ": rawpeer.RELEASE_RQ,
    "A-RELEASE-RP": rawpeer.RELEASE_RP,
    # A-ABORT: reserved, reserved, source 0 (service user), reason 0.
    "A-ABORT": bytes.fromhex("07 00 00000004 00 00 00 00"),
    "type 0x09": bytes.fromhex("09 00 00000004 00000000"),
}

# What PS3.8 Table 9-10 does with each received PDU, per acceptor state.
INDICATE = "indicate"  # AE-6, DT-2, AR-2: the PDU goes to the user
CLOSE = "close"  # AA-2, AA-3: A-ABORT received, close, no answer (Sta1)
ABORT = "abort"  # AA-1, AA-7, AA-8: answer with A-ABORT (Sta13)
IGNORE = "ignore"  # AA-6: dropped (Sta13)

EXPECTED: dict[str, dict[str, str]] = {
    # Sta2, awaiting A-ASSOCIATE-RQ: the request is indicated (AE-6), an abort
    # closes (AA-2), anything else is answered with an abort (AA-1).
    "Sta2": {
        "A-ASSOCIATE-RQ": INDICATE,
        "A-ASSOCIATE-AC": ABORT,
        "A-ASSOCIATE-RJ": ABORT,
        "P-DATA-TF": ABORT,
        "A-RELEASE-RQ": ABORT,
        "A-RELEASE-RP": ABORT,
        "A-ABORT": CLOSE,
        "type 0x09": ABORT,
    },
    # Sta3, awaiting our A-ASSOCIATE response: everything but an abort is AA-8.
    "Sta3": {
        "A-ASSOCIATE-RQ": ABORT,
        "A-ASSOCIATE-AC": ABORT,
        "A-ASSOCIATE-RJ": ABORT,
        "P-DATA-TF": ABORT,
        "A-RELEASE-RQ": ABORT,
        "A-RELEASE-RP": ABORT,
        "A-ABORT": CLOSE,
        "type 0x09": ABORT,
    },
    # Sta6, established: data (DT-2) and release requests (AR-2) are indicated.
    "Sta6": {
        "A-ASSOCIATE-RQ": ABORT,
        "A-ASSOCIATE-AC": ABORT,
        "A-ASSOCIATE-RJ": ABORT,
        "P-DATA-TF": INDICATE,
        "A-RELEASE-RQ": INDICATE,
        "A-RELEASE-RP": ABORT,
        "A-ABORT": CLOSE,
        "type 0x09": ABORT,
    },
    # Sta8, awaiting our A-RELEASE response: nothing more may arrive but an abort.
    "Sta8": {
        "A-ASSOCIATE-RQ": ABORT,
        "A-ASSOCIATE-AC": ABORT,
        "A-ASSOCIATE-RJ": ABORT,
        "P-DATA-TF": ABORT,
        "A-RELEASE-RQ": ABORT,
        "A-RELEASE-RP": ABORT,
        "A-ABORT": CLOSE,
        "type 0x09": ABORT,
    },
    # Sta13, awaiting the close: PDUs are ignored (AA-6), except a new request
    # and an invalid PDU (AA-7) and an abort (AA-2).
    "Sta13": {
        "A-ASSOCIATE-RQ": ABORT,
        "A-ASSOCIATE-AC": IGNORE,
        "A-ASSOCIATE-RJ": IGNORE,
        "P-DATA-TF": IGNORE,
        "A-RELEASE-RQ": IGNORE,
        "A-RELEASE-RP": IGNORE,
        "A-ABORT": CLOSE,
        "type 0x09": ABORT,
    },
}


def _accepting_config() -> ReceiverConfig:
    return ReceiverConfig(port=0, max_pdu=MAX_PDU)


def _in_sta2() -> AcceptorConnection:
    return AcceptorConnection(MAX_PDU)


def _in_sta3() -> AcceptorConnection:
    conn = _in_sta2()
    conn.receive_data(rawpeer.ECHO_RQ_FIXTURE)
    assert isinstance(conn.next_event(), pdu.AssociateRQ)
    return conn


def _in_sta6() -> AcceptorConnection:
    conn = _in_sta3()
    rq = pdu.decode_associate_rq(rawpeer.ECHO_RQ_FIXTURE[6:])
    decision = acceptance.decide(rq, _accepting_config(), "127.0.0.1")
    assert isinstance(decision, acceptance.Accept)
    conn.accept(decision.associate_ac)
    return conn


def _in_sta8() -> AcceptorConnection:
    conn = _in_sta6()
    conn.receive_data(rawpeer.RELEASE_RQ)
    assert isinstance(conn.next_event(), pdu.ReleaseRQ)
    return conn


def _in_sta13() -> AcceptorConnection:
    conn = _in_sta8()
    conn.release_response()
    return conn


REACH: dict[str, Callable[[], AcceptorConnection]] = {
    "Sta2": _in_sta2,
    "Sta3": _in_sta3,
    "Sta6": _in_sta6,
    "Sta8": _in_sta8,
    "Sta13": _in_sta13,
}


@pytest.mark.parametrize(
    ("state", "pdu_name"),
    [(state, name) for state, row in EXPECTED.items() for name in row],
)
def test_every_pdu_in_every_acceptor_state_gets_the_ps38_answer(state: str, pdu_name: str) -> None:
    conn = REACH[state]()
    assert conn.state.value == state
    conn.receive_data(PDUS[pdu_name])
    expected = EXPECTED[state][pdu_name]
    if expected == ABORT:
        with pytest.raises(ProtocolError) as caught:
            conn.next_event()
        # The answer is an A-ABORT from the service provider with the reason the
        # violation has (PS3.8 9.3.8), and the association no longer exists.
        answer = caught.value.answer
        assert answer is not None and answer[:6] == bytes.fromhex("07 00 00000004")
        assert answer[8] == AbortSource.SERVICE_PROVIDER
        unknown = pdu_name == "type 0x09"
        assert answer[9] == (AbortReason.UNRECOGNIZED_PDU if unknown else caught.value.reason)
        assert conn.state is State.STA13
        return
    event = conn.next_event()
    if expected == INDICATE:
        assert event is not None and event.pdu_type == PDUS[pdu_name][0]
        assert (
            conn.state.value
            == {
                "A-ASSOCIATE-RQ": "Sta3",
                "P-DATA-TF": "Sta6",
                "A-RELEASE-RQ": "Sta8",
            }[pdu_name]
        )
    elif expected == CLOSE:
        assert event == pdu.Abort(AbortSource.SERVICE_USER, 0)
        assert conn.state is State.STA1
    else:
        assert event is None and conn.state is State.STA13
        assert conn.buffer.buffered == 0  # consumed, not left to block what follows


def test_unexpected_pdu_error_names_its_type_and_state() -> None:
    conn = _in_sta6()
    conn.receive_data(rawpeer.ECHO_RQ_FIXTURE)
    with pytest.raises(pdu.UnexpectedPDU) as caught:
        conn.next_event()
    assert (caught.value.pdu_type, caught.value.state) == (pdu.A_ASSOCIATE_RQ, "Sta6")
    assert caught.value.reason == AbortReason.UNEXPECTED_PDU
    assert str(caught.value) == "unexpected A-ASSOCIATE-RQ on an established association"


def test_refused_pdu_is_answered_from_its_header_alone() -> None:
    # A P-DATA-TF declaring 4 GiB in Sta2: refused before any body arrives.
    conn = _in_sta2()
    conn.receive_data(struct.pack(">BxL", pdu.P_DATA_TF, 0xFFFFFFFF))
    with pytest.raises(pdu.UnexpectedPDU):
        conn.next_event()


def test_p_data_above_our_maximum_is_an_invalid_pdu_with_its_lengths() -> None:
    conn = _in_sta6()
    conn.receive_data(struct.pack(">BxL", pdu.P_DATA_TF, MAX_PDU + 1))
    with pytest.raises(pdu.PDUTooLong) as caught:
        conn.next_event()
    assert (caught.value.length, caught.value.limit) == (MAX_PDU + 1, MAX_PDU)
    assert caught.value.answer == pdu.encode_abort(
        AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE
    )
    assert conn.state is State.STA13


def test_malformed_request_is_aborted_with_its_reason() -> None:
    # A request with an unknown item type 0x99 (PS3.8 9.3.2: not a defined item).
    bad = rawpeer.pdu(pdu.A_ASSOCIATE_RQ, rawpeer.ECHO_RQ_FIXTURE[6:] + rawpeer.item(0x99, b"x"))
    conn = _in_sta2()
    conn.receive_data(bad)
    with pytest.raises(ProtocolError) as caught:
        conn.next_event()
    assert caught.value.reason == AbortReason.UNRECOGNIZED_PDU_PARAMETER
    assert caught.value.answer == pdu.encode_abort(
        AbortSource.SERVICE_PROVIDER, AbortReason.UNRECOGNIZED_PDU_PARAMETER
    )


def test_local_primitives_out_of_order_are_refused() -> None:
    # Accepting before a request arrived, or answering a release nobody asked for,
    # is a bug of the driver: refused, not sent.
    with pytest.raises(StateError):
        _in_sta2().accept(b"")
    with pytest.raises(StateError):
        _in_sta6().release_response()
    # An abort once the association is gone sends nothing.
    assert _in_sta13().abort() == b""


def test_table_covers_every_pdu_event_in_every_reachable_state() -> None:
    received = {"EVT3", "EVT4", "EVT6", "EVT10", "EVT12", "EVT13", "EVT16", "EVT19"}
    for state in (State.STA2, State.STA3, State.STA6, State.STA8, State.STA13):
        covered = {event.name for (s, event) in TRANSITIONS if s is state}
        assert received <= covered, state


# --- a connection pair: our core and a minimal requestor -------------------------------------


class Requestor:
    """Just enough of a requestor to drive the core: bytes from rawpeer, PDUs read back."""

    def __init__(self) -> None:
        self.inbox = pdu.PDUBuffer()
        self.inbox.max_lengths = {pdu.A_ASSOCIATE_AC: 65536, pdu.P_DATA_TF: 65536}

    def take(self, data: bytes) -> list[pdu.PDU]:
        view = self.inbox.writable()
        view[: len(data)] = data
        del view
        self.inbox.advance(len(data))
        found = []
        while (whole := self.inbox.next_pdu()) is not None:
            if isinstance(whole, pdu.PDataTF):
                whole = pdu.PDataTF(memoryview(bytes(whole.body)))
            found.append(whole)
        return found


def _command_status(data: pdu.PDataTF) -> tuple[int, int]:
    """(command field, status) of a response command set in one PDV (PS3.7 E.1)."""
    [(_, control, command)] = list(pdu.iter_pdvs(data.body))
    assert control == 0x03  # command, last fragment
    fields = {}
    offset = 0
    raw = bytes(command)
    while offset < len(raw):
        _, element, length = struct.unpack_from("<HHL", raw, offset)
        fields[element] = raw[offset + 8 : offset + 8 + length]
        offset += 8 + length
    return struct.unpack("<H", fields[0x0100])[0], struct.unpack("<H", fields[0x0900])[0]


def test_pair_echo_and_release() -> None:
    ours = AcceptorConnection(MAX_PDU)
    peer = Requestor()
    ours.receive_data(rawpeer.ECHO_RQ_FIXTURE)
    rq = ours.next_event()
    assert isinstance(rq, pdu.AssociateRQ) and rq.calling_ae_title == "RAWPEER"
    decision = acceptance.decide(rq, _accepting_config(), "127.0.0.1")
    assert isinstance(decision, acceptance.Accept)
    assert decision.accepted == {1: (rawpeer.VERIFICATION, rawpeer.IMPLICIT_VR_LE)}
    [ac] = peer.take(ours.accept(decision.associate_ac))
    assert isinstance(ac, pdu.AssociateAC)
    assert ours.peer_max_length == 16384

    ours.receive_data(rawpeer.message(1, True, rawpeer.c_echo_rq(message_id=7)))
    data = ours.next_event()
    assert isinstance(data, pdu.PDataTF)
    [(context_id, control, _)] = list(pdu.iter_pdvs(data.body))
    assert (context_id, control) == (1, 0x03)
    response = dimse.encode_response(dimse.C_ECHO_RSP, 7, 0, rawpeer.VERIFICATION)
    [rsp] = peer.take(ours.send_data(1, True, response))
    assert isinstance(rsp, pdu.PDataTF)
    assert _command_status(rsp) == (dimse.C_ECHO_RSP, 0x0000)

    ours.receive_data(rawpeer.RELEASE_RQ)
    assert isinstance(ours.next_event(), pdu.ReleaseRQ)
    assert peer.take(ours.release_response()) == [pdu.ReleaseRP()]
    assert ours.state is State.STA13
    ours.connection_closed()
    assert ours.state is State.STA1


def test_pair_rejection_uses_the_typed_reason_table() -> None:
    ours = AcceptorConnection(MAX_PDU)
    peer = Requestor()
    peer.inbox.max_lengths[pdu.A_ASSOCIATE_RJ] = 4
    ours.receive_data(rawpeer.ECHO_RQ_FIXTURE)
    rq = ours.next_event()
    assert isinstance(rq, pdu.AssociateRQ)
    config = ReceiverConfig(port=0, aetitle="OURS", aetitle_explicit=True, use_called_aetitle=False)
    decision = acceptance.decide(rq, config, "127.0.0.1")
    assert isinstance(decision, acceptance.Reject)
    rejection = decision.rejection
    [rj] = peer.take(ours.reject(rejection.result, rejection.source, rejection.reason))
    assert isinstance(rj, pdu.AssociateRJ)
    assert rj.named_reason is pdu.UserRejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED
    assert (rj.result, rj.source) == (1, 1)
    assert ours.state is State.STA13


def test_decision_asks_for_a_slot_only_when_everything_else_passed() -> None:
    rq = pdu.decode_associate_rq(rawpeer.ECHO_RQ_FIXTURE[6:])
    asked: list[bool] = []

    def admit() -> bool:
        asked.append(True)
        return False

    refused = acceptance.decide(rq, ReceiverConfig(port=0, refuse_associations=True), "::1", admit)
    assert isinstance(refused, acceptance.Reject) and asked == []
    full = acceptance.decide(rq, ReceiverConfig(port=0), "127.0.0.1", admit)
    assert isinstance(full, acceptance.Reject)
    assert full.rejection == acceptance.REJECT_TOO_MANY and asked == [True]
    assert (full.rejection.result, full.rejection.source, full.rejection.reason) == (2, 3, 2)
