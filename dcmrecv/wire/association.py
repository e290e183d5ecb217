"""One association, acceptor side: the driver of the protocol object and the SCP.

What the peer sends and when is the protocol's (``protocol.AcceptorProtocol``, sans
I/O); what to answer is the SCP's (``scp.StorageSCP``).  This module owns what
those leave out: the socket, TLS, the timers and the thread, and stopping.

A thread per association with a blocking socket: an idle association sleeps in
``recv`` and costs no CPU; there is no polling and no sleeping.  The ACSE timeout
(ARTIM, PS3.8 9.1.5) is a deadline fixed at connect time, so a peer dribbling a
request a byte at a time is cut off on time.  The DIMSE timeout (``-td``) bounds
each wait for the peer once the association is established.  Every send has a
deadline too, so a peer that stops reading cannot hold the thread.

Data path: PDUs are received into the protocol's reusable buffer; data set
fragments arrive as views into it and are handed to storage in one ``writev`` per
receive (``StorageSCP.flush``): no per-fragment copies in Python.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from dcmrecv.config import ReceiverConfig
from dcmrecv.events import EventBus
from dcmrecv.storage.writer import InstanceStore
from dcmrecv.wire import dimse, pdu
from dcmrecv.wire import protocol as p
from dcmrecv.wire.acceptance import address_allowed as address_allowed
from dcmrecv.wire.pdu import AbortReason, AbortSource, ProtocolError
from dcmrecv.wire.policy import AbortByOption, TestPolicy
from dcmrecv.wire.scp import ServiceFactory, StorageSCP
from dcmrecv.wire.scp import max_send_pdv as max_send_pdv
from dcmrecv.wire.transport import (
    HandshakeFailed,
    Transport,
    TransportClosed,
    refused_renegotiation,
)

log = logging.getLogger(__name__)

#: Receive buffer of an established association: room for several full PDUs, so one
#: receive completes many (measured: 1 MiB vs 32 KiB cut receiver CPU on a CT series
#: by a third).
_DATA_BUFFER: Final = 256 * 1024
#: While stopping: an association with no message in progress that receives
#: nothing for this long is idle and is aborted; one that goes on sending (the next
#: C-STORE, or its A-RELEASE-RQ) is served until ``--shutdown-timeout``.
DRAIN_IDLE_GRACE: Final = 2.0
#: How long a rejected requestor has to close the connection itself (Sta13).
_STA13_WAIT: Final = 1.0
#: How long a peer must have sent nothing after our response before a service's
#: follow-up request goes on the same association (``_send_follow_ups``).
FOLLOW_UP_GRACE: Final = 0.25


class AssociationEnded(Exception):
    """The association is over (released, aborted, timed out or closed)."""


@dataclass(frozen=True)
class Services:
    """What the server built once from the configuration, shared by its associations."""

    bus: EventBus
    #: The TLS context (``+tls``); None is plain TCP.
    tls_context: ssl.SSLContext | None = None
    #: storescp's test options (``--sleep-*``, ``--abort-*``); None for none.
    policy: TestPolicy | None = None
    #: DIMSE-N services by abstract syntax (``--storage-commitment``).
    services: Mapping[str, ServiceFactory] = field(default_factory=dict)


class Association:
    """Serve one TCP connection from accept to close."""

    def __init__(
        self,
        sock: socket.socket,
        address: tuple[str, int],
        config: ReceiverConfig,
        store: InstanceStore,
        services: Services,
        admit: Callable[[], bool] = lambda: True,
        *,
        shared_socket: bool = False,
    ) -> None:
        """``shared_socket``: another process holds the socket too (the parent of
        ``--workers``): closing it must end the connection all the same."""
        self.address = address
        self.config = config
        self.services = services
        self._connected_at = time.monotonic()
        self.protocol = p.AcceptorProtocol(config.max_pdu)
        self.scp = StorageSCP(
            config,
            store,
            services.bus,
            address,
            admit=admit,
            policy=services.policy,
            services=services.services,
        )
        self.transport = Transport(sock, self.scp.peer, shared=shared_socket)
        #: The parent's number for this connection (``--workers``); 0 otherwise.
        self.link_id = 0
        self._state_lock = threading.Lock()
        self._stopping = False
        self._drain_timer: threading.Timer | None = None
        self._released = False

    @property
    def sock(self) -> socket.socket:
        return self.transport.sock

    @property
    def admitted(self) -> bool:
        """Whether this association holds a slot under ``--max-associations``."""
        return self.scp.admitted

    # --- life cycle -----------------------------------------------------------------

    def run(self) -> None:
        """Serve until the association ends; never raises."""
        transport = self.transport
        try:
            if self.services.tls_context is not None:
                remaining = self._connected_at + self.config.acse_timeout - time.monotonic()
                transport.start_tls(self.services.tls_context, remaining)
            if self._establish():
                self._serve_established()
        except (AssociationEnded, TransportClosed, HandshakeFailed):
            pass
        except (ProtocolError, dimse.CommandError) as exc:
            # The protocol object has the A-ABORT ready (PS3.8 AA-8) and is in Sta13.
            what = "Protocol error" if isinstance(exc, ProtocolError) else "Malformed DIMSE command"
            log.error("%s from %s: %s; aborting association", what, self.scp.peer, exc)
            transport.send_quietly(
                exc.answer or self._abort(AbortReason.INVALID_PDU_PARAMETER_VALUE)
            )
        except AbortByOption:
            log.info("ABORT initiated (due to command line options)")
            transport.send_quietly(self.protocol.send(p.Abort(AbortSource.SERVICE_USER, 0)))
        except TimeoutError:
            self._on_timeout()
        except OSError as exc:
            self._on_connection_error(exc)
        except Exception:  # a bug of ours must not take the server down
            log.exception("Internal error in association with %s; aborting it", self.scp.peer)
            transport.send_quietly(self._abort(AbortReason.NOT_SPECIFIED))
        finally:
            if self._drain_timer is not None:
                self._drain_timer.cancel()
            # A partial file goes before the peer sees the connection close.
            self.scp.discard()
            transport.close()
            self.protocol.connection_closed()
            self.scp.ended(
                time.monotonic() - self._connected_at,
                aborted=not self._released,
                unanswered=self.protocol.outstanding,
            )

    def _abort(self, reason: int) -> bytes:
        return self.protocol.send(p.Abort(AbortSource.SERVICE_PROVIDER, reason))

    def _on_connection_error(self, exc: OSError) -> None:
        if self._stopping:
            return
        if self.transport.tls and refused_renegotiation(exc):
            # Only a new handshake can fail now: the client asked to renegotiate,
            # OpenSSL refused (client-initiated renegotiation is off, RFC 5746
            # section 4.4 allows that) and the client gave up on the connection.
            log.error(
                "TLS client %s tried to renegotiate the session, which is refused; "
                "connection closed (%s)",
                self.scp.peer,
                getattr(exc, "reason", None) or exc,
            )
        elif self.scp.info is None and self.protocol.buffer.buffered == 0:
            # A port probe or health check: nothing was sent, nothing to report
            # louder than info.  (DCMTK logs an empty "Association Received"
            # and a refusal here; that would count probes as associations.)
            log.info("Connection from %s closed before an association request", self.scp.peer)
        else:
            log.warning("Connection to %s failed: %s", self.scp.peer, exc)

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
            seen = self.transport.receives
        if self.scp.info is None:
            self.transport.shutdown()
        elif self.protocol.idle:
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
        if self.scp.info is not None:
            # The protocol object belongs to the association's thread: the bytes
            # are built here.
            self.transport.send_from_outside(pdu.encode_abort(AbortSource.SERVICE_USER, 0))
        self.transport.shutdown()

    def _end_if_idle(self, seen: int) -> None:
        transport = self.transport
        with self._state_lock:
            if not self.protocol.idle or transport.receives != seen or transport.closed:
                return
        log.info("Aborting Association (initiated by SCP): receiver shutting down")
        transport.send_from_outside(pdu.encode_abort(AbortSource.SERVICE_USER, 0))
        transport.shutdown()

    # --- association establishment (PS3.8 9.2, states Sta2 -> Sta6) ---------------------

    def _establish(self) -> bool:
        """Read the A-ASSOCIATE-RQ within the ACSE timeout and answer it."""
        deadline = self._connected_at + self.config.acse_timeout
        protocol = self.protocol
        while True:
            try:
                event = protocol.next_event()
            except (pdu.UnexpectedPDU, pdu.UnrecognizedPDU) as exc:
                # Anything else before a request is not DICOM or not in order (AA-1).
                log.error(
                    "Expected A-ASSOCIATE-RQ from %s, got PDU type 0x%02X: aborting",
                    self.scp.peer,
                    exc.pdu_type,
                )
                self.transport.send_quietly(exc.answer or b"")
                return False
            if isinstance(event, p.AssociationRequested):
                break
            if isinstance(event, p.Aborted):
                # PS3.8 state table, Sta2 + A-ABORT PDU: AA-2, close; no answer.
                log.info("Connection from %s aborted before an association request", self.scp.peer)
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.transport.receive(protocol.buffer, remaining)
        answer = self.scp.associate(event.request)
        self.transport.send(protocol.send(answer))
        if isinstance(answer, p.Reject):
            # Sta13 (PS3.8 AE-8): the requestor reads the RJ and closes; closing
            # under it could end its read before it has taken the RJ.  Our FIN, then
            # its close, up to our ARTIM for this state.
            self.transport.await_close(_STA13_WAIT)
            return False
        return True

    # --- established association (Sta6) -------------------------------------------------

    def _serve_established(self) -> None:
        protocol = self.protocol
        scp = self.scp
        send = self.transport.send
        receive = self.transport.receive
        next_event = protocol.next_event
        batch = scp.batch
        # The data path without a storescp test policy: a fragment is appended to the
        # batch here, with no call.  (The batch's views are dropped unless a store is
        # open: a refused C-STORE's data set is only drained.)
        fast = scp.policy is None
        protocol.buffer.reserve(max(4 * (self.config.max_pdu + pdu.PDU_HEADER.size), _DATA_BUFFER))
        dimse_timeout = self.config.dimse_timeout
        while True:
            event = next_event()
            if type(event) is p.StoreData:
                if fast and scp.in_store:
                    batch.append(event.fragment)
                else:
                    scp.store_data(event)
            elif event is p.NEED_DATA:
                scp.flush()  # the views point into the buffer about to be reused
                timeout = dimse_timeout
                if self._stopping and protocol.idle:
                    timeout = min(timeout or DRAIN_IDLE_GRACE, DRAIN_IDLE_GRACE)
                receive(protocol.buffer, timeout)
            elif type(event) is p.StoreStarted:
                scp.store_started(event)
            elif type(event) is p.StoreComplete:
                send(protocol.send(scp.store_complete(event)))
            elif isinstance(event, p.EchoRequested):
                send(protocol.send(scp.echo(event)))
            elif isinstance(event, p.RequestReceived):
                send(protocol.send(scp.other_request(event)))
                self._send_follow_ups()
            elif isinstance(event, p.ResponseReceived):
                scp.response_received(event)
            elif isinstance(event, p.CancelRequested):
                # We answer each request before reading the next, so by the time a
                # cancel is read its request is done: nothing to cancel, nothing to
                # send (PS3.7 9.3.2.3 has no response to a C-CANCEL-RQ).
                log.info(
                    "Received C-CANCEL Request (MsgID %d): nothing to cancel",
                    event.command.message_id_being_responded_to,
                )
            elif isinstance(event, p.ReleaseRequested):
                scp.released(event.abandoned is not p.DimseState.IDLE)
                send(protocol.send(p.ReleaseResponse()))
                self._released = True
                raise AssociationEnded
            else:
                scp.aborted()
                raise AssociationEnded

    def _send_follow_ups(self) -> None:
        """What a service sends after its response (a Storage Commitment report),
        only while the peer waits: one that sent more (its A-RELEASE-RQ, another
        request) within FOLLOW_UP_GRACE gets them on another association instead
        (the service's ``not_sent``), so that its release never crosses our request."""
        follow_ups = self.scp.follow_ups()
        if not follow_ups:
            return
        if self.protocol.buffer.buffered or not self.transport.quiet(FOLLOW_UP_GRACE):
            self.scp.not_sent(follow_ups)
            return
        for request in follow_ups:
            self.transport.send(self.protocol.send(request))

    def _on_timeout(self) -> None:
        if self.scp.info is None:
            self.protocol.artim_expired()
            log.error(
                "No A-ASSOCIATE-RQ from %s within the ACSE timeout (%g s); closing connection",
                self.scp.peer,
                self.config.acse_timeout,
            )
            return
        if self._stopping and self.protocol.idle:
            log.info("Aborting Association (initiated by SCP): receiver shutting down")
        else:
            log.error(
                "DIMSE timeout: no data from %s for %g s; aborting association",
                self.scp.peer,
                self.config.dimse_timeout or 0,
            )
        self.transport.send_quietly(self.protocol.send(p.Abort(AbortSource.SERVICE_USER, 0)))
