"""Storage Commitment SCP, Push Model (PS3.4 Annex J): the service behind
``--storage-commitment``.

A requester (a modality, a PACS) that must not lose images asks, before it deletes
its copy, whether we keep them safely: N-ACTION Request Storage Commitment with a
Transaction UID and SOP Class/Instance UID pairs.  We answer the N-ACTION-RSP at
once, then report in an N-EVENT-REPORT which instances are committed and which are
not, each with its reason (``commitment/verdict.py`` says what counts; the instance
index of the state store knows what any worker or replica acknowledged).

A transaction's life, kept in the state store so that a restart or another replica
finishes it (``dcmrecv_commitments``, schema version 2):

1. ``CommitmentHandler.request`` (the association's thread) checks the request;
   a malformed one gets its failure status, a requester missing from the peer table
   0124H "not authorised" (never a report to an address it chose); otherwise the
   transaction is stored, leased to this process, and answered Success.
2. ``follow_ups``: the report is evaluated and stored; if the requester still waits
   on its association, the N-EVENT-REPORT-RQ goes there (PS3.4 J.3.3 allows either);
   its N-EVENT-REPORT-RSP Success ends the transaction.
3. Otherwise (the requester released, refused the report, or its association
   ended first) the lease is released and :class:`Deliverer`, a thread of every
   receiver that is not a ``--workers`` worker, takes the transaction: a new
   association from the AE title the requester called to the requester's address,
   proposing the class with the requestor as SCP (SCP/SCU role selection, PS3.7
   D.3.3.4).  Failures are tried again with back-off for ``--commitment-retry``
   seconds, then given up.

Every outcome is a log line, an event on the bus (the event log, ``/metrics``).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from dcmrecv import events
from dcmrecv.commitment import messages as m
from dcmrecv.commitment.peers import Peer, peer_table
from dcmrecv.commitment.verdict import FileFacts, evaluate
from dcmrecv.config import ReceiverConfig
from dcmrecv.events import AssociationInfo, EventBus
from dcmrecv.logs.printable import printable
from dcmrecv.ops.index import sha256_of
from dcmrecv.state.model import (
    COMMITMENT_FAILED,
    COMMITMENT_SENT,
    CommitmentJob,
    InstanceRecord,
    StateStore,
    StateUnavailable,
    new_owner,
)
from dcmrecv.status import Status
from dcmrecv.wire import dimse
from dcmrecv.wire.calling import CallFailed, CallingAssociation
from dcmrecv.wire.protocol import (
    MAX_REQUEST_DATA_SET,
    Request,
    RequestReceived,
    Response,
    ResponseReceived,
)
from dcmrecv.wire.requestor import ProposedContext
from dcmrecv.wire.scp import ServiceFactory

log = logging.getLogger("dcmrecv.commitment")

#: Seconds a process holds a transaction while it evaluates and delivers it; renewed
#: when the report is stored.  A process that dies holding one frees it this late.
LEASE: Final = 60.0
#: Seconds for one delivery on a new association: connect, negotiate, report, release.
DELIVERY_TIMEOUT: Final = 30.0
#: Seconds between the deliverer's looks for due transactions (a local request
#: that could not be reported on its association wakes it at once).
POLL_INTERVAL: Final = 1.0
#: Back-off between delivery attempts: 2, 4, 8 ... seconds, at most a minute.
BACKOFF_FIRST: Final = 2.0
BACKOFF_MAX: Final = 60.0

SAME_ASSOCIATION: Final = "requesting association"
NEW_ASSOCIATION: Final = "new association"


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones."""
    return float(min(BACKOFF_FIRST * (1 << min(max(attempts - 1, 0), 16)), BACKOFF_MAX))


@dataclass(frozen=True)
class _Pending:
    """A transaction this association accepted, and its report once evaluated."""

    job: CommitmentJob
    context_id: int
    transfer_syntax: str
    report: m.Report | None = None


