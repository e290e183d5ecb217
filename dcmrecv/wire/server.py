"""The listener: accept connections, run an Association per connection, stop cleanly.

Unlike DCMTK's dcmrecv, which serves one association at a time, every connection
gets its own thread at once.  The accept loop waits in ``select`` on the listening
socket and a wake-up pipe written by the signal handlers (``signal.set_wakeup_fd``),
so it neither polls nor sleeps, and SIGTERM/SIGINT are seen immediately.

Overload: ``--accept-from`` is checked as soon as a connection is accepted (a
disallowed peer is closed at once, without a thread); the per-peer and total
connection limits are the policy of ``admission.py``, applied here.  When accept
fails for want of descriptors (EMFILE/ENFILE) the listener is left alone for a
moment instead of being retried in a busy loop; the connections wait in the
listen backlog.

Shut-down (SIGTERM, SIGINT, or ``Server.stop()``): stop accepting, abort idle
associations, let running C-STOREs finish for up to ``shutdown_timeout`` seconds,
then abort the rest and return exit code 0.

Sockets from a super server (dcmrecv.wire.inherited): under systemd socket
activation the listening socket systemd passed is used instead of binding the port;
under ``storescp --inetd`` (``ReceiverConfig.inetd_connection``) there is no
listener: the one connection inetd accepted is served as an accepted one would be
(``--accept-from``, TLS, timeouts, shut-down), then the server returns.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import resource
import selectors
import signal
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import FrameType

from dcmrecv.config import ReceiverConfig
from dcmrecv.events import EventBus, ListenerStarting, ListenFailed
from dcmrecv.exitcodes import (
    EXITCODE_CANNOT_CREATE_TRANSPORT_LAYER,
    EXITCODE_CANNOT_START_SCP_AND_LISTEN,
    EXITCODE_NO_ERROR,
)
from dcmrecv.logs.dialects import DcmrecvDialect, StorescpDialect
from dcmrecv.storage.recovery import is_temp_name
from dcmrecv.storage.writer import InstanceStore
from dcmrecv.wire import admission, inherited, tls, workers
from dcmrecv.wire.admission import DEFAULT_LIMITS, Candidate, Excess, Limits, Throttle, Verdict
from dcmrecv.wire.association import Association, Services
from dcmrecv.wire.policy import TestPolicy
from dcmrecv.wire.workers import ParentLink, RemoteConnection, Worker, WorkerPool

log = logging.getLogger(__name__)

#: Connections we hold open at most, admitted or still negotiating (admission.Limits);
#: ``--max-associations`` is the user-facing limit below it.
MAX_CONNECTIONS = DEFAULT_LIMITS.max_connections
#: Descriptors one association holds while it receives a data set (measured: the
#: socket, the temporary file and its directory); the README's figure.
DESCRIPTORS_PER_ASSOCIATION = 3
#: Out of descriptors: how long the listener is left alone before accept is tried again.
ACCEPT_PAUSE = 0.2
#: Overload messages (out of descriptors, a peer over its limit, --accept-from) are
#: logged at most once per this many seconds, with a count of the others.
LOG_INTERVAL = 10.0
#: The kernel caps this at net.core.somaxconn (4096 on current Linux); a short
#: queue drops SYNs in a burst and senders then wait a second per retry.
_LISTEN_BACKLOG = 4096


@dataclass
class _Held:
    """What the server knows about a connection it serves."""

    peer: str  # admission.peer_key of the address
    accepted_at: float
    #: Over a limit: served only to answer its request with A-ASSOCIATE-RJ (2,3,2).
    refusing: bool
    #: Closed to make room; no longer counted against its peer.
    reclaimed: bool = False
    #: May use the loopback reserve (admission.probe_like: the health probe).
    newcomer_from_loopback: bool = False
    #: Held in the loopback reserve, beyond the connection limits.
    reserved: bool = False
    #: Its association was accepted beyond --max-associations (the loopback reserve).
    beyond_limit: bool = False
    #: Counted in this process's tally (a worker of --workers counts nothing: its
    #: parent does).
    counted: bool = True


class Server:
    """A bound, listening receiver.  ``serve_forever`` runs until ``stop``."""

    def __init__(
        self,
        config: ReceiverConfig,
        limits: Limits = DEFAULT_LIMITS,
        *,
        services: Services | None = None,
        store: InstanceStore | None = None,
        pool: WorkerPool | None = None,
        link: socket.socket | None = None,
    ) -> None:
        """Raises OSError when the port cannot be opened, tls.TLSError when the TLS
        context cannot be built (``services`` None: built here from ``config.tls``).
        ``store`` None: dcmrecv's storage of ``config``.

        ``pool``: the parent of ``--workers``: connections are accepted and admitted
        here and served by the pool's processes.  ``link``: a worker: connections come
        from the parent over this control socket, already admitted.
        """
        self.config = config
        if config.max_associations_per_peer is not None:
            limits = replace(limits, max_per_peer=config.max_associations_per_peer)
        self.limits = limits
        if services is None:
            services = default_services(config)
        self.services = services
        self.store = store if store is not None else InstanceStore(config)
        self._pool = pool
        self._link = ParentLink(link) if link is not None else None
        self._listener: socket.socket | None = None
        self.port: int = config.port
        if config.inetd_connection is None and link is None:
            self._listener = _open_listener(config)
            self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._associations: dict[Association | RemoteConnection, _Held] = {}
        self._admitted = 0
        self._tally = admission.Tally()
        self._refusing = 0
        #: Connections in the loopback reserve, and associations beyond --max-associations.
        self._reserved = 0
        self._beyond_limit = 0
        self._threads: set[threading.Thread] = set()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._wake_closed = False
        self._stopping = False
        #: Set by stop(): when the drain aborts what is left (monotonic time).
        self.shutdown_deadline: float | None = None
        #: Told the shut-down's deadline when stop() is first asked (hook processes).
        self._stop_callbacks: list[Callable[[float], None]] = []
        #: Near a limit a connection gets a short time to send its request (PS3.8 9.1.5).
        self._hurried_config = replace(
            config, acse_timeout=min(config.acse_timeout, limits.hurried_request_timeout)
        )
        #: Until then new connections are hurried: descriptors ran out recently.
        self._short_until = 0.0
        self._log_descriptors = Throttle(LOG_INTERVAL)
        self._log_not_allowed = Throttle(LOG_INTERVAL)
        self._log_over_limit = Throttle(LOG_INTERVAL)
        self._log_reclaim = Throttle(LOG_INTERVAL)

    # --- admission ----------------------------------------------------------------

    def held_by(self, address: str) -> int:
        """Connections the peer of ``address`` holds now (what its limit counts)."""
        with self._lock:
            return self._tally.count(admission.peer_key(address))

    def _admit(self, held: _Held) -> bool:
        with self._lock:
            if self._stopping:
                return False
            accept, beyond = admission.may_associate(
                self._admitted,
                self.config.max_associations,
                held.newcomer_from_loopback,
                self._beyond_limit,
                self.limits,
            )
            if not accept:
                return False
            held.beyond_limit = beyond
            self._beyond_limit += beyond
            self._admitted += 1
            return True

    def _run_association(self, association: Association, connection_id: int = 0) -> None:
        try:
            association.run()
        finally:
            if self._link is not None:
                # The parent counts it out; its copy of the socket closes then.
                with contextlib.suppress(OSError):
                    self._link.send({"t": "closed", "id": connection_id})
            with self._lock:
                self._forget(association, threading.current_thread())
                if self._listener is None and self._link is None and not self._wake_closed:
                    # --inetd: one association, then the process ends.  Under the
                    # lock, so that the wake-up pipe is not closed under the write.
                    self.stop()

    def _forget(
        self, association: Association | RemoteConnection, thread: threading.Thread | None
    ) -> None:
        """Count an ended connection out.  Holds the lock."""
        if association.admitted:
            self._admitted -= 1
        self._forget_held(self._associations.pop(association))
        if thread is not None:
            self._threads.discard(thread)

    def _forget_held(self, held: _Held) -> None:
        if not held.counted:
            return
        self._beyond_limit -= held.beyond_limit
        if held.reserved:
            self._reserved -= 1
        elif held.refusing:
            self._refusing -= 1
        elif not held.reclaimed:
            self._tally.remove(held.peer)

    # --- accept loop ----------------------------------------------------------------

    def serve_forever(self) -> None:
        if self._link is not None:
            self._serve_link(self._link)
            return
        if self._listener is None:
            self._serve_inetd_connection()
            return
        self._recover()
        if self._pool is not None:
            self._pool.start()
        listener = self._listener
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        listening = False
        resume_at: float | None = None  # the listener is paused until then
        try:
            while not self._stopping:
                timeout = None
                if resume_at is not None:
                    timeout = resume_at - time.monotonic()
                    if timeout <= 0:
                        resume_at, timeout = None, None
                # With --workers, connections are taken only while a worker serves.
                wanted = resume_at is None and (self._pool is None or self._pool.ready > 0)
                if wanted != listening:
                    if wanted:
                        selector.register(listener, selectors.EVENT_READ)
                    else:
                        selector.unregister(listener)
                    listening = wanted
                timeout = self._watch_workers(selector, timeout)
                for key, _ in selector.select(timeout):
                    if isinstance(key.data, Worker):
                        self._from_worker(key.data)
                    elif key.fileobj is not listener:
                        os.read(self._wake_r, 512)  # a signal or stop(); loop re-checks
                    elif not self._accept(listener):
                        # Out of descriptors (or kernel memory): the listener stays
                        # readable, so selecting on it again would spin.  Waiting
                        # connections stay in the listen backlog meanwhile.
                        selector.unregister(listener)
                        listening = False
                        resume_at = time.monotonic() + ACCEPT_PAUSE
        finally:
            listener.close()
            if self._pool is not None:
                self._drain_workers(selector)
            selector.close()
        self._drain()

    # --- the parent of --workers (wire/workers.py) --------------------------------------

    def _watch_workers(
        self, selector: selectors.BaseSelector, timeout: float | None
    ) -> float | None:
        """Start the workers that are due, keep the selector on every control socket;
        the select timeout, shortened to the next restart."""
        pool = self._pool
        if pool is None:
            return timeout
        now = time.monotonic()
        next_start = pool.restarts_due(now)
        if pool.changed:
            pool.changed = False
            for key in list(selector.get_map().values()):
                if isinstance(key.data, Worker):
                    selector.unregister(key.fileobj)
            for worker in pool.controls():
                selector.register(worker.control, selectors.EVENT_READ, worker)
        if next_start is not None:
            wait = max(next_start - now, 0.0)
            timeout = wait if timeout is None else min(timeout, wait)
        return timeout

    def _from_worker(self, worker: Worker) -> None:
        """Messages from a worker: slots asked for, connections over, its death."""
        assert self._pool is not None
        while True:
            try:
                received = workers.receive(worker.control)
            except (OSError, ValueError) as exc:
                log.error("worker %d sent what is not a control message: %s", worker.index, exc)
                received = None
            if received is None:
                self._worker_died(worker)
                return
            message, fds = received
            for fd in fds:  # workers send none
                os.close(fd)
            kind = message["t"]
            connection = worker.connections.get(message.get("id", -1))
            if kind == "ready":
                worker.ready = True
            elif kind == "admit":
                admitted = False
                held = self._associations.get(connection) if connection is not None else None
                if connection is not None and held is not None and not connection.refusing:
                    admitted = self._admit(held)
                    connection.admitted = admitted
                with contextlib.suppress(OSError):
                    workers.send(
                        worker.control, {"t": "admit", "id": message["id"], "ok": admitted}
                    )
            elif kind == "closed" and connection is not None:
                del worker.connections[connection.id]
                with self._lock:
                    self._forget(connection, None)
                connection.close()
            try:
                worker.control.setblocking(False)
                more = bool(worker.control.recv(1, socket.MSG_PEEK))
            except (BlockingIOError, OSError):
                more = False
            finally:
                worker.control.setblocking(True)
            if not more:
                return

    def _worker_died(self, worker: Worker) -> None:
        assert self._pool is not None
        for connection in self._pool.died(worker):
            with self._lock:
                if connection in self._associations:
                    self._forget(connection, None)
        # What it was writing stays behind as temporary files (the others' are
        # locked, in use): put it right as a start-up does, off the accept loop.
        threading.Thread(target=self._recover_top, name="recover", daemon=True).start()

    def _recover_top(self) -> None:
        removed = self.store.cleanup_leftovers(top_only=True)
        if removed:
            log.warning("removed %d incomplete file(s) left by the worker that ended", removed)

    def _drain_workers(self, selector: selectors.BaseSelector) -> None:
        """Stop: every worker drains its associations (SIGTERM) and ends; stragglers
        are killed after ``--shutdown-timeout`` and a few seconds more."""
        pool = self._pool
        assert pool is not None
        pool.terminate()
        deadline = time.monotonic() + self.config.shutdown_timeout + 5.0
        while any(True for _ in pool.controls()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("shut-down timeout: killing the workers still running")
                pool.kill()
                remaining = 5.0
                deadline = time.monotonic() + remaining
            self._watch_workers(selector, None)
            for key, _ in selector.select(min(remaining, 1.0)):
                if isinstance(key.data, Worker):
                    self._from_worker(key.data)
                elif key.fileobj == self._wake_r:
                    os.read(self._wake_r, 512)

    # --- a worker of --workers -----------------------------------------------------------

    def _serve_link(self, link: ParentLink) -> None:
        """A worker: serve the connections the parent sends until it says stop (SIGTERM)
        or goes away."""
        selector = selectors.DefaultSelector()
        selector.register(link.sock, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        link.send({"t": "ready"})
        try:
            while not self._stopping:
                for key, _ in selector.select():
                    if key.fileobj is not link.sock:
                        os.read(self._wake_r, 512)
                        continue
                    try:
                        received = workers.receive(link.sock)
                    except (OSError, ValueError):
                        received = None
                    if received is None:
                        log.error("the parent process is gone: stopping")
                        self._stopping = True
                        break
                    self._from_parent(link, *received)
        finally:
            selector.close()
        self._drain()

    def _from_parent(self, link: ParentLink, message: dict[str, object], fds: list[int]) -> None:
        kind = message["t"]
        raw_id = message.get("id", 0)
        connection_id = raw_id if isinstance(raw_id, int) else 0
        peer = message.get("a")
        if kind == "conn" and len(fds) == 1 and isinstance(peer, list) and len(peer) == 2:
            sock = socket.socket(fileno=fds[0])
            address = (str(peer[0]), int(peer[1]))
            self._launch_from_parent(sock, address, connection_id, bool(message.get("h")))
            return
        for fd in fds:
            os.close(fd)
        if kind == "admit":
            link.answered(connection_id, bool(message.get("ok")))
        elif kind == "reclaim":
            with self._lock:
                found = [
                    a for a in self._associations if getattr(a, "link_id", None) == connection_id
                ]
            for association in found:
                threading.Thread(target=association.force_stop, name="reclaim", daemon=True).start()

    def _launch_from_parent(
        self, sock: socket.socket, address: tuple[str, int], connection_id: int, hurried: bool
    ) -> None:
        link = self._link
        assert link is not None
        sock.setblocking(True)
        config = self._hurried_config if hurried else self.config
        association = Association(
            sock,
            address,
            config,
            self.store,
            self.services,
            lambda: link.admit(connection_id),
            shared_socket=True,
        )
        association.link_id = connection_id
        thread = threading.Thread(
            target=self._run_association,
            args=(association, connection_id),
            name=f"association-{address[0]}:{address[1]}",
            daemon=True,
        )
        with self._lock:
            self._associations[association] = _Held(
                address[0], time.monotonic(), refusing=False, counted=False
            )
            self._threads.add(thread)
        thread.start()

    def _recover(self) -> None:
        """Put right what a crash of an earlier run left (storage/recovery.py)."""
        removed = self.store.cleanup_leftovers()
        if removed:
            log.warning("removed %d incomplete file(s) left by an earlier run", removed)

    def _serve_inetd_connection(self) -> None:
        """``--inetd``: serve the connection inetd accepted, then return (storescp.cc
        ends after one association in inetd mode).

        inetd runs a process per connection, so the crash recovery of a listening
        start (a walk of the whole output tree) runs only when the output directory
        itself holds a temporary file: the writer makes them there, so a crash leaves
        them there.  The connection is served in a thread, as an accepted one is, so
        that SIGTERM drains it the same way.
        """
        fd = self.config.inetd_connection
        assert fd is not None
        if _temporary_files_at_top(self.store.root):
            self._recover()
        try:
            sock, address = inherited.connected_socket(fd)
        except OSError as exc:
            # DCMTK: "Receiving Association failed: ... getpeername failed", exit 0.
            log.error("Receiving Association failed: %s", exc.strerror or exc)
            self._close_wake_pipe()
            return
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            self._take(sock, address)
            with self._lock:
                # Empty when --accept-from closed it, or when it has ended already;
                # else the association's stop() or a signal ends the wait.
                running = bool(self._threads)
            while running and not self._stopping:
                for _ in selector.select():
                    os.read(self._wake_r, 512)
        finally:
            selector.close()
        self._drain()

    def _accept(self, listener: socket.socket) -> bool:
        """Accept one connection and apply the admission policy; False: pause accepting."""
        try:
            sock, address = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return True  # nothing there, or the peer gave up before we took it
        except OSError as exc:
            if exc.errno in _NETWORK_ERRORS:
                return True
            self._cannot_accept(exc)
            return False
        return self._take(sock, address)

    def _take(self, sock: socket.socket, address: tuple[str, int]) -> bool:
        """Serve an accepted connection in a thread of its own, unless the admission
        policy closes it; False: no thread could be started (pause accepting)."""
        if sock.family == socket.AF_INET6:
            address = (inherited.unmapped(address[0]), address[1])
        peer = address[0]
        now = time.monotonic()
        if not admission.address_allowed(peer, self.config.accept_from):
            # Closed at once, no thread: silent connections from elsewhere must not
            # take the slots of the senders that are allowed.
            sock.close()
            held_back = self._log_not_allowed.note(now)
            if held_back is not None:
                log.error(
                    "Connecting host %s is not in --accept-from: connection closed%s",
                    peer,
                    _repeated(held_back),
                )
            return True
        with self._lock:
            if self._stopping:
                sock.close()
                return True
            key = admission.peer_key(peer)
            newcomer = admission.probe_like(peer, self._tally.count(key))
            held = self._place(key, peer, now, newcomer)
            if held is None:
                sock.close()
                return True
            sock.setblocking(True)
            hurried = held.refusing or held.reserved or self._hurried(now)
            if self._pool is not None:
                remote = self._pool.dispatch(
                    sock, address[:2], hurried=hurried, refusing=held.refusing
                )
                if remote is None:
                    self._forget_held(held)
                    sock.close()
                    return False
                self._associations[remote] = held
                return True
            config = self._hurried_config if hurried else self.config
            admit = _refuse if held.refusing else functools.partial(self._admit, held)
            association = Association(sock, address[:2], config, self.store, self.services, admit)
            thread = threading.Thread(
                target=self._run_association,
                args=(association,),
                name=f"association-{address[0]}:{address[1]}",
                daemon=True,
            )
            self._associations[association] = held
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": out of memory or tasks
            with self._lock:
                self._forget(association, thread)
            sock.close()
            self._cannot_accept(OSError(errno.EAGAIN, str(exc)))
            return False
        return True

    def _hurried(self, now: float) -> bool:
        return now < self._short_until or self._tally.total >= self.limits.pressure_at

    def _place(self, peer: str, address: str, now: float, newcomer: bool) -> _Held | None:
        """Count a new connection in, making room if need be; None: close it.  Holds the lock."""
        limits = self.limits
        verdict = admission.admit(
            self._tally.count(peer),
            self._tally.total,
            limits,
            now < self._short_until,
            newcomer_from_loopback=newcomer,
            reserved=self._reserved,
        )
        if verdict is Verdict.SERVE_RESERVED:
            self._reserved += 1
            return _Held(peer, now, refusing=False, newcomer_from_loopback=True, reserved=True)
        if verdict in (Verdict.MAKE_ROOM_IN_PEER, Verdict.MAKE_ROOM):
            within = peer if verdict is Verdict.MAKE_ROOM_IN_PEER else None
            if not self._reclaim(now, within, "Connection limit reached"):
                full = (
                    f"{address} holds {self._tally.count(peer)} connections, the limit per peer"
                    if within is not None
                    else f"{self._tally.total} connections are open, the limit"
                )
                if admission.excess(self._refusing, limits) is Excess.CLOSE:
                    self._note_over_limit(now, f"{full}; closing the one from {address}")
                    return None
                self._note_over_limit(
                    now, f"{full}; answering the next request with A-ASSOCIATE-RJ (2,3,2)"
                )
                self._refusing += 1
                return _Held(peer, now, refusing=True)
        self._tally.add(peer)
        return _Held(peer, now, refusing=False, newcomer_from_loopback=newcomer)

    def _reclaim(self, now: float, peer: str | None, why: str) -> bool:
        """Close the quietest connection (of ``peer``, if given) to make room.  Holds the lock."""
        candidates = [
            Candidate(association, held.peer, association.admitted, _quiet(association, held, now))
            for association, held in self._associations.items()
            if not held.refusing
            and not held.reclaimed
            and not held.reserved
            and (peer is None or held.peer == peer)
        ]
        chosen = admission.choose_reclaim(candidates, self.limits, peer)
        if chosen is None:
            return False
        held = self._associations[chosen.key]
        held.reclaimed = True
        self._tally.remove(held.peer)
        held_back = self._log_reclaim.note(now)
        if held_back is not None:
            log.warning(
                "%s: closing the quietest connection, from %s (nothing received for %.0f s)%s",
                why,
                chosen.key.address[0],
                chosen.quiet,
                _repeated(held_back),
            )
        # In a thread of its own: an A-ABORT to a peer that does not read must not
        # hold up the accept loop.
        threading.Thread(target=chosen.key.force_stop, name="reclaim", daemon=True).start()
        return True

    def _note_over_limit(self, now: float, text: str) -> None:
        held_back = self._log_over_limit.note(now)
        if held_back is not None:
            log.warning("Too many connections: %s%s", text, _repeated(held_back))

    def _cannot_accept(self, exc: OSError) -> None:
        now = time.monotonic()
        short = exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EAGAIN)
        with self._lock:
            held = self._tally.total
            if short:
                self._short_until = now + LOG_INTERVAL
                # Descriptors are the limit now: quiet connections make room, as at
                # the connection limit.
                self._reclaim(now, None, "Out of descriptors")
        held_back = self._log_descriptors.note(now)
        if held_back is not None:
            log.error(
                "Cannot accept connections: %s (%d connections open); trying again in %g s%s",
                exc.strerror or exc,
                held,
                ACCEPT_PAUSE,
                _repeated(held_back),
            )

    # --- stopping -------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """Whether a worker process serves (always, without ``--workers``)."""
        return self._pool is None or self._pool.ready > 0

    @property
    def stopping(self) -> bool:
        """True once ``stop`` was asked (readiness: no new associations are taken)."""
        return self._stopping

    def on_stop(self, callback: Callable[[float], None]) -> None:
        """Call ``callback(deadline)`` when stop() is first asked: the monotonic time
        by which the drain aborts what is left (``--shutdown-timeout``).  It must be
        quick and safe in a signal handler."""
        self._stop_callbacks.append(callback)

    def stop(self) -> None:
        """Ask the accept loop to end; safe from any thread and from signal handlers."""
        if self.shutdown_deadline is None:
            self.shutdown_deadline = time.monotonic() + self.config.shutdown_timeout
            for callback in self._stop_callbacks:
                callback(self.shutdown_deadline)
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
        deadline = self.shutdown_deadline or time.monotonic() + self.config.shutdown_timeout
        for thread in self._snapshot_threads():
            thread.join(max(deadline - time.monotonic(), 0))
        with self._lock:
            left = list(self._associations)
        for association in left:
            log.warning("shut-down timeout: aborting association with %s", association.address[0])
            association.force_stop()
        for thread in self._snapshot_threads():
            thread.join(5)
        self._close_wake_pipe()

    def _close_wake_pipe(self) -> None:
        with self._lock:
            self._wake_closed = True
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _snapshot_threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._threads)


#: accept(2), "Error handling": on Linux these are the new connection's pending
#: network errors, to be treated like EAGAIN, not as a failure of the listener.
_NETWORK_ERRORS = frozenset(
    getattr(errno, name)
    for name in (
        "ENETDOWN",
        "EPROTO",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(errno, name)
)


def _refuse() -> bool:
    """The admission callback of a connection over a limit: A-ASSOCIATE-RJ (2,3,2)."""
    return False


def _repeated(held_back: int) -> str:
    return f" (and {held_back} more times in the last {LOG_INTERVAL:g} s)" if held_back else ""


_TCP_INFO = getattr(socket, "TCP_INFO", None)
#: struct tcp_info (linux/tcp.h): eight one-byte fields, then u32 rto, ato, snd_mss,
#: rcv_mss, unacked, sacked, lost, retrans, fackets, last_data_sent, last_ack_sent,
#: last_data_recv (ms since the peer last sent data; since connect if it never did).
_LAST_DATA_RECV = struct.Struct("=I")
_LAST_DATA_RECV_OFFSET = 8 + 11 * 4


def _quiet(association: Association | RemoteConnection, held: _Held, now: float) -> float:
    """Seconds since the peer last sent anything, as the kernel knows it.

    The kernel's figure needs no bookkeeping in the association's hot path; where
    it is not available, the time since accept stands in.
    """
    sock = getattr(association, "sock", None)
    if _TCP_INFO is not None and sock is not None:
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
            return float(_LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_OFFSET)[0]) / 1000
        except (OSError, struct.error):
            pass
    return now - held.accepted_at


def raise_descriptor_limit() -> int:
    """Raise the soft limit of open files to the hard limit; returns the limit in force.

    systemd starts services with a soft limit of 1024, which about 340 associations
    receiving at once use up; the hard limit is the administrator's choice.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit on some kernels
            log.debug("cannot raise the open file limit from %d to %d: %s", soft, hard, exc)
            return soft
        log.debug("open file limit (RLIMIT_NOFILE) raised from %d to %d", soft, hard)
        return hard
    return soft


