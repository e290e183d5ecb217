"""The log lines scripts grep for, as subscribers of the event bus: two dialects.

DCMTK's ``dcmrecv`` and ``storescp`` say the same things in different words
(dcmrecv: ``I: Association Received host: A -> B``, ``I: Stored received object to
file: ./CT.1.2``; storescp: ``I: Association Received``, ``I: storing DICOM file:
./CT.1.2``).  Each dialect turns the receiver's events (dcmrecv.events) into its
tool's lines, so the engine never formats a line only to have it rewritten.  The
texts are DCMTK's (dcmnet ``scp.cc``/``dstorscp.cc`` for dcmrecv, ``storescp.cc``),
checked against both tools by the interoperability tests.

Lines that are the same in both tools (protocol errors, timeouts, TLS) are logged
where they happen, not here.  Peer text (AE titles, paths built from UIDs) is
escaped (dcmrecv.logs.printable): a peer cannot forge a log line.
"""

from __future__ import annotations

import logging
from typing import Final

from dcmrecv import events
from dcmrecv.events import EventBus
from dcmrecv.logs.printable import printable, printable_value
from dcmrecv.negotiation.uids import modality_prefix
from dcmrecv.status import is_stored, store_status_text

#: The loggers the lines come from (what ``%c`` prints and ``-lc`` files may name).
ASSOCIATION_LOGGER: Final = "dcmrecv.wire.association"
SERVER_LOGGER: Final = "dcmrecv.wire.server"

_association_log = logging.getLogger(ASSOCIATION_LOGGER)
_server_log = logging.getLogger(SERVER_LOGGER)


class Dialect:
    """A tool's wording of the receiver's events; a line it does not print is a no-op."""

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(events.ListenerStarting, self.listener_starting)
        bus.subscribe(events.ListenFailed, self.listen_failed)
        bus.subscribe(events.AssociationReceived, self.association_received)
        bus.subscribe(events.AssociationRejected, self.association_rejected)
        bus.subscribe(events.AssociationAccepted, _acknowledged)
        bus.subscribe(events.EchoReceived, self.echo_received)
        bus.subscribe(events.StoreRequested, self.store_requested)
        bus.subscribe(events.InstanceAnswered, self.instance_answered)
        bus.subscribe(events.ReleaseReceived, self.release_received)
        bus.subscribe(events.AbortReceived, self.abort_received)
        bus.subscribe(events.AssociationEnded, _summary)

    def listener_starting(self, event: events.ListenerStarting) -> None:
        pass

    def listen_failed(self, event: events.ListenFailed) -> None:
        pass

    def association_received(self, event: events.AssociationReceived) -> None:
        pass

    def association_rejected(self, event: events.AssociationRejected) -> None:
        pass

    def echo_received(self, event: events.EchoReceived) -> None:
        pass

    def store_requested(self, event: events.StoreRequested) -> None:
        pass

    def instance_answered(self, event: events.InstanceAnswered) -> None:
        pass

    def release_received(self, event: events.ReleaseReceived) -> None:
        pass

    def abort_received(self, event: events.AbortReceived) -> None:
        pass


class DcmrecvDialect(Dialect):
    """DCMTK ``dcmrecv``'s lines (DcmStorageSCP and DcmSCP, DCMTK 3.6)."""

    def listener_starting(self, event: events.ListenerStarting) -> None:
        _server_log.info("starting service class provider and listening ...")

    def listen_failed(self, event: events.ListenFailed) -> None:
        _server_log.critical("cannot start SCP and listen on port %d: %s", event.port, event.reason)

    def association_received(self, event: events.AssociationReceived) -> None:
        _association_log.info(
            "Association Received %s: %s -> %s",
            event.peer_host,
            printable(event.calling_ae_title),
            printable(event.called_ae_title),
        )

    def association_rejected(self, event: events.AssociationRejected) -> None:
        _association_log.info("Refusing Association (%s)", event.why)

    def echo_received(self, event: events.EchoReceived) -> None:
        log = _association_log
        if log.isEnabledFor(logging.INFO):
            log.info("Received C-ECHO Request (MsgID %d)", event.message_id)
            log.info("Sending C-ECHO Response (Success)")

    def store_requested(self, event: events.StoreRequested) -> None:
        _association_log.info("Received C-STORE Request (MsgID %d)", event.message_id)

    def instance_answered(self, event: events.InstanceAnswered) -> None:
        _stored(event, "file already exists, overwriting: %s", "Stored received object to file: %s")
        _association_log.info("Sending C-STORE Response (%s)", store_status_text(event.status))

    def release_received(self, event: events.ReleaseReceived) -> None:
        _association_log.info("Received Association Release Request")

    def abort_received(self, event: events.AbortReceived) -> None:
        _association_log.info("Received Association Abort Request")