class StorageCommitment:
    """The service of one receiver process (its handlers and its deliverer)."""

    def __init__(self, config: ReceiverConfig, store: StateStore, bus: EventBus) -> None:
        self.peers: dict[str, Peer] = peer_table(config.commitment_peers)
        self.store = store
        self.bus = bus
        self.verify = config.commitment_verify
        self.retry = config.commitment_retry
        #: This process's lease owner name.
        self.owner = new_owner()
        #: Set when a report is handed to the deliverer; counted, so that a stopping
        #: deliverer knows whether one came after its last look.
        self.wake = threading.Event()
        self.handovers = 0

    def factory(self) -> ServiceFactory:
        """The handler factory the associations are given (wire/scp.py)."""
        return lambda info: CommitmentHandler(self, info)

    # --- evaluation ---------------------------------------------------------------------

    def evaluate(self, job: CommitmentJob) -> m.Report:
        """The report on ``job``'s references (StateUnavailable when the index is down)."""
        references = m.references_from_json(job.references_json)
        records = (
            {}
            if job.duplicate
            else self.store.find_instances([r.sop_instance_uid for r in references])
        )
        return evaluate(
            job.transaction_uid,
            references,
            records,
            self._file_facts,
            verify=self.verify,
            duplicate=job.duplicate,
        )

    def _file_facts(self, record: InstanceRecord) -> FileFacts | None:
        path = record.path
        try:
            info = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return FileFacts(info.st_size, sha256_of(path) if self.verify else None)

    def report_for(self, job: CommitmentJob) -> m.Report:
        """``job``'s report: stored already, or evaluated now and stored."""
        if job.report_json is not None:
            return m.report_from_json(job.report_json)
        report = self.evaluate(job)
        self.store.save_report(
            job.job_id, self.owner, m.report_to_json(report), time.time() + LEASE
        )
        return report

    # --- outcomes -----------------------------------------------------------------------

    def delivered(self, job: CommitmentJob, report: m.Report, via: str) -> None:
        try:
            self.store.end_commitment(job.job_id, self.owner, COMMITMENT_SENT, None, attempted=1)
        except StateUnavailable as exc:
            # Delivered all the same; the store says pending, so the requester may
            # get the same report once more (a report is idempotent).
            log.warning("storage commitment report delivered, but not recorded: %s", exc)
        log.info(
            "Storage commitment report for transaction %s sent to %s on the %s: "
            "%d committed, %d failed",
            job.transaction_uid,
            printable(job.requester),
            via,
            len(report.committed),
            len(report.failed),
        )
        self._publish(job, report, True, via, job.attempts + 1)

    def not_delivered(
        self,
        job: CommitmentJob,
        report: m.Report | None,
        why: str,
        via: str,
        now: float,
        *,
        final: bool = False,
    ) -> None:
        """A failed attempt: tried again later, or given up when the retry time is over
        (or at once, ``final``)."""
        attempts = job.attempts + 1
        delay = backoff(attempts)
        final = final or now + delay > job.give_up
        try:
            if final:
                self.store.end_commitment(
                    job.job_id, self.owner, COMMITMENT_FAILED, why, attempted=1
                )
            else:
                self.store.retry_commitment(job.job_id, self.owner, now + delay, why, attempted=1)
        except StateUnavailable as exc:
            log.error("cannot record the delivery attempt: %s; the lease ends by itself", exc)
            return
        if final:
            log.error(
                "Storage commitment report for transaction %s to %s given up after %d "
                "attempts (--commitment-retry %g s): %s",
                job.transaction_uid,
                printable(job.requester),
                attempts,
                self.retry,
                why,
            )
            self._publish(job, report, False, via, attempts, why)
        else:
            log.warning(
                "Storage commitment report for transaction %s to %s not delivered (%s); "
                "trying again in %g s",
                job.transaction_uid,
                printable(job.requester),
                why,
                delay,
            )

    def hand_over(self, job: CommitmentJob, why: str) -> None:
        """Not reported on the requesting association: the deliverer takes it now
        (no attempt counted: nothing was sent)."""
        log.info(
            "Storage commitment report for transaction %s goes on a new association (%s)",
            job.transaction_uid,
            why,
        )
        try:
            self.store.retry_commitment(job.job_id, self.owner, time.time(), None, attempted=0)
        except StateUnavailable as exc:
            log.error("cannot hand the report over: %s; it is sent when its lease ends", exc)
        self.handovers += 1
        self.wake.set()

    def _publish(
        self,
        job: CommitmentJob,
        report: m.Report | None,
        delivered: bool,
        via: str,
        attempts: int,
        reason: str | None = None,
    ) -> None:
        committed = len(report.committed) if report is not None else 0
        failed = len(report.failed) if report is not None else 0
        self.bus.publish(
            events.CommitmentReported(
                job.transaction_uid,
                job.requester,
                committed,
                failed,
                delivered,
                via,
                attempts,
                reason,
            )
        )

    # --- delivery on a new association ----------------------------------------------------

    def deliver(self, job: CommitmentJob, now: float) -> None:
        """One attempt at delivering a claimed transaction's report."""
        report: m.Report | None = None
        try:
            report = self.report_for(job)
        except StateUnavailable as exc:
            self.not_delivered(job, None, str(exc), NEW_ASSOCIATION, now)
            return
        peer = self.peers.get(job.requester)
        if peer is None:
            why = f"{job.requester} is not in the peer table any more"
            self.not_delivered(job, report, why, NEW_ASSOCIATION, now, final=True)
            return
        try:
            send_report(peer, job.responder, report)
        except CallFailed as exc:
            self.not_delivered(job, report, str(exc), NEW_ASSOCIATION, time.time())
            return
        self.delivered(job, report, NEW_ASSOCIATION)


