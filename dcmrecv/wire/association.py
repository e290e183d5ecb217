"""One association, acceptor side: PS3.8 state machine, timers, C-ECHO and C-STORE.

A thread per association with a blocking socket: an idle association sleeps in
``recv`` and costs no CPU; there is no polling and no sleeping.  The ACSE timeout
(ARTIM, PS3.8 9.1.5) is a deadline fixed at connect time, so a peer dribbling a
request a byte at a time is cut off on time.  The DIMSE timeout (``-td``) bounds
each wait for the peer once the association is established.

Data path: PDUs are received into one reusable buffer (``PDUBuffer``), PDVs are
sliced out as views and data set fragments go straight to the open temporary file
(``writer.IncomingInstance.write``): no per-fragment copies in Python.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dcmrecv.config import AssociationInfo, IPNetwork, ReceiverConfig
from dcmrecv.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dcmrecv.negotiation.acceptor import (
    NegotiationResult,
    ProposedContext,
    accept_unknown,
    negotiate,
)
from dcmrecv.status import is_stored
from dcmrecv.storage.naming import printable
from dcmrecv.storage.writer import IncomingInstance, InstanceStore
from dcmrecv.wire import dimse, pdu
from dcmrecv.wire.dump import dump_parameters
from dcmrecv.wire.pdu import AbortReason, AbortSource, ProtocolError

log = logging.getLogger(__name__)

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
#: Sizes of the PDUs that carry a fixed 4-byte body (PS3.8 9.3.6 - 9.3.8).
_SMALL_PDU_LENGTH = 4
#: Receive buffer of an established association (see _serve_established).
_DATA_BUFFER = 256 * 1024
#: Largest request fields we echo into log lines.
_MAX_LOG_TEXT = 64


class AssociationEnded(Exception):
    """The association is over (released, aborted, timed out or closed)."""


@dataclass(frozen=True)
class Reject:
    """An A-ASSOCIATE-RJ to send (PS3.8 9.3.4) and the DCMTK-style reason for the log."""

    result: int
    source: int
    reason: int
    why: str


# DCMTK's choices of result/source/reason (scp.cc, DcmSCP::refuseAssociation).
REJECT_TOO_MANY = Reject(2, 3, 2, "too many associations")
REJECT_APPLICATION_CONTEXT = Reject(2, 1, 2, "bad application context")
REJECT_HOST = Reject(1, 1, 1, "connecting host not allowed")
REJECT_CALLED_AE = Reject(1, 1, 7, "called AE title not recognized")
REJECT_CALLING_AE = Reject(1, 1, 3, "calling AE title not recognized")
REJECT_NO_CONTEXTS = Reject(1, 1, 1, "no acceptable presentation contexts")
#: PS3.8 9.3.4: source 2 (ACSE related), reason 2 protocol-version-not-supported.
REJECT_PROTOCOL_VERSION = Reject(1, 2, 2, "protocol version not supported")
REJECT_FORCED = Reject(1, 1, 1, "forced via command line")
REJECT_NO_IMPLEMENTATION_UID = Reject(1, 1, 1, "no implementation class UID provided")

_serials = itertools.count(1)


@dataclass
class _PendingStore:
    """A C-STORE-RQ whose data set is still arriving."""

    command: dimse.Command
    context_id: int
    instance: IncomingInstance | None
    #: Set when the request is refused before its data arrives (the data is drained).
    status: int = dimse.SUCCESS
    comment: str | None = None
    received: int = 0


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
    ) -> None:
        self.sock = sock
        self.address = address
        self.config = config
        self.store = store
        self._admit = admit
        #: True once this association holds a slot under ``--max-associations``.
        self.admitted = False
        self._connected_at = time.monotonic()
        self._buffer = pdu.PDUBuffer()
        self._timeout: float | None = -1.0  # what the socket is set to; -1: not yet
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stopping = False
        self._closed = False
        self._established = False
        self._peer_max_length = 0
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
            if self.config.tls_context is not None:
                self._start_tls(self.config.tls_context)
            request = self._receive_request()
            if request is not None and self._establish(request):
                self._serve_established()
        except AssociationEnded:
            pass
        except ProtocolError as exc:
            log.error("Protocol error from %s: %s; aborting association", self._peer(), exc)
            self._send_abort(AbortSource.SERVICE_PROVIDER, exc.reason)
        except dimse.CommandError as exc:
            log.error(
                "Malformed DIMSE command from %s: %s; aborting association", self._peer(), exc
            )
            self._send_abort(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE)
        except TimeoutError:
            self._on_timeout()
        except OSError as exc:
            if self._stopping:
                pass
            elif self.info is None and self._buffer.buffered == 0:
                # A port probe or health check: nothing was sent, nothing to report
                # louder than info.  (DCMTK logs an empty "Association Received"
                # and a refusal here; that would count probes as associations.)
                log.info("Connection from %s closed before an association request", self._peer())
            else:
                log.warning("Connection to %s failed: %s", self._peer(), exc)
        except Exception:  # a bug of ours must not take the server down
            log.exception("Internal error in association with %s; aborting it", self._peer())
            self._send_abort(AbortSource.SERVICE_PROVIDER, AbortReason.NOT_SPECIFIED)
        finally:
            self._discard_pending()
            self._close()
            if self._established:
                self._log_summary()
                self._notify("association_ended")

    def request_stop(self) -> None:
        """Shut-down: abort now if idle, else after the message in progress."""
        with self._state_lock:
            self._stopping = True
            idle = self._command_buffer is None and self._pending is None
        if idle or not self._established:
            if self._established:
                log.info("Aborting Association (initiated by SCP): receiver shutting down")
                self._send_abort(AbortSource.SERVICE_USER, 0)
            self._shutdown_socket()

    def force_stop(self) -> None:
        """Shut-down timeout reached: abort whatever is in progress."""
        with self._state_lock:
            self._stopping = True
        if self._established:
            self._send_abort(AbortSource.SERVICE_USER, 0)
        self._shutdown_socket()

    # --- socket helpers -------------------------------------------------------------------

    def _configure_socket(self) -> None:
        # Our responses are small and must leave at once (DESIGN.md, socket facts).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

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

    def _receive(self, timeout: float | None) -> None:
        """Receive more bytes into the PDU buffer, or end the association."""
        view = self._buffer.writable()
        if timeout != self._timeout:
            # Python applies the timeout to each call, so an unchanged value needs
            # no new settimeout (an ioctl each time).
            self.sock.settimeout(timeout)
            self._timeout = timeout
        count = self.sock.recv_into(view)
        del view
        if count == 0:
            raise ConnectionResetError("peer closed the connection")
        self._buffer.advance(count)
        if _TCP_QUICKACK is not None:
            # Linux turns delayed ACKs back on after each read; a sender with Nagle
            # on (DCMTK's default) then stalls 40 ms per message (DESIGN.md).
            self.sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            if self._closed:
                raise AssociationEnded
            self.sock.sendall(data)

    def _send_abort(self, source: int, reason: int) -> None:
        try:
            self._send(pdu.encode_abort(source, reason))
        except (OSError, AssociationEnded):
            pass

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
            self.config.events is None and not log.isEnabledFor(logging.INFO)
        ):
            return self.address[0]
        try:
            return socket.gethostbyaddr(self.address[0])[0]
        except OSError:
            return self.address[0]

    # --- association establishment (PS3.8 9.2, states Sta2 -> Sta6) -------------------

    def _receive_request(self) -> pdu.AssociateRQ | None:
        deadline = self._connected_at + self.config.acse_timeout
        self._buffer.max_lengths = {pdu.A_ASSOCIATE_RQ: pdu.MAX_ASSOCIATE_RQ_LENGTH}
        while True:
            header = self._buffer.peek_header()
            if header is not None:
                pdu_type = header[0]
                if pdu_type == pdu.A_ABORT:
                    # PS3.8 state table, Sta2 + A-ABORT PDU: AA-2, close; no answer.
                    log.info(
                        "Connection from %s aborted before an association request", self._peer()
                    )
                    return None
                if pdu_type != pdu.A_ASSOCIATE_RQ:
                    # Anything else before a request is not DICOM or not in order (AA-1).
                    reason = (
                        AbortReason.UNEXPECTED_PDU
                        if pdu_type in pdu.PDU_TYPE_NAMES
                        else AbortReason.UNRECOGNIZED_PDU
                    )
                    log.error(
                        "Expected A-ASSOCIATE-RQ from %s, got PDU type 0x%02X: aborting",
                        self._peer(),
                        pdu_type,
                    )
                    self._send_abort(AbortSource.SERVICE_PROVIDER, reason)
                    return None
                whole = self._buffer.next_pdu()
                if whole is not None:
                    return pdu.decode_associate_rq(whole[1])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._receive(remaining)

    def _check_request(self, rq: pdu.AssociateRQ) -> Reject | None:
        if self.config.refuse_associations:
            return REJECT_FORCED
        if not rq.protocol_version & 0x0001:
            return REJECT_PROTOCOL_VERSION
        if rq.application_context != pdu.DICOM_APPLICATION_CONTEXT:
            return REJECT_APPLICATION_CONTEXT
        config = self.config
        if config.require_implementation_uid and not rq.implementation_class_uid:
            return REJECT_NO_IMPLEMENTATION_UID
        if config.accept_from is not None and not _address_allowed(
            self.address[0], config.accept_from
        ):
            log.error("Connecting host %s is not in --accept-from", self.address[0])
            return REJECT_HOST
        if (
            config.aetitle_explicit
            and not config.use_called_aetitle
            and rq.called_ae_title != config.aetitle.strip()
        ):
            log.error("Called AE Title does not match configured AE Title: %s", config.aetitle)
            return REJECT_CALLED_AE
        # AE titles compare without leading/trailing spaces (PS3.5 6.2, AE).
        if config.accept_calling is not None and rq.calling_ae_title not in config.accept_calling:
            log.error("Calling AE Title %r is not in --accept-calling", rq.calling_ae_title)
            return REJECT_CALLING_AE
        self.admitted = self._admit()
        if not self.admitted:
            return REJECT_TOO_MANY
        return None

    def _establish(self, rq: pdu.AssociateRQ) -> bool:
        self.calling_ae_title = rq.calling_ae_title[:_MAX_LOG_TEXT]
        self.called_ae_title = rq.called_ae_title[:_MAX_LOG_TEXT]
        self._host = self._peer_name()
        log.info(
            "Association Received %s: %s -> %s",
            self._host,
            self.calling_ae_title,
            self.called_ae_title,
        )
        self._dump("Incoming Association Request:\n", "RQ", rq)
        reject = self._check_request(rq)
        result: NegotiationResult | None = None
        if reject is None:
            profile = self.config.profile
            if profile is None:
                from dcmrecv.negotiation.asconfig import verification_only_profile

                profile = verification_only_profile()
            proposed = [
                ProposedContext(cx.context_id, cx.abstract_syntax, cx.transfer_syntaxes)
                for cx in rq.contexts
            ]
            result = negotiate(proposed, profile, rq.roles or None, rq.extended_negotiation or None)
            if self.config.promiscuous_transfer_syntaxes:
                result = accept_unknown(result, proposed, self.config.promiscuous_transfer_syntaxes)
            if not result.accepted and not self.config.acknowledge_without_contexts:
                log.info("No Acceptable Presentation Contexts")
                self._dump("", "RJ", rq, result)
                reject = REJECT_NO_CONTEXTS
        if reject is not None or result is None:
            assert reject is not None
            log.info("Refusing Association (%s)", reject.why)
            self._send(pdu.encode_associate_rj(reject.result, reject.source, reject.reason))
            return False
        responding = rq.called_ae_title if self.config.use_called_aetitle else self.config.aetitle
        contexts = tuple(
            pdu.PresentationContextAC(cx.context_id, cx.result, cx.transfer_syntax)
            for cx in result.contexts
        )
        self._send(
            pdu.encode_associate_ac(
                rq,
                responding,
                contexts,
                self.config.max_pdu,
                IMPLEMENTATION_CLASS_UID,
                IMPLEMENTATION_VERSION_NAME,
                tuple((r.sop_class_uid, r.scu, r.scp) for r in result.roles),
                tuple((e.sop_class_uid, e.data) for e in result.extended_negotiation),
            )
        )
        self._accepted = {
            cx.context_id: (cx.abstract_syntax, cx.transfer_syntax) for cx in result.accepted
        }
        self._peer_max_length = rq.max_length
        self.info = AssociationInfo(
            self.calling_ae_title,
            self.called_ae_title,
            self.address[0],
            self._host,
            next(_serials),
        )
        self._established = True
        log.info("Association Acknowledged (Max Send PDV: %d)", max_send_pdv(rq.max_length))
        if not self._accepted:
            log.info("    (but no valid presentation contexts)")
        self._dump("", "AC", rq, result, responding)
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
        self._buffer.max_lengths = {
            pdu.P_DATA_TF: config.max_pdu,
            pdu.A_RELEASE_RQ: _SMALL_PDU_LENGTH,
            pdu.A_ABORT: _SMALL_PDU_LENGTH,
        }
        # Room for several full PDUs: one receive then completes many, which saves
        # system calls per PDU (measured: 1 MiB vs 32 KiB cut receiver CPU on a CT
        # series by a third).  Allocated once per association, after negotiation.
        self._buffer.reserve(max(4 * (config.max_pdu + pdu.PDU_HEADER.size), _DATA_BUFFER))
        while True:
            header = self._buffer.peek_header()
            if header is not None and header[0] not in self._buffer.max_lengths:
                name = pdu.PDU_TYPE_NAMES.get(header[0])
                if name is None:
                    raise ProtocolError(
                        f"unrecognized PDU type 0x{header[0]:02X}", AbortReason.UNRECOGNIZED_PDU
                    )
                raise ProtocolError(
                    f"unexpected {name} on an established association", AbortReason.UNEXPECTED_PDU
                )
            whole = self._buffer.next_pdu()
            if whole is None:
                self._flush_batch()  # the views point into the buffer about to be reused
                self._receive(config.dimse_timeout)
                continue
            pdu_type, body = whole
            if pdu_type == pdu.P_DATA_TF:
                self._on_p_data(body)
            elif pdu_type == pdu.A_RELEASE_RQ:
                self._on_release()
            else:
                self._on_abort()
            del body

    def _on_release(self) -> None:
        log.info("Received Association Release Request")
        if self._pending is not None or self._command_buffer is not None:
            log.warning("Association released in the middle of a message; discarding it")
            self._discard_pending()
        self._send(pdu.RELEASE_RP)
        raise AssociationEnded

    def _on_abort(self) -> None:
        log.info("Received Association Abort Request")
        if self._pending is not None:
            log.warning(
                "Peer aborted during C-STORE of %s; nothing stored",
                self._pending.command.affected_sop_instance_uid,
            )
        raise AssociationEnded

    def _on_timeout(self) -> None:
        if not self._established:
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
        self._send_abort(AbortSource.SERVICE_USER, 0)

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
            self._respond(context_id, dimse.C_ECHO_RSP, command, dimse.SUCCESS)
        elif field & 0x8000:
            raise ProtocolError(f"unexpected DIMSE response 0x{field:04X} from the requestor")
        elif field == 0x0FFF:
            log.info("Received C-CANCEL Request (MsgID %d): nothing to cancel", command.message_id)
        else:
            log.error(
                "cannot handle this kind of DIMSE command (0x%04x), we are a Storage SCP only",
                field,
            )
            if command.has_data_set:
                self._start_pending(command, context_id, None, dimse.UNRECOGNIZED_OPERATION)
            else:
                self._respond(context_id, field | 0x8000, command, dimse.UNRECOGNIZED_OPERATION)

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
                dimse.CANNOT_UNDERSTAND,
                "command lacks Affected SOP Class/Instance UID",
            )
            return
        if sop_class != abstract:
            self._start_pending(
                command,
                context_id,
                None,
                dimse.REFUSED_SOP_CLASS_NOT_SUPPORTED,
                "SOP class differs from the presentation context",
            )
            return
        instance = self.store.begin(
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            transfer_syntax_uid=transfer,
            calling_aetitle=self.calling_ae_title,
        )
        self._start_pending(command, context_id, instance)

    def _start_pending(
        self,
        command: dimse.Command,
        context_id: int,
        instance: IncomingInstance | None,
        status: int = dimse.SUCCESS,
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
        self._send_abort(AbortSource.SERVICE_USER, 0)
        raise AssociationEnded

    def _finish_message(self, pending: _PendingStore) -> None:
        command = pending.command
        status, comment = pending.status, pending.comment
        reason = comment or (None if status == dimse.SUCCESS else dimse.store_status_text(status))
        if pending.instance is not None:
            result = pending.instance.commit()
            status, comment, reason = result.status, result.error_comment, result.reason
            # DCMTK prints the path as it joined it ("./CT.1.2..." for -od .).
            shown = result.log_path or result.path
            if result.overwritten and shown is not None:
                log.warning("file already exists, overwriting: %s", shown)
            if status == dimse.SUCCESS and shown is not None:
                log.info("Stored received object to file: %s", shown)
            # storescp runs -xcr after failed stores too (storescp.cc, storeSCP()).
            self._notify("instance_stored", result)
            if self.config.sleep_after_store:
                time.sleep(self.config.sleep_after_store)  # storescp --sleep-after
        if reason and command.command_field == dimse.C_STORE_RQ:
            # Every failure says why, at the default log level (W: for a warning);
            # other commands got their E: line in _on_command.
            log.log(
                logging.WARNING if is_stored(status) else logging.ERROR,
                "C-STORE of SOP instance %s: %s (status 0x%04X)",
                printable(command.affected_sop_instance_uid),
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
        self._send(pdu.encode_p_data(context_id, True, payload, self._peer_max_length))
        if self._stopping:
            log.info("Aborting Association (initiated by SCP): receiver shutting down")
            self._send_abort(AbortSource.SERVICE_USER, 0)
            raise AssociationEnded

    def _discard_pending(self) -> None:
        self._batch.clear()
        with self._state_lock:
            pending, self._pending = self._pending, None
            self._command_buffer = None
        if pending is not None and pending.instance is not None:
            pending.instance.discard()

    def _notify(self, event: str, *args: object) -> None:
        """Call an event handler (storescp hooks); its failure is logged, not fatal."""
        handler = self.config.events
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
            self.calling_ae_title,
            self.called_ae_title,
            self.stats.instances,
            self.stats.failures,
            self.stats.bytes,
            time.monotonic() - self._connected_at,
        )


def _address_allowed(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def max_send_pdv(peer_max_length: int) -> int:
    """DCMTK's "Max Send PDV" figure: peer maximum (0 = 131072), even, minus 12 header bytes."""
    length = peer_max_length if 0 < peer_max_length <= 131072 else 131072
    return (length - (length % 2)) - 12