def _temporary_files_at_top(root: str) -> bool:
    """Does ``root`` itself (not below it) hold a writer's temporary file?"""
    try:
        with os.scandir(root) as entries:
            return any(is_temp_name(entry.name) for entry in entries)
    except OSError:
        return False  # the writer reports an unusable directory when it stores


def _open_listener(config: ReceiverConfig) -> socket.socket:
    """The listening socket systemd passed (socket activation), else our own on the port."""
    activated = inherited.activated_listener(os.environ, os.getpid())
    if activated is None:
        return _listen(config.bind_address, config.port)
    sock, count = activated
    host, port = sock.getsockname()[:2]
    # The port parameter stays required (DCMTK's grammar); the socket systemd bound
    # is what counts, so say so, and louder when the two disagree.
    log.log(
        logging.INFO if port == config.port else logging.WARNING,
        "socket activation: using the listening socket systemd passed (descriptor %d,"
        " %s port %d) instead of binding port %d",
        inherited.SD_LISTEN_FDS_START,
        host or "*",
        port,
        config.port,
    )
    if count > 1:
        log.warning(
            "socket activation: systemd passed %d sockets (LISTEN_FDS); only the first is used",
            count,
        )
    return sock


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


def tls_context(config: ReceiverConfig) -> ssl.SSLContext | None:
    """The server's TLS context from ``config.tls`` (None: plain TCP); raises tls.TLSError."""
    return tls.create_context(config.tls) if config.tls is not None else None


