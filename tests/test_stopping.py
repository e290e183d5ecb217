"""Stopping the real ``dcmrecv`` process: it drains, and it always ends.

SIGTERM stops the listener and lets running associations go on until they
release (README, "How it differs": stop), so a sender in the middle of a batch
finishes it and exits 0.  And however a peer behaves (here: one that sends
requests but never reads our responses, so our sends block), the process exits
once ``--shutdown-timeout`` has passed.
"""

from __future__ import annotations

import logging
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info

from dcmrecv.wire import transport
from tests import rawpeer
from tests.conftest import require_tool, running_receiver
from tests.helpers import data_set_bytes, everything_under, wait_until
from tests.test_lifecycle import ECHO_CONTEXT, STORAGE_RQ, start_dcmrecv, stop_for_sure, temporaries


def _read_pdu(sock: socket.socket) -> bytes:
    header = b""
    while len(header) < 6:
        chunk = sock.recv(6 - len(header))
        assert chunk, "connection closed"
        header += chunk
    length = int.from_bytes(header[2:], "big")
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        assert chunk, "connection closed"
        body += chunk
    return header + body


def test_sigterm_ends_the_process_while_a_peer_never_reads_its_responses(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    process, port = start_dcmrecv(tmp_path, output, "--shutdown-timeout", "2")
    peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # A small receive window, so that our responses fill it soon.
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.settimeout(5)
        peer.connect(("127.0.0.1", port))
        peer.sendall(STORAGE_RQ)
        assert _read_pdu(peer)[0] == rawpeer.A_ASSOCIATE_AC
        # C-ECHO requests, never reading a response.  The receiver answers each
        # until its send buffer (megabytes, autotuned) is full; then it is stuck
        # in a send and stops reading, and a send of ours stalls for seconds.
        echoes = rawpeer.message(ECHO_CONTEXT, True, rawpeer.c_echo_rq()) * 64
        peer.settimeout(3)
        stalled = False
        for _ in range(100_000):
            try:
                peer.sendall(echoes)
            except TimeoutError:
                stalled = True
                break
        assert stalled, "the receiver kept reading"
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # shutdown-timeout (2 s) plus a few seconds to end.
        assert process.wait(timeout=2 + 5) == 0
        assert time.monotonic() - signalled < 2 + 5
    finally:
        peer.close()
        stop_for_sure(process)


# --- drain: DCMTK's storescu in the middle of a batch ---------------------------------------


def _ct_file(path: Path, uid: str, pixel_bytes: int, fill: int) -> bytes:
    """A Part 10 CT file (PS3.10 7.1): preamble, DICM, file meta, the rawpeer data set."""
    data_set = rawpeer.ct_data_set(uid, pixel_data=bytes([fill]) * pixel_bytes)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = rawpeer.CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = rawpeer.EXPLICIT_VR_LE
    encoded = DicomBytesIO()
    write_file_meta_info(encoded, meta, enforce_standard=True)
    path.write_bytes(bytes(128) + b"DICM" + encoded.getvalue() + data_set)
    return data_set


def test_sigterm_mid_transfer_lets_storescu_finish_its_batch_and_release(tmp_path: Path) -> None:
    storescu = require_tool("storescu")
    output = tmp_path / "out"
    output.mkdir()
    sources = tmp_path / "in"
    sources.mkdir()
    # One large instance first (the signal arrives while it streams), then more.
    sizes = [96 * 1024 * 1024, 4096, 4096, 4096]
    expected: dict[str, bytes] = {}
    files = []
    for number, size in enumerate(sizes, start=1):
        uid = f"1.2.3.4.700.{number}"
        path = sources / f"{number}.dcm"
        expected[f"CT.{uid}"] = _ct_file(path, uid, size, number)
        files.append(path)
    process, port = start_dcmrecv(tmp_path, output, "--shutdown-timeout", "60")
    sender = subprocess.Popen(
        [storescu, "-aec", "ANY-SCP", "127.0.0.1", str(port), *map(str, files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: temporaries(output) != [], "the large instance is arriving", 30)
        process.send_signal(signal.SIGTERM)
        sender_log = sender.communicate(timeout=60)[0].decode(errors="replace")
        assert sender.returncode == 0, sender_log
        assert "Release Failed" not in sender_log
        assert process.wait(timeout=30) == 0
    finally:
        stop_for_sure(process)
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    stored = {path.name: path for path in everything_under(output)}
    assert sorted(stored) == sorted(expected)
    for name, data_set in expected.items():
        assert data_set_bytes(stored[name]) == data_set, name
    log_text = (tmp_path / "stderr.log").read_text()
    assert "received SIGTERM: shutting down" in log_text
    assert "Received Association Release Request" in log_text


def test_a_peer_that_never_reads_is_cut_off_at_the_send_deadline(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The deadline is 60 s in service; 1 s here (SO_SNDTIMEO takes a struct timeval).
    monkeypatch.setattr(transport, "_SEND_TIMEVAL", struct.pack("ll", 1, 0))
    caplog.set_level(logging.ERROR, logger="dcmrecv")
    with running_receiver() as server:
        peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            peer.settimeout(5)
            peer.connect(("127.0.0.1", server.port))
            peer.sendall(rawpeer.ECHO_RQ_FIXTURE)
            assert _read_pdu(peer)[0] == rawpeer.A_ASSOCIATE_AC
            echoes = rawpeer.message(1, True, rawpeer.c_echo_rq()) * 64
            # Sending until the receiver gives up on us: its send times out, it
            # closes the connection, and our next send fails.
            with pytest.raises(OSError):
                for _ in range(100_000):
                    peer.sendall(echoes)
        finally:
            peer.close()
    assert "has not read our data for" in caplog.text
