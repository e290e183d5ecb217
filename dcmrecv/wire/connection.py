"""The acceptor's side of the DICOM Upper Layer state machine (PS3.8 9.2), sans I/O.

Bytes in, typed PDUs (events) out, bytes to send back: no sockets, no clocks, no
threads (the h11 shape).  The driver (``association.py``) receives into
``connection.buffer`` and calls ``next_event()``; to answer it calls ``accept``,
``reject``, ``send_data``, ``release_response`` or ``abort``, each returning the
bytes to send and moving the machine along PS3.8 Table 9-10.

Only the acceptor's part of the table is here: we never request an association or
a release, so Sta4, Sta5, Sta7 and the release collision states Sta9-Sta12 are
unreachable.  Sta3 (awaiting the local A-ASSOCIATE response) and Sta8 (awaiting
the local A-RELEASE response) last while the driver decides: a PDU read in them
is answered as PS3.8 says (AA-8).

A PDU the table does not allow raises ``ProtocolError`` (``UnexpectedPDU`` with
the PDU type and state as fields) whose ``answer`` is the A-ABORT to send; the
machine is then in Sta13 and the driver closes the connection.
"""

from __future__ import annotations

import enum

from dcmrecv.wire import pdu
from dcmrecv.wire.pdu import AbortReason, AbortSource, ProtocolError

#: Sizes of the PDUs that carry a fixed 4-byte body (PS3.8 9.3.6 - 9.3.8).
_SMALL_PDU_LENGTH = 4


class State(enum.Enum):
    """PS3.8 9.2, Table 9-10 states (the value is the standard's name)."""

    STA1 = "Sta1"  # Idle
    STA2 = "Sta2"  # Transport connection open (awaiting A-ASSOCIATE-RQ PDU)
    STA3 = "Sta3"  # Awaiting local A-ASSOCIATE response primitive
    STA6 = "Sta6"  # Association established and ready for data transfer
    STA8 = "Sta8"  # Awaiting local A-RELEASE response primitive
    STA13 = "Sta13"  # Awaiting transport connection close indication


class Event(enum.Enum):
    """PS3.8 Table 9-10 events the acceptor can meet."""

    EVT3 = "A-ASSOCIATE-AC PDU received"
    EVT4 = "A-ASSOCIATE-RJ PDU received"
    EVT6 = "A-ASSOCIATE-RQ PDU received"
    EVT7 = "A-ASSOCIATE response primitive (accept)"
    EVT8 = "A-ASSOCIATE response primitive (reject)"
    EVT9 = "P-DATA request primitive"
    EVT10 = "P-DATA-TF PDU received"
    EVT12 = "A-RELEASE-RQ PDU received"
    EVT13 = "A-RELEASE-RP PDU received"
    EVT14 = "A-RELEASE response primitive"
    EVT15 = "A-ABORT request primitive"
    EVT16 = "A-ABORT PDU received"
    EVT17 = "Transport connection closed indication"
    EVT18 = "ARTIM timer expired"
    EVT19 = "Unrecognized or invalid PDU received"


class Action(enum.Enum):
    """PS3.8 9.2.2 actions (the acceptor's ones)."""

    AE_6 = "AE-6"  # indicate A-ASSOCIATE to the user, who accepts or rejects
    AE_7 = "AE-7"  # send A-ASSOCIATE-AC
    AE_8 = "AE-8"  # send A-ASSOCIATE-RJ, start ARTIM
    DT_1 = "DT-1"  # send P-DATA-TF
    DT_2 = "DT-2"  # indicate P-DATA
    AR_2 = "AR-2"  # indicate A-RELEASE
    AR_4 = "AR-4"  # send A-RELEASE-RP, start ARTIM
    AR_5 = "AR-5"  # stop ARTIM
    AR_7 = "AR-7"  # send P-DATA-TF while the release is pending
    AA_1 = "AA-1"  # send A-ABORT, start ARTIM
    AA_2 = "AA-2"  # stop ARTIM, close the transport connection
    AA_3 = "AA-3"  # indicate A-ABORT (or A-P-ABORT), close
    AA_4 = "AA-4"  # indicate A-P-ABORT
    AA_5 = "AA-5"  # stop ARTIM
    AA_6 = "AA-6"  # ignore the PDU
    AA_7 = "AA-7"  # send A-ABORT
    AA_8 = "AA-8"  # send A-ABORT (service provider), indicate A-P-ABORT, start ARTIM


