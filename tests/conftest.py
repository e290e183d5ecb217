"""Shared test fixtures.

Peers are real programs: DCMTK's command line tools (Debian package ``dcmtk``) and
pynetdicom as SCU.  Under CI (``CI=true``) a missing peer is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """Path of an external tool; skip outside CI, fail under CI when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: install Debian's dcmtk package (apt-get install dcmtk)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
