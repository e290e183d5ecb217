"""The log cannot be forged from the network.

AE titles, the implementation version name and proposed UIDs are the peer's text.
Logged raw, a newline in one starts a line that looks like ours ("I: Stored
received object to file: ...") and an ESC drives the operator's terminal.  They
are logged with control characters escaped; normal values log unchanged.
"""

from __future__ import annotations

import logging

import pytest

from dcmrecv.logs.printable import printable
from tests import rawpeer
from tests.conftest import running_receiver
from tests.rawpeer import RawPeer

FORGED_LINE = "I: Stored received object to file: x"


def test_printable_escapes_controls_and_keeps_printable_text() -> None:
    assert printable("ECHOSCU") == "ECHOSCU"
    assert printable("Müller ^ [1.2.3]") == "Müller ^ [1.2.3]"
    assert printable("\x1b[2J\nI: x\r\t\x7f\x85") == "\\x1b[2J\\nI: x\\r\\t\\x7f\\x85"


def test_peer_text_with_newlines_and_escapes_cannot_forge_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="dcmrecv")
    request = rawpeer.associate_rq(
        [
            (1, rawpeer.VERIFICATION, [rawpeer.IMPLICIT_VR_LE]),
            (3, "1.2\n" + FORGED_LINE, [rawpeer.IMPLICIT_VR_LE]),
        ],
        calling="\x1b[2J\nI: fake",
        called="ANY\nSCP",
        user=rawpeer.user_information(
            # Implementation Version Name sub-item (PS3.7 D.3.3.2), peer's text.
            extra=rawpeer.item(0x55, ("V1\n" + FORGED_LINE).encode())
        ),
    )
    with (
        running_receiver(verbose_pc=True, disable_host_lookup=True) as server,
        RawPeer(server.port) as peer,
    ):
        peer.associate(request)
        peer.release()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "\x1b" not in text
    assert not any(line.startswith(FORGED_LINE) for line in text.splitlines())
    assert not any(line.startswith("I: fake") for line in text.splitlines())
    # What the peer sent is still there to read, escaped.
    assert "Association Received 127.0.0.1: \\x1b[2J\\nI: fake -> ANY\\nSCP" in text
    assert f"Their Implementation Version Name: V1\\n{FORGED_LINE}" in text
    assert f"Abstract Syntax: 1.2\\n{FORGED_LINE}" in text
    assert "Association summary: peer 127.0.0.1" in text
