"""Generated tables stay in step with their sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydicom.datadict import dictionary_VR

from dcmrecv.storage._sq_tags import SQ_REPEATERS, SQ_TAGS

ROOT = Path(__file__).resolve().parent.parent


def test_sq_table_matches_the_installed_pydicom_dictionary() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_sq_tags.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_bundled_profiles_match_the_uid_table() -> None:
    # storescp.cfg and profiles/*.cfg, from tools/gen_profiles.py over the UID table.
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_profiles.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sq_table_knows_common_sequences_and_not_other_vrs() -> None:
    referenced_image_sequence = 0x00081140
    patient_name = 0x00100010
    assert referenced_image_sequence in SQ_TAGS
    assert patient_name not in SQ_TAGS
    assert all(dictionary_VR(tag) == "SQ" for tag in SQ_TAGS)


def test_repeating_group_sequences_are_matched_by_mask() -> None:
    # (50xx,2600) Curve Referenced Overlay Sequence (retired), in group 5002.
    assert any(0x50022600 & mask == value for mask, value in SQ_REPEATERS)
