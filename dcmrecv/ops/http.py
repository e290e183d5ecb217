"""The operations endpoint (``--http-port``): ``/metrics``, ``/healthz``, ``/readyz``.

A small HTTP/1.0 server in a thread of its own, apart from the DICOM listener, so a
scrape never waits behind an association and an association never waits behind a
scrape.  Only GET and HEAD; nothing a client sends is logged above debug level.

- ``/healthz``: 200 while the process serves (liveness).
- ``/readyz``: 200 when the receiver can take instances, else 503 with the reason
  (not listening yet or stopping, output directory not writable, free space under
  ``--min-free-space``): readiness, for load balancers and Kubernetes.
- ``/metrics``: the Prometheus text format (:mod:`dcmrecv.ops.metrics`).

Clients cannot starve the probes (issue 22: eight clients sending a byte every 3 s
held all 8 threads of the earlier server, whose 5 s timeout was per read, and every
``/healthz`` failed; with ``--http-address 0.0.0.0`` any host could make liveness
fail).  So the server is one event loop (``selectors``) over non-blocking sockets,
not a thread per client:

* A connection has :data:`CLIENT_TIMEOUT` seconds from the moment it is accepted to
  send its whole request and take the whole answer; then it is closed, however
  slowly it trickles bytes.
* A new connection is never refused for want of room: at :data:`MAX_CLIENTS` open
  connections the oldest is closed, and an address that holds
  :data:`MAX_PER_ADDRESS` gives up its own oldest first.  A probe sends its request
  as it connects and is answered within the loop's next turn (microseconds of
  work), long before it could become the oldest.
* A request head is at most :data:`MAX_REQUEST_BYTES`; answers are a few KB.

Parsing the request and building the answer are pure functions (:func:`parse_request`,
:func:`encode_answer`); the loop is the thin I/O layer.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

from dcmrecv.ops.metrics import CONTENT_TYPE, Exposition

log = logging.getLogger(__name__)

#: Connections held open at once; the oldest is closed to make room for a new one.
MAX_CLIENTS: Final = 256
#: Connections one address may hold; its oldest is closed to make room.
MAX_PER_ADDRESS: Final = 16
#: Seconds from accept to the end of the answer: request and answer must fit in it.
CLIENT_TIMEOUT: Final = 5.0
#: Bytes of a request head (request line and headers); more gets 431 and a close.
MAX_REQUEST_BYTES: Final = 8192
#: Out of descriptors: how long the listener is left alone.
_ACCEPT_PAUSE: Final = 0.2
_TEXT: Final = "text/plain; charset=utf-8"

#: Returns None when ready, else why not (one line of text).
Readiness = Callable[[], "str | None"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str


class BadRequest(ValueError):
    """A request that is not HTTP we serve; ``status`` is the answer."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def parse_request(head: bytes) -> Request | None:
    """The request in the bytes received so far (pure): None while its head is not
    complete; BadRequest when it can never be served."""
    end = head.find(b"\r\n\r\n")
    if end < 0:
        end = head.find(b"\n\n")
    if end < 0:
        if len(head) > MAX_REQUEST_BYTES:
            raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request too large")
        return None
    if end > MAX_REQUEST_BYTES:
        raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request too large")
    line = head[:end].split(b"\n", 1)[0].rstrip(b"\r")
    words = line.split()
    if len(words) == 2:  # HTTP/0.9: "GET /path"
        words.append(b"HTTP/0.9")
    if len(words) != 3 or not words[2].startswith(b"HTTP/"):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "bad request line")
    method = words[0].decode("ascii", "replace")
    if method not in ("GET", "HEAD"):
        raise BadRequest(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {method!r}")
    target = words[1].decode("ascii", "replace")
    return Request(method, target.split("?", 1)[0])


def encode_answer(status: HTTPStatus, content_type: str, body: bytes, *, send_body: bool) -> bytes:
    """An HTTP/1.0 answer with its headers; the connection closes after it (pure)."""
    head = (
        f"HTTP/1.0 {status.value} {status.phrase}\r\n"
        "Server: dcmrecv\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head + body if send_body else head


class _Client:
    """One connection: what it sent so far, what is left to send, when it must end."""

    __slots__ = ("address", "deadline", "inbox", "outbox", "sock")

    def __init__(self, sock: socket.socket, address: str, deadline: float) -> None:
        self.sock = sock
        self.address = address
        self.deadline = deadline
        self.inbox = b""
        self.outbox: memoryview | None = None


class OpsEndpoint:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``address:port`` in a thread."""

    def __init__(
        self,
        address: str,
        port: int,
        metrics: Exposition,
        readiness: Readiness,
    ) -> None:
        self.metrics = metrics
        self._readiness = readiness
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((address, port))
            self._listener.listen(128)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        #: Open connections, oldest (earliest deadline) first.
        self._clients: dict[socket.socket, _Client] = {}
        self._per_address: Counter[str] = Counter()
        self._selector = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join(5)
        for client in list(self._clients.values()):
            self._close(client)
        self._selector.close()
        self._listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def metrics_text(self) -> bytes:
        return self.metrics.exposition()

    def not_ready_reason(self) -> str | None:
        try:
            return self._readiness()
        except Exception as exc:  # a failing check is "not ready", with the reason
            return f"readiness check failed: {exc}"

    # --- what is answered ------------------------------------------------------------

    def answer(self, request: Request) -> bytes:
        send_body = request.method == "GET"
        if request.path == "/metrics":
            return encode_answer(
                HTTPStatus.OK, CONTENT_TYPE, self.metrics_text(), send_body=send_body
            )
        if request.path == "/healthz":
            return encode_answer(HTTPStatus.OK, _TEXT, b"ok\n", send_body=send_body)
        if request.path == "/readyz":
            reason = self.not_ready_reason()
            if reason is None:
                return encode_answer(HTTPStatus.OK, _TEXT, b"ready\n", send_body=send_body)
            body = f"not ready: {reason}\n".encode()
            return encode_answer(HTTPStatus.SERVICE_UNAVAILABLE, _TEXT, body, send_body=send_body)
        body = b"not found: try /metrics, /healthz or /readyz\n"
        return encode_answer(HTTPStatus.NOT_FOUND, _TEXT, body, send_body=send_body)

    # --- the loop --------------------------------------------------------------------

    def _run(self) -> None:
        selector = self._selector
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        paused_until: float | None = None
        while not self._stopping:
            now = time.monotonic()
            if paused_until is not None and now >= paused_until:
                selector.register(self._listener, selectors.EVENT_READ)
                paused_until = None
            self._expire(now)
            oldest = next(iter(self._clients.values()), None)
            wake = [oldest.deadline] if oldest is not None else []
            if paused_until is not None:
                wake.append(paused_until)
            timeout = max(min(wake) - now, 0.0) if wake else None
            for key, events in selector.select(timeout):
                if key.fileobj is self._listener:
                    if not self._accept():
                        selector.unregister(self._listener)
                        paused_until = time.monotonic() + _ACCEPT_PAUSE
                elif key.fileobj == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 512)
                else:
                    client = key.data
                    try:
                        if events & selectors.EVENT_READ:
                            self._receive(client)
                        elif events & selectors.EVENT_WRITE:
                            self._send(client)
                    except OSError as exc:
                        log.debug("HTTP client %s: %s", client.address, exc)
                        self._close(client)
                    except Exception:  # a client's misbehaviour never ends the endpoint
                        log.debug("HTTP client %s failed", client.address, exc_info=True)
                        self._close(client)

    def _expire(self, now: float) -> None:
        """Close every connection past its deadline (they are in deadline order)."""
        while self._clients:
            client = next(iter(self._clients.values()))
            if client.deadline > now:
                break
            log.debug("HTTP client %s: no complete request in %g s", client.address, CLIENT_TIMEOUT)
            self._close(client)

    def _accept(self) -> bool:
        """Take the waiting connections; False when out of descriptors (pause)."""
        for _ in range(64):  # then let the clients have a turn
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return True
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.debug("HTTP: cannot accept: %s", exc)
                    return False
                return True
            peer = str(address[0])
            if self._per_address[peer] >= MAX_PER_ADDRESS:
                self._close(next(c for c in self._clients.values() if c.address == peer))
            elif len(self._clients) >= MAX_CLIENTS:
                self._close(next(iter(self._clients.values())))
            sock.setblocking(False)
            client = _Client(sock, peer, time.monotonic() + CLIENT_TIMEOUT)
            self._clients[sock] = client
            self._per_address[peer] += 1
            self._selector.register(sock, selectors.EVENT_READ, client)
        return True

    def _receive(self, client: _Client) -> None:
        data = client.sock.recv(4096)
        if not data:
            self._close(client)
            return
        client.inbox += data
        try:
            request = parse_request(client.inbox)
        except BadRequest as exc:
            log.debug("HTTP client %s: %s", client.address, exc)
            answer = encode_answer(exc.status, _TEXT, f"{exc}\n".encode(), send_body=True)
        else:
            if request is None:
                return
            log.debug("HTTP %s: %s %r", client.address, request.method, request.path)
            answer = self.answer(request)
        client.outbox = memoryview(answer)
        self._selector.modify(client.sock, selectors.EVENT_WRITE, client)
        self._send(client)

    def _send(self, client: _Client) -> None:
        assert client.outbox is not None
        try:
            sent = client.sock.send(client.outbox)
        except BlockingIOError:
            return
        client.outbox = client.outbox[sent:]
        if not client.outbox:
            self._close(client)

    def _close(self, client: _Client) -> None:
        if self._clients.pop(client.sock, None) is None:
            return
        self._per_address[client.address] -= 1
        if not self._per_address[client.address]:
            del self._per_address[client.address]
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        with contextlib.suppress(OSError):
            # Half-close first: a client still sending gets the answer, not a reset.
            client.sock.shutdown(socket.SHUT_WR)
        client.sock.close()
