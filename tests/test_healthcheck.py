"""The container health probe (dcmrecv.commands.healthcheck): one real C-ECHO, exit 0 or 1.

The probe is checked the way Docker and Kubernetes use it: against a receiver
that answers (healthy), one that refuses the association or the Verification
context, one that is not there, and one that accepts the connection and never
speaks (each unhealthy, quickly).  Its bytes are checked with independent
decoders (pynetdicom's PDU classes, pydicom's data set reader) and against
DCMTK's own dcmrecv; the answers our receiver never gives (a failure status, an
A-ABORT, a context refused in an A-ASSOCIATE-AC, malformed responses) come from a
scripted receiver that writes the raw peer's bytes (tests/rawpeer.py).
"""

from __future__ import annotations

import io
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom.filereader import read_dataset
from pynetdicom.pdu import A_ASSOCIATE_RQ

from dcmrecv.commands.healthcheck import DEFAULT_AETITLE as PROBE_DEFAULT_AETITLE
from dcmrecv.commands.healthcheck import run
from dcmrecv.config import DEFAULT_AETITLE
from dcmrecv.exitcodes import EXITCODE_HEALTHY, EXITCODE_UNHEALTHY
from dcmrecv.negotiation.asconfig import load_profile
from tests import rawpeer
from tests.conftest import free_port, require_tool, running_receiver, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"


def probe(
    capsys: pytest.CaptureFixture[str], *args: object, environ: dict[str, str] | None = None
) -> tuple[int, str]:
    code = run([str(a) for a in args], environ or {})
    return code, capsys.readouterr().out


# --- against our receiver ------------------------------------------------------------------


def test_answering_receiver_is_healthy(capsys: pytest.CaptureFixture[str]) -> None:
    with running_receiver() as server:
        code, out = probe(capsys, "127.0.0.1", server.port)
    assert code == EXITCODE_HEALTHY
    assert out == f"healthy: C-ECHO to {DEFAULT_AETITLE}@127.0.0.1:{server.port}: Success\n"


def test_port_and_called_ae_title_follow_the_receivers_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The image sets DCMRECV_PORT / DCMRECV_AETITLE for the receiver; the probe, run
    # in the same container, reads them too and so needs no arguments.
    with running_receiver(aetitle="PACS", aetitle_explicit=True, use_called_aetitle=False) as srv:
        environ = {"DCMRECV_PORT": str(srv.port), "DCMRECV_AETITLE": "PACS"}
        code, out = probe(capsys, environ=environ)
    assert code == EXITCODE_HEALTHY, out


def test_rejected_association_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    # With -aet PACS the receiver refuses other called AE titles: A-ASSOCIATE-RJ (1,1,7).
    with running_receiver(aetitle="PACS", aetitle_explicit=True, use_called_aetitle=False) as srv:
        code, out = probe(capsys, "--aec", "ELSEWHERE", "127.0.0.1", srv.port)
    assert code == EXITCODE_UNHEALTHY
    assert "association rejected: result 1, source 1, reason 7" in out
    # The reason in words comes from the A-ASSOCIATE-RJ table the receiver uses (PS3.8 9.3.4).
    assert "(called AE title not recognized)" in out


def test_abort_reason_is_named_from_the_pdu_table(capsys: pytest.CaptureFixture[str]) -> None:
    # A-ABORT from the service provider (source 2), reason 2: unexpected PDU (PS3.8 9.3.8).
    def script(peer: ScriptedReceiver) -> None:
        peer.expect(rawpeer.A_ASSOCIATE_RQ)
        peer.send(rawpeer.abort(source=2, reason=2))

    code, out = probe_against(capsys, script)
    assert code == EXITCODE_UNHEALTHY
    assert out.endswith(": association aborted: source 2, reason 2 (unexpected PDU)\n"), out


def test_receiver_refusing_verification_is_unhealthy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "ct.cfg"
    cfg.write_text(
        "[[TransferSyntaxes]]\n[Implicit]\nTransferSyntax1 = LittleEndianImplicit\n"
        "[[PresentationContexts]]\n[CT]\nPresentationContext1 = CTImageStorage\\Implicit\n"
        "[[Profiles]]\n[CTOnly]\nPresentationContexts = CT\n"
    )
    with running_receiver(profile=load_profile(cfg, "CTOnly"), output_directory=tmp_path) as srv:
        code, out = probe(capsys, "127.0.0.1", srv.port)
    # Like DCMTK, our receiver rejects an association in which no context is accepted.
    assert code == EXITCODE_UNHEALTHY
    assert "association rejected" in out


