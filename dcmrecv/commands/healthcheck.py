"""``python -m dcmrecv.commands.healthcheck``: is the receiver answering DICOM? One C-ECHO.

A process check says nothing about a receiver that is alive but stuck, or that
rejects every association; a probe that speaks DICOM does.  This one opens an
association proposing only Verification (PS3.4 annex A) in Implicit VR Little
Endian, sends a C-ECHO-RQ (PS3.7 9.3.5), expects status Success, releases the
association (PS3.8 7.2) and exits 0.  Anything else (refused connection,
A-ASSOCIATE-RJ, A-ABORT, a failure status, silence past the timeout) exits 1
with one line on stdout saying why, which Docker keeps in its health log.

It drives the package's sans-I/O requestor (:mod:`dcmrecv.wire.requestor`, which
also delivers Storage Commitment reports) over a socket loop of its own rather
than :class:`~dcmrecv.wire.calling.CallingAssociation`, whose failures are one
sentence for a log line: the health log names the A-ASSOCIATE-RJ's result, source
and reason in words, the A-ABORT's source and reason, and tells silence from a
refused connection.  Not pynetdicom's AE: a container runtime runs the probe every
few seconds, and one probe cost 190 ms of CPU and 23 MB here against 510 ms and
49 MB with pynetdicom's AE (20 runs each against a running receiver, 2-core test
machine), with no threads; about 80 ms and 17 MB since it imports neither
pydicom, the option rows nor the configuration.

Defaults suit the image: ``127.0.0.1``, the port from ``DCMRECV_PORT`` (else
11112), the called AE title from ``DCMRECV_AETITLE`` (else ``DCMRECV``), so the
probe follows the receiver's configuration when both read the same environment.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence

from dcmrecv.commands.environment import PREFIX, env_port
from dcmrecv.exitcodes import EXITCODE_HEALTHY, EXITCODE_UNHEALTHY
from dcmrecv.status import Status
from dcmrecv.wire import dimse, pdu
from dcmrecv.wire import requestor as r
from dcmrecv.wire.protocol import NeedData

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"

DEFAULT_HOST = "127.0.0.1"
#: The port the image listens on; DICOM's registered port 104 needs privileges.
DEFAULT_PORT = 11112
#: The receiver's default called AE title, DCMTK's (``dcmrecv.config.DEFAULT_AETITLE``).
#: Spelled here rather than imported: the configuration module pulls in the storage
#: model and costs the probe a third of its CPU (tests/test_healthcheck.py and
#: tests/test_startup.py hold the two together and the import out).
DEFAULT_AETITLE = "DCMRECV"
DEFAULT_CALLING_AETITLE = "HEALTHCHECK"
DEFAULT_TIMEOUT = 5.0
#: Our Maximum Length Received (PS3.8 D.1); a C-ECHO-RSP is about 100 bytes.
MAX_RECEIVE_PDU = 16384
#: The one presentation context we propose (odd, PS3.8 9.3.2.2).
CONTEXT_ID = 1
MESSAGE_ID = 1
VERIFICATION = r.ProposedContext(CONTEXT_ID, VERIFICATION_SOP_CLASS, (IMPLICIT_VR_LITTLE_ENDIAN,))


class Unhealthy(Exception):
    """The probe failed; ``str()`` says how, for the health log."""


# --- the exchange ---------------------------------------------------------------------------


class _Exchange:
    """The requestor's protocol over a socket, one deadline for the whole exchange.

    Every way the receiver can fail us becomes :class:`Unhealthy`; ``TimeoutError``
    and ``OSError`` are left to :func:`echo`, which names the address.
    """

    def __init__(self, sock: socket.socket, protocol: r.RequestorProtocol, deadline: float):
        self.sock = sock
        self.protocol = protocol
        self.deadline = deadline

    def _arm(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)

    def send(self, data: bytes) -> None:
        self._arm()
        self.sock.sendall(data)

    def next_event(self, expected: str | None = None) -> r.RequestorEvent:
        """The receiver's next step; ``expected`` names the PDU due, for the message
        when another one arrives."""
        buffer = self.protocol.buffer
        while True:
            try:
                event = self.protocol.next_event()
            except pdu.UnexpectedPDU as exc:
                name = _pdu_name(exc.pdu_type)
                raise Unhealthy(
                    f"expected {expected}, got {name}" if expected else f"unexpected {name}"
                ) from None
            except pdu.ProtocolError as exc:
                raise Unhealthy(f"protocol error from the receiver: {exc}") from None
            except dimse.CommandError as exc:
                raise Unhealthy(f"malformed command set in the response: {exc}") from None
            if isinstance(event, r.AbortedByPeer):
                raise Unhealthy(_abort_text(event))
            if not isinstance(event, NeedData):
                return event
            self._arm()
            count = self.sock.recv_into(buffer.writable())
            if count == 0:
                raise Unhealthy("the receiver closed the connection")
            buffer.advance(count)


def echo(
    host: str,
    port: int,
    called: str = DEFAULT_AETITLE,
    calling: str = DEFAULT_CALLING_AETITLE,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """One Verification round trip; returns on Success, raises :class:`Unhealthy` otherwise.

    ``timeout`` bounds the whole exchange, connection included.
    """
    deadline = time.monotonic() + timeout
    # A C-ECHO-RSP is one short command set: bound what we assemble (PS3.7 9.3.5.2).
    protocol = r.RequestorProtocol(
        calling,
        called,
        (VERIFICATION,),
        max_pdu=MAX_RECEIVE_PDU,
        max_message=dimse.MAX_COMMAND_LENGTH,
    )
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            exchange = _Exchange(sock, protocol, deadline)
            exchange.send(protocol.associate())
            _check_accepted(exchange.next_event())
            request = dimse.encode_request(dimse.C_ECHO_RQ, MESSAGE_ID, VERIFICATION_SOP_CLASS)
            exchange.send(protocol.send_message(CONTEXT_ID, request))
            status = _echo_status(exchange.next_event("P-DATA-TF"))
            if status != Status.SUCCESS:
                raise Unhealthy(f"C-ECHO status 0x{status:04X}")
            exchange.send(protocol.release())
            if not isinstance(exchange.next_event("A-RELEASE-RP"), r.ReleaseReplied):
                raise Unhealthy(f"expected A-RELEASE-RP, got {_pdu_name(pdu.P_DATA_TF)}")
    except TimeoutError:
        raise Unhealthy(f"no answer from {host}:{port} within {timeout:g} s") from None
    except OSError as exc:
        raise Unhealthy(f"cannot talk to {host}:{port}: {exc.strerror or exc}") from None


def _check_accepted(event: r.RequestorEvent) -> None:
    """The answer to our A-ASSOCIATE-RQ must accept the Verification context."""
    if isinstance(event, r.Rejected):
        # The A-ASSOCIATE-RJ reasons of PS3.8 9.3.4, the table the receiver uses too.
        text = pdu.reject_text(event.source, event.reason)
        raise Unhealthy(
            f"association rejected: result {event.result}, source {event.source},"
            f" reason {event.reason} ({text})"
        )
    assert isinstance(event, r.Accepted)  # in Sta5 the protocol gives nothing else
    results = [c.result for c in event.fields.contexts if c.context_id == CONTEXT_ID]
    if not results:
        raise Unhealthy("A-ASSOCIATE-AC has no answer for the Verification context")
    if results[0] != 0:  # PS3.8 9.3.3.2: 0 is acceptance
        raise Unhealthy(f"Verification SOP Class not accepted (result {results[0]})")


def _echo_status(event: r.RequestorEvent) -> int:
    """The status of the C-ECHO-RSP (PS3.7 9.3.5.2), checked to answer our request."""
    assert isinstance(event, r.MessageReceived)  # in Sta6 the protocol gives nothing else
    command = event.command
    if command.command_field != dimse.C_ECHO_RSP:
        raise Unhealthy(f"expected C-ECHO-RSP, got command field 0x{command.command_field:04X}")
    answered = command.message_id_being_responded_to
    if answered != MESSAGE_ID:
        raise Unhealthy(f"C-ECHO-RSP answers message {answered}, not {MESSAGE_ID}")
    return command.status


def _abort_text(abort: r.AbortedByPeer) -> str:
    text = f"association aborted: source {abort.source}, reason {abort.reason}"
    # The reason is significant only from the service provider (PS3.8 9.3.8).
    if abort.source == pdu.AbortSource.SERVICE_PROVIDER:
        try:
            named = pdu.AbortReason(abort.reason)
        except ValueError:
            return text
        text += f" ({named.name.lower().replace('_', ' ').replace('pdu', 'PDU')})"
    return text


def _pdu_name(pdu_type: int) -> str:
    return pdu.PDU_TYPE_NAMES.get(pdu_type, f"PDU type 0x{pdu_type:02X}")


# --- command line ------------------------------------------------------------------------


def _port_number(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(text)
    return value


def _parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dcmrecv.commands.healthcheck",
        description="Send one C-ECHO to a DICOM receiver; exit 0 on Success, 1 otherwise.",
    )
    parser.add_argument(
        "--aet",
        default=DEFAULT_CALLING_AETITLE,
        help=f"calling AE title (default: {DEFAULT_CALLING_AETITLE})",
    )
    parser.add_argument(
        "--aec",
        default=environ.get(PREFIX + "AETITLE") or DEFAULT_AETITLE,
        help=f"called AE title (default: $DCMRECV_AETITLE, else {DEFAULT_AETITLE})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds for the whole exchange (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("host", nargs="?", default=DEFAULT_HOST)
    parser.add_argument(
        "port",
        nargs="?",
        type=_port_number,
        default=None,
        help=f"default: $DCMRECV_PORT, else {DEFAULT_PORT}",
    )
    return parser


def run(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """The command: probe once, print one line, return the exit code."""
    try:
        args = _parser(environ).parse_args(list(argv))
    except SystemExit as exc:
        # argparse exits 2 on a usage error; a health check knows only 0 and 1
        # (Docker reserves 2), and --help is not a failure.
        return EXITCODE_HEALTHY if exc.code == 0 else EXITCODE_UNHEALTHY
    port = args.port
    if port is None:
        text = env_port(environ)
        try:
            port = _port_number(text) if text is not None else DEFAULT_PORT
        except ValueError:
            print(f"unhealthy: DCMRECV_PORT={text} is not a port number")
            return EXITCODE_UNHEALTHY
    target = f"{args.aec}@{args.host}:{port}"
    try:
        echo(args.host, port, args.aec, args.aet, args.timeout)
    except Unhealthy as exc:
        print(f"unhealthy: C-ECHO to {target}: {exc}")
        return EXITCODE_UNHEALTHY
    print(f"healthy: C-ECHO to {target}: Success")
    return EXITCODE_HEALTHY


def main() -> None:
    sys.exit(run(sys.argv[1:], os.environ))


if __name__ == "__main__":
    main()
