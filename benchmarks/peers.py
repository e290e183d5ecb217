"""The other receivers: how to start each one, and where each one is found.

DCMTK's ``storescp`` (``--fork`` for concurrent senders: a child process per
association, storescp(1)), pynetdicom's ``storescp`` app and Orthanc.  Orthanc is
configured by a JSON file only; the benchmark writes one per run with its own
storage and index directories and ports from the OS, so it never touches an
installed Orthanc's database or ports.  A peer that is not installed is skipped
with a note.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.stats import ORTHANC, PYNETDICOM, STORESCP, STORESCP_FORK

#: The called AE title every sender and probe uses; every receiver must accept it.
CALLED_AE = "DCMRECV"


def orthanc_configuration(
    storage: Path, index: Path, dicom_port: int, http_port: int
) -> dict[str, Any]:
    """Orthanc's configuration for one run (option names from Orthanc's orthanc.json).

    No plugins (the Debian package's plugin folder would otherwise be loaded), any
    called AE title accepted and C-STORE allowed from unknown modalities, so that
    DCMTK's storescu with ``-aec DCMRECV`` is served as by the other receivers.  The
    HTTP server is on (it is Orthanc's normal state), on a port of its own.
    """
    return {
        "Name": "dcmrecv-benchmark",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(index),
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "DicomServerEnabled": True,
        "DicomAet": CALLED_AE,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
    }


def orthanc_files(out: Path) -> tuple[Path, Path]:
    """The configuration file and index directory beside a run's storage ``out``.

    Orthanc's storage directory holds one file per instance (the index, a SQLite
    database, goes elsewhere), so ``out`` can be counted like the other receivers'.
    """
    return out.parent / f"{out.name}.orthanc.json", out.parent / f"{out.name}.orthanc-index"


def write_orthanc_configuration(out: Path, dicom_port: int, http_port: int) -> Path:
    config, index = orthanc_files(out)
    index.mkdir(parents=True, exist_ok=True)
    config.write_text(
        json.dumps(orthanc_configuration(out, index, dicom_port, http_port), indent=2)
    )
    return config


@dataclass(frozen=True)
class PeerTools:
    """The peers found on this machine; None where one is not installed."""

    storescp: str | None
    pynetdicom: tuple[str, ...] | None
    orthanc: str | None

    def missing(self) -> Mapping[str, str]:
        """Peer variant -> why it is skipped, for the report's notes."""
        reasons = {}
        if self.storescp is None:
            reasons[STORESCP] = reasons[STORESCP_FORK] = "DCMTK's storescp not found"
        if self.pynetdicom is None:
            reasons[PYNETDICOM] = "pynetdicom not importable (pip install pynetdicom)"
        if self.orthanc is None:
            reasons[ORTHANC] = "Orthanc not installed (Debian package orthanc)"
        return reasons


def pynetdicom_storescp() -> tuple[str, ...] | None:
    """``python -m pynetdicom storescp`` with this interpreter, if pynetdicom is there."""
    probe = subprocess.run(
        [sys.executable, "-c", "import pynetdicom"], capture_output=True, check=False
    )
    return (sys.executable, "-m", "pynetdicom", "storescp") if probe.returncode == 0 else None


def find_orthanc() -> str | None:
    return shutil.which("Orthanc")
