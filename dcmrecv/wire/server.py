"""The listener: accept connections, run an Association per connection, stop cleanly.

Unlike DCMTK's dcmrecv, which serves one association at a time, every connection
gets its own thread at once.  The accept loop waits in ``select`` on the listening
socket and a wake-up pipe written by the signal handlers (``signal.set_wakeup_fd``),
so it neither polls nor sleeps, and SIGTERM/SIGINT are seen immediately.

Shut-down (SIGTERM, SIGINT, or ``Server.stop()``): stop accepting, abort idle
associations, let running C-STOREs finish for up to ``shutdown_timeout`` seconds,
then abort the rest and return exit code 0.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import threading
import time
from types import FrameType

from dcmrecv.config import ReceiverConfig
from dcmrecv.exitcodes import EXITCODE_CANNOT_START_SCP_AND_LISTEN, EXITCODE_NO_ERROR
from dcmrecv.storage.writer import InstanceStore
from dcmrecv.wire.association import Association

log = logging.getLogger(__name__)

#: Connections we hold open at most, admitted or still negotiating.  Beyond this a
#: new connection is closed at once, so a connection flood cannot exhaust threads
#: or file descriptors; ``--max-associations`` is the user-facing limit below it.
MAX_CONNECTIONS = 512
#: The kernel caps this at net.core.somaxconn (4096 on current Linux); a short
#: queue drops SYNs in a burst and senders then wait a second per retry.
_LISTEN_BACKLOG = 4096


class Server:
    """A bound, listening receiver.  ``serve_forever`` runs until ``stop``."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.store = InstanceStore(config)
        self._listener = _listen(config.bind_address, config.port)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._associations: set[Association] = set()
        self._admitted = 0
        self._threads: set[threading.Thread] = set()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = False

    # --- admission ----------------------------------------------------------------

    def _admit(self) -> bool:
        limit = self.config.max_associations
        with self._lock:
            if self._stopping or (limit is not None and self._admitted >= limit):
                return False
            self._admitted += 1
            return True

    def _run_association(self, association: Association) -> None:
        try:
            association.run()
        finally:
            with self._lock:
                if association.admitted:
                    self._admitted -= 1
                self._associations.discard(association)
                self._threads.discard(threading.current_thread())

    # --- accept loop ----------------------------------------------------------------

    def serve_forever(self) -> None:
        removed = self.store.cleanup_leftovers()
        if removed:
            log.warning("removed %d incomplete file(s) left by an earlier run", removed)
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping:
                for key, _ in selector.select():
                    if key.fileobj is self._listener:
                        self._accept()
                    else:
                        os.read(self._wake_r, 512)  # a signal or stop(); loop re-checks
        finally:
            selector.close()
            self._listener.close()
        self._drain()

    def _accept(self) -> None:
        try:
            sock, address = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. EMFILE: keep serving the others
            log.error("cannot accept connection: %s", exc)
            return
        with self._lock:
            if len(self._associations) >= MAX_CONNECTIONS or self._stopping:
                log.warning("too many open connections; closing the one from %s", address[0])
                sock.close()
                return
            sock.setblocking(True)
            association = Association(sock, address[:2], self.config, self.store, self._admit)
            thread = threading.Thread(
                target=self._run_association,
                args=(association,),
                name=f"association-{address[0]}:{address[1]}",
                daemon=True,
            )
            self._associations.add(association)
            self._threads.add(thread)
        thread.start()

    # --- stopping -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the accept loop to end; safe from any thread and from signal handlers."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _drain(self) -> None:
        with self._lock:
            running = list(self._associations)
        if running:
            log.info("stopping: %d association(s) still running", len(running))
        for association in running:
            association.request_stop()
        deadline = time.monotonic() + self.config.shutdown_timeout
        for thread in self._snapshot_threads():
            thread.join(max(deadline - time.monotonic(), 0))
        with self._lock:
            left = list(self._associations)
        for association in left:
            log.warning("shut-down timeout: aborting association with %s", association.address[0])
            association.force_stop()
        for thread in self._snapshot_threads():
            thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _snapshot_threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._threads)


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As DCMTK: restarting right after a stop must not fail on TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(_LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def serve(config: ReceiverConfig) -> int:
    """Run the receiver until SIGTERM/SIGINT; returns dcmrecv's exit code."""
    log.info("starting service class provider and listening ...")
    try:
        server = Server(config)
    except OSError as exc:
        log.critical("cannot start SCP and listen on port %d: %s", config.port, exc.strerror or exc)
        return EXITCODE_CANNOT_START_SCP_AND_LISTEN

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: shutting down", signal.Signals(signum).name)
        server.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXITCODE_NO_ERROR
