"""Who may send: AE titles (``-aet``/``-uca``) and the allow-lists of calling AE titles
(``--accept-calling``) and peer networks (``--accept-from``, checked at connect).

Rejections carry the A-ASSOCIATE-RJ reasons of PS3.8 9.3.4: (1, 1, 3) calling AE
title not recognized, (1, 1, 7) called AE title not recognized.  A peer outside
``--accept-from`` is closed as soon as it connects, before it sends a request.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification

from dcmrecv.commands.argv import ArgvError
from dcmrecv.commands.dcmrecv import evaluate, parse
from dcmrecv.commands.options import DCMRECV_TABLE
from dcmrecv.commands.values import parse_aetitle_list
from tests.conftest import (
    free_port,
    rejection_seen,
    require_tool,
    running_receiver,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parent.parent
NEW_OPTIONS = ("--accept-calling", "--accept-calling-file", "--accept-from")


def associate(port: int, calling: str = "SENDER", called: str = "ANY-SCP") -> Association:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title=called)


def rejection(port: int, calling: str = "SENDER", called: str = "ANY-SCP") -> Any:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    return rejection_seen(ae, port, ae_title=called)


def echo_works(assoc: Association) -> bool:
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status.Status == 0)


# --- the engine with the config fields set directly ------------------------------------------


def test_calling_ae_title_outside_the_list_is_rejected_1_1_3(tmp_path: Path) -> None:
    allowed = frozenset({"MODALITY1", "WS 2"})
    with running_receiver(output_directory=tmp_path, accept_calling=allowed) as server:
        assert echo_works(associate(server.port, "MODALITY1"))
        assert echo_works(associate(server.port, "WS 2"))
        assert rejection(server.port, "INTRUDER") == (1, 1, 3)
        # Case matters in AE titles (PS3.5 6.2): "modality1" is another title.
        assert rejection(server.port, "modality1") == (1, 1, 3)


def test_peer_outside_the_networks_is_closed_at_once(tmp_path: Path) -> None:
    # Checked right after accept, before any request: a disallowed peer's silent
    # connections must not take the slots of allowed senders (tests/test_overload.py).
    elsewhere = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
    with running_receiver(output_directory=tmp_path, accept_from=elsewhere) as server:
        refused = associate(server.port)
        assert not refused.is_established and not refused.is_rejected
    loopback = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.0/8"))
    with running_receiver(output_directory=tmp_path, accept_from=loopback) as server:
        assert echo_works(associate(server.port))


def test_both_lists_apply_together(tmp_path: Path) -> None:
    with running_receiver(
        output_directory=tmp_path,
        accept_from=(ipaddress.ip_network("127.0.0.1/32"),),
        accept_calling=frozenset({"GOOD"}),
    ) as server:
        assert echo_works(associate(server.port, "GOOD"))
        assert rejection(server.port, "BAD") == (1, 1, 3)


# --- the command line ----------------------------------------------------------------------


def test_access_options_reach_the_config() -> None:
    cmdline = parse(
        [
            *("--accept-calling", "  CT1 ", "--accept-calling", "MR2"),
            *("--accept-from", "127.0.0.1", "--accept-from", "10.1.2.3/8"),
            *("--accept-from", "fd00::/8", "104"),
        ]
    )
    config = evaluate(cmdline)
    assert config.accept_calling == frozenset({"CT1", "MR2"})
    assert config.accept_from == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )


def test_without_access_options_everyone_may_send() -> None:
    config = evaluate(parse(["104"]))
    assert config.accept_calling is None
    assert config.accept_from is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--accept-from", "10.0.0.300"], "Invalid value for option --accept-from (10.0.0.300)"),
        (["--accept-from", "host.example"], "Invalid value for option --accept-from"),
        (["--accept-calling", "A" * 17], "longer than 16 characters"),
        (["--accept-calling", "   "], "empty AE title"),
        (["--accept-calling", "A\\B"], "backslash"),
    ],
)
def test_bad_access_values_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(ArgvError) as excinfo:
        evaluate(parse([*args, "104"]))
    assert message in str(excinfo.value)


def test_aetitle_file_format() -> None:
    text = "# modalities\nCT1\n  MR2  \n\n# workstations\r\nWS 3\r\n"
    assert parse_aetitle_list(text, "titles.txt") == frozenset({"CT1", "MR2", "WS 3"})
    with pytest.raises(ArgvError) as excinfo:
        parse_aetitle_list("CT1\nTHIS-TITLE-IS-TOO-LONG\n", "titles.txt")
    assert "'titles.txt' line 2" in str(excinfo.value)


@pytest.mark.dcmtk
def test_new_options_do_not_collide_with_dcmtk_options() -> None:
    for tool in ("dcmrecv", "storescp"):
        help_text = subprocess.run(
            [require_tool(tool), "--help"], capture_output=True, text=True, check=True
        ).stdout
        spellings = set(re.findall(r"(?<![\w-])([-+][-\w]+)", help_text))
        assert "--enable-tls" in spellings  # the help text was read
        for option in NEW_OPTIONS:
            assert option not in spellings, (tool, option)
            spec = DCMRECV_TABLE.find(option)
            assert spec is not None and spec.short is None


# --- the real command with DCMTK's echoscu ---------------------------------------------------


@pytest.fixture
def command(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start ``python -m dcmrecv ARGS PORT``; returns the port.  Stopped with SIGTERM."""
    processes: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

    def start(*args: str) -> int:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "dcmrecv", *args, "-od", str(tmp_path), str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        wait_for_port(port, process)
        return port

    try:
        yield start
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                assert process.wait(30) == 0
            finally:
                if process.poll() is None:
                    process.kill()


def echoscu(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("echoscu"), *args, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.dcmtk
def test_explicit_aetitle_checks_the_called_title(command: Callable[..., int]) -> None:
    # DCMTK 3.6.8 and later: with -aet, a request to another called AE title is
    # rejected (1, 1, 7); DCMTK 3.6.7 accepted any called AE title.
    port = command("-aet", "STORE1")
    assert echoscu(port, "-aec", "STORE1").returncode == 0
    wrong = echoscu(port, "-aec", "OTHER")
    assert wrong.returncode != 0
    assert "Called AE Title Not Recognized" in wrong.stderr


@pytest.mark.dcmtk
def test_default_answers_any_called_title(command: Callable[..., int]) -> None:
    port = command()
    assert echoscu(port, "-aec", "WHATEVER").returncode == 0


@pytest.mark.dcmtk
def test_command_allow_lists_with_echoscu(command: Callable[..., int], tmp_path: Path) -> None:
    titles = tmp_path / "titles.txt"
    titles.write_text("# allowed senders\nECHO1\n")
    port = command("--accept-calling-file", str(titles), "--accept-calling", "ECHO2")
    assert echoscu(port, "-aet", "ECHO1").returncode == 0
    assert echoscu(port, "-aet", "ECHO2").returncode == 0
    refused = echoscu(port, "-aet", "ECHO3")
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stderr
    blocked = command("--accept-from", "192.0.2.0/24")
    refused = echoscu(blocked, "-aet", "ECHO1")
    assert refused.returncode != 0
    # Closed at accept, before the request is read: no A-ASSOCIATE-RJ to report.
    assert "Association Request Failed" in refused.stderr