def test_accepted_association_without_verification_is_unhealthy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Another receiver may accept the association yet refuse the context (PS3.8
    # 9.3.3.2 result 3, abstract syntax not supported): no C-ECHO can be sent.
    def script(peer: ScriptedReceiver) -> None:
        peer.expect(rawpeer.A_ASSOCIATE_RQ)
        peer.send(associate_ac(result=3))
        peer.expect_closed()

    code, out = probe_against(capsys, script)
    assert code == EXITCODE_UNHEALTHY
    assert out.endswith(": Verification SOP Class not accepted (result 3)\n"), out


def test_c_echo_rq_fits_the_receivers_maximum_length(capsys: pytest.CaptureFixture[str]) -> None:
    # A receiver that takes P-DATA-TF PDUs of at most 32 bytes (PS3.8 D.1) gets the
    # C-ECHO-RQ command set in fragments within that limit (PS3.8 E.2).
    peer = EchoingReceiver(max_length=32)
    code, out = probe_against(capsys, peer)
    assert code == EXITCODE_HEALTHY, out
    assert len(peer.fragments) > 1
    assert max(peer.fragments) <= 32


def test_nothing_listening_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, out = probe(capsys, "127.0.0.1", port)
    assert code == EXITCODE_UNHEALTHY
    assert f"cannot talk to 127.0.0.1:{port}" in out


def test_silent_peer_is_unhealthy_within_the_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    # The kernel completes the TCP handshake for a listening socket nobody serves: a
    # receiver that is stuck.  A process check would call it healthy.
    with socket.socket() as stuck:
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(1)
        port = stuck.getsockname()[1]
        started = time.monotonic()
        code, out = probe(capsys, "--timeout", "0.5", "127.0.0.1", port)
        elapsed = time.monotonic() - started
    assert code == EXITCODE_UNHEALTHY
    assert "no answer from 127.0.0.1" in out
    assert elapsed < 5, f"gave up after {elapsed:.1f} s; --timeout 0.5"


@pytest.mark.parametrize(
    "args", [["--no-such-option"], ["127.0.0.1", "not-a-port"], ["127.0.0.1", "70000"]]
)
def test_usage_error_exits_1_not_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # Docker reserves health check exit code 2; a broken probe is plainly unhealthy.
    assert run(args, {}) == EXITCODE_UNHEALTHY


def test_bad_port_in_environment_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = probe(capsys, environ={"DCMRECV_PORT": "eleven"})
    assert code == EXITCODE_UNHEALTHY
    assert "DCMRECV_PORT=eleven" in out


def test_module_runs_as_docker_runs_it() -> None:
    with running_receiver() as server:
        result = subprocess.run(
            [sys.executable, "-m", "dcmrecv.commands.healthcheck", "127.0.0.1", str(server.port)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


# --- against DCMTK's receiver ---------------------------------------------------------------


@pytest.mark.dcmtk
def test_dcmtk_dcmrecv_answers_the_probe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dcmrecv = require_tool("dcmrecv")
    port = free_port()
    process = subprocess.Popen(
        [dcmrecv, "-v", "-od", str(tmp_path), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process)
        code, out = probe(capsys, "--aet", "PROBE", "127.0.0.1", port)
    finally:
        process.terminate()
        log = process.communicate(timeout=30)[0].decode()
    assert code == EXITCODE_HEALTHY, out
    assert "Received C-ECHO Request (MsgID 1)" in log
    assert "Received Association Release Request" in log


# --- the bytes, read by independent decoders ---------------------------------------------------


def test_associate_rq_as_pynetdicom_reads_it(capsys: pytest.CaptureFixture[str]) -> None:
    peer = EchoingReceiver()
    code, out = probe_against(capsys, peer, "--aec", "CALLED", "--aet", "CALLING")
    assert code == EXITCODE_HEALTHY, out
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(peer.associate_rq)
    assert pdu.called_ae_title == "CALLED"
    assert pdu.calling_ae_title == "CALLING"
    assert pdu.application_context_name == "1.2.840.10008.3.1.1.1"
    (context,) = pdu.presentation_context
    assert context.context_id == 1
    assert context.abstract_syntax == VERIFICATION
    assert context.transfer_syntax == [IMPLICIT_VR_LITTLE_ENDIAN]
    user = pdu.user_information
    assert user is not None
    assert user.maximum_length == 16384
    assert user.implementation_class_uid


def test_echo_rq_as_pydicom_reads_it(capsys: pytest.CaptureFixture[str]) -> None:
    peer = EchoingReceiver()
    code, out = probe_against(capsys, peer)
    assert code == EXITCODE_HEALTHY, out
    command = peer.command
    ds = read_dataset(io.BytesIO(command), is_implicit_VR=True, is_little_endian=True)
    assert ds.CommandGroupLength == len(command) - 12
    assert ds.AffectedSOPClassUID == VERIFICATION
    assert ds.CommandField == 0x0030
    assert ds.MessageID == 1
    assert ds.CommandDataSetType == 0x0101


@pytest.mark.parametrize("status", [0x0110, 0xC000])
def test_failure_status_is_unhealthy(status: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = probe_against(capsys, EchoingReceiver(echo_rsp(status=status)))
    assert code == EXITCODE_UNHEALTHY
    assert out.endswith(f": C-ECHO status 0x{status:04X}\n"), out


def test_response_to_another_message_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = probe_against(capsys, EchoingReceiver(echo_rsp(message_id=2)))
    assert code == EXITCODE_UNHEALTHY
    assert "C-ECHO-RSP answers message 2, not 1" in out


def test_other_response_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = probe_against(capsys, EchoingReceiver(echo_rsp(command_field=rawpeer.C_STORE_RSP)))
    assert code == EXITCODE_UNHEALTHY
    assert "expected C-ECHO-RSP, got command field 0x8001" in out


def test_malformed_response_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    # A C-ECHO-RSP without its Status (0000,0900), PS3.7 9.3.5.2.
    without_status = rawpeer.command_set(
        rawpeer.element(0x0002, rawpeer.ui(VERIFICATION)),
        rawpeer.element(0x0100, rawpeer.us(rawpeer.C_ECHO_RSP)),
        rawpeer.element(0x0120, rawpeer.us(1)),
        rawpeer.element(0x0800, rawpeer.us(rawpeer.NO_DATA_SET)),
    )
    code, out = probe_against(capsys, EchoingReceiver(without_status))
    assert code == EXITCODE_UNHEALTHY
    assert "malformed command set in the response" in out
    assert "(0000,0900)" in out


def test_receiver_closing_mid_association_is_unhealthy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def script(peer: ScriptedReceiver) -> None:
        peer.expect(rawpeer.A_ASSOCIATE_RQ)
        peer.send(associate_ac())
        peer.expect(rawpeer.P_DATA_TF)

    code, out = probe_against(capsys, script)
    assert code == EXITCODE_UNHEALTHY
    assert out.endswith(": the receiver closed the connection\n"), out


def test_release_answered_otherwise_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    # An A-RELEASE-RQ where the A-RELEASE-RP is due (PS3.8 9.2): the receiver did not
    # confirm the release.
    code, out = probe_against(capsys, EchoingReceiver(release_answer=rawpeer.RELEASE_RQ))
    assert code == EXITCODE_UNHEALTHY
    assert out.endswith(": expected A-RELEASE-RP, got A-RELEASE-RQ\n"), out


def test_probe_default_called_ae_title_is_the_receivers() -> None:
    # The probe spells the default rather than import the configuration (start-up cost).
    assert PROBE_DEFAULT_AETITLE == DEFAULT_AETITLE


# --- a scripted receiver: the raw peer's bytes, on the accepting side -------------------------


class ScriptedReceiver:
    """The accepting end of the probe's one connection, read and written as raw PDUs."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self._pending = b""

    def send(self, data: bytes) -> None:
        self.connection.sendall(data)

    def _read(self, count: int) -> bytes | None:
        while len(self._pending) < count:
            chunk = self.connection.recv(65536)
            if not chunk:
                return None
            self._pending += chunk
        data, self._pending = self._pending[:count], self._pending[count:]
        return data

    def receive(self) -> tuple[int, bytes] | None:
        """(type, body) of the probe's next PDU, None once it closed the connection."""
        header = self._read(6)
        if header is None:
            return None
        pdu_type, length = struct.unpack(">BxL", header)
        body = self._read(length)
        return None if body is None else (pdu_type, body)

    def expect(self, pdu_type: int) -> bytes:
        pdu = self.receive()
        assert pdu is not None, f"connection closed, expected {rawpeer.PDU_NAMES[pdu_type]}"
        assert pdu[0] == pdu_type, f"expected {rawpeer.PDU_NAMES[pdu_type]}, got {pdu[0]:#x}"
        return pdu[1]

    def expect_closed(self) -> None:
        assert self.receive() is None


Script = Callable[[ScriptedReceiver], None]


def associate_ac(result: int = 0, max_length: int = 16384) -> bytes:
    """An A-ASSOCIATE-AC (PS3.8 9.3.3) answering context 1 with ``result``."""
    fixed = struct.pack(">H", 1) + bytes(2) + bytes(32) + bytes(32)  # titles not significant
    context = rawpeer.item(
        0x21, bytes((1, 0, result, 0)) + rawpeer.item(0x40, IMPLICIT_VR_LITTLE_ENDIAN.encode())
    )
    items = (
        rawpeer.item(0x10, rawpeer.APPLICATION_CONTEXT.encode())
        + context
        + rawpeer.user_information(max_length)
    )
    return rawpeer.pdu(rawpeer.A_ASSOCIATE_AC, fixed + items)


def echo_rsp(
    status: int = rawpeer.SUCCESS, message_id: int = 1, command_field: int = rawpeer.C_ECHO_RSP
) -> bytes:
    """A C-ECHO-RSP command set (PS3.7 9.3.5.2)."""
    return rawpeer.command_set(
        rawpeer.element(0x0002, rawpeer.ui(VERIFICATION)),
        rawpeer.element(0x0100, rawpeer.us(command_field)),
        rawpeer.element(0x0120, rawpeer.us(message_id)),
        rawpeer.element(0x0800, rawpeer.us(rawpeer.NO_DATA_SET)),
        rawpeer.element(0x0900, rawpeer.us(status)),
    )


class EchoingReceiver:
    """A script for a receiver that accepts, answers the C-ECHO-RQ with ``response`` and the
    A-RELEASE-RQ with ``release_answer``; keeps what the probe sent."""

    def __init__(
        self,
        response: bytes | None = None,
        max_length: int = 16384,
        release_answer: bytes = rawpeer.pdu(rawpeer.A_RELEASE_RP, bytes(4)),
    ) -> None:
        self.response = echo_rsp() if response is None else response
        self.max_length = max_length
        self.release_answer = release_answer
        self.associate_rq = b""
        self.command = b""
        #: The length of each P-DATA-TF PDU's variable field (PS3.8 D.1 bounds it).
        self.fragments: list[int] = []

    def __call__(self, peer: ScriptedReceiver) -> None:
        body = peer.expect(rawpeer.A_ASSOCIATE_RQ)
        self.associate_rq = rawpeer.pdu(rawpeer.A_ASSOCIATE_RQ, body)
        peer.send(associate_ac(max_length=self.max_length))
        last = False
        while not last:
            body = peer.expect(rawpeer.P_DATA_TF)
            self.fragments.append(len(body))
            offset = 0
            while offset < len(body):
                length, _context, control = struct.unpack_from(">LBB", body, offset)
                assert control & rawpeer.COMMAND, "a data set PDV in a C-ECHO-RQ"
                self.command += body[offset + 6 : offset + 4 + length]
                last = bool(control & rawpeer.LAST)
                offset += 4 + length
        peer.send(rawpeer.message(1, True, self.response))
        # A probe that did not like the response just closes the connection.
        after = peer.receive()
        if after is not None:
            assert after[0] == rawpeer.A_RELEASE_RQ, f"expected A-RELEASE-RQ, got {after[0]:#x}"
            peer.send(self.release_answer)


@contextmanager
def scripted_receiver(script: Script) -> Iterator[int]:
    """A loopback port whose one connection ``script`` serves; its failures are re-raised."""
    failures: list[BaseException] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)

        def serve() -> None:
            try:
                connection, _ = listener.accept()
                with connection:
                    connection.settimeout(30)
                    script(ScriptedReceiver(connection))
            except BaseException as exc:  # handed to the test below
                failures.append(exc)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        thread.join(30)
    if failures:
        raise failures[0]


def probe_against(
    capsys: pytest.CaptureFixture[str], script: Script, *args: str
) -> tuple[int, str]:
    with scripted_receiver(script) as port:
        return probe(capsys, *args, "127.0.0.1", port)