S = State
E = Event
A = Action

#: PS3.8 Table 9-10, the acceptor's rows: (state, event) -> (action, next state).
TRANSITIONS: dict[tuple[State, Event], tuple[Action, State]] = {
    # Sta2: transport connection open, awaiting A-ASSOCIATE-RQ.
    (S.STA2, E.EVT3): (A.AA_1, S.STA13),
    (S.STA2, E.EVT4): (A.AA_1, S.STA13),
    (S.STA2, E.EVT6): (A.AE_6, S.STA3),
    (S.STA2, E.EVT10): (A.AA_1, S.STA13),
    (S.STA2, E.EVT12): (A.AA_1, S.STA13),
    (S.STA2, E.EVT13): (A.AA_1, S.STA13),
    (S.STA2, E.EVT16): (A.AA_2, S.STA1),
    (S.STA2, E.EVT17): (A.AA_5, S.STA1),
    (S.STA2, E.EVT18): (A.AA_2, S.STA1),
    (S.STA2, E.EVT19): (A.AA_1, S.STA13),
    # Sta3: the user decides on the request.
    (S.STA3, E.EVT3): (A.AA_8, S.STA13),
    (S.STA3, E.EVT4): (A.AA_8, S.STA13),
    (S.STA3, E.EVT6): (A.AA_8, S.STA13),
    (S.STA3, E.EVT7): (A.AE_7, S.STA6),
    (S.STA3, E.EVT8): (A.AE_8, S.STA13),
    (S.STA3, E.EVT10): (A.AA_8, S.STA13),
    (S.STA3, E.EVT12): (A.AA_8, S.STA13),
    (S.STA3, E.EVT13): (A.AA_8, S.STA13),
    (S.STA3, E.EVT15): (A.AA_1, S.STA13),
    (S.STA3, E.EVT16): (A.AA_3, S.STA1),
    (S.STA3, E.EVT17): (A.AA_4, S.STA1),
    (S.STA3, E.EVT19): (A.AA_8, S.STA13),
    # Sta6: established.
    (S.STA6, E.EVT3): (A.AA_8, S.STA13),
    (S.STA6, E.EVT4): (A.AA_8, S.STA13),
    (S.STA6, E.EVT6): (A.AA_8, S.STA13),
    (S.STA6, E.EVT9): (A.DT_1, S.STA6),
    (S.STA6, E.EVT10): (A.DT_2, S.STA6),
    (S.STA6, E.EVT12): (A.AR_2, S.STA8),
    (S.STA6, E.EVT13): (A.AA_8, S.STA13),
    (S.STA6, E.EVT15): (A.AA_1, S.STA13),
    (S.STA6, E.EVT16): (A.AA_3, S.STA1),
    (S.STA6, E.EVT17): (A.AA_4, S.STA1),
    (S.STA6, E.EVT19): (A.AA_8, S.STA13),
    # Sta8: the peer asked to release; we may still send P-DATA, then answer.
    (S.STA8, E.EVT3): (A.AA_8, S.STA13),
    (S.STA8, E.EVT4): (A.AA_8, S.STA13),
    (S.STA8, E.EVT6): (A.AA_8, S.STA13),
    (S.STA8, E.EVT9): (A.AR_7, S.STA8),
    (S.STA8, E.EVT10): (A.AA_8, S.STA13),
    (S.STA8, E.EVT12): (A.AA_8, S.STA13),
    (S.STA8, E.EVT13): (A.AA_8, S.STA13),
    (S.STA8, E.EVT14): (A.AR_4, S.STA13),
    (S.STA8, E.EVT15): (A.AA_1, S.STA13),
    (S.STA8, E.EVT16): (A.AA_3, S.STA1),
    (S.STA8, E.EVT17): (A.AA_4, S.STA1),
    (S.STA8, E.EVT19): (A.AA_8, S.STA13),
    # Sta13: the association is gone; wait for the close.
    (S.STA13, E.EVT3): (A.AA_6, S.STA13),
    (S.STA13, E.EVT4): (A.AA_6, S.STA13),
    (S.STA13, E.EVT6): (A.AA_7, S.STA13),
    (S.STA13, E.EVT10): (A.AA_6, S.STA13),
    (S.STA13, E.EVT12): (A.AA_6, S.STA13),
    (S.STA13, E.EVT13): (A.AA_6, S.STA13),
    (S.STA13, E.EVT16): (A.AA_2, S.STA1),
    (S.STA13, E.EVT17): (A.AR_5, S.STA1),
    (S.STA13, E.EVT18): (A.AA_2, S.STA1),
    (S.STA13, E.EVT19): (A.AA_7, S.STA13),
}

