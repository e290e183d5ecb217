"""One accepted TCP (or TLS) connection, with a deadline on every wait.

The association's socket as the driver uses it: receive into the protocol's
buffer, send whole PDUs, and let another thread stop it without ever blocking.
The socket facts that matter (DESIGN.md): ``TCP_NODELAY`` on every connection,
``TCP_QUICKACK`` re-armed after each receive so that senders with Nagle on (DCMTK's
default) do not stall 40 ms per message, and a send deadline so a peer that stops
reading cannot hold a thread (and the send lock) for ever.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import struct
import threading
from typing import Final

from dcmrecv.wire.pdu import PDUBuffer

log = logging.getLogger("dcmrecv.wire.association")

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
#: Deadline of a send when no receive timeout is set: a peer that takes none of a
#: response for this long has stopped reading, and must not hold us forever.
SEND_TIMEOUT: Final = 60.0
_SEND_TIMEVAL: Final = struct.pack("ll", int(SEND_TIMEOUT), 0)  # struct timeval, SO_SNDTIMEO
#: How long the stopping thread may spend sending an A-ABORT over TLS.
_STOP_SEND_TIMEOUT: Final = 1.0


class TransportClosed(Exception):
    """The connection is closed, or the peer stopped reading (already logged)."""


class HandshakeFailed(Exception):
    """The TLS handshake failed (already logged)."""


class Transport:
    """The socket of one association; ``receive`` is for its own thread only."""

    def __init__(self, sock: socket.socket, peer: str, *, shared: bool = False) -> None:
        self.sock = sock
        self.peer = peer
        #: Another process holds a descriptor of this socket (the parent of --workers):
        #: close() alone would not end the connection.
        self.shared = shared
        #: Receive calls so far; a stopping server compares it to see activity.
        self.receives = 0
        #: True once a TLS handshake has completed.
        self.tls = False
        self._timeout: float | None = -1.0  # what the socket is set to; -1: not yet
        self._send_lock = threading.Lock()
        self.closed = False
        # Our responses are small and must leave at once: no Nagle delay on them.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Every send has a deadline.  On a blocking socket the kernel's send timeout
        # gives it with no system call per send; with a Python timeout set (-td, the
        # ACSE phase) that timeout bounds it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _SEND_TIMEVAL)

    def start_tls(self, context: ssl.SSLContext, timeout: float) -> None:
        """TLS handshake (PS3.15 B.1) within ``timeout``, in the association's thread,
        so a slow or silent client delays only its own association."""
        self.sock.settimeout(max(timeout, 0.001))
        wrapped = context.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        self.sock = wrapped
        try:
            wrapped.do_handshake()
        except ssl.SSLError as exc:
            # verify_message says why a certificate was refused (expired, unknown CA...).
            detail = getattr(exc, "verify_message", None)
            log.error(
                "TLS handshake with %s failed: %s%s",
                self.peer,
                exc.reason or exc,
                f" ({detail})" if detail else "",
            )
            raise HandshakeFailed from None
        self.tls = True

    def receive(self, buffer: PDUBuffer, timeout: float | None) -> None:
        """Receive more bytes into ``buffer``; TimeoutError, or ConnectionResetError at EOF."""
        view = buffer.writable()
        if timeout != self._timeout:
            # Python applies the timeout to each call, so an unchanged value needs
            # no new settimeout (an ioctl each time).
            self.sock.settimeout(timeout)
            self._timeout = timeout
        self.receives += 1
        count = self.sock.recv_into(view)
        del view
        if count == 0:
            raise ConnectionResetError("peer closed the connection")
        buffer.advance(count)
        if _TCP_QUICKACK is not None:
            # Linux turns delayed ACKs back on after each read (README, "How it differs").
            self.sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

    def quiet(self, seconds: float) -> bool:
        """Whether the peer sends nothing for ``seconds`` (nothing arrives, nothing
        is waiting in TLS's buffer)."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], seconds)
        except (OSError, ValueError):
            return False
        return not readable

    def send(self, data: bytes) -> None:
        """Send all of ``data`` within the send deadline, or raise TransportClosed."""
        with self._send_lock:
            if self.closed:
                raise TransportClosed
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
                    "%s has not read our data for %g s; closing the connection", self.peer, waited
                )
                raise TransportClosed from None

    def send_quietly(self, data: bytes) -> None:
        """Send an A-ABORT (or nothing, when ``data`` is empty) on the way out."""
        if data:
            try:
                self.send(data)
            except (OSError, TransportClosed):
                pass

    def send_from_outside(self, data: bytes) -> None:
        """Send ``data`` (an A-ABORT) from another thread, if it can go without waiting.

        A send in progress holds the lock, possibly blocked by a peer that does not
        read: then nothing is sent, and shutting the socket down ends that send.
        """
        if not self._send_lock.acquire(blocking=False):
            return
        try:
            if self.closed:
                return
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

    def await_close(self, timeout: float) -> None:
        """Send our FIN and wait up to ``timeout`` for the peer's close (PS3.8 Sta13)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(timeout)
            self._timeout = timeout
            while self.sock.recv(4096):
                pass
        except OSError:
            pass

    def shutdown(self) -> None:
        """End any wait on the socket, from any thread."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        with self._send_lock:
            self.closed = True
            try:
                if self.shared:
                    self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self.sock.close()
            except OSError:
                pass


def refused_renegotiation(exc: OSError) -> bool:
    """Whether a TLS error after the handshake is a failed renegotiation (a new handshake)."""
    reason = getattr(exc, "reason", None)
    return (
        isinstance(exc, ssl.SSLError)
        and reason is not None
        and ("RENEGOTIATION" in reason or "HANDSHAKE_FAILURE" in reason)
    )
