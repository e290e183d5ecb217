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
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from dcmrecv.config import ReceiverConfig
from dcmrecv.events import EventBus
from dcmrecv.storage.writer import InstanceStore
from dcmrecv.wire import dimse, pdu
from dcmrecv.wire import protocol as p
from dcmrecv.wire.acceptance import address_allowed as address_allowed
from dcmrecv.wire.pdu import AbortReason, AbortSource, ProtocolError
from dcmrecv.wire.policy import AbortByOption, TestPolicy
from dcmrecv.wire.scp import StorageSCP
from dcmrecv.wire.scp import max_send_pdv as max_send_pdv

log = logging.getLogger(__name__)

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
#: Receive buffer of an established association: room for several full PDUs, so one
#: receive completes many (measured: 1 MiB vs 32 KiB cut receiver CPU on a CT series
#: by a third).
_DATA_BUFFER: Final = 256 * 1024
#: Deadline of a send when no DIMSE timeout is set: a peer that takes none of a
#: response for this long has stopped reading, and must not hold us forever.
SEND_TIMEOUT: Final = 60.0
#: While stopping: an association with no message in progress that receives
#: nothing for this long is idle and is aborted; one that goes on sending (the next
#: C-STORE, or its A-RELEASE-RQ) is served until ``--shutdown-timeout``.
DRAIN_IDLE_GRACE: Final = 2.0
_SEND_TIMEVAL: Final = struct.pack("ll", int(SEND_TIMEOUT), 0)  # struct timeval, SO_SNDTIMEO
#: How long a rejected requestor has to close the connection itself (Sta13).
_STA13_WAIT: Final = 1.0
#: How long the stopping thread may spend sending an A-ABORT over TLS.
_STOP_SEND_TIMEOUT: Final = 1.0


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
    ) -> None:
        self.sock = sock
        self.address = address
        self.config = config
        self.services = services
        self._connected_at = time.monotonic()
        self.protocol = p.AcceptorProtocol(config.max_pdu)
        self.scp = StorageSCP(
            config, store, services.bus, address, admit=admit, policy=services.policy
        )
        self._timeout: float | None = -1.0  # what the socket is set to; -1: not yet
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stopping = False
        #: Receive calls so far; the drain timer compares it to see activity.
        self._receives = 0
        self._drain_timer: threading.Timer | None = None
        self._tls_done = False
        self._closed = False
        self._released = False

    @property
    def admitted(self) -> bool:
        """Whether this association holds a slot under ``--max-associations``."""
        return self.scp.admitted

    # --- life cycle -----------------------------------------------------------------

    def run(self) -> None:
        """Serve until the association ends; never raises."""
        try:
            self._configure_socket()
            if self.services.tls_context is not None:
                self._start_tls(self.services.tls_context)
            if self._establish():
                self._serve_established()
        except AssociationEnded:
            pass
        except ProtocolError as exc:
            log.error("Protocol error from %s: %s; aborting association", self.scp.peer, exc)
            self._send_quietly(exc.answer or self._abort(AbortReason.INVALID_PDU_PARAMETER_VALUE))
        except dimse.CommandError as exc:
            log.error(
                "Malformed DIMSE command from %s: %s; aborting association", self.scp.peer, exc
            )
            self._send_quietly(self._abort(AbortReason.INVALID_PDU_PARAMETER_VALUE))
        except AbortByOption:
            log.info("ABORT initiated (due to command line options)")
            self._send_quietly(self.protocol.send(p.Abort(AbortSource.SERVICE_USER, 0)))
        except TimeoutError:
            self._on_timeout()
        except OSError as exc:
            self._on_connection_error(exc)
        except Exception:  # a bug of ours must not take the server down
            log.exception("Internal error in association with %s; aborting it", self.scp.peer)
            self._send_quietly(self._abort(AbortReason.NOT_SPECIFIED))
        finally:
            if self._drain_timer is not None:
                self._drain_timer.cancel()
            # A partial file goes before the peer sees the connection close.
            self.scp.discard()
            self._close()
            self.protocol.connection_closed()
            self.scp.ended(time.monotonic() - self._connected_at, aborted=not self._released)

    def _abort(self, reason: int) -> bytes:
        return self.protocol.send(p.Abort(AbortSource.SERVICE_PROVIDER, reason))

    def _on_connection_error(self, exc: OSError) -> None:
        if self._stopping:
            return
        if self._tls_done and _refused_renegotiation(exc):
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
            seen = self._receives
        if self.scp.info is None:
            self._shutdown_socket()
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
            self._send_abort_from_outside()
        self._shutdown_socket()

    def _end_if_idle(self, seen: int) -> None:
        with self._state_lock:
            if not self.protocol.idle or self._receives != seen or self._closed:
                return
        log.info("Aborting Association (initiated by SCP): receiver shutting down")
        self._send_abort_from_outside()
        self._shutdown_socket()

    # --- the socket -------------------------------------------------------------------

    def _configure_socket(self) -> None:
        # Our responses are small and must leave at once: no Nagle delay on them.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Every send has a deadline: a peer whose receive window stays full would
        # otherwise hold this thread, and the send lock, for ever.  On a blocking
        # socket the kernel's send timeout gives it with no system call per send;
        # with a Python timeout set (-td, the ACSE phase) that timeout bounds it.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _SEND_TIMEVAL)

    def _start_tls(self, context: ssl.SSLContext) -> None:
        """TLS handshake (PS3.15 B.1) within the ACSE timeout, in this thread, so a
        slow or silent client delays only its own association."""
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
                self.scp.peer,
                exc.reason or exc,
                f" ({detail})" if detail else "",
            )
            raise AssociationEnded from None
        self._tls_done = True

    def _receive(self, timeout: float | None) -> None:
        """Receive more bytes into the protocol's buffer, or end the association."""
        buffer = self.protocol.buffer
        view = buffer.writable()
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
        buffer.advance(count)
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
                waited = self._timeout if self._timeout and self._timeout > 0 else SEND_TIMEOUT
                log.error(
                    "%s has not read our data for %g s; closing the connection",
                    self.scp.peer,
                    waited,
                )
                raise AssociationEnded from None

    def _send_quietly(self, data: bytes) -> None:
        """Send an A-ABORT (or nothing, when ``data`` is empty) on the way out."""
        if data:
            try:
                self._send(data)
            except (OSError, AssociationEnded):
                pass

    def _send_abort_from_outside(self) -> None:
        """A-ABORT from the stopping thread, if it can go without waiting.

        The protocol object belongs to the association's thread, so the bytes are
        built here.  A send in progress holds the lock, possibly blocked by a peer
        that does not read: then nothing is sent, and shutting the socket down ends
        that send.
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
                self._send_quietly(exc.answer or b"")
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
            self._receive(remaining)
        answer = self.scp.associate(event.request)
        self._send(protocol.send(answer))
        if isinstance(answer, p.Reject):
            self._await_close()
            return False
        return True

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

    # --- established association (Sta6) -------------------------------------------------

    def _serve_established(self) -> None:
        protocol = self.protocol
        scp = self.scp
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
                self._receive(timeout)
            elif type(event) is p.StoreStarted:
                scp.store_started(event)
            elif type(event) is p.StoreComplete:
                self._send(protocol.send(scp.store_complete(event)))
            elif isinstance(event, p.EchoRequested):
                self._send(protocol.send(scp.echo(event)))
            elif isinstance(event, p.RequestReceived):
                self._send(protocol.send(scp.other_request(event)))
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
                self._send(protocol.send(p.ReleaseResponse()))
                self._released = True
                raise AssociationEnded
            else:
                scp.aborted()
                raise AssociationEnded

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
        self._send_quietly(self.protocol.send(p.Abort(AbortSource.SERVICE_USER, 0)))


def _refused_renegotiation(exc: OSError) -> bool:
    """Whether a TLS error after the handshake is a failed renegotiation (a new handshake)."""
    reason = getattr(exc, "reason", None)
    return (
        isinstance(exc, ssl.SSLError)
        and reason is not None
        and ("RENEGOTIATION" in reason or "HANDSHAKE_FAILURE" in reason)
    )