#: The event each received PDU type is (PS3.8 9.2.1); other types are Evt19.
PDU_EVENTS = {
    pdu.A_ASSOCIATE_RQ: E.EVT6,
    pdu.A_ASSOCIATE_AC: E.EVT3,
    pdu.A_ASSOCIATE_RJ: E.EVT4,
    pdu.P_DATA_TF: E.EVT10,
    pdu.A_RELEASE_RQ: E.EVT12,
    pdu.A_RELEASE_RP: E.EVT13,
    pdu.A_ABORT: E.EVT16,
}

#: Actions that hand the PDU to the user (the driver).
_INDICATIONS = frozenset({A.AE_6, A.DT_2, A.AR_2, A.AA_2, A.AA_3})
#: Actions that answer with an A-ABORT PDU.
_ABORTS = frozenset({A.AA_1, A.AA_7, A.AA_8})


class StateError(Exception):
    """The local user asked for something the state does not allow (a bug of ours)."""


class AcceptorConnection:
    """One transport connection, acceptor side, from Sta2 to Sta1.

    It is created on the transport connection indication (Evt5, action AE-5), so
    it starts in Sta2.  ``max_pdu`` is our Maximum Length Received (PS3.8 D.1):
    P-DATA-TF PDUs above it are refused from their header.
    """

    def __init__(self, max_pdu: int) -> None:
        self.state = State.STA2
        self.buffer = pdu.PDUBuffer()
        self.max_pdu = max_pdu
        #: The requestor's Maximum Length Received, once its request is read.
        self.peer_max_length = 0
        #: The PS3.8 action of the last protocol error (AA-1, AA-7 or AA-8), for the record.
        self.action: Action | None = None
        # What each state reads in full; a PDU the state refuses is answered from its
        # header, and a length above these is an invalid PDU (Evt19).
        after_request = {
            pdu.A_ASSOCIATE_RQ: pdu.MAX_ASSOCIATE_RQ_LENGTH,
            pdu.A_ASSOCIATE_AC: pdu.MAX_ASSOCIATE_RQ_LENGTH,
            pdu.A_ASSOCIATE_RJ: _SMALL_PDU_LENGTH,
            pdu.P_DATA_TF: max_pdu,
            pdu.A_RELEASE_RQ: _SMALL_PDU_LENGTH,
            pdu.A_RELEASE_RP: _SMALL_PDU_LENGTH,
            pdu.A_ABORT: _SMALL_PDU_LENGTH,
        }
        self._limits: dict[State, dict[int, int]] = {
            S.STA2: {
                pdu.A_ASSOCIATE_RQ: pdu.MAX_ASSOCIATE_RQ_LENGTH,
                pdu.A_ABORT: _SMALL_PDU_LENGTH,
            },
            S.STA3: after_request,
            S.STA6: {
                pdu.P_DATA_TF: max_pdu,
                pdu.A_RELEASE_RQ: _SMALL_PDU_LENGTH,
                pdu.A_ABORT: _SMALL_PDU_LENGTH,
            },
            S.STA8: after_request,
            S.STA13: after_request,
        }
        self.buffer.max_lengths = self._limits[S.STA2]

    # --- received data ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Append received bytes (the copying way in; the driver uses ``buffer``)."""
        self.buffer.feed(data)

    def next_event(self) -> pdu.PDU | None:
        """The next PDU the user must act on, or None until more bytes arrive.

        Returns an ``AssociateRQ`` in Sta2 (now Sta3: call ``accept`` or ``reject``),
        a ``PDataTF`` in Sta6, a ``ReleaseRQ`` in Sta6 (now Sta8: call
        ``release_response``), or an ``Abort`` (now Sta1: close).  Raises
        ProtocolError, with ``answer`` set, for whatever PS3.8 answers with AA-1,
        AA-7 or AA-8.
        """
        buffer = self.buffer
        while True:
            header = buffer.peek_header()
            if header is None:
                return None
            pdu_type, length = header
            state = self.state
            if pdu_type == pdu.P_DATA_TF and state is S.STA6:
                # The hot path, once per PDU: DT-2 without a table look-up and with
                # one header read; a length above ours is an invalid PDU (Evt19).
                if length > self.max_pdu:
                    error = pdu.PDUTooLong(pdu_type, length, self.max_pdu)
                    raise self._fail(error, *TRANSITIONS[(state, E.EVT19)])
                body = buffer.take_body(length)
                if body is None:
                    return None
                return pdu.PDataTF(body)
            event = PDU_EVENTS.get(pdu_type, E.EVT19)
            action, next_state = TRANSITIONS[(state, event)]
            if action in _ABORTS:
                # Answered from the header: the body of a PDU we refuse is never read.
                raise self._fail(self._unexpected(pdu_type, state), action, next_state)
            try:
                event_pdu = buffer.next_pdu()
            except ProtocolError as exc:  # invalid PDU: Evt19
                action, next_state = TRANSITIONS[(state, E.EVT19)]
                raise self._fail(exc, action, next_state) from None
            if event_pdu is None:
                return None
            self.state = next_state
            if next_state in self._limits:
                buffer.max_lengths = self._limits[next_state]
            if action is A.AA_6:
                continue  # Sta13: ignore it
            if isinstance(event_pdu, pdu.AssociateRQ):
                self.peer_max_length = event_pdu.max_length
            return event_pdu

    def _unexpected(self, pdu_type: int, state: State) -> ProtocolError:
        name = pdu.PDU_TYPE_NAMES.get(pdu_type)
        if name is None:
            return pdu.UnrecognizedPDU(pdu_type)
        where = {
            S.STA2: "before an association request",
            S.STA3: "while the association request is decided",
            S.STA6: "on an established association",
            S.STA8: "after an A-RELEASE-RQ",
            S.STA13: "after the association ended",
        }[state]
        return pdu.UnexpectedPDU(pdu_type, state.value, f"unexpected {name} {where}")

    def _fail(self, error: ProtocolError, action: Action, next_state: State) -> ProtocolError:
        # AA-8 is a service-provider abort; AA-1 and AA-7 answer a PDU that broke
        # the protocol too, so they also say so (source 2) and why (the reason),
        # which a requestor can log.
        error.answer = pdu.encode_abort(AbortSource.SERVICE_PROVIDER, error.reason)
        self.state = next_state
        self.action = action
        return error

    # --- local primitives ---------------------------------------------------------------

    def _transition(self, event: Event) -> Action:
        step = TRANSITIONS.get((self.state, event))
        if step is None:
            raise StateError(f"{event.value} is not allowed in {self.state.value}")
        action, self.state = step
        if self.state in self._limits:
            self.buffer.max_lengths = self._limits[self.state]
        return action

    def accept(self, associate_ac: bytes) -> bytes:
        """Evt7, AE-7: the A-ASSOCIATE-AC to send (built by ``acceptance.decide``)."""
        self._transition(E.EVT7)
        return associate_ac

    def reject(self, result: int, source: int, reason: int) -> bytes:
        """Evt8, AE-8: the A-ASSOCIATE-RJ to send; the driver then closes."""
        self._transition(E.EVT8)
        return pdu.encode_associate_rj(result, source, reason)

    def send_data(self, context_id: int, is_command: bool, payload: bytes) -> bytes:
        """Evt9, DT-1 (or AR-7): one message as P-DATA-TF PDUs within the peer's maximum."""
        if self.state is not S.STA6:
            self._transition(E.EVT9)
        return pdu.encode_p_data(context_id, is_command, payload, self.peer_max_length)

    def release_response(self) -> bytes:
        """Evt14, AR-4: the A-RELEASE-RP to send."""
        self._transition(E.EVT14)
        return pdu.RELEASE_RP

    def abort(
        self,
        source: AbortSource = AbortSource.SERVICE_USER,
        reason: AbortReason | int = AbortReason.NOT_SPECIFIED,
    ) -> bytes:
        """Evt15, AA-1: the A-ABORT to send; empty when there is no association to abort."""
        if (self.state, E.EVT15) not in TRANSITIONS:
            return b""
        self._transition(E.EVT15)
        return pdu.encode_abort(source, reason)

    def connection_closed(self) -> None:
        """Evt17: the transport connection is gone (closed by the peer or by us)."""
        step = TRANSITIONS.get((self.state, E.EVT17))
        self.state = step[1] if step is not None else S.STA1

    def artim_expired(self) -> None:
        """Evt18: the ACSE timer ran out (Sta2 or Sta13): close without an answer."""
        step = TRANSITIONS.get((self.state, E.EVT18))
        if step is not None:
            self.state = step[1]
