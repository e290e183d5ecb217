"""An in-memory pair: our acceptor and a requestor talking without sockets (h11's shape).

``AcceptorProtocol`` (the receiver's) and ``RequestorProtocol`` exchange bytes
through two lists; nothing runs in a thread and nothing waits, so a whole DIMSE
exchange is a few microseconds.  The test plays the SCP's part: it reads the
acceptor's events and answers them.  Raw bytes from ``tests/rawpeer.py`` can be fed
to the acceptor too, for what no well-behaved requestor sends.
"""

from __future__ import annotations

from collections.abc import Sequence

from dcmrecv.wire import dimse
from dcmrecv.wire import protocol as p
from dcmrecv.wire import requestor as r
from tests import rawpeer

VERIFICATION = rawpeer.VERIFICATION
CT_IMAGE_STORAGE = rawpeer.CT_IMAGE_STORAGE
IMPLICIT_VR_LE = rawpeer.IMPLICIT_VR_LE
EXPLICIT_VR_LE = rawpeer.EXPLICIT_VR_LE

#: Verification on 1, CT Image Storage on 3 (PS3.8 9.3.2.2: odd IDs).
CONTEXTS = (
    r.ProposedContext(1, VERIFICATION, (IMPLICIT_VR_LE,)),
    r.ProposedContext(3, CT_IMAGE_STORAGE, (EXPLICIT_VR_LE, IMPLICIT_VR_LE)),
)


class Pair:
    """Our acceptor and a requestor, joined by memory."""

    def __init__(
        self,
        contexts: Sequence[r.ProposedContext] = CONTEXTS,
        *,
        max_pdu: int = 16384,
        requestor_max_pdu: int = 16384,
    ) -> None:
        self.acceptor = p.AcceptorProtocol(max_pdu)
        self.requestor = r.RequestorProtocol("SCU", "ANY-SCP", contexts, max_pdu=requestor_max_pdu)
        self.max_pdu = max_pdu

    # --- moving bytes ------------------------------------------------------------------------

    def to_acceptor(self, data: bytes, *, chunk: int | None = None) -> list[p.Event]:
        """Give ``data`` to the acceptor (``chunk`` bytes at a time) and collect its events.

        StoreData fragments are copied: their views are valid only until more bytes
        arrive.
        """
        events: list[p.Event] = []
        step = chunk or max(len(data), 1)
        for start in range(0, len(data), step):
            self.acceptor.receive_data(data[start : start + step])
            events += self.drain_acceptor()
        return events

    def drain_acceptor(self) -> list[p.Event]:
        events: list[p.Event] = []
        while True:
            event = self.acceptor.next_event()
            if event is p.NEED_DATA:
                return events
            if isinstance(event, p.StoreData):
                event = p.StoreData(memoryview(bytes(event.fragment)))
            events.append(event)

    def to_requestor(self, data: bytes) -> list[r.RequestorEvent]:
        self.requestor.receive_data(data)
        events: list[r.RequestorEvent] = []
        while True:
            event = self.requestor.next_event()
            if event is p.NEED_DATA:
                return events
            events.append(event)

    def answer(self, answer: p.Answer) -> list[r.RequestorEvent]:
        """The acceptor's answer, delivered to the requestor."""
        return self.to_requestor(self.acceptor.send(answer))

    # --- whole exchanges -----------------------------------------------------------------------

    def associate(self, accepted: dict[int, tuple[str, str]] | None = None) -> r.Accepted:
        """Request, accept (the contexts given, or every proposed one with its first
        transfer syntax), and return what the requestor saw."""
        (requested,) = self.to_acceptor(self.requestor.associate())
        assert isinstance(requested, p.AssociationRequested)
        if accepted is None:
            accepted = {
                c.context_id: (c.abstract_syntax, c.transfer_syntaxes[0])
                for c in self.requestor.contexts
            }
        ac = associate_ac(requested, accepted, self.max_pdu)
        (reply,) = self.answer(p.Accept(ac, accepted))
        assert isinstance(reply, r.Accepted)
        return reply

    def request(self, context_id: int, command: bytes, data_set: bytes | None = None) -> bytes:
        return self.requestor.send_message(context_id, command, data_set)


def associate_ac(
    requested: p.AssociationRequested, accepted: dict[int, tuple[str, str]], max_pdu: int
) -> bytes:
    """An A-ASSOCIATE-AC accepting ``accepted`` and rejecting the other proposals."""
    from dcmrecv.wire import pdu

    contexts = tuple(
        pdu.PresentationContextAC(cx.context_id, 0, accepted[cx.context_id][1])
        if cx.context_id in accepted
        else pdu.PresentationContextAC(cx.context_id, 3, "")
        for cx in requested.request.contexts
    )
    return pdu.encode_associate_ac(
        requested.request, "ANY-SCP", contexts, max_pdu, "1.2.3.4", "TEST"
    )


def echo_rq(message_id: int = 1) -> bytes:
    return dimse.encode_request(dimse.C_ECHO_RQ, message_id, VERIFICATION)


def store_rq(sop_instance_uid: str, message_id: int = 1) -> bytes:
    return dimse.encode_request(
        dimse.C_STORE_RQ,
        message_id,
        CT_IMAGE_STORAGE,
        sop_instance_uid,
        has_data_set=True,
        priority=0,
    )
