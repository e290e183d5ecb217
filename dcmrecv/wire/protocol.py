"""One association, acceptor side, sans I/O: bytes in, typed events out; answers in, bytes out.

The h11 shape for DICOM.  :class:`AcceptorProtocol` joins the PS3.8 upper layer state
machine (``connection.AcceptorConnection``: which PDU is allowed when, the A-ABORT
for a violation) and the DIMSE message assembly of PS3.7 (command fragments into a
command set, data set fragments after it, one message at a time).  It has no socket,
clock, thread or file: the driver (``association.py``) receives into ``buffer`` and
asks ``next_event()`` what arrived; it answers with ``send(answer)``, which returns
the bytes to send.

Events (what the peer did)::

    AssociationRequested  A-ASSOCIATE-RQ            answer: Accept or Reject
    EchoRequested         C-ECHO-RQ                 answer: Response
    StoreStarted          C-STORE-RQ command set    (its data set follows)
    StoreData             one data set fragment     (a view, valid until the next receive)
    StoreComplete         the last fragment         answer: Response
    RequestReceived       any other request, with its data set if it has one
                                                    answer: Response
    ResponseReceived      the response to a request we sent (``Request``)
    CancelRequested       C-CANCEL-RQ               (no answer, PS3.7 9.3.2.3)
    ReleaseRequested      A-RELEASE-RQ              answer: ReleaseResponse
    Aborted               A-ABORT                   (the association is gone)
    NEED_DATA             nothing complete yet: receive more

A peer that breaks PS3.8 or PS3.7 makes ``next_event`` raise ``ProtocolError`` (its
``answer`` is the A-ABORT to send) or ``dimse.CommandError`` (answer with
``Abort``); h11's invariant holds: an event or one of those two, nothing else, for
any bytes (``tests/test_protocol.py`` fuzzes it).

The acceptor may send requests of its own on the association (``send(Request)``:
a Storage Commitment report, PS3.4 J.3.3); their responses come back as
``ResponseReceived``, and a response to nothing we sent is a protocol violation.

DIMSE state is :class:`DimseState`; ``idle`` (no message in progress) is what a
stopping receiver asks before it aborts an association.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from dcmrecv.wire import dimse, pdu
from dcmrecv.wire.connection import AcceptorConnection, State
from dcmrecv.wire.pdu import AbortReason, AbortSource, ProtocolError

#: The largest data set we keep in memory for a request other than C-STORE (an
#: N-ACTION's list of instances); the rest of a longer one is drained unread.
MAX_REQUEST_DATA_SET: Final = 4 * 1024 * 1024


class DimseState(enum.Enum):
    """Where the current DIMSE message stands (PS3.7 9.1: one message at a time)."""

    IDLE = "idle"  # no message in progress
    COMMAND = "command"  # command set fragments arriving
    STORE_DATA = "store data"  # a C-STORE's data set arriving
    REQUEST_DATA = "request data"  # another request's data set arriving


# --- events ------------------------------------------------------------------------------


class NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: ``next_event`` has nothing complete: receive more bytes into ``buffer``.
NEED_DATA: Final = NeedData()


@dataclass(frozen=True, slots=True)
class AssociationRequested:
    request: pdu.AssociateRQ


@dataclass(frozen=True, slots=True)
class EchoRequested:
    context_id: int
    command: dimse.Command


@dataclass(frozen=True, slots=True)
class StoreStarted:
    context_id: int
    command: dimse.Command
    #: The presentation context's abstract and transfer syntax (the data set's encoding).
    abstract_syntax: str
    transfer_syntax: str


@dataclass(frozen=True, slots=True)
class StoreData:
    #: A view into the receive buffer: valid until the driver receives again.
    fragment: memoryview


@dataclass(frozen=True, slots=True)
class StoreComplete:
    context_id: int
    command: dimse.Command
    #: Data set bytes received.
    received: int


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A request other than C-STORE, C-ECHO and C-CANCEL, complete."""

    context_id: int
    command: dimse.Command
    abstract_syntax: str
    #: Its data set (None: it has none, or it was longer than MAX_REQUEST_DATA_SET).
    data_set: bytes | None
    #: The data set was longer than MAX_REQUEST_DATA_SET and was not kept.
    truncated: bool = False
    #: The presentation context's transfer syntax (the data set's encoding).
    transfer_syntax: str = ""


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """The response to ``request``, a request we sent."""

    context_id: int
    command: dimse.Command
    request: Request
    #: Its data set, if it has one (kept up to MAX_REQUEST_DATA_SET).
    data_set: bytes | None = None


