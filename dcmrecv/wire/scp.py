"""What the receiver does with what a peer asks, on one association: the SCP's service.

The protocol object (``protocol.py``) says what arrived; this says what to answer
and does it: accept or reject the association (``acceptance.decide``), answer
C-ECHO (Verification SOP Class, PS3.4 annex A), stream each C-STORE's data set
into storage and answer with the status storage gives (Storage SOP Classes, PS3.4
annex B), hand the requests of other services it was given (``services``: Storage
Commitment, ops/commitment.py) to their handler, answer anything else
"unrecognized operation" (PS3.7 C.4.2), and tell the event bus each step.  No
sockets, timers or threads here: the driver (``association.py``) owns those and
calls in from the association's thread.
"""

from __future__ import annotations

import itertools
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final, Protocol

from dcmrecv import events
from dcmrecv.config import ReceiverConfig
from dcmrecv.events import AssociationInfo, EventBus
from dcmrecv.logs.context import association_serial
from dcmrecv.logs.printable import printable
from dcmrecv.negotiation.acceptor import NegotiationResult
from dcmrecv.status import Status, is_stored, store_status_text
from dcmrecv.storage.model import StoreResult
from dcmrecv.storage.writer import IncomingInstance, InstanceStore
from dcmrecv.wire import dimse, pdu
from dcmrecv.wire.acceptance import Reject as RejectDecision
from dcmrecv.wire.acceptance import decide
from dcmrecv.wire.dump import dump_parameters
from dcmrecv.wire.policy import TestPolicy
from dcmrecv.wire.protocol import (
    Accept,
    EchoRequested,
    Reject,
    Request,
    RequestReceived,
    Response,
    ResponseReceived,
    StoreComplete,
    StoreData,
    StoreStarted,
)

log = logging.getLogger("dcmrecv.wire.association")

#: Largest request fields we echo into log lines.
MAX_LOG_TEXT: Final = 64

_serials = itertools.count(1)


class ServiceHandler(Protocol):
    """A DIMSE-N service on one association (Storage Commitment: ops/commitment.py).

    The driver calls, in the association's thread: ``request`` for each request on
    the service's presentation context (its response is sent at once); then
    ``follow_ups`` (requests of ours the service wants sent after it, e.g. the
    N-EVENT-REPORT, PS3.4 J.3.3), and ``not_sent`` with those it did not send
    (the peer had already moved on); ``response`` for each response to ours;
    ``ended`` once, when the association is over (with ours still unanswered).
    """

    def request(self, event: RequestReceived) -> Response: ...

    def follow_ups(self) -> list[Request]: ...

    def not_sent(self, requests: list[Request]) -> None: ...

    def response(self, event: ResponseReceived) -> None: ...

    def ended(self, unanswered: list[Request]) -> None: ...


#: Makes the handler of one association (the accepted association's facts).
ServiceFactory = Callable[[AssociationInfo], ServiceHandler]


@dataclass
class _PendingStore:
    """A C-STORE-RQ whose data set is still arriving."""

    started: StoreStarted
    instance: IncomingInstance | None
    #: Set when the request is refused before its data arrives (the data is drained).
    status: int = Status.SUCCESS
    comment: str | None = None


@dataclass
class Totals:
    """Counters for the association's summary line and its end event."""

    instances: int = 0
    failures: int = 0
    bytes: int = 0


