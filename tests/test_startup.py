"""Start-up: what a quick command loads (README, "Development").

``dcmrecv --version`` and ``--help``, storescp's, and the container's health probe
run often and should start in a fraction of a second; what costs most is importing
pydicom (about 0.1 s, with numpy), the UID tables and the engine.  These tests check
what the process imported, not how long it took (the suite runs on busy machines).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Modules a quick command must not load: pydicom and numpy, the configuration and
#: the negotiation tables, the wire protocol, TLS and the engine.
HEAVY = (
    "pydicom",
    "numpy",
    "dcmrecv.config",
    "dcmrecv.negotiation.uids",
    "dcmrecv.wire",
    "dcmrecv.ops",
    "dcmrecv.storage.convert",
)

#: Runs a snippet and writes what it imported (and the exit code of a command).
_RECORD = """
import json, sys
code = None
try:
    {snippet}
except SystemExit as exit:
    code = exit.code
with open({out!r}, "w") as out:
    json.dump({{"code": code, "modules": sorted(sys.modules)}}, out)
"""


def _loaded(tmp_path: Path, snippet: str) -> tuple[object, list[str]]:
    out = tmp_path / "modules.json"
    code = _RECORD.format(snippet=snippet, out=str(out))
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, cwd=ROOT)
    result = json.loads(out.read_text())
    return result["code"], result["modules"]


def _command(command: str, args: list[str]) -> str:
    return f"from dcmrecv.commands.{command} import main; main({args!r})"


def _among(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == n or m.startswith(n + ".") for n in names)]


@pytest.mark.parametrize("command", ["dcmrecv", "storescp"])
@pytest.mark.parametrize("args", [["--version"], ["--help"], []])
def test_version_and_help_load_nothing_heavy(tmp_path: Path, command: str, args: list[str]) -> None:
    code, modules = _loaded(tmp_path, _command(command, args))
    assert code == 0
    assert "dcmrecv.commands.options" in modules  # the option rows were read
    assert _among(modules, HEAVY) == []


def test_a_mistyped_option_loads_nothing_heavy(tmp_path: Path) -> None:
    code, modules = _loaded(tmp_path, _command("dcmrecv", ["-ssd", "104"]))
    assert code == 1
    assert _among(modules, HEAVY) == []


def test_health_probe_loads_neither_pydicom_nor_the_engine(tmp_path: Path) -> None:
    _, modules = _loaded(tmp_path, "import dcmrecv.commands.healthcheck")
    assert "dcmrecv.wire.requestor" in modules  # it speaks DICOM with our requestor
    engine = ("pydicom", "numpy", "dcmrecv.ops", "dcmrecv.wire.association", "dcmrecv.wire.tls")
    # Nor the configuration (with the storage model, a third of the probe's CPU).
    light = ("dcmrecv.commands.options", "dcmrecv.config", "dcmrecv.storage")
    assert _among(modules, (*engine, *light)) == []
