"""One association, requestor side, sans I/O: what the receiver needs when it calls out.

The receiver mostly accepts associations; it requests one to deliver a Storage
Commitment report (PS3.4 J.3.3: N-EVENT-REPORT to the requester's AE) and in its
health probe (one C-ECHO).  The tests use it as the peer of
:class:`dcmrecv.wire.protocol.AcceptorProtocol` in an in-memory pair.  The same
h11 shape: ``associate()``/``send_message()``/``release()`` give bytes to send,
received bytes go into ``buffer`` (or ``receive_data``), ``next_event()`` says what
the acceptor did.

Only the requestor's states of PS3.8 Table 9-10 that these uses reach are kept:
Sta5 (awaiting A-ASSOCIATE-AC), Sta6 (established), Sta7 (awaiting A-RELEASE-RP),
Sta1 (over).  Messages are assembled whole in memory, up to ``max_message``: they
are responses and reports, not images.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from dcmrecv.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dcmrecv.wire import dimse, pdu
from dcmrecv.wire.pdu import AbortReason, AbortSource, ProtocolError
from dcmrecv.wire.protocol import NEED_DATA, NeedData

#: Our Maximum Length Received as a requestor (PS3.8 D.1).
DEFAULT_MAX_PDU: Final = 16384
#: The largest message (command set plus data set) we assemble.
DEFAULT_MAX_MESSAGE: Final = 64 * 1024 * 1024


class RequestorState(enum.Enum):
    STA1 = "Sta1"  # idle: not yet requested, or over
    STA5 = "Sta5"  # awaiting A-ASSOCIATE-AC or -RJ
    STA6 = "Sta6"  # established
    STA7 = "Sta7"  # awaiting A-RELEASE-RP


@dataclass(frozen=True, slots=True)
class Accepted:
    """A-ASSOCIATE-AC: the contexts the acceptor took, and its limits."""

    fields: pdu.AssociateACFields
    #: context ID -> (abstract syntax, transfer syntax) of the accepted contexts.
    accepted: dict[int, tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4)."""

    result: int
    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A whole DIMSE message: a response, or a request the acceptor sent us."""

    context_id: int
    command: dimse.Command
    data_set: bytes | None


@dataclass(frozen=True, slots=True)
class ReleaseReplied:
    """A-RELEASE-RP: the association is over."""


@dataclass(frozen=True, slots=True)
class AbortedByPeer:
    """A-ABORT from the acceptor (PS3.8 9.3.8)."""

    source: int
    reason: int


RequestorEvent = Accepted | Rejected | MessageReceived | ReleaseReplied | AbortedByPeer | NeedData


@dataclass(frozen=True)
class ProposedContext:
    """One presentation context we propose (PS3.8 9.3.2.2); IDs are odd."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass
class _Message:
    context_id: int
    command: bytearray = field(default_factory=bytearray)
    decoded: dimse.Command | None = None
    data_set: bytearray = field(default_factory=bytearray)


