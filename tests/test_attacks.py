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


# --- 8. A DCMDICTPATH range that expands without bound --------------------------------


def test_a_dictionary_range_is_refused_before_it_expands(tmp_path: Path) -> None:
    """``(0009-o-FFFF,"EVIL",00-FF) SQ`` cost 15.7 s and 547 MB at start-up: now the
    line is refused with its file and line before anything is expanded."""
    from dcmrecv.commands.dictionaries import read_dictionaries
    from dcmrecv.storage.dictionary import MAX_EXPANDED_TAGS, DictionaryError

    evil = tmp_path / "evil.dic"
    evil.write_text('(0009-o-FFFF,"EVIL",00-FF)\tSQ\tEvil\t1\tPrivateTag\n')
    with pytest.raises(DictionaryError, match=r"evil\.dic:1: the entry stands for 4193792 tags"):
        read_dictionaries(str(evil))
    # The bound counts every line of every file: modest lines cannot add up past it.
    line = '(0009-o-00FF,"WIDE",00-u-FF)\tSQ\tWide\t1\tPrivateTag\n'  # 124 groups x 256
    assert 2 * 124 * 256 <= MAX_EXPANDED_TAGS < 3 * 124 * 256
    wide = tmp_path / "wide.dic"
    wide.write_text(line * 3)
    with pytest.raises(DictionaryError, match=r"wide\.dic:3: the entry stands for 31744 tags"):
        read_dictionaries(str(wide))
    one = tmp_path / "one.dic"
    one.write_text(line)
    with pytest.raises(DictionaryError, match=r"one\.dic:1: "):
        read_dictionaries(f"{one}:{one}:{one}")
    assert len(read_dictionaries(f"{one}:{one}")) == 2


def test_dcmrecv_refuses_the_expanding_dictionary_at_once(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    evil = tmp_path / "evil.dic"
    evil.write_text('(0009-o-FFFF,"EVIL",00-FF)\tSQ\tEvil\t1\tPrivateTag\n')
    done = subprocess.run(
        [sys.executable, "-m", "dcmrecv", "104"],
        env={**os.environ, "DCMDICTPATH": str(evil)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert f"error: cannot load data dictionary: {evil}:1: the entry stands for" in done.stderr
