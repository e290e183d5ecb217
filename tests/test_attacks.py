"""Issue 22: the attacks of the third reliability round, each reproduced against the
fixed receiver (README, "Reliability: attacks tried").

One test (at least) per numbered case of the issue; each failed before its fix.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dcmrecv.negotiation.asconfig import Profile, load_profile
from tests import rawpeer
from tests.conftest import running_receiver
from tests.rawpeer import (
    CT_IMAGE_STORAGE,
    EXPLICIT_VR_LE,
    RawPeer,
    associate_rq,
    c_store_rq,
    ct_data_set,
    message,
)

ROOT = Path(__file__).resolve().parent.parent
CT_CONTEXT = 1


@pytest.fixture(scope="module")
def default_profile() -> Profile:
    return load_profile(ROOT / "storescp.cfg", "Default")


def raw_store(port: int, request_uid: str | bytes, data_set: bytes) -> int:
    """One C-STORE from a raw peer; the response's status."""
    with RawPeer(port) as peer:
        accepted = peer.associate(
            associate_rq([(CT_CONTEXT, CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])], calling="HOSTILE")
        )
        assert accepted == {CT_CONTEXT: EXPLICIT_VR_LE}
        peer.send(message(CT_CONTEXT, True, c_store_rq(CT_IMAGE_STORAGE, request_uid)))
        peer.send(message(CT_CONTEXT, False, data_set))
        return rawpeer.status_of(peer.receive_command())


# --- 8. A SOP Instance UID that is not text -----------------------------------------------


def test_a_uid_with_bytes_that_are_not_text_takes_the_invalid_uid_path(
    tmp_path: Path, default_profile: Profile, caplog: pytest.LogCaptureFixture
) -> None:
    """Identical bytes in command and data set are the same UID: stored under a safe,
    distinct name with the invalid-UID warning (as DCMTK stores it), not A900."""
    caplog.set_level(logging.WARNING, logger="dcmrecv")
    uid = b"1.2.3.70.3\xff\xfe"
    with running_receiver(output_directory=tmp_path, profile=default_profile) as server:
        status = raw_store(server.port, uid, ct_data_set(uid))
    assert status == 0x0000
    (stored,) = tmp_path.iterdir()
    assert stored.name.startswith("CT.1.2.3.70.3__")
    assert stored.read_bytes().count(uid) == 2  # file meta (0002,0003) and data set
    assert "is not a valid UID" in caplog.text