class RequestorProtocol:
    """The requestor's side of one association (not thread-safe)."""

    def __init__(
        self,
        calling_ae_title: str,
        called_ae_title: str,
        contexts: Sequence[ProposedContext],
        *,
        max_pdu: int = DEFAULT_MAX_PDU,
        roles: Mapping[str, tuple[bool, bool]] | None = None,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self.calling_ae_title = calling_ae_title
        self.called_ae_title = called_ae_title
        self.contexts = tuple(contexts)
        self.max_pdu = max_pdu
        self.roles = dict(roles or {})
        self.max_message = max_message
        self.state = RequestorState.STA1
        self.buffer = pdu.PDUBuffer()
        self.buffer.max_lengths = {
            pdu.A_ASSOCIATE_AC: pdu.MAX_ASSOCIATE_RQ_LENGTH,
            pdu.A_ASSOCIATE_RJ: 4,
            pdu.P_DATA_TF: max_pdu,
            pdu.A_RELEASE_RP: 4,
            pdu.A_RELEASE_RQ: 4,
            pdu.A_ABORT: 4,
        }
        self.accepted: dict[int, tuple[str, str]] = {}
        #: The acceptor's Maximum Length Received (0: unlimited), once accepted.
        self.peer_max_length = 0
        self._message: _Message | None = None
        self._pdvs: list[tuple[int, int, memoryview]] = []

    # --- bytes to send ----------------------------------------------------------------------

    def associate(self) -> bytes:
        """The A-ASSOCIATE-RQ (Sta1 -> Sta5)."""
        self._expect(RequestorState.STA1)
        self.state = RequestorState.STA5
        return pdu.encode_associate_rq(
            self.called_ae_title,
            self.calling_ae_title,
            [
                pdu.PresentationContextRQ(c.context_id, c.abstract_syntax, c.transfer_syntaxes)
                for c in self.contexts
            ],
            self.max_pdu,
            IMPLEMENTATION_CLASS_UID,
            IMPLEMENTATION_VERSION_NAME,
            self.roles,
        )

    def send_message(self, context_id: int, command: bytes, data_set: bytes | None = None) -> bytes:
        """A command set (and its data set) as P-DATA-TF PDUs (PS3.8 E.2)."""
        self._expect(RequestorState.STA6)
        if context_id not in self.accepted:
            raise ValueError(f"presentation context {context_id} was not accepted")
        data = pdu.encode_p_data(context_id, True, command, self.peer_max_length)
        if data_set is not None:
            data += pdu.encode_p_data(context_id, False, data_set, self.peer_max_length)
        return data

    def release(self) -> bytes:
        """A-RELEASE-RQ (Sta6 -> Sta7)."""
        self._expect(RequestorState.STA6)
        self.state = RequestorState.STA7
        return pdu.RELEASE_RQ

    def abort(self, reason: int = AbortReason.NOT_SPECIFIED) -> bytes:
        """A-ABORT as the service user; the association is over."""
        self.state = RequestorState.STA1
        return pdu.encode_abort(AbortSource.SERVICE_USER, reason)

    def _expect(self, state: RequestorState) -> None:
        if self.state is not state:
            raise RuntimeError(f"not allowed in {self.state.value}")

    # --- received bytes ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self.buffer.feed(data)

    def next_event(self) -> RequestorEvent:
        """What the acceptor did next, or NEED_DATA; ProtocolError for a broken peer."""
        while True:
            while self._pdvs:
                context_id, control, fragment = self._pdvs.pop(0)
                event = self._on_pdv(context_id, control, fragment)
                if event is not None:
                    return event
            whole = self.buffer.next_raw()
            if whole is None:
                return NEED_DATA
            pdu_type, body = whole
            if pdu_type == pdu.A_ABORT:
                self.state = RequestorState.STA1
                abort = pdu.decode_pdu(pdu_type, body)
                assert isinstance(abort, pdu.Abort)
                return AbortedByPeer(abort.source, abort.reason)
            if self.state is RequestorState.STA5:
                return self._on_reply(pdu_type, body)
            if pdu_type == pdu.P_DATA_TF and self.state in (
                RequestorState.STA6,
                RequestorState.STA7,
            ):
                # Copied: the message outlives the receive buffer's next fill.
                self._pdvs = [(c, m, memoryview(bytes(f))) for c, m, f in pdu.iter_pdvs(body)]
                continue
            if pdu_type == pdu.A_RELEASE_RP and self.state is RequestorState.STA7:
                self.state = RequestorState.STA1
                return ReleaseReplied()
            name = pdu.PDU_TYPE_NAMES.get(pdu_type, f"0x{pdu_type:02X}")
            raise pdu.UnexpectedPDU(pdu_type, self.state.value, f"unexpected {name}")

    def _on_reply(self, pdu_type: int, body: memoryview) -> RequestorEvent:
        if pdu_type == pdu.A_ASSOCIATE_RJ:
            self.state = RequestorState.STA1
            rj = pdu.decode_pdu(pdu_type, body)
            assert isinstance(rj, pdu.AssociateRJ)
            return Rejected(rj.result, rj.source, rj.reason)
        if pdu_type != pdu.A_ASSOCIATE_AC:
            name = pdu.PDU_TYPE_NAMES.get(pdu_type, f"0x{pdu_type:02X}")
            raise pdu.UnexpectedPDU(pdu_type, "Sta5", f"unexpected {name}")
        fields = pdu.decode_associate_ac(body)
        proposed = {c.context_id: c for c in self.contexts}
        self.accepted = {
            cx.context_id: (proposed[cx.context_id].abstract_syntax, cx.transfer_syntax)
            for cx in fields.contexts
            if cx.result == 0 and cx.context_id in proposed
        }
        self.peer_max_length = fields.max_length
        self.state = RequestorState.STA6
        return Accepted(fields, dict(self.accepted))

    def _on_pdv(self, context_id: int, control: int, fragment: memoryview) -> RequestorEvent | None:
        message = self._message
        if message is None:
            if not control & 0x01:
                raise ProtocolError("data set fragment without a command")
            message = self._message = _Message(context_id)
        if context_id != message.context_id:
            raise ProtocolError("message fragments on two presentation contexts")
        last = bool(control & 0x02)
        if control & 0x01:
            if message.decoded is not None:
                raise ProtocolError("command fragment while a data set is expected")
            message.command += fragment
            self._check_size(message)
            if not last:
                return None
            message.decoded = dimse.decode_command(message.command)
            if message.decoded.has_data_set:
                return None
            self._message = None
            return MessageReceived(context_id, message.decoded, None)
        if message.decoded is None:
            raise ProtocolError("data set fragment before the command set is complete")
        message.data_set += fragment
        self._check_size(message)
        if not last:
            return None
        self._message = None
        return MessageReceived(context_id, message.decoded, bytes(message.data_set))

    def _check_size(self, message: _Message) -> None:
        if len(message.command) + len(message.data_set) > self.max_message:
            raise ProtocolError(f"message longer than {self.max_message} bytes")