@dataclass(frozen=True, slots=True)
class CancelRequested:
    command: dimse.Command


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    #: A message was in progress; it is abandoned (its data set never completed).
    abandoned: DimseState = DimseState.IDLE


@dataclass(frozen=True, slots=True)
class Aborted:
    source: int
    reason: int
    #: A message was in progress when the peer aborted.
    abandoned: DimseState = DimseState.IDLE


Event = (
    AssociationRequested
    | EchoRequested
    | StoreStarted
    | StoreData
    | StoreComplete
    | RequestReceived
    | ResponseReceived
    | CancelRequested
    | ReleaseRequested
    | Aborted
    | NeedData
)


# --- answers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accept:
    """A-ASSOCIATE-AC (AE-7): its bytes and the contexts it accepted."""

    associate_ac: bytes
    #: context ID -> (abstract syntax, transfer syntax)
    accepted: Mapping[int, tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Reject:
    """A-ASSOCIATE-RJ (AE-8), PS3.8 9.3.4."""

    result: int
    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class Response:
    """A DIMSE response (PS3.7 9.3 / 10.3) to the request ``message_id`` on ``context_id``."""

    context_id: int
    command_field: int
    message_id: int
    status: int
    sop_class_uid: str
    sop_instance_uid: str = ""
    error_comment: str | None = None
    #: N-ACTION-RSP echoes the request's Action Type ID (PS3.7 10.1.4).
    action_type_id: int | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """A request of ours to the requestor (PS3.7 10.3: N-EVENT-REPORT-RQ); the
    protocol gives it a Message ID.  ``key`` is the sender's own reference to it."""

    context_id: int
    command_field: int
    sop_class_uid: str
    sop_instance_uid: str
    data_set: bytes | None = None
    event_type_id: int | None = None
    key: str = ""


@dataclass(frozen=True, slots=True)
class ReleaseResponse:
    """A-RELEASE-RP (AR-4)."""


@dataclass(frozen=True, slots=True)
class Abort:
    """A-ABORT (AA-1), PS3.8 9.3.8."""

    source: int = AbortSource.SERVICE_USER
    reason: int = AbortReason.NOT_SPECIFIED


Answer = Accept | Reject | Response | Request | ReleaseResponse | Abort


class AcceptorProtocol:
    """The acceptor's side of one association, from Sta2 to the end (not thread-safe).

    ``max_pdu`` is our Maximum Length Received (PS3.8 D.1), advertised in the
    A-ASSOCIATE-AC: a P-DATA-TF above it is refused from its header.
    """

    def __init__(self, max_pdu: int) -> None:
        self.connection = AcceptorConnection(max_pdu)
        #: Where received bytes go: fill ``buffer.writable()``, then ``advance(n)``.
        self.buffer = self.connection.buffer
        self.dimse_state = DimseState.IDLE
        self._accepted: Mapping[int, tuple[str, str]] = {}
        self._pdvs: Iterator[tuple[int, int, memoryview]] | None = None
        self._command = bytearray()
        self._context_id = 0
        #: The request whose data set is arriving.
        self._request: dimse.Command | None = None
        self._received = 0
        self._request_data: bytearray | None = None
        #: Our request whose response's data set is arriving.
        self._responding_to: Request | None = None
        #: An event that follows the one just returned (StoreComplete after the last
        #: data set fragment).
        self._queued: Event | None = None
        #: Our requests awaiting their response, by Message ID.
        self._outstanding: dict[int, Request] = {}
        self._next_message_id = 1

    # --- state ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The PS3.8 state (Sta1 .. Sta13)."""
        return self.connection.state

    @property
    def idle(self) -> bool:
        """No DIMSE message is in progress."""
        return self.dimse_state is DimseState.IDLE

    @property
    def accepted(self) -> Mapping[int, tuple[str, str]]:
        """The accepted presentation contexts: ID -> (abstract syntax, transfer syntax)."""
        return self._accepted

    @property
    def outstanding(self) -> tuple[Request, ...]:
        """Our requests still awaiting their response."""
        return tuple(self._outstanding.values())

    @property
    def peer_max_length(self) -> int:
        """The requestor's Maximum Length Received (0: unlimited)."""
        return self.connection.peer_max_length

    # --- bytes in, events out ----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Append received bytes (the copying way in; the driver fills ``buffer``)."""
        self.connection.receive_data(data)

    def next_event(self) -> Event:
        """What the peer did next, or NEED_DATA (see the module docstring)."""
        queued = self._queued
        if queued is not None:
            self._queued = None
            return queued
        while True:
            if self._pdvs is not None:
                try:
                    for context_id, control, fragment in self._pdvs:
                        event = self._on_pdv(context_id, control, fragment)
                        if event is not None:
                            return event
                except (ProtocolError, dimse.CommandError) as exc:
                    raise self._violation(exc) from None
                self._pdvs = None
            found = self.connection.next_event()
            if found is None:
                return NEED_DATA
            if type(found) is pdu.PDataTF:
                self._pdvs = pdu.iter_pdvs(found.body)
                continue
            if isinstance(found, pdu.AssociateRQ):
                return AssociationRequested(found)
            abandoned = self.dimse_state
            self._reset()
            if isinstance(found, pdu.ReleaseRQ):
                return ReleaseRequested(abandoned)
            assert isinstance(found, pdu.Abort)
            return Aborted(found.source, found.reason, abandoned)

    def _violation(self, error: ProtocolError | dimse.CommandError) -> Exception:
        """A PS3.7 violation ends the association: the provider's A-ABORT (PS3.8 AA-8)."""
        self._reset()
        self._pdvs = None
        reason = (
            error.reason
            if isinstance(error, ProtocolError)
            else AbortReason.INVALID_PDU_PARAMETER_VALUE
        )
        if error.answer is None:
            error.answer = self.connection.abort(AbortSource.SERVICE_PROVIDER, reason)
        return error

    def _on_pdv(self, context_id: int, control: int, fragment: memoryview) -> Event | None:
        if context_id not in self._accepted:
            raise ProtocolError(f"PDV on presentation context {context_id}, which is not accepted")
        last = bool(control & 0x02)
        if control & 0x01:
            return self._on_command_fragment(context_id, fragment, last)
        state = self.dimse_state
        if state is DimseState.STORE_DATA or state is DimseState.REQUEST_DATA:
            if context_id != self._context_id:
                raise ProtocolError(
                    f"data set on presentation context {context_id}, command on {self._context_id}"
                )
            self._received += len(fragment)
            if state is DimseState.REQUEST_DATA:
                return self._on_request_data(fragment, last)
            if not last:
                return StoreData(fragment)
            # The last fragment and the completion are two events: return the data
            # now, the completion on the next call (an empty last fragment is none).
            request = self._request
            assert request is not None
            complete = StoreComplete(context_id, request, self._received)
            self._reset()
            if not len(fragment):
                return complete
            self._queued = complete
            return StoreData(fragment)
        raise ProtocolError("data set fragment without a command")

    def _on_command_fragment(
        self, context_id: int, fragment: memoryview, last: bool
    ) -> Event | None:
        state = self.dimse_state
        if state is DimseState.STORE_DATA or state is DimseState.REQUEST_DATA:
            # PS3.7 9.1: without asynchronous operations, one message at a time.
            raise ProtocolError("command fragment while a data set is still expected")
        if state is DimseState.IDLE:
            self.dimse_state = DimseState.COMMAND
            self._context_id = context_id
        elif context_id != self._context_id:
            raise ProtocolError("command fragments on two presentation contexts")
        self._command += fragment
        if len(self._command) > dimse.MAX_COMMAND_LENGTH:
            raise ProtocolError(f"command set longer than {dimse.MAX_COMMAND_LENGTH} bytes")
        if not last:
            return None
        command = dimse.decode_command(self._command)
        self._command = bytearray()
        self.dimse_state = DimseState.IDLE
        return self._on_command(context_id, command)

    def _on_command(self, context_id: int, command: dimse.Command) -> Event | None:
        field = command.command_field
        abstract, transfer = self._accepted[context_id]
        if field == dimse.C_STORE_RQ:
            if not command.has_data_set:
                raise dimse.CommandError("C-STORE-RQ announces no data set")
            self._expect_data(context_id, command, DimseState.STORE_DATA)
            return StoreStarted(context_id, command, abstract, transfer)
        if field == dimse.C_ECHO_RQ:
            if command.has_data_set:
                raise dimse.CommandError("C-ECHO-RQ announces a data set")
            return EchoRequested(context_id, command)
        if field & 0x8000:
            request = self._outstanding.pop(command.message_id_being_responded_to, None)
            if request is None or field != request.command_field | 0x8000:
                raise ProtocolError(f"unexpected DIMSE response 0x{field:04X} from the requestor")
            if command.has_data_set:
                self._expect_data(context_id, command, DimseState.REQUEST_DATA)
                self._request_data = bytearray()
                self._responding_to = request
                return None
            return ResponseReceived(context_id, command, request)
        if field == dimse.C_CANCEL_RQ:
            return CancelRequested(command)
        if command.has_data_set:
            self._expect_data(context_id, command, DimseState.REQUEST_DATA)
            self._request_data = bytearray()
            return None
        return RequestReceived(context_id, command, abstract, None, transfer_syntax=transfer)

    def _expect_data(self, context_id: int, command: dimse.Command, state: DimseState) -> None:
        self.dimse_state = state
        self._context_id = context_id
        self._request = command
        self._received = 0

    def _on_request_data(self, fragment: memoryview, last: bool) -> Event | None:
        kept = self._request_data
        if kept is not None:
            if len(kept) + len(fragment) > MAX_REQUEST_DATA_SET:
                self._request_data = kept = None  # drained from here on
            else:
                kept += fragment
        if not last:
            return None
        request = self._request
        assert request is not None
        context_id = self._context_id
        ours = self._responding_to
        self._reset()
        data = bytes(kept) if kept is not None else None
        if ours is not None:
            return ResponseReceived(context_id, request, ours, data)
        abstract_syntax, transfer_syntax = self._accepted[context_id]
        return RequestReceived(
            context_id, request, abstract_syntax, data, kept is None, transfer_syntax
        )

    def _reset(self) -> None:
        self.dimse_state = DimseState.IDLE
        self._command = bytearray()
        self._request = None
        self._request_data = None
        self._responding_to = None

    # --- answers in, bytes out ---------------------------------------------------------------

    def send(self, answer: Answer) -> bytes:
        """The bytes that carry ``answer``; moves the state machine (PS3.8 Table 9-10)."""
        connection = self.connection
        if type(answer) is Response:
            payload = dimse.encode_response(
                answer.command_field,
                answer.message_id,
                answer.status,
                answer.sop_class_uid,
                answer.sop_instance_uid,
                answer.error_comment,
                action_type_id=answer.action_type_id,
            )
            return connection.send_data(answer.context_id, True, payload)
        if isinstance(answer, Request):
            return self._send_request(answer)
        if isinstance(answer, Accept):
            self._accepted = answer.accepted
            return connection.accept(answer.associate_ac)
        if isinstance(answer, Reject):
            return connection.reject(answer.result, answer.source, answer.reason)
        if isinstance(answer, ReleaseResponse):
            return connection.release_response()
        if isinstance(answer, Abort):
            self._reset()
            return connection.abort(AbortSource(answer.source), answer.reason)
        raise TypeError(f"not an answer: {answer!r}")

    def _send_request(self, request: Request) -> bytes:
        message_id = self._next_message_id
        self._next_message_id = message_id % 0xFFFF + 1
        command = dimse.encode_request(
            request.command_field,
            message_id,
            request.sop_class_uid,
            request.sop_instance_uid,
            has_data_set=request.data_set is not None,
            event_type_id=request.event_type_id,
        )
        data = self.connection.send_data(request.context_id, True, command)
        if request.data_set is not None:
            data += self.connection.send_data(request.context_id, False, request.data_set)
        self._outstanding[message_id] = request
        return data

    def connection_closed(self) -> None:
        """Evt17: the transport connection is gone."""
        self.connection.connection_closed()

    def artim_expired(self) -> None:
        """Evt18: the ACSE timer ran out (no request in time, or Sta13)."""
        self.connection.artim_expired()