def dialect_bus(config: ReceiverConfig) -> EventBus:
    """An event bus with the command's log dialect (dcmrecv's, or storescp's) subscribed."""
    bus = EventBus()
    dialect = StorescpDialect() if config.storescp is not None else DcmrecvDialect()
    dialect.subscribe(bus)
    return bus


def default_services(config: ReceiverConfig, bus: EventBus | None = None) -> Services:
    """What every association shares, built from ``config``; raises tls.TLSError."""
    return Services(
        bus=bus if bus is not None else dialect_bus(config),
        tls_context=tls_context(config),
        policy=TestPolicy.from_config(config),
    )


def serve(
    config: ReceiverConfig,
    on_listening: Callable[[Server], None] | None = None,
    *,
    services: Services | None = None,
    store: InstanceStore | None = None,
    pool: WorkerPool | None = None,
) -> int:
    """Run the receiver until SIGTERM/SIGINT (``--inetd``: until its one association
    has ended); returns dcmrecv's exit code.

    ``on_listening`` is called with the server once its port is open (the
    operations endpoint's readiness watches it).  Without ``services`` the TLS
    context is built here (DCMTK creates the transport layer last, after the output
    directory is checked); a failure is logged as DCMTK does and returns 71.
    """
    if services is None:
        try:
            services = default_services(config)
        except tls.TLSError as exc:
            log_tls_error(exc)
            return EXITCODE_CANNOT_CREATE_TRANSPORT_LAYER
    services.bus.publish(ListenerStarting())
    descriptors = raise_descriptor_limit()
    if (
        config.inetd_connection is None
        and descriptors != resource.RLIM_INFINITY
        and descriptors < MAX_CONNECTIONS * DESCRIPTORS_PER_ASSOCIATION
    ):
        log.warning(
            "open file limit is %d: about %d associations receiving at once use it up",
            descriptors,
            descriptors // DESCRIPTORS_PER_ASSOCIATION,
        )
    try:
        server = Server(config, services=services, store=store, pool=pool)
    except OSError as exc:
        services.bus.publish(ListenFailed(config.port, str(exc.strerror or exc)))
        return EXITCODE_CANNOT_START_SCP_AND_LISTEN

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: shutting down", signal.Signals(signum).name)
        server.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    if on_listening is not None:
        on_listening(server)
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXITCODE_NO_ERROR


def log_tls_error(exc: tls.TLSError) -> None:
    """DCMTK's lines for a transport layer that cannot be created: details, then fatal."""
    for detail in exc.details:
        log.error("%s", detail)
    log.critical("%s", exc)