def send_report(peer: Peer, calling_ae_title: str, report: m.Report) -> None:
    """The N-EVENT-REPORT on a new association to ``peer``; CallFailed unless its
    response is Success.  We propose the class with the SCP role (PS3.4 J.3.3: the
    SCP of Storage Commitment requests this association), Explicit and Implicit VR
    Little Endian."""
    contexts = [ProposedContext(1, m.SOP_CLASS_UID, m.TRANSFER_SYNTAXES)]
    with CallingAssociation(
        peer.host,
        peer.port,
        calling_ae_title,
        peer.ae_title,
        contexts,
        roles={m.SOP_CLASS_UID: (False, True)},
        timeout=DELIVERY_TIMEOUT,
    ) as association:
        if not association.accepted:
            raise CallFailed(f"{peer} accepted no presentation context for Storage Commitment")
        context_id, (_, transfer_syntax) = next(iter(association.accepted.items()))
        command = dimse.encode_request(
            dimse.N_EVENT_REPORT_RQ,
            1,
            m.SOP_CLASS_UID,
            m.SOP_INSTANCE_UID,
            has_data_set=True,
            event_type_id=report.event_type_id,
        )
        reply = association.request(context_id, command, m.encode_report(report, transfer_syntax))
        status = reply.command.status
        if reply.command.command_field != dimse.N_EVENT_REPORT_RSP or status != 0:
            raise CallFailed(f"{peer} answered the N-EVENT-REPORT with status 0x{status:04X}")


class CommitmentHandler:
    """The Storage Commitment service of one association (wire/scp.py's ServiceHandler)."""

    def __init__(self, service: StorageCommitment, info: AssociationInfo) -> None:
        self.service = service
        self.info = info
        #: Accepted here, report not yet sent.
        self._accepted: list[_Pending] = []
        #: Reports sent here, by Request.key (the job ID), awaiting their response.
        self._sent: dict[str, _Pending] = {}

    def request(self, event: RequestReceived) -> Response:
        command = event.command
        if command.command_field != dimse.N_ACTION_RQ:
            why = f"DIMSE command 0x{command.command_field:04X} is not N-ACTION"
            return self._refuse(event, Status.UNRECOGNIZED_OPERATION, why)
        try:
            m.check_action(
                command.requested_sop_class_uid,
                command.requested_sop_instance_uid,
                command.action_type_id,
            )
            if event.truncated:
                raise m.InvalidRequest(
                    Status.RESOURCE_LIMITATION,
                    f"the request is longer than {MAX_REQUEST_DATA_SET} bytes",
                )
            if event.data_set is None:
                raise m.InvalidRequest(Status.MISSING_ATTRIBUTE, "no Action Information (data set)")
            request = m.decode_request(event.data_set, event.transfer_syntax)
        except m.InvalidRequest as exc:
            return self._refuse(event, exc.status, str(exc))
        service = self.service
        calling = self.info.calling_ae_title
        if calling not in service.peers:
            why = (
                f"calling AE title {printable(calling)} is not in --commitment-peer or "
                "--commitment-peers, so there is nowhere to send its report"
            )
            return self._refuse(event, Status.NOT_AUTHORIZED, why, request)
        now = time.time()
        job = CommitmentJob(
            job_id=secrets.token_hex(8),
            transaction_uid=request.transaction_uid,
            duplicate=False,
            requester=calling,
            responder=self.info.called_ae_title,
            references_json=m.references_to_json(request.references),
            report_json=None,
            requested=now,
            give_up=now + service.retry,
            attempts=0,
        )
        try:
            fresh = service.store.add_commitment(job, service.owner, now, LEASE)
        except StateUnavailable as exc:
            return self._refuse(
                event, Status.PROCESSING_FAILURE, f"cannot keep the request: {exc}", request
            )
        job = replace(job, duplicate=not fresh)
        self._accepted.append(_Pending(job, event.context_id, event.transfer_syntax))
        log.info(
            "Storage commitment request from %s: transaction %s, %d instances%s",
            printable(calling),
            request.transaction_uid,
            len(request.references),
            "" if fresh else " (Transaction UID used before: every instance fails, 0131H)",
        )
        service.bus.publish(
            events.CommitmentRequested(
                self.info,
                request.transaction_uid,
                len(request.references),
                0,
                duplicate=not fresh,
            )
        )
        return self._response(event, 0)

    def _refuse(
        self,
        event: RequestReceived,
        status: int,
        why: str,
        request: m.CommitmentRequest | None = None,
    ) -> Response:
        log.error(
            "Storage commitment request from %s refused (0x%04X): %s",
            printable(self.info.calling_ae_title),
            status,
            why,
        )
        self.service.bus.publish(
            events.CommitmentRequested(
                self.info,
                request.transaction_uid if request is not None else "",
                len(request.references) if request is not None else 0,
                status,
                why,
            )
        )
        return self._response(event, status, why)

    def _response(
        self, event: RequestReceived, status: int, comment: str | None = None
    ) -> Response:
        command = event.command
        is_action = command.command_field == dimse.N_ACTION_RQ
        return Response(
            event.context_id,
            command.command_field | 0x8000,
            command.message_id,
            status,
            command.requested_sop_class_uid or event.abstract_syntax,
            command.requested_sop_instance_uid,
            comment,
            action_type_id=command.action_type_id if is_action else None,
        )

    def follow_ups(self) -> list[Request]:
        """Evaluate the reports of the transactions accepted here: the driver sends
        them on this association if the requester still waits (``not_sent`` if not)."""
        requests = []
        for pending in self._accepted:
            try:
                report = self.service.report_for(pending.job)
            except StateUnavailable as exc:
                self.service.hand_over(pending.job, f"cannot evaluate it now: {exc}")
                continue
            evaluated = replace(pending, report=report)
            self._sent[pending.job.job_id] = evaluated
            requests.append(
                Request(
                    pending.context_id,
                    dimse.N_EVENT_REPORT_RQ,
                    m.SOP_CLASS_UID,
                    m.SOP_INSTANCE_UID,
                    m.encode_report(report, pending.transfer_syntax),
                    event_type_id=report.event_type_id,
                    key=pending.job.job_id,
                )
            )
        self._accepted.clear()
        return requests

    def not_sent(self, requests: list[Request]) -> None:
        for request in requests:
            pending = self._sent.pop(request.key, None)
            if pending is not None:
                self.service.hand_over(pending.job, "the requester did not wait for it")

    def response(self, event: ResponseReceived) -> None:
        pending = self._sent.pop(event.request.key, None)
        if pending is None or pending.report is None:
            return
        status = event.command.status
        if status == 0:
            self.service.delivered(pending.job, pending.report, SAME_ASSOCIATION)
            return
        why = f"the requester answered the N-EVENT-REPORT with status 0x{status:04X}"
        # Tried again on a new association, at once: the requester may take it there.
        self.service.hand_over(pending.job, why)

    def ended(self, unanswered: list[Request]) -> None:
        for request in unanswered:
            pending = self._sent.pop(request.key, None)
            if pending is not None:
                self.service.hand_over(pending.job, "the association ended before its response")
        for pending in self._accepted:
            self.service.hand_over(pending.job, "the association ended")
        self._accepted.clear()


