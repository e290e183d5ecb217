"""Command lines: every receiver variant, and DCMTK's storescu as the sender.

Pure but for :func:`start`: the tools found on this machine go in, argv and
environment come out.  The
receivers all load the same ``storescp.cfg`` profile where they read one (DCMTK's
two and ours); pynetdicom's storescp and Orthanc accept every storage SOP class
they know with the uncompressed transfer syntaxes, which covers what is sent.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.peers import CALLED_AE, orthanc_files, write_orthanc_configuration
from benchmarks.procs import Command, Receiver, free_port, start_receiver
from benchmarks.scenarios import STUDY_TIMEOUT_SECONDS, Scenario
from benchmarks.stats import (
    DCMTK_IGNORE,
    ORTHANC,
    OURS,
    OURS_DURABLE,
    OURS_HTTP,
    OURS_IGNORE,
    OURS_POSTGRESQL,
    OURS_STATE,
    OURS_WORKERS,
    OURS_WORKERS_4,
    PYNETDICOM,
    STORESCP,
    STORESCP_FORK,
    WORKERS,
)

REPO = Path(__file__).resolve().parents[1]
#: Runs our CLI from this checkout without installing it (an installed ``dcmrecv``
#: console script could shadow DCMTK's on PATH, or be another version).
OURS_DEFAULT = (
    sys.executable,
    "-c",
    "import sys; from dcmrecv.commands.dcmrecv import main; "
    "sys.argv[0] = 'dcmrecv'; sys.exit(main())",
)
DEFAULT_CONFIG = Path("/etc/dcmtk/storescp.cfg")
#: Runs our storescp from this checkout, like OURS_DEFAULT our dcmrecv.
OURS_STORESCP = (
    sys.executable,
    "-c",
    "import sys; from dcmrecv.commands.storescp import main; "
    "sys.argv[0] = 'storescp'; sys.exit(main())",
)
#: Our variants, and the options of ours that DCMTK's dcmrecv does not have.
OURS_VARIANTS = (
    OURS,
    OURS_DURABLE,
    OURS_IGNORE,
    OURS_HTTP,
    OURS_WORKERS,
    OURS_WORKERS_4,
    OURS_STATE,
    OURS_POSTGRESQL,
)
OURS_ONLY_OPTIONS = ("--no-fsync", "--http-port", "--workers", "--state")
#: Variants run like for like with DCMTK, which never fsyncs.
NO_FSYNC_VARIANTS = tuple(v for v in OURS_VARIANTS if v != OURS_DURABLE)
#: Variants that need an option of ours that may not exist yet -> that option.
NEEDS_OPTION = {
    OURS_HTTP: "--http-port",
    OURS_WORKERS: "--workers",
    OURS_WORKERS_4: "--workers",
    OURS_STATE: "--state",
    OURS_POSTGRESQL: "--state",
}


@dataclass(frozen=True)
class Tools:
    dcmrecv: str
    storescu: str
    echoscu: str
    ours: tuple[str, ...]
    #: True: "ours" is DCMTK's dcmrecv too (developing the harness before ours works).
    stand_in: bool
    config: Path
    #: Peers; None where not installed (the scenario notes say so).
    storescp: str | None = None
    pynetdicom: tuple[str, ...] | None = None
    orthanc: str | None = None
    #: strace, for the flush counts; None skips them.
    strace: str | None = None
    #: Our ``--help`` lists ``--http-port`` (issue 15); False skips that scenario.
    http_option: bool = False
    #: The options of ours from NEEDS_OPTION that our ``--help`` lists (issue 20:
    #: ``--workers``, ``--state``); variants needing another one are left out.
    options: frozenset[str] = frozenset()
    #: ``--state`` URL of the throwaway PostgreSQL cluster, while one runs.
    state_url: str | None = None


def receiver_command(
    tools: Tools, variant: str, scenario: Scenario, out: Path, port: int
) -> Command:
    """argv for one receiver variant: DCMTK's options, plus ours where they apply."""
    env: dict[str, str | None] = {"TCP_NODELAY": "1" if scenario.nodelay else None}
    if variant == PYNETDICOM:
        peer = [*_required(tools.pynetdicom, variant), "-od", str(out)]
        if scenario.max_pdu is not None:
            peer += ["-pdu", str(scenario.max_pdu)]
        return Command((*peer, str(port)), env)
    if variant == ORTHANC:
        # Orthanc takes its ports and directories from the file peers.py writes.
        config, _ = orthanc_files(out)
        return Command((*_required(tools.orthanc, variant), str(config)), env)
    ours = variant in OURS_VARIANTS
    argv: list[str]
    if ours:
        argv = list(tools.ours)
    elif variant in (STORESCP, STORESCP_FORK):
        argv = list(_required(tools.storescp, variant))
    else:
        argv = [tools.dcmrecv]
    argv += ["-xf", str(tools.config), "Default", "-od", str(out)]
    if variant == STORESCP_FORK:
        argv.append("--fork")
    if scenario.max_pdu is not None:
        argv += ["-pdu", str(scenario.max_pdu)]
    if variant in (OURS_IGNORE, DCMTK_IGNORE):
        argv.append("--ignore")
    if variant in NO_FSYNC_VARIANTS and not tools.stand_in:
        # Like with like: DCMTK never fsyncs.
        argv.append("--no-fsync")
    if not tools.stand_in:
        argv += ours_only_options(tools, variant)
    argv.append(str(port))
    if ours:
        env.update(ours_environment(tools))
    return Command(tuple(argv), env)


