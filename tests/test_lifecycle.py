"""Nothing lost, nothing half-written: instances across aborts, resets, releases and stops.

A reader of the output directory must only ever see complete files under final
names.  The receiver writes each instance to a hidden temporary file
(``.dcmrecv-<16 hex>.part``) and renames it when the last fragment has arrived;
these tests end associations at the worst moment (the temporary file exists,
the data set is half there) and check that nothing is left behind, that a
duplicate arriving twice at once ends as one intact file, and that SIGTERM and
SIGINT let the C-STORE in flight finish before the real ``dcmrecv`` process exits 0.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcmrecv.negotiation.asconfig import Profile
from tests import rawpeer
from tests.conftest import free_port, running_receiver, wait_for_port
from tests.helpers import ROOT, data_set_bytes, everything_under, wait_until
from tests.rawpeer import (
    CT_IMAGE_STORAGE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    VERIFICATION,
    RawPeer,
    associate_rq,
    c_store_rq,
    ct_data_set,
    message,
)

CT_CONTEXT = 1
ECHO_CONTEXT = 3
STORAGE_RQ = associate_rq(
    [
        (CT_CONTEXT, CT_IMAGE_STORAGE, [EXPLICIT_VR_LE]),
        (ECHO_CONTEXT, VERIFICATION, [IMPLICIT_VR_LE]),
    ]
)
#: Large enough that the receiver has moved past its in-memory buffer (256 KiB in
#: dcmrecv.storage.writer) and holds a temporary file on disk when the association dies.
HALF = 1024 * 1024


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="dcmrecv")
    return caplog


def temporaries(directory: Path) -> list[Path]:
    return [p for p in everything_under(directory) if p.name.startswith(".")]


def big_data_set(uid: str, fill: int, size: int = 3 * HALF) -> bytes:
    return ct_data_set(uid, pixel_data=bytes([fill]) * size)


def send_fragments(peer: RawPeer, data: bytes, last: bool, max_pdu: int = 16384) -> None:
    """Data set fragments in P-DATA-TF PDUs; only the final one of the data set is last."""
    chunk = max_pdu - 6
    for start in range(0, len(data), chunk):
        final = last and start + chunk >= len(data)
        fragment = data[start : start + chunk]
        peer.send(
            rawpeer.p_data_tf(rawpeer.pdv(CT_CONTEXT, rawpeer.LAST if final else 0, fragment))
        )


def begin_store(peer: RawPeer, uid: str, data_set: bytes, upto: int) -> None:
    peer.send(message(CT_CONTEXT, True, c_store_rq(CT_IMAGE_STORAGE, uid)))
    send_fragments(peer, data_set[:upto], last=False)


def finish_store(peer: RawPeer, data_set: bytes, start: int) -> int:
    send_fragments(peer, data_set[start:], last=True)
    fields = peer.receive_command()
    return rawpeer.status_of(fields)


# --- the association ends in the middle of a data set --------------------------------------


def test_peer_abort_mid_data_set_leaves_nothing(
    tmp_path: Path, default_profile: Profile, log: pytest.LogCaptureFixture
) -> None:
    data_set = big_data_set("1.2.3.4.200", 0x11)
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        with RawPeer(server.port) as peer:
            peer.associate(STORAGE_RQ)
            begin_store(peer, "1.2.3.4.200", data_set, HALF)
            wait_until(lambda: temporaries(tmp_path) != [], "the temporary file exists")
            peer.send(rawpeer.abort())
            # PS3.8 9.2 (AA-3): an A-ABORT is not answered; the receiver closes.
            peer.expect_closed()
        assert everything_under(tmp_path) == []
        assert "Peer aborted during C-STORE of 1.2.3.4.200; nothing stored" in log.text
        assert rawpeer.pynetdicom_echo(server.port) == 0x0000


@pytest.mark.parametrize("how", ["reset", "close"])
def test_connection_lost_mid_data_set_leaves_nothing(
    how: str, tmp_path: Path, default_profile: Profile, log: pytest.LogCaptureFixture
) -> None:
    data_set = big_data_set("1.2.3.4.201", 0x22)
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        peer = RawPeer(server.port)
        peer.associate(STORAGE_RQ)
        begin_store(peer, "1.2.3.4.201", data_set, HALF)
        wait_until(lambda: temporaries(tmp_path) != [], "the temporary file exists")
        # reset: SO_LINGER 0, the kernel sends RST (a crashed peer); close: a FIN.
        peer.reset() if how == "reset" else peer.close()
        wait_until(lambda: everything_under(tmp_path) == [], "the temporary file is removed")
        assert rawpeer.pynetdicom_echo(server.port) == 0x0000
    assert "Connection to 127.0.0.1" in log.text
    assert everything_under(tmp_path) == []


def test_release_mid_data_set_discards_it(
    tmp_path: Path, default_profile: Profile, log: pytest.LogCaptureFixture
) -> None:
    data_set = big_data_set("1.2.3.4.202", 0x33)
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        with RawPeer(server.port) as peer:
            peer.associate(STORAGE_RQ)
            begin_store(peer, "1.2.3.4.202", data_set, HALF)
            wait_until(lambda: temporaries(tmp_path) != [], "the temporary file exists")
            peer.release()
        assert everything_under(tmp_path) == []
        assert "Association released in the middle of a message; discarding it" in log.text
        assert rawpeer.pynetdicom_echo(server.port) == 0x0000


def test_dimse_timeout_mid_data_set_leaves_nothing(
    tmp_path: Path, default_profile: Profile, log: pytest.LogCaptureFixture
) -> None:
    data_set = big_data_set("1.2.3.4.203", 0x44)
    with running_receiver(
        output_directory=tmp_path, profile=default_profile, dimse_timeout=1.0
    ) as server:
        with RawPeer(server.port) as peer:
            peer.associate(STORAGE_RQ)
            begin_store(peer, "1.2.3.4.203", data_set, HALF)
            stalled = time.monotonic()
            assert peer.expect_abort() == (0, 0)
            assert 0.9 <= time.monotonic() - stalled <= 5.0
        assert everything_under(tmp_path) == []
        assert "DIMSE timeout: no data from 127.0.0.1" in log.text


# --- the same instance twice at once -------------------------------------------------------


def test_same_instance_on_two_associations_at_once_ends_as_one_intact_file(
    tmp_path: Path, default_profile: Profile, log: pytest.LogCaptureFixture
) -> None:
    uid = "1.2.3.4.204"
    # Same SOP instance, different bytes: the survivor must be one of them whole.
    first_set = big_data_set(uid, 0x55)
    second_set = big_data_set(uid, 0x66)
    with (
        running_receiver(output_directory=tmp_path, profile=default_profile) as server,
        RawPeer(server.port) as first,
        RawPeer(server.port) as second,
    ):
        first.associate(STORAGE_RQ)
        second.associate(STORAGE_RQ)
        begin_store(first, uid, first_set, HALF)
        begin_store(second, uid, second_set, HALF)
        wait_until(lambda: len(temporaries(tmp_path)) == 2, "both temporary files exist")
        # Both in flight at once; whichever is renamed second replaces the first.
        first_rest, second_rest = first_set[HALF:], second_set[HALF:]
        send_fragments(first, first_rest, last=True)
        send_fragments(second, second_rest, last=True)
        statuses = [
            rawpeer.status_of(first.receive_command()),
            rawpeer.status_of(second.receive_command()),
        ]
        first.release()
        second.release()
    assert statuses == [0x0000, 0x0000]
    [stored] = everything_under(tmp_path)
    assert stored.name == f"CT.{uid}"
    assert data_set_bytes(stored) in (first_set, second_set)
    assert log.text.count("file already exists, overwriting") == 1


# --- start-up: leftovers of a crashed run -----------------------------------------------------


def test_leftover_temporaries_are_removed_at_start_up(
    tmp_path: Path, default_profile: Profile, log: pytest.LogCaptureFixture
) -> None:
    nested = tmp_path / "data" / "2024" / "01" / "31"
    nested.mkdir(parents=True)
    leftovers = [
        tmp_path / ".dcmrecv-0123456789abcdef.part",
        nested / ".dcmrecv-fedcba9876543210.part",
    ]
    for path in leftovers:
        path.write_bytes(b"half an instance")
    kept = [
        tmp_path / "CT.1.2.3",  # a finished instance
        tmp_path / ".dcmrecv-notours.part",  # not a name the receiver makes
        nested / "notes.part",
    ]
    for path in kept:
        path.write_bytes(b"keep me")
    # A temporary file held (flock) by another live receiver on the same directory.
    busy = tmp_path / ".dcmrecv-00000000deadbeef.part"
    busy.write_bytes(b"being written")
    held = os.open(busy, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
            # Clean-up runs before the first association is served.
            assert rawpeer.pynetdicom_echo(server.port) == 0x0000
            assert sorted(everything_under(tmp_path)) == sorted([*kept, busy])
    finally:
        os.close(held)
    assert "removed 2 incomplete file(s) left by an earlier run" in log.text


# --- SIGTERM / SIGINT to the real dcmrecv process -------------------------------------------------


def _refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def start_dcmrecv(
    tmp_path: Path, output: Path, *options: str
) -> tuple[subprocess.Popen[bytes], int]:
    """The real ``dcmrecv`` (``python -m dcmrecv``), verbose, storing into ``output``."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "dcmrecv",
        "-v",
        *options,
        "-od",
        str(output),
        "-xf",
        str(ROOT / "storescp.cfg"),
        "Default",
        str(port),
    ]
    with (tmp_path / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for_port(port, process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, port


def stop_for_sure(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_lets_the_running_store_finish_then_exits_0(
    signum: signal.Signals, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    uid = "1.2.3.4.205"
    data_set = big_data_set(uid, 0x77, size=20 * HALF)
    process, port = start_dcmrecv(tmp_path, output)
    try:
        with RawPeer(port, timeout=20) as peer:
            peer.associate(STORAGE_RQ)
            begin_store(peer, uid, data_set, 2 * HALF)
            wait_until(lambda: temporaries(output) != [], "the temporary file exists")
            process.send_signal(signum)
            # It stops accepting at once, while our C-STORE is still open.
            wait_until(lambda: _refuses_connections(port), "the listener is closed")
            assert process.poll() is None, "exited before the running C-STORE finished"
            status = finish_store(peer, data_set, 2 * HALF)
            assert status == 0x0000
            # Then the receiver ends the association (A-ABORT) and the process exits.
            answer = peer.receive()
            assert answer is None or answer.pdu_type == rawpeer.A_ABORT
        assert process.wait(timeout=15) == 0
    finally:
        stop_for_sure(process)
    log_text = (tmp_path / "stderr.log").read_text()
    assert f"received {signum.name}: shutting down" in log_text
    [stored] = everything_under(output)
    assert stored.name == f"CT.{uid}"
    assert data_set_bytes(stored) == data_set


def test_store_stalled_past_the_shutdown_timeout_is_aborted_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    data_set = big_data_set("1.2.3.4.206", 0x88)
    process, port = start_dcmrecv(tmp_path, output, "--shutdown-timeout", "1")
    try:
        with RawPeer(port) as peer:
            peer.associate(STORAGE_RQ)
            begin_store(peer, "1.2.3.4.206", data_set, HALF)
            wait_until(lambda: temporaries(output) != [], "the temporary file exists")
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            # We never send the rest: after the shut-down timeout it is aborted.
            peer.expect_abort()
            assert 0.9 <= time.monotonic() - signalled <= 5.0
        assert process.wait(timeout=15) == 0
    finally:
        stop_for_sure(process)
    assert everything_under(output) == []
    assert "shut-down timeout: aborting association" in (tmp_path / "stderr.log").read_text()
