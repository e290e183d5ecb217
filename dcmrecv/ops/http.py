"""The operations endpoint (``--http-port``): ``/metrics``, ``/healthz``, ``/readyz``.

A small HTTP/1.0 server in a thread of its own, apart from the DICOM listener, so a
scrape never waits behind an association and an association never waits behind a
scrape.  It is bounded: at most ``MAX_CLIENTS`` requests are served at once (one
thread each; the next connection is closed at once), and a client has
``CLIENT_TIMEOUT`` seconds to send its request, so clients that connect and say
nothing cannot hold it.  Only GET and HEAD; nothing a client sends is logged above
debug level.

- ``/healthz``: 200 while the process serves (liveness).
- ``/readyz``: 200 when the receiver can take instances, else 503 with the reason
  (not listening yet or stopping, output directory not writable, free space under
  ``--min-free-space``): readiness, for load balancers and Kubernetes.
- ``/metrics``: the Prometheus text format (:mod:`dcmrecv.ops.metrics`).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from dcmrecv.ops.metrics import CONTENT_TYPE, Exposition

log = logging.getLogger(__name__)

#: Requests served at the same time; more connections are closed unanswered.
MAX_CLIENTS = 8
#: Seconds a client has to send its request (and to read the answer).
CLIENT_TIMEOUT = 5.0

#: Returns None when ready, else why not (one line of text).
Readiness = Callable[[], "str | None"]


class _Handler(BaseHTTPRequestHandler):
    server: _BoundedHTTPServer
    timeout = CLIENT_TIMEOUT
    protocol_version = "HTTP/1.0"
    server_version = "dcmrecv"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        endpoint = self.server.endpoint
        if path == "/metrics":
            status, content_type, body = HTTPStatus.OK, CONTENT_TYPE, endpoint.metrics_text()
        elif path == "/healthz":
            status, content_type, body = HTTPStatus.OK, "text/plain; charset=utf-8", b"ok\n"
        elif path == "/readyz":
            reason = endpoint.not_ready_reason()
            content_type = "text/plain; charset=utf-8"
            if reason is None:
                status, body = HTTPStatus.OK, b"ready\n"
            else:
                status, body = HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {reason}\n".encode()
        else:
            status, content_type, body = (
                HTTPStatus.NOT_FOUND,
                "text/plain; charset=utf-8",
                b"not found: try /metrics, /healthz or /readyz\n",
            )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line is client text: debug only, and %r-quoted by the caller's
        # format, so it can never make a log line of its own.
        log.debug("HTTP %s: " + format, self.client_address[0], *args)


class _BoundedHTTPServer(HTTPServer):
    """One thread per request, at most MAX_CLIENTS of them."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], endpoint: OpsEndpoint) -> None:
        self.endpoint = endpoint
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: the client may retry
            return
        thread = threading.Thread(
            target=self._serve_one, args=(request, client_address), daemon=True
        )
        thread.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # a client's misbehaviour never ends the endpoint
            log.debug("HTTP client %s failed", client_address, exc_info=True)
        finally:
            self.shutdown_request(request)
            self._slots.release()


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
        self._server = _BoundedHTTPServer((address, port), self)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def metrics_text(self) -> bytes:
        return self.metrics.exposition()

    def not_ready_reason(self) -> str | None:
        try:
            return self._readiness()
        except Exception as exc:  # a failing check is "not ready", with the reason
            return f"readiness check failed: {exc}"