class StorageSCP:
    """The Storage and Verification SCP of one association (not thread-safe)."""

    def __init__(
        self,
        config: ReceiverConfig,
        store: InstanceStore,
        bus: EventBus,
        address: tuple[str, int],
        *,
        admit: Callable[[], bool] = lambda: True,
        policy: TestPolicy | None = None,
        services: Mapping[str, ServiceFactory] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.address = address
        self._admit = admit
        self.policy = policy
        #: True once this association holds a slot under ``--max-associations``.
        self.admitted = False
        #: Set when the association is accepted.
        self.info: AssociationInfo | None = None
        self.totals = Totals()
        #: Data set fragments of the current receive, not yet handed to storage:
        #: views into the receive buffer, written before it is reused (``flush``).
        self.batch: list[memoryview] = []
        self._pending: _PendingStore | None = None
        self._accepted: Mapping[int, tuple[str, str]] = {}
        self._max_pdu = config.max_pdu
        #: abstract syntax -> the factory of its service's handler, and the handlers
        #: this association made.
        self._services = services or {}
        self._handlers: dict[str, ServiceHandler] = {}

    @property
    def peer(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    # --- association establishment (PS3.8 9.2, Sta3) ---------------------------------------

    def associate(self, rq: pdu.AssociateRQ) -> Accept | Reject:
        """Decide on an A-ASSOCIATE-RQ (the answer's bytes are the driver's to send)."""
        calling = rq.calling_ae_title[:MAX_LOG_TEXT]
        called = rq.called_ae_title[:MAX_LOG_TEXT]
        host = self._peer_name()
        self.bus.publish(events.AssociationReceived(host, calling, called))
        self._dump("Incoming Association Request:\n", "RQ", rq)
        decision = decide(rq, self.config, self.address[0], self._admit_slot, self.store.shortage)
        if isinstance(decision, RejectDecision):
            rejection = decision.rejection
            if decision.detail is not None:
                log.error("%s", decision.detail)
            if decision.negotiation is not None:
                log.info("No Acceptable Presentation Contexts")
                self._dump("", "RJ", rq, decision.negotiation)
            self.bus.publish(events.AssociationRejected(self.address[0], rejection.why))
            return Reject(rejection.result, rejection.source, rejection.reason)
        self.info = info = AssociationInfo(calling, called, self.address[0], host, next(_serials))
        # Every log record of this thread from now on names the association
        # (--log-format json); a thread starts with a context of its own.
        association_serial.set(info.serial)
        self.bus.publish(
            events.AssociationAccepted(info, max_send_pdv(rq.max_length), len(decision.accepted))
        )
        self._dump("", "AC", rq, decision.negotiation, decision.responding_ae_title)
        self._accepted = decision.accepted
        return Accept(decision.associate_ac, decision.accepted)

    def _admit_slot(self) -> bool:
        self.admitted = self._admit()
        return self.admitted

    def _peer_name(self) -> str:
        # DCMTK prints the resolved host name unless -dhl (dcmrecv.man).  Nobody
        # reads it when info lines are off and no hook wants it (storescp's #r):
        # then a slow DNS must not delay the association.
        address = self.address[0]
        if self.config.disable_host_lookup or (
            self.config.storescp is None and not log.isEnabledFor(logging.INFO)
        ):
            return address
        try:
            return socket.gethostbyaddr(address)[0]
        except OSError:
            return address

    def _dump(
        self,
        heading: str,
        direction: str,
        rq: pdu.AssociateRQ,
        result: NegotiationResult | None = None,
        responding: str = "",
    ) -> None:
        # As DCMTK: the parameter dumps are verbose output with +v, debug output
        # without; built only when they will be printed (128 contexts cost time).
        level = logging.INFO if self.config.verbose_pc else logging.DEBUG
        if log.isEnabledFor(level):
            text = dump_parameters(direction, rq, self._max_pdu, result, responding)
            log.log(level, "%s%s", heading, text)

    # --- DIMSE services ------------------------------------------------------------------

    def echo(self, event: EchoRequested) -> Response:
        """C-ECHO (PS3.7 9.3.5): always Success."""
        assert self.info is not None
        command = event.command
        self.bus.publish(events.EchoReceived(self.info, command.message_id))
        return self._response(event.context_id, dimse.C_ECHO_RSP, command, Status.SUCCESS)

    def store_started(self, event: StoreStarted) -> None:
        """A C-STORE-RQ's command set: open its instance, or refuse it before its data."""
        assert self.info is not None
        command = event.command
        sop_class = command.affected_sop_class_uid
        sop_instance = command.affected_sop_instance_uid
        self.bus.publish(
            events.StoreRequested(self.info, command.message_id, sop_class, sop_instance)
        )
        if not sop_class or not sop_instance:
            self._pending = _PendingStore(
                event,
                None,
                Status.CANNOT_UNDERSTAND,
                "command lacks Affected SOP Class/Instance UID",
            )
        elif sop_class != event.abstract_syntax:
            self._pending = _PendingStore(
                event,
                None,
                Status.REFUSED_SOP_CLASS_NOT_SUPPORTED,
                "SOP class differs from the presentation context",
            )
        else:
            instance = self.store.begin(
                sop_class_uid=sop_class,
                sop_instance_uid=sop_instance,
                transfer_syntax_uid=event.transfer_syntax,
                calling_aetitle=self.info.calling_ae_title,
                called_aetitle=self.info.called_ae_title,
                peer_address=self.address[0],
                association_serial=self.info.serial,
            )
            self._pending = _PendingStore(event, instance)

    def store_data(self, event: StoreData) -> None:
        """One data set fragment (the driver's fast path appends to ``batch`` itself)."""
        if self.policy is not None:
            self.policy.data_fragment()
        pending = self._pending
        if pending is not None and pending.instance is not None:
            self.batch.append(event.fragment)

    def flush(self) -> None:
        """Hand the collected fragments to the open instance in one go (one writev)."""
        if self.batch:
            pending = self._pending
            if pending is not None and pending.instance is not None:
                pending.instance.write_many(self.batch)
            self.batch.clear()

    def store_complete(self, event: StoreComplete) -> Response:
        """The last fragment arrived: store, tell the bus, answer (PS3.7 9.3.1.2)."""
        pending = self._pending
        assert pending is not None and self.info is not None
        completed_at = time.monotonic()
        self.flush()
        if self.policy is not None:
            self.policy.data_set_complete()
        status, comment = pending.status, pending.comment
        reason = comment or (None if status == Status.SUCCESS else store_status_text(status))
        result: StoreResult | None = None
        if pending.instance is not None:
            result = pending.instance.commit()
            status, comment, reason = result.status, result.error_comment, result.reason
            if self.policy is not None:
                self.policy.stored()
        self._pending = None
        command = event.command
        bus = self.bus
        if bus.vetoes(events.InstanceAnswered):
            # The veto subscribers (the event log) see the answer before it is final.
            answered = self._answered(pending, result, event.received, status, comment, reason)
            veto = bus.veto(answered)
            if veto is not None:
                status, comment, reason = veto.status, veto.error_comment, veto.reason
            seconds = time.monotonic() - completed_at if result is not None else None
            if veto is not None or seconds is not None:
                answered = _with(answered, status, comment, reason, seconds)
        else:
            # Nobody may veto: the event is built once, with its final values.
            seconds = time.monotonic() - completed_at if result is not None else None
            answered = self._answered(
                pending, result, event.received, status, comment, reason, seconds
            )
        bus.publish(answered)
        totals = self.totals
        totals.bytes += event.received
        if is_stored(status):
            totals.instances += 1
        else:
            totals.failures += 1
        return self._response(event.context_id, dimse.C_STORE_RSP, command, status, comment)

    def _answered(
        self,
        pending: _PendingStore,
        result: StoreResult | None,
        received: int,
        status: int,
        comment: str | None,
        reason: str | None,
        seconds: float | None = None,
    ) -> events.InstanceAnswered:
        assert self.info is not None
        command = pending.started.command
        return events.InstanceAnswered(
            association=self.info,
            message_id=command.message_id,
            sop_class_uid=command.affected_sop_class_uid,
            sop_instance_uid=command.affected_sop_instance_uid,
            transfer_syntax_uid=pending.started.transfer_syntax,
            status=status,
            reason=reason,
            error_comment=comment,
            received_bytes=received,
            seconds=seconds,
            stored=result is not None,
            path=str(result.path) if result is not None and result.path is not None else None,
            log_path=result.log_path if result is not None else None,
            overwritten=result.overwritten if result is not None else False,
            intended_path=result.intended_path if result is not None else None,
            study_instance_uid=result.study_instance_uid if result is not None else None,
            series_instance_uid=result.series_instance_uid if result is not None else None,
        )

    def other_request(self, event: RequestReceived) -> Response:
        """A request of a service we were given goes to its handler; any other is an
        "unrecognized operation" (PS3.7 C.4.2), as storescp answers."""
        handler = self._handler(event.abstract_syntax)
        if handler is not None:
            return handler.request(event)
        command = event.command
        log.error(
            "cannot handle this kind of DIMSE command (0x%04x), we are a Storage SCP only",
            command.command_field,
        )
        return self._response(
            event.context_id,
            command.command_field | 0x8000,
            command,
            Status.UNRECOGNIZED_OPERATION,
        )

    def _handler(self, abstract_syntax: str) -> ServiceHandler | None:
        handler = self._handlers.get(abstract_syntax)
        if handler is None:
            factory = self._services.get(abstract_syntax)
            if factory is None:
                return None
            assert self.info is not None
            handler = self._handlers[abstract_syntax] = factory(self.info)
        return handler

    def follow_ups(self) -> list[Request]:
        """What the services want sent after the response just sent."""
        return [request for h in self._handlers.values() for request in h.follow_ups()]

    def not_sent(self, requests: list[Request]) -> None:
        for handler, mine in self._by_handler(requests):
            handler.not_sent(mine)

    def response_received(self, event: ResponseReceived) -> None:
        for handler, _ in self._by_handler([event.request]):
            handler.response(event)

    def _by_handler(self, requests: list[Request]) -> list[tuple[ServiceHandler, list[Request]]]:
        grouped = []
        for abstract_syntax, handler in self._handlers.items():
            mine = [r for r in requests if self._abstract_syntax(r.context_id) == abstract_syntax]
            if mine:
                grouped.append((handler, mine))
        return grouped

    def _response(
        self,
        context_id: int,
        command_field: int,
        request: dimse.Command,
        status: int,
        comment: str | None = None,
    ) -> Response:
        return Response(
            context_id,
            command_field,
            request.message_id,
            status,
            request.affected_sop_class_uid or self._abstract_syntax(context_id),
            request.affected_sop_instance_uid,
            comment,
        )

    def _abstract_syntax(self, context_id: int) -> str:
        return self._accepted.get(context_id, ("", ""))[0]

    # --- the end -------------------------------------------------------------------------

    @property
    def in_store(self) -> bool:
        return self._pending is not None

    def discard(self) -> None:
        """The association ends in the middle of a data set: remove what was written."""
        self.batch.clear()
        pending, self._pending = self._pending, None
        if pending is not None and pending.instance is not None:
            pending.instance.discard()

    def released(self, abandoned: bool) -> None:
        """A-RELEASE-RQ arrived (the driver answers it)."""
        assert self.info is not None
        self.bus.publish(events.ReleaseReceived(self.info))
        if abandoned or self._pending is not None:
            log.warning("Association released in the middle of a message; discarding it")
            self.discard()

    def aborted(self) -> None:
        """The peer sent A-ABORT."""
        assert self.info is not None
        self.bus.publish(events.AbortReceived(self.info))
        if self._pending is not None:
            log.warning(
                "Peer aborted during C-STORE of %s; nothing stored",
                printable(self._pending.started.command.affected_sop_instance_uid),
            )

    def ended(self, seconds: float, aborted: bool, unanswered: tuple[Request, ...] = ()) -> None:
        """The association is over: drop what is unfinished, tell the services (with
        their requests still unanswered), publish the totals."""
        self.discard()
        if self.info is None:
            return
        for abstract_syntax, handler in self._handlers.items():
            handler.ended(
                [r for r in unanswered if self._abstract_syntax(r.context_id) == abstract_syntax]
            )
        totals = self.totals
        self.bus.publish(
            events.AssociationEnded(
                self.info,
                totals.instances,
                totals.failures,
                totals.bytes,
                seconds,
                aborted,
                self.peer,
            )
        )


def _with(
    event: events.InstanceAnswered,
    status: int,
    comment: str | None,
    reason: str | None,
    seconds: float | None,
) -> events.InstanceAnswered:
    return replace(event, status=status, error_comment=comment, reason=reason, seconds=seconds)


def max_send_pdv(peer_max_length: int) -> int:
    """DCMTK's "Max Send PDV" figure: peer maximum (0 = 131072), even, minus 12 header bytes."""
    length = peer_max_length if 0 < peer_max_length <= 131072 else 131072
    return (length - (length % 2)) - 12
