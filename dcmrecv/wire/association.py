"""One association, acceptor side: the driver of the sans-I/O core.

The protocol (PS3.8 states, which PDU is allowed when, the answers to violations)
is ``connection.AcceptorConnection``; whether to accept is ``acceptance.decide``.
This module owns what those leave out: the socket, TLS, the timers, the thread,
DIMSE message assembly, the calls into storage and the statistics.

A thread per association with a blocking socket: an idle association sleeps in
``recv`` and costs no CPU; there is no polling and no sleeping.  The ACSE timeout
(ARTIM, PS3.8 9.1.5) is a deadline fixed at connect time, so a peer dribbling a
request a byte at a time is cut off on time.  The DIMSE timeout (``-td``) bounds
each wait for the peer once the association is established.

Data path: PDUs are received into one reusable buffer (``PDUBuffer``), PDVs are
sliced out as views and data set fragments go straight to the open temporary file
(``writer.IncomingInstance.write_many``, one call per receive): no per-fragment
copies in Python.
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dcmrecv.config import (
    AssociationEnd,
    AssociationInfo,
    AssociationObserver,
    ReceiverConfig,
    ReceiverEvents,
    StoreAnswer,
)
from dcmrecv.logs.context import association_serial
from dcmrecv.logs.printable import printable, printable_value
from dcmrecv.negotiation.acceptor import NegotiationResult
from dcmrecv.status import Status, is_stored
from dcmrecv.storage.model import StoreResult
from dcmrecv.storage.writer import IncomingInstance, InstanceStore
from dcmrecv.wire import dimse, pdu
from dcmrecv.wire.acceptance import Reject, decide
from dcmrecv.wire.acceptance import address_allowed as address_allowed
from dcmrecv.wire.connection import AcceptorConnection
from dcmrecv.wire.dump import dump_parameters
from dcmrecv.wire.pdu import AbortReason, AbortSource, ProtocolError

log = logging.getLogger(__name__)

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
#: Receive buffer of an established association (see _serve_established).
_DATA_BUFFER = 256 * 1024
#: Largest request fields we echo into log lines.
_MAX_LOG_TEXT = 64
#: Deadline of a send when no DIMSE timeout is set: a peer that takes none of a
#: response for this long has stopped reading, and must not hold us forever.
SEND_TIMEOUT = 60.0
#: While stopping: an association with no message in progress that receives
#: nothing for this long is idle and is aborted; one that goes on sending (the next
#: C-STORE, or its A-RELEASE-RQ) is served until ``--shutdown-timeout``.
DRAIN_IDLE_GRACE = 2.0
_SEND_TIMEVAL = struct.pack("ll", int(SEND_TIMEOUT), 0)  # struct timeval for SO_SNDTIMEO
#: How long a rejected requestor has to close the connection itself (Sta13).
_STA13_WAIT = 1.0
#: How long the stopping thread may spend sending an A-ABORT over TLS.
_STOP_SEND_TIMEOUT = 1.0


class AssociationEnded(Exception):
    """The association is over (released, aborted, timed out or closed)."""


_serials = itertools.count(1)


@dataclass
class _PendingStore:
    """A C-STORE-RQ whose data set is still arriving."""

    command: dimse.Command
    context_id: int
    instance: IncomingInstance | None
    #: Set when the request is refused before its data arrives (the data is drained).
    status: int = Status.SUCCESS
    comment: str | None = None
    received: int = 0
    #: Monotonic time the last data set fragment arrived (the store duration's start).
    completed_at: float = 0.0


@dataclass(frozen=True)
class Services:
    """What the server built once from the configuration, shared by its associations."""

    #: The TLS context (``+tls``); None is plain TCP.
    tls_context: ssl.SSLContext | None = None
    #: storescp's event hooks; None for dcmrecv.
    events: ReceiverEvents | None = None
    #: Metrics, event log and study completion (the operations layer); None: none.
    observer: AssociationObserver | None = None


@dataclass
class AssociationStats:
    """Counters for the one-line summary logged when the association ends."""

    instances: int = 0
    failures: int = 0
    bytes: int = 0


class Association:
    """Serve one TCP connection from accept to close."""

    def __init__(
        self,
        sock: socket.socket,
        address: tuple[str, int],
        config: ReceiverConfig,
        store: InstanceStore,
        admit: Callable[[], bool] = lambda: True,
        services: Services = Services(),
    ) -> None:
        self.sock = sock
        self.services = services
        self.address = address
        self.config = config
        self.store = store
        self._admit = admit
        #: True once this association holds a slot under ``--max-associations``.
        self.admitted = False
        self._connected_at = time.monotonic()
        self.conn = AcceptorConnection(config.max_pdu)
        self._buffer = self.conn.buffer
        self._timeout: float | None = -1.0  # what the socket is set to; -1: not yet
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stopping = False
        #: Receive calls so far; the drain timer compares it to see activity.
        self._receives = 0
        self._drain_timer: threading.Timer | None = None
        #: True once the TLS handshake has completed.
        self._tls_done = False
        self._closed = False
        self._established = False
        #: The peer released the association (A-RELEASE-RQ answered): not aborted.
        self._released = False
        self._accepted: dict[int, tuple[str, str]] = {}  # context ID -> (abstract, transfer)
        self._command_buffer: bytearray | None = None
        self._command_context = 0
        self._pending: _PendingStore | None = None
        #: Data set fragments of the current receive, not yet handed to the writer.
        self._batch: list[memoryview] = []
        self.calling_ae_title = ""
        self.called_ae_title = ""
        self._host = address[0]
        self.info: AssociationInfo | None = None
        self.stats = AssociationStats()

    # --- life cycle -----------------------------------------------------------------

    def run(self) -> None:
        """Serve until the association ends; never raises."""
        try:
            self._configure_socket()
            if self.services.tls_context is not None:
                self._start_tls(self.services.tls_context)
            request = self._receive_request()
            if request is not None and self._establish(request):
                self._serve_established()
        except AssociationEnded:
            pass
        except ProtocolError as exc:
            log.error("Protocol error from %s: %s; aborting association", self._peer(), exc)
            self._send_quietly(
                exc.answer
                if exc.answer is not None
                else self.conn.abort(AbortSource.SERVICE_PROVIDER, exc.reason)
            )
        except dimse.CommandError as exc:
            log.error(
                "Malformed DIMSE command from %s: %s; aborting association", self._peer(), exc
            )
            self._send_quietly(
                self.conn.abort(
                    AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE
                )
            )
        except TimeoutError:
            self._on_timeout()
        except OSError as exc:
            if self._stopping:
                pass
            elif self._tls_done and _refused_renegotiation(exc):
                # Only a new handshake can fail now: the client asked to renegotiate,
                # OpenSSL refused (client-initiated renegotiation is off, RFC 5746
                # section 4.4 allows that) and the client gave up on the connection.
                log.error(
                    "TLS client %s tried to renegotiate the session, which is refused; "
                    "connection closed (%s)",
                    self._peer(),
                    getattr(exc, "reason", None) or exc,
                )
            elif self.info is None and self._buffer.buffered == 0:
                # A port probe or health check: nothing was sent, nothing to report
                # louder than info.  (DCMTK logs an empty "Association Received"
                # and a refusal here; that would count probes as associations.)
                log.info("Connection from %s closed before an association request", self._peer())
            else:
                log.warning("Connection to %s failed: %s", self._peer(), exc)
        except Exception:  # a bug of ours must not take the server down
            log.exception("Internal error in association with %s; aborting it", self._peer())
            self._send_quietly(
                self.conn.abort(AbortSource.SERVICE_PROVIDER, AbortReason.NOT_SPECIFIED)
            )
        finally:
            if self._drain_timer is not None:
                self._drain_timer.cancel()
            self._discard_pending()
            self._close()
            self.conn.connection_closed()
            if self._established:
                self._log_summary()
                self._notify("association_ended")
                self._observe_end()

    def request_stop(self) -> None:
        """Shut-down begins: drain, do not abort (README, "How it differs", stop).

        An association goes on as long as its peer keeps it busy: the C-STORE in
        progress, further C-STOREs, and the A-RELEASE-RQ are served as usual, so a
        sender finishes its batch and sees a normal release.  One that is idle (no
        message in progress and nothing received for ``DRAIN_IDLE_GRACE``) is
        aborted; ``force_stop`` ends the rest at ``--shutdown-timeout``.  A
        connection still negotiating is closed at once.  Never blocks.
        """
        with self._state_lock:
            self._stopping = True
            idle = self._command_buffer is None and self._pending is None
            seen = self._receives
        if not self._established:
            self._shutdown_socket()
            return
        if idle:
            # The association's thread may sleep in a receive without a timeout;
            # the timer looks again after the grace period.
            timer = threading.Timer(DRAIN_IDLE_GRACE, self._end_if_idle, (seen,))
            timer.daemon = True
            self._drain_timer = timer
            timer.start()

    def force_stop(self) -> None:
        """Shut-down timeout reached: abort whatever is in progress.  Never blocks."""
        with self._state_lock:
            self._stopping = True
        if self._established:
            self._send_abort_from_outside()
        self._shutdown_socket()

    def _end_if_idle(self, seen: int) -> None:
        with self._state_lock:
            idle = self._command_buffer is None and self._pending is None
            if not idle or self._receives != seen or self._closed:
                return
        log.info("Aborting Association (initiated by SCP): receiver shutting down")
        self._send_abort_from_outside()
        self._shutdown_socket()

    # --- socket helpers -------------------------------------------------------------------

    def _configure_socket(self) -> None:
        # Our responses are small and must leave at once: no Nagle delay on them.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Every send has a deadline: a peer whose receive window stays full would
        # otherwise hold this thread, and the send lock, for ever.  On a blocking
        # socket the kernel's send timeout gives it with no system call per send;
        # with a Python timeout set (-td, the ACSE phase) that timeout bounds it.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _SEND_TIMEVAL)

    def _start_tls(self, context: ssl.SSLContext) -> None:
        """TLS handshake (PS3.15 B.1) within the ACSE timeout, in this thread.

        The handshake runs here and not in the accept loop, so a slow or silent
        client delays only its own association.
        """
        remaining = self._connected_at + self.config.acse_timeout - time.monotonic()
        self.sock.settimeout(max(remaining, 0.001))
        wrapped = context.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        self.sock = wrapped
        try:
            wrapped.do_handshake()
        except ssl.SSLError as exc:
            # verify_message says why a certificate was refused (expired, unknown CA...).
            detail = getattr(exc, "verify_message", None)
            log.error(
                "TLS handshake with %s failed: %s%s",
                self._peer(),
                exc.reason or exc,
                f" ({detail})" if detail else "",
            )
            raise AssociationEnded from None
        self._tls_done = True

    def _receive(self, timeout: float | None) -> None:
        """Receive more bytes into the PDU buffer, or end the association."""
        view = self._buffer.writable()
        if timeout != self._timeout:
            # Python applies the timeout to each call, so an unchanged value needs
            # no new settimeout (an ioctl each time).
            self.sock.settimeout(timeout)
            self._timeout = timeout
        self._receives += 1
        count = self.sock.recv_into(view)
        del view
        if count == 0:
            raise ConnectionResetError("peer closed the connection")
        self._buffer.advance(count)
        if _TCP_QUICKACK is not None:
            # Linux turns delayed ACKs back on after each read; a sender with Nagle
            # on (DCMTK's default) then stalls 40 ms per message (README, "How it differs").
            self.sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            if self._closed:
                raise AssociationEnded
            if (self._timeout is None or self._timeout < 0) and isinstance(
                self.sock, ssl.SSLSocket
            ):
                # OpenSSL retries a write the kernel timed out, for ever; a Python
                # timeout ends it (the next receive restores the receive timeout).
                self.sock.settimeout(SEND_TIMEOUT)
                self._timeout = SEND_TIMEOUT
            try:
                self.sock.sendall(data)
            except (TimeoutError, BlockingIOError):
                # Its window is still full: an A-ABORT would not get through either.
                log.error(
                    "%s has not read our data for %g s; closing the connection",
                    self._peer(),
                    self._timeout if self._timeout and self._timeout > 0 else SEND_TIMEOUT,
                )
                raise AssociationEnded from None

    def _send_quietly(self, data: bytes) -> None:
        """Send an A-ABORT (or nothing, when ``data`` is empty) on the way out."""
        if not data:
            return
        try:
            self._send(data)
        except (OSError, AssociationEnded):
            pass

    def _send_abort_from_outside(self) -> None:
        """A-ABORT from the stopping thread, if it can go without waiting.

        The core belongs to the association's thread, so the bytes are built here.
        A send in progress holds the lock, possibly blocked by a peer that does not
        read: then nothing is sent, and shutting the socket down ends that send.
        """
        if not self._send_lock.acquire(blocking=False):
            return
        try:
            if self._closed:
                return
            data = pdu.encode_abort(AbortSource.SERVICE_USER, 0)
            if isinstance(self.sock, ssl.SSLSocket):
                self.sock.settimeout(_STOP_SEND_TIMEOUT)
                self._timeout = _STOP_SEND_TIMEOUT
                self.sock.sendall(data)
            else:
                self.sock.send(data, socket.MSG_DONTWAIT)
        except OSError:
            pass
        finally:
            self._send_lock.release()

    def _shutdown_socket(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _close(self) -> None:
        with self._send_lock:
            self._closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def _peer(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def _peer_name(self) -> str:
        # DCMTK prints the resolved host name unless -dhl (dcmrecv.man).  Nobody
        # reads it when info lines are off and no event handler wants it: then a
        # slow DNS must not delay the association.
        if self.config.disable_host_lookup or (
            self.services.events is None and not log.isEnabledFor(logging.INFO)
        ):
            return self.address[0]
        try:
            return socket.gethostbyaddr(self.address[0])[0]
        except OSError:
            return self.address[0]

    # --- association establishment (PS3.8 9.2, states Sta2 -> Sta6) -------------------

    def _receive_request(self) -> pdu.AssociateRQ | None:
        deadline = self._connected_at + self.config.acse_timeout
        while True:
            try:
                event = self.conn.next_event()
            except (pdu.UnexpectedPDU, pdu.UnrecognizedPDU) as exc:
                # Anything else before a request is not DICOM or not in order (AA-1).
                log.error(
                    "Expected A-ASSOCIATE-RQ from %s, got PDU type 0x%02X: aborting",
                    self._peer(),
                    exc.pdu_type,
                )
                self._send_quietly(exc.answer or b"")
                return None
            if isinstance(event, pdu.AssociateRQ):
                return event
            if isinstance(event, pdu.Abort):
                # PS3.8 state table, Sta2 + A-ABORT PDU: AA-2, close; no answer.
                log.info("Connection from %s aborted before an association request", self._peer())
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._receive(remaining)

    def _await_close(self) -> None:
        """Sta13 after an A-ASSOCIATE-RJ: let the requestor close first (PS3.8 AE-8).

        The requestor reads the RJ and closes; closing under it could end its read
        before it has taken the RJ.  We send our FIN and wait for its close, up to
        ``_STA13_WAIT`` (our ARTIM for this state), then close anyway.
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(_STA13_WAIT)
            self._timeout = _STA13_WAIT
            while self.sock.recv(4096):
                pass
        except OSError:
            pass

    def _admit_slot(self) -> bool:
        self.admitted = self._admit()
        return self.admitted

    def _establish(self, rq: pdu.AssociateRQ) -> bool:
        self.calling_ae_title = rq.calling_ae_title[:_MAX_LOG_TEXT]
        self.called_ae_title = rq.called_ae_title[:_MAX_LOG_TEXT]
        self._host = self._peer_name()
        log.info(
            "Association Received %s: %s -> %s",
            self._host,
            printable(self.calling_ae_title),
            printable(self.called_ae_title),
        )
        self._dump("Incoming Association Request:\n", "RQ", rq)
        decision = decide(rq, self.config, self.address[0], self._admit_slot, self.store.shortage)
        if isinstance(decision, Reject):
            rejection = decision.rejection
            if decision.detail is not None:
                log.error("%s", decision.detail)
            if decision.negotiation is not None:
                log.info("No Acceptable Presentation Contexts")
                self._dump("", "RJ", rq, decision.negotiation)
            log.info("Refusing Association (%s)", rejection.why)
            if self.services.observer is not None:
                self.services.observer.association_rejected()
            self._send(self.conn.reject(rejection.result, rejection.source, rejection.reason))
            self._await_close()
            return False
        self._send(self.conn.accept(decision.associate_ac))
        self._accepted = decision.accepted
        self.info = AssociationInfo(
            self.calling_ae_title,
            self.called_ae_title,
            self.address[0],
            self._host,
            next(_serials),
        )
        self._established = True
        # Every log record of this thread from now on names the association
        # (--log-format json); a thread starts with a context of its own.
        association_serial.set(self.info.serial)
        if self.services.observer is not None:
            self.services.observer.association_accepted(self.info)
        log.info("Association Acknowledged (Max Send PDV: %d)", max_send_pdv(rq.max_length))
        if not self._accepted:
            log.info("    (but no valid presentation contexts)")
        self._dump("", "AC", rq, decision.negotiation, decision.responding_ae_title)
        return True

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
            text = dump_parameters(direction, rq, self.config.max_pdu, result, responding)
            log.log(level, "%s%s", heading, text)

    # --- established association (Sta6) -------------------------------------------------

    def _serve_established(self) -> None:
        config = self.config
        conn = self.conn
        # Room for several full PDUs: one receive then completes many, which saves
        # system calls per PDU (measured: 1 MiB vs 32 KiB cut receiver CPU on a CT
        # series by a third).  Allocated once per association, after negotiation.
        self._buffer.reserve(max(4 * (config.max_pdu + pdu.PDU_HEADER.size), _DATA_BUFFER))
        while True:
            event = conn.next_event()
            if event is None:
                self._flush_batch()  # the views point into the buffer about to be reused
                timeout = config.dimse_timeout
                if self._stopping and self._command_buffer is None and self._pending is None:
                    timeout = min(timeout or DRAIN_IDLE_GRACE, DRAIN_IDLE_GRACE)
                self._receive(timeout)
                continue
            if type(event) is pdu.PDataTF:
                self._on_p_data(event.body)
            elif type(event) is pdu.ReleaseRQ:
                self._on_release()
            else:
                self._on_abort()
            del event

    def _on_release(self) -> None:
        log.info("Received Association Release Request")
        if self._pending is not None or self._command_buffer is not None:
            log.warning("Association released in the middle of a message; discarding it")
            self._discard_pending()
        self._send(self.conn.release_response())
        self._released = True
        raise AssociationEnded

    def _on_abort(self) -> None:
        log.info("Received Association Abort Request")
        if self._pending is not None:
            log.warning(
                "Peer aborted during C-STORE of %s; nothing stored",
                printable(self._pending.command.affected_sop_instance_uid),
            )
        raise AssociationEnded

    def _on_timeout(self) -> None:
        idle = self._command_buffer is None and self._pending is None
        if self._stopping and self._established and idle:
            log.info("Aborting Association (initiated by SCP): receiver shutting down")
            self._send_quietly(self.conn.abort(AbortSource.SERVICE_USER, 0))
            return
        if not self._established:
            self.conn.artim_expired()
            log.error(
                "No A-ASSOCIATE-RQ from %s within the ACSE timeout (%g s); closing connection",
                self._peer(),
                self.config.acse_timeout,
            )
            return
        log.error(
            "DIMSE timeout: no data from %s for %g s; aborting association",
            self._peer(),
            self.config.dimse_timeout or 0,
        )
        self._send_quietly(self.conn.abort(AbortSource.SERVICE_USER, 0))

    def _on_p_data(self, body: memoryview) -> None:
        for context_id, control, fragment in pdu.iter_pdvs(body):
            if context_id not in self._accepted:
                raise ProtocolError(
                    f"PDV on presentation context {context_id}, which is not accepted"
                )
            if control & 0x01:
                self._on_command_fragment(context_id, fragment, last=bool(control & 0x02))
            else:
                self._on_data_fragment(context_id, fragment, last=bool(control & 0x02))

    def _on_command_fragment(self, context_id: int, fragment: memoryview, last: bool) -> None:
        if self._pending is not None:
            # PS3.7 9.1: without asynchronous operations, one message at a time.
            raise ProtocolError("command fragment while a data set is still expected")
        with self._state_lock:
            if self._command_buffer is None:
                self._command_buffer = bytearray()
                self._command_context = context_id
        if context_id != self._command_context:
            raise ProtocolError("command fragments on two presentation contexts")
        self._command_buffer += fragment
        if len(self._command_buffer) > dimse.MAX_COMMAND_LENGTH:
            raise ProtocolError(f"command set longer than {dimse.MAX_COMMAND_LENGTH} bytes")
        if last:
            command = dimse.decode_command(self._command_buffer)
            with self._state_lock:
                self._command_buffer = None
            self._on_command(command, context_id)

    def _on_command(self, command: dimse.Command, context_id: int) -> None:
        field = command.command_field
        if field == dimse.C_STORE_RQ:
            self._on_store_request(command, context_id)
        elif field == dimse.C_ECHO_RQ:
            if command.has_data_set:
                raise dimse.CommandError("C-ECHO-RQ announces a data set")
            log.info("Received C-ECHO Request (MsgID %d)", command.message_id)
            log.info("Sending C-ECHO Response (Success)")
            self._respond(context_id, dimse.C_ECHO_RSP, command, Status.SUCCESS)
        elif field & 0x8000:
            raise ProtocolError(f"unexpected DIMSE response 0x{field:04X} from the requestor")
        elif field == dimse.C_CANCEL_RQ:
            # We answer each request before reading the next, so by the time a
            # cancel is read its request is done: nothing to cancel, nothing to send
            # (PS3.7 9.3.2.3 has no response to a C-CANCEL-RQ).
            log.info(
                "Received C-CANCEL Request (MsgID %d): nothing to cancel",
                command.message_id_being_responded_to,
            )
        else:
            log.error(
                "cannot handle this kind of DIMSE command (0x%04x), we are a Storage SCP only",
                field,
            )
            if command.has_data_set:
                self._start_pending(command, context_id, None, Status.UNRECOGNIZED_OPERATION)
            else:
                self._respond(context_id, field | 0x8000, command, Status.UNRECOGNIZED_OPERATION)

    def _on_store_request(self, command: dimse.Command, context_id: int) -> None:
        log.info("Received C-STORE Request (MsgID %d)", command.message_id)
        if not command.has_data_set:
            raise dimse.CommandError("C-STORE-RQ announces no data set")
        abstract, transfer = self._accepted[context_id]
        sop_class = command.affected_sop_class_uid
        sop_instance = command.affected_sop_instance_uid
        if not sop_class or not sop_instance:
            self._start_pending(
                command,
                context_id,
                None,
                Status.CANNOT_UNDERSTAND,
                "command lacks Affected SOP Class/Instance UID",
            )
            return
        if sop_class != abstract:
            self._start_pending(
                command,
                context_id,
                None,
                Status.REFUSED_SOP_CLASS_NOT_SUPPORTED,
                "SOP class differs from the presentation context",
            )
            return
        instance = self.store.begin(
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            transfer_syntax_uid=transfer,
            calling_aetitle=self.calling_ae_title,
            called_aetitle=self.called_ae_title,
            peer_address=self.address[0],
            association_serial=self.info.serial if self.info is not None else None,
        )
        self._start_pending(command, context_id, instance)

    def _start_pending(
        self,
        command: dimse.Command,
        context_id: int,
        instance: IncomingInstance | None,
        status: int = Status.SUCCESS,
        comment: str | None = None,
    ) -> None:
        with self._state_lock:
            self._pending = _PendingStore(command, context_id, instance, status, comment)

    def _on_data_fragment(self, context_id: int, fragment: memoryview, last: bool) -> None:
        pending = self._pending
        if pending is None:
            raise ProtocolError("data set fragment without a command")
        if context_id != pending.context_id:
            raise ProtocolError(
                f"data set on presentation context {context_id}, command on {pending.context_id}"
            )
        config = self.config
        if config.abort_during_store or (last and config.abort_after_store):
            self._abort_by_option()
        pending.received += len(fragment)
        if pending.instance is not None:
            # Kept as a view into the receive buffer and written, together with the
            # other fragments of this receive, before the buffer is reused.
            self._batch.append(fragment)
        if config.sleep_during_store:
            time.sleep(config.sleep_during_store)  # storescp --sleep-during: a test aid
        if last:
            pending.completed_at = time.monotonic()
            self._flush_batch()
            self._finish_message(pending)

    def _flush_batch(self) -> None:
        """Hand the collected data set fragments to the open instance in one go."""
        if self._batch:
            pending = self._pending
            if pending is not None and pending.instance is not None:
                pending.instance.write_many(self._batch)
            self._batch.clear()

    def _abort_by_option(self) -> None:
        log.info("ABORT initiated (due to command line options)")
        self._discard_pending()
        self._send_quietly(self.conn.abort(AbortSource.SERVICE_USER, 0))
        raise AssociationEnded

    def _finish_message(self, pending: _PendingStore) -> None:
        command = pending.command
        status, comment = pending.status, pending.comment
        reason = comment or (None if status == Status.SUCCESS else dimse.store_status_text(status))
        result = None
        if pending.instance is not None:
            result = pending.instance.commit()
            status, comment, reason = result.status, result.error_comment, result.reason
            # DCMTK prints the path as it joined it ("./CT.1.2..." for -od .).
            shown = result.log_path or result.path
            if result.overwritten and shown is not None:
                log.warning("file already exists, overwriting: %s", printable(str(shown)))
            if status == Status.SUCCESS and shown is not None and log.isEnabledFor(logging.INFO):
                # Guarded: without -v this line is not printed, and building it is
                # per-instance work (issue 14: no formatting the log level does not need).
                log.info("Stored received object to file: %s", printable(str(shown)))
            # storescp runs -xcr after failed stores too (storescp.cc, storeSCP()).
            self._notify("instance_stored", result)
            if self.config.sleep_after_store:
                time.sleep(self.config.sleep_after_store)  # storescp --sleep-after
        if self.services.observer is not None and command.command_field == dimse.C_STORE_RQ:
            status, comment, reason = self._observe_store(pending, result, status, comment, reason)
        if reason and command.command_field == dimse.C_STORE_RQ:
            # Every failure says why, at the default log level (W: for a warning);
            # other commands got their E: line in _on_command.
            log.log(
                logging.WARNING if is_stored(status) else logging.ERROR,
                "C-STORE of SOP instance %s: %s (status 0x%04X)",
                printable_value(command.affected_sop_instance_uid),
                reason,
                status,
            )
        with self._state_lock:
            self._pending = None
        self.stats.bytes += pending.received
        if is_stored(status):
            self.stats.instances += 1
        else:
            self.stats.failures += 1
        if command.command_field == dimse.C_STORE_RQ:
            log.info("Sending C-STORE Response (%s)", dimse.store_status_text(status))
            self._respond(pending.context_id, dimse.C_STORE_RSP, command, status, comment)
        else:
            self._respond(pending.context_id, command.command_field | 0x8000, command, status)

    def _respond(
        self,
        context_id: int,
        command_field: int,
        request: dimse.Command,
        status: int,
        comment: str | None = None,
    ) -> None:
        abstract = self._accepted[context_id][0]
        payload = dimse.encode_response(
            command_field,
            request.message_id,
            status,
            request.affected_sop_class_uid or abstract,
            request.affected_sop_instance_uid,
            comment,
        )
        self._send(self.conn.send_data(context_id, True, payload))

    def _discard_pending(self) -> None:
        self._batch.clear()
        with self._state_lock:
            pending, self._pending = self._pending, None
            self._command_buffer = None
        if pending is not None and pending.instance is not None:
            pending.instance.discard()

    def _observe_store(
        self,
        pending: _PendingStore,
        result: StoreResult | None,
        status: int,
        comment: str | None,
        reason: str | None,
    ) -> tuple[int, str | None, str | None]:
        """Tell the observer (metrics, event log) before answering; its failure fails the store.

        The event log is written before the response so that a Success is never
        sent for an instance it does not record; when it cannot be written (its
        disk is full) the answer is 0xA700, Out of Resources (PS3.4 B.2.3), and the
        sender keeps the instance.
        """
        observer = self.services.observer
        if observer is None or self.info is None:
            return status, comment, reason
        command = pending.command
        answer = StoreAnswer(
            sop_class_uid=command.affected_sop_class_uid or "",
            sop_instance_uid=command.affected_sop_instance_uid or "",
            transfer_syntax_uid=self._accepted[pending.context_id][1],
            status=status,
            received_bytes=pending.received,
            seconds=time.monotonic() - pending.completed_at if pending.completed_at else None,
            result=result,
            reason=reason,
        )
        try:
            observer.instance_answered(self.info, answer)
        except OSError as exc:
            why = f"cannot write the event log: {exc.strerror or exc}"
            return Status.OUT_OF_RESOURCES, "Event log not writable", why
        except Exception:
            log.exception("observer failed for C-STORE of %s", printable(answer.sop_instance_uid))
        return status, comment, reason

    def _observe_end(self) -> None:
        observer = self.services.observer
        if observer is None or self.info is None:
            return
        end = AssociationEnd(
            instances=self.stats.instances,
            failures=self.stats.failures,
            received_bytes=self.stats.bytes,
            seconds=time.monotonic() - self._connected_at,
            aborted=not self._released,
        )
        try:
            observer.association_ended(self.info, end)
        except Exception:
            log.exception("observer failed at the end of the association")

    def _notify(self, event: str, *args: object) -> None:
        """Call an event handler (storescp hooks); its failure is logged, not fatal."""
        handler = self.services.events
        if handler is None or self.info is None:
            return
        try:
            getattr(handler, event)(self.info, *args)
        except Exception:
            log.exception("event handler %s failed", event)

    def _log_summary(self) -> None:
        log.info(
            "Association summary: peer %s, %s -> %s, %d stored, %d failed, %d bytes, %.3f s",
            self._peer(),
            printable(self.calling_ae_title),
            printable(self.called_ae_title),
            self.stats.instances,
            self.stats.failures,
            self.stats.bytes,
            time.monotonic() - self._connected_at,
        )


def _refused_renegotiation(exc: OSError) -> bool:
    """Whether a TLS error after the handshake is a failed renegotiation (a new handshake)."""
    reason = getattr(exc, "reason", None)
    return (
        isinstance(exc, ssl.SSLError)
        and reason is not None
        and ("RENEGOTIATION" in reason or "HANDSHAKE_FAILURE" in reason)
    )


def max_send_pdv(peer_max_length: int) -> int:
    """DCMTK's "Max Send PDV" figure: peer maximum (0 = 131072), even, minus 12 header bytes."""
    length = peer_max_length if 0 < peer_max_length <= 131072 else 131072
    return (length - (length % 2)) - 12
