"""One association we request, driven over a blocking socket: connect, associate,
send requests and take their responses, release.

The receiver calls out to deliver a Storage Commitment report on a new association
(PS3.4 J.3.3): the protocol is :class:`~dcmrecv.wire.requestor.RequestorProtocol`
(sans I/O); this adds the socket and one deadline for the whole exchange, so a peer
that accepts the connection and then says nothing cannot hold the caller.  Plain
TCP: reports to a TLS-only requester are left out (README, "Storage commitment").
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Final

from dcmrecv.wire import dimse, pdu
from dcmrecv.wire import requestor as r
from dcmrecv.wire.protocol import NeedData

#: Bytes read per receive.
_RECEIVE: Final = 65536


class CallFailed(Exception):
    """The association could not be made or did not deliver; ``str()`` says why,
    in words for a log line."""


class CallingAssociation:
    """An association to ``host``:``port`` (use as a context manager: released or
    aborted on the way out)."""

    def __init__(
        self,
        host: str,
        port: int,
        calling_ae_title: str,
        called_ae_title: str,
        contexts: Sequence[r.ProposedContext],
        *,
        roles: Mapping[str, tuple[bool, bool]] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.address = f"{host}:{port}"
        self.protocol = r.RequestorProtocol(
            calling_ae_title, called_ae_title, contexts, roles=roles
        )
        self.deadline = time.monotonic() + timeout
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise CallFailed(f"cannot connect to {self.address}: {exc.strerror or exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._released = False
        try:
            self._send(self.protocol.associate())
            answer = self._next()
        except BaseException:
            self.sock.close()
            raise
        if isinstance(answer, r.Rejected):
            self.sock.close()
            raise CallFailed(
                f"{self.address} rejected the association (result {answer.result},"
                f" source {answer.source}, reason {answer.reason})"
            )
        if not isinstance(answer, r.Accepted):
            self.sock.close()
            raise CallFailed(f"{self.address} did not accept the association")
        #: context ID -> (abstract syntax, transfer syntax) of the accepted contexts.
        self.accepted = answer.accepted
        #: The acceptor's answers to our role selection: SOP class -> (SCU, SCP).
        self.roles = dict(answer.fields.roles)

    def __enter__(self) -> CallingAssociation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if kind is None and not self._released:
                self.release()
            elif not self._released:
                self._send_quietly(self.protocol.abort())
        finally:
            self.sock.close()

    def request(
        self, context_id: int, command: bytes, data_set: bytes | None = None
    ) -> r.MessageReceived:
        """Send one request and return its response (PS3.7 9.1: one at a time)."""
        self._send(self.protocol.send_message(context_id, command, data_set))
        answer = self._next()
        if not isinstance(answer, r.MessageReceived) or not answer.command.is_response:
            raise CallFailed(f"{self.address} sent no response to our request")
        return answer

    def release(self) -> None:
        """A-RELEASE-RQ, then wait for the A-RELEASE-RP (PS3.8 7.2)."""
        self._send(self.protocol.release())
        self._released = True
        if not isinstance(self._next(), r.ReleaseReplied):
            raise CallFailed(f"{self.address} did not confirm the release")

    def _send(self, data: bytes) -> None:
        self.sock.settimeout(self._remaining())
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise CallFailed(f"connection to {self.address} failed: {exc}") from None

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(data)
        except OSError:
            pass

    def _next(self) -> r.RequestorEvent:
        """The peer's next event; CallFailed for an A-ABORT, a broken PDU, the deadline."""
        while True:
            try:
                event = self.protocol.next_event()
            except (pdu.ProtocolError, dimse.CommandError) as exc:
                self._send_quietly(self.protocol.abort())
                self._released = True
                raise CallFailed(f"{self.address} broke the protocol: {exc}") from None
            if isinstance(event, r.AbortedByPeer):
                self._released = True
                raise CallFailed(f"{self.address} aborted the association")
            if not isinstance(event, NeedData):
                return event
            self.sock.settimeout(self._remaining())
            try:
                data = self.sock.recv(_RECEIVE)
            except TimeoutError:
                raise CallFailed(f"{self.address} did not answer in time") from None
            except OSError as exc:
                raise CallFailed(f"connection to {self.address} failed: {exc}") from None
            if not data:
                self._released = True
                raise CallFailed(f"{self.address} closed the connection")
            self.protocol.receive_data(data)

    def _remaining(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise CallFailed(f"{self.address} did not answer in time")
        return remaining
