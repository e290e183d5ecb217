"""A TLS client that asks to renegotiate after the handshake is told so in the log.

OpenSSL 3 refuses client-initiated renegotiation (RFC 5746 section 4.4 lets a
server do so); the client then ends the connection with a handshake_failure
alert.  The handshake had completed, so the log must say what happened instead
of calling it a failed handshake or a connection closed before any request.
``openssl s_client`` renegotiates when it reads ``R`` on its input.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import running_receiver
from tests.test_tls import PKI, server_options
from tests.test_tls import pki as pki  # the module's certificates fixture


def test_refused_client_renegotiation_is_logged_as_such(
    pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    openssl = shutil.which("openssl")
    assert openssl is not None
    options = server_options(pki)
    with (
        caplog.at_level(logging.INFO, logger="dcmrecv"),
        running_receiver(output_directory=tmp_path, tls=options) as srv,
    ):
        client = subprocess.Popen(
            [
                *(openssl, "s_client", "-connect", f"127.0.0.1:{srv.port}", "-tls1_2"),
                *("-cert", "client.crt", "-key", "client.key", "-CAfile", "ca.crt"),
            ],
            cwd=pki.dir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert client.stdin is not None and client.stdout is not None
            # The handshake is complete when s_client prints its session summary.
            for line in client.stdout:
                if line.startswith(b"    Verify return code"):
                    break
            client.stdin.write(b"R\n")
            client.stdin.flush()
            # Input stays open (its end would close the connection): s_client ends
            # when the renegotiation has failed.
            client.wait(timeout=30)
            output = client.stdout.read().decode(errors="replace")
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        assert "RENEGOTIATING" in output
    assert "tried to renegotiate the session, which is refused" in caplog.text
    assert "TLS handshake with" not in caplog.text
    assert "closed before an association request" not in caplog.text