class StorescpDialect(Dialect):
    """DCMTK ``storescp``'s lines (storescp.cc)."""

    def listen_failed(self, event: events.ListenFailed) -> None:
        # storescp has one exit code for everything and DCMTK's condition text.
        _server_log.error(
            "cannot create network: 0006:031c TCP Initialization Error: %s", event.reason
        )

    def association_received(self, event: events.AssociationReceived) -> None:
        _association_log.info("Association Received")

    def association_rejected(self, event: events.AssociationRejected) -> None:
        if event.why == REJECT_NO_IMPLEMENTATION_UID:
            _association_log.info("Association Rejected: No Implementation Class UID provided")
        else:
            _association_log.info("Refusing Association (%s)", event.why)

    def echo_received(self, event: events.EchoReceived) -> None:
        _association_log.info("Received Echo Request (MsgID %d)", event.message_id)

    def store_requested(self, event: events.StoreRequested) -> None:
        log = _association_log
        if log.isEnabledFor(logging.INFO):
            code = modality_prefix(event.sop_class_uid)
            log.info(
                "Received Store Request (MsgID %d, %s)",
                event.message_id,
                "OT" if code == "UNKNOWN" else code,
            )

    def instance_answered(self, event: events.InstanceAnswered) -> None:
        _stored(event, "DICOM file already exists, overwriting: %s", "storing DICOM file: %s")

    def release_received(self, event: events.ReleaseReceived) -> None:
        _association_log.info("Association Release")

    def abort_received(self, event: events.AbortReceived) -> None:
        _association_log.info("Association Aborted")


def _stored(event: events.InstanceAnswered, overwriting: str, stored: str) -> None:
    """The overwrite warning, the stored line, and why it failed (or what it had to do)."""
    log = _association_log
    shown = event.log_path
    if event.overwritten and shown is not None:
        log.warning(overwriting, printable(shown))
    if event.stored and event.status == 0 and shown is not None:
        log.info(stored, printable(shown))
    _reason_line(event)


#: DCMTK's reason text for ``--reject`` (dcmrecv.wire.acceptance uses the same words).
REJECT_NO_IMPLEMENTATION_UID: Final = "no implementation class UID provided"


def _acknowledged(event: events.AssociationAccepted) -> None:
    # The same words in both tools (DcmSCP and storescp.cc print ASC's message).
    log = _association_log
    if log.isEnabledFor(logging.INFO):
        log.info("Association Acknowledged (Max Send PDV: %d)", event.max_send_pdv)
        if not event.accepted_contexts:
            log.info("    (but no valid presentation contexts)")


def _reason_line(event: events.InstanceAnswered) -> None:
    """Every C-STORE that does not end in a plain Success says why (E:, or W: when stored)."""
    if event.reason:
        _association_log.log(
            logging.WARNING if is_stored(event.status) else logging.ERROR,
            "C-STORE of SOP instance %s: %s (status 0x%04X)",
            printable_value(event.sop_instance_uid),
            event.reason,
            event.status,
        )


def _summary(event: events.AssociationEnded) -> None:
    _association_log.info(
        "Association summary: peer %s, %s -> %s, %d stored, %d failed, %d bytes, %.3f s",
        event.peer,
        printable(event.association.calling_ae_title),
        printable(event.association.called_ae_title),
        event.instances,
        event.failures,
        event.received_bytes,
        event.seconds,
    )
