"""The container health probe (dcmrecv.commands.healthcheck): one real C-ECHO, exit 0 or 1.

The probe is checked the way Docker and Kubernetes use it: against a receiver
that answers (healthy), one that refuses the association or the Verification
context, one that is not there, and one that accepts the connection and never
speaks (each unhealthy, quickly).  Its bytes are checked with independent
decoders (pynetdicom's PDU classes, pydicom's data set reader) and against
DCMTK's own dcmrecv.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom.filereader import read_dataset
from pynetdicom.pdu import A_ASSOCIATE_RQ

from dcmrecv.commands.healthcheck import (
    Unhealthy,
    decode_associate_reply,
    echo_status,
    encode_associate_rq,
    encode_echo_rq,
    run,
)
from dcmrecv.config import DEFAULT_AETITLE
from dcmrecv.exitcodes import EXITCODE_HEALTHY, EXITCODE_UNHEALTHY
from dcmrecv.negotiation.asconfig import load_profile
from dcmrecv.wire import dimse, pdu
from dcmrecv.wire.pdu import decode_associate_rq
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


def test_abort_reason_is_named_from_the_pdu_table() -> None:
    # A-ABORT: type 07, length 4; reserved, reserved, source 2 (provider), reason 2.
    abort = bytes.fromhex("07 00 00000004 00 00 02 02")
    with pytest.raises(Unhealthy, match=r"source 2, reason 2 \(unexpected PDU\)$"):
        decode_associate_reply(abort[0], abort[6:])


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


def test_accepted_association_without_verification_is_unhealthy() -> None:
    # Another receiver may accept the association yet refuse the context (PS3.8
    # 9.3.3.2 result 3, abstract syntax not supported): no C-ECHO can be sent.
    rq = decode_associate_rq(encode_associate_rq("SCP", "PROBE")[6:])
    ac = pdu.encode_associate_ac(
        rq, "SCP", (pdu.PresentationContextAC(1, 3, ""),), 16384, "1.2.3", "TEST"
    )
    with pytest.raises(Unhealthy, match=r"Verification SOP Class not accepted \(result 3\)"):
        decode_associate_reply(ac[0], ac[6:])
    ok = pdu.encode_associate_ac(
        rq,
        "SCP",
        (pdu.PresentationContextAC(1, 0, IMPLICIT_VR_LITTLE_ENDIAN),),
        32768,
        "1.2.3",
        "T",
    )
    assert decode_associate_reply(ok[0], ok[6:]).max_length == 32768


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


def test_associate_rq_as_pynetdicom_reads_it() -> None:
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(encode_associate_rq("CALLED", "CALLING", max_length=32768))
    assert pdu.called_ae_title == "CALLED"
    assert pdu.calling_ae_title == "CALLING"
    assert pdu.application_context_name == "1.2.840.10008.3.1.1.1"
    (context,) = pdu.presentation_context
    assert context.context_id == 1
    assert context.abstract_syntax == VERIFICATION
    assert context.transfer_syntax == [IMPLICIT_VR_LITTLE_ENDIAN]
    user = pdu.user_information
    assert user is not None
    assert user.maximum_length == 32768
    assert user.implementation_class_uid


def test_echo_rq_as_pydicom_reads_it() -> None:
    command = encode_echo_rq(7)
    ds = read_dataset(io.BytesIO(command), is_implicit_VR=True, is_little_endian=True)
    assert ds.CommandGroupLength == len(command) - 12
    assert ds.AffectedSOPClassUID == VERIFICATION
    assert ds.CommandField == 0x0030
    assert ds.MessageID == 7
    assert ds.CommandDataSetType == 0x0101


@pytest.mark.parametrize("status", [0x0000, 0x0110, 0xC000])
def test_echo_status_reads_the_response(status: int) -> None:
    rsp = dimse.encode_response(dimse.C_ECHO_RSP, 1, status, VERIFICATION)
    assert echo_status(rsp, 1) == status


def test_response_to_another_message_is_refused() -> None:
    rsp = dimse.encode_response(dimse.C_ECHO_RSP, 2, 0x0000, VERIFICATION)
    with pytest.raises(Unhealthy, match="answers message 2"):
        echo_status(rsp, 1)


def test_other_response_is_refused() -> None:
    rsp = dimse.encode_response(dimse.C_STORE_RSP, 1, 0x0000, VERIFICATION, "1.2.3")
    with pytest.raises(Unhealthy, match="expected C-ECHO-RSP"):
        echo_status(rsp, 1)