def ours_only_options(tools: Tools, variant: str) -> list[str]:
    """The options a variant of ours adds beyond --no-fsync (none for DCMTK's)."""
    if variant == OURS_HTTP:
        # Port 0: the OS picks one; the endpoint serves, nobody polls it.
        return ["--http-port", "0"]
    if variant in WORKERS and variant != OURS:
        return ["--workers", str(WORKERS[variant])]
    if variant in (OURS_STATE, OURS_POSTGRESQL):
        # The state is used only by study completion (issue 20): switch it on.
        options = ["--eostudy-timeout", str(STUDY_TIMEOUT_SECONDS)]
        if variant == OURS_POSTGRESQL:
            options += ["--state", _required(tools.state_url, variant)[0]]
        return options
    return []


def ours_environment(tools: Tools) -> dict[str, str | None]:
    """PYTHONPATH pointing at this checkout when ours runs from it (OURS_DEFAULT)."""
    if tools.stand_in or tools.ours != OURS_DEFAULT:
        return {}
    return {
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    }


def _required(tool: str | tuple[str, ...] | None, variant: str) -> tuple[str, ...]:
    if tool is None:
        raise ValueError(f"{variant} is not installed")
    return (tool,) if isinstance(tool, str) else tool


def sender_command(tools: Tools, scenario: Scenario, directory: Path, port: int) -> Command:
    # storescu +sd sends a whole directory in one association; it was a little faster
    # than dcmsend on this machine for both tiny and CT instances.
    argv = [tools.storescu, "-aet", "BENCHSCU", "-aec", CALLED_AE]
    if scenario.max_pdu is not None:
        argv += ["-pdu", str(scenario.max_pdu)]
    argv += ["+sd", "127.0.0.1", str(port), str(directory)]
    return Command(tuple(argv), {"TCP_NODELAY": "1" if scenario.nodelay else None})


def available(tools: Tools, variant: str) -> bool:
    """Whether ``variant`` can run here."""
    if variant in (STORESCP, STORESCP_FORK):
        return tools.storescp is not None
    if variant == PYNETDICOM:
        return tools.pynetdicom is not None
    if variant == ORTHANC:
        return tools.orthanc is not None
    if variant == OURS_HTTP:
        return tools.http_option or tools.stand_in
    if variant == OURS_POSTGRESQL and tools.state_url is None:
        return False
    if variant in NEEDS_OPTION:
        return NEEDS_OPTION[variant] in tools.options or tools.stand_in
    return True


def stores_nothing(variant: str) -> bool:
    return variant in (OURS_IGNORE, DCMTK_IGNORE)


def start(tools: Tools, variant: str, scenario: Scenario, out: Path) -> Receiver:
    """``variant`` started on a free port, storing into ``out``, answering C-ECHO."""

    def build(port: int) -> Command:
        if variant == ORTHANC:
            write_orthanc_configuration(out, port, free_port())
        return receiver_command(tools, variant, scenario, out, port)

    return start_receiver(build, tools.echoscu, out.parent / f"{out.name}.log")