class Deliverer:
    """The thread that delivers reports on new associations, in every receiver that
    is not a ``--workers`` worker (those hand theirs over through the store)."""

    def __init__(self, service: StorageCommitment, clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commitment", daemon=True)
        #: The store could not be read at the last look (said once, not every second).
        self._failing = False
        #: ``service.handovers`` at the last look: more at ``stop`` means one more look,
        #: as do transactions put back because the thread was stopping.
        self._seen = 0
        self._put_back = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the delivery in progress.  Reports handed over since the last
        look (the associations that just ended: with ``storescp --inetd`` the only
        one) get their one attempt now, before the process exits."""
        service = self.service
        self._stopping.set()
        service.wake.set()
        if self._thread.is_alive():
            self._thread.join(DELIVERY_TIMEOUT + 5)
        if service.handovers > self._seen or self._put_back:
            self._stopping.clear()
            self._look()
            self._stopping.set()

    def _run(self) -> None:
        service = self.service
        while not self._stopping.is_set():
            service.wake.wait(POLL_INTERVAL)
            service.wake.clear()
            if not self._stopping.is_set():
                self._look()

    def _look(self) -> None:
        """Claim the due transactions and deliver them."""
        service = self.service
        self._seen = service.handovers
        try:
            jobs = service.store.claim_commitments(service.owner, self.clock(), LEASE)
        except StateUnavailable as exc:
            if not self._failing:
                log.error("cannot look for storage commitment reports to send: %s", exc)
            self._failing = True
            return
        self._failing = False
        for job in jobs:
            if self._stopping.is_set():
                self._release(job)
                self._put_back = True
                continue
            try:
                service.deliver(job, self.clock())
            except Exception:  # a bug of ours must not end the thread
                log.exception("Internal error delivering transaction %s", job.transaction_uid)

    def _release(self, job: CommitmentJob) -> None:
        """Stopping: a claimed transaction goes back, due now, for the next start or
        another replica."""
        service = self.service
        try:
            service.store.retry_commitment(job.job_id, service.owner, self.clock(), None, 0)
        except StateUnavailable:
            pass  # its lease ends by itself
