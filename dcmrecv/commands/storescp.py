"""The ``storescp`` command: DCMTK's storescp command line on our receiver.

argv -> ReceiverConfig (storescp's naming, events and conversions as
``config.storescp``) -> :func:`dcmrecv.serve`, through the pipeline both commands
share (dcmrecv.commands.pipeline).  The options are rows of
dcmrecv.commands.options, with storescp's old spellings; :data:`PLAN` is the order in
which storescp.cc checks them, which decides the error a user sees first.  Every
error exits with 1, as DCMTK's storescp does (it has no other exit codes), and a
normal stop with 0.

Log lines are storescp's (storescp.cc: "Association Received", "Received Store
Request (MsgID 1, CT)", "storing DICOM file: ./CT.1.2...", "Association Release"),
not dcmrecv's (dcmrecv.logs.storescp_dialect), because scripts grep for these texts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Final

import click

from dcmrecv import exitcodes
from dcmrecv.commands import inetd_start, pipeline
from dcmrecv.commands import storescp_groups as group
from dcmrecv.commands.argv import ArgvError, expand_command_files
from dcmrecv.commands.checks import Step
from dcmrecv.commands.groups import COMMITMENT_CHECKS, TLS_CHECKS, verbose_pc_needs_verbose
from dcmrecv.commands.options import STORESCP_TABLE

if TYPE_CHECKING:
    from dcmrecv.config import ReceiverConfig

DEFAULT_AETITLE: Final = "STORESCP"

#: storescp.cc's order: the process options, the port, the network options, the
#: output directory, our own options, the output encoding, naming and events, and
#: the TLS options last.
PLAN: tuple[Step, ...] = (
    group.refuse_access_control,
    group.inetd_mode,
    "max_associations",
    group.port_parameter,
    verbose_pc_needs_verbose,
    group.network_transfer_syntaxes,
    "--socket-timeout",
    "acse_timeout",
    "dimse_timeout",
    "aetitle",
    "max_pdu",
    "disable_host_lookup",
    "refuse_associations",
    "require_implementation_uid",
    "sleep_after_store",
    "sleep_during_store",
    "abort_after_store",
    "abort_during_store",
    "verbose_pc",
    "shutdown_timeout",
    group.refuse_ipv6,
    group.profile_not_with_preferences,
    "storescp.output_directory",
    "fsync",
    "on_duplicate",
    "min_free_space",
    "quarantine_directory",
    "quarantine_limit",
    "http_port",
    "http_address",
    "event_log",
    group.http_not_with_inetd,
    group.storage_mode,
    group.output_encoding,
    group.naming,
    group.events,
    *COMMITMENT_CHECKS,
    *TLS_CHECKS,
)


def _base_config() -> ReceiverConfig:
    from dcmrecv.config import ReceiverConfig, StorescpSettings

    return ReceiverConfig(
        port=0,
        aetitle=DEFAULT_AETITLE,
        # storescp answers with its own AE title and accepts any called AE title.
        aetitle_explicit=False,
        use_called_aetitle=False,
        # DCMTK's storescp acknowledges even when it accepts no context.
        acknowledge_without_contexts=True,
        storescp=StorescpSettings(),
    )


def _start(run: pipeline.Run) -> pipeline.Run | int:
    """``--inetd``: take inetd's connection; then storescp's first log lines, and a
    privileged port without the privilege (storescp.cc checks it before it binds)."""

    log = pipeline.logger()
    cmdline = run.cmdline
    connection: int | None = None
    # Messages are log lines now, which reach only a --log-config file; command line
    # errors went there too (inetd_start.report).  --check-config serves nothing and
    # keeps its output.
    if cmdline.has("--inetd") and not cmdline.has("--check-config"):
        try:
            # Moved off descriptors 0-2 at the start of main (inetd_start), as
            # storescp.cc does; standard input, output and error are /dev/null.
            connection = inetd_start.connection()
        except OSError as exc:
            # storescp.cc exits with 99 when it cannot duplicate standard input.
            log.fatal("cannot take the connection from standard input: %s", exc.strerror or exc)
            return exitcodes.STORESCP_EXITCODE_INETD
    log.debug("%s\n", run.dialect.identification())
    if connection is not None and cmdline.params:
        log.warning("Parameter port not required in inetd mode")
    process = cmdline.last("--single-process", "--fork")
    if process is not None and process.spec.long == "--fork":
        log.info("--fork: associations already run concurrently, each in its own thread")
    port = run.config.port
    if (
        connection is None
        and port < 1024
        and hasattr(os, "geteuid")
        and os.geteuid() != 0
        and not _socket_activated()
    ):
        log.critical("cannot listen on port %d, insufficient privileges", port)
        return exitcodes.STORESCP_EXITCODE_ERROR
    return replace(run, config=replace(run.config, inetd_connection=connection))


def _socket_activated() -> bool:
    """systemd passed a listening socket (it bound the port, privileged or not)."""
    from dcmrecv.wire import inherited

    try:
        return inherited.listen_fds(os.environ, os.getpid()) > 0
    except ValueError:
        return False  # the server reports the malformed variables


def _check_output_directory(run: pipeline.Run) -> pipeline.Run | int:
    from dcmrecv.config import StorageMode

    config = run.config
    assert config.storescp is not None
    directory = config.storescp.output_directory
    log = pipeline.logger()
    if directory != "." and not os.path.isdir(directory):
        log.critical("specified output directory does not exist")
        return exitcodes.STORESCP_EXITCODE_ERROR
    if config.storage_mode is not StorageMode.IGNORE and not os.access(directory, os.W_OK):
        log.critical("specified output directory is not writeable")
        return exitcodes.STORESCP_EXITCODE_ERROR
    return run


def _exit_code(code: int) -> int:
    # storescp has no exit code 64 or 71: a port it cannot open, a TLS context it
    # cannot build, are its error 1.
    failed = code != exitcodes.EXITCODE_NO_ERROR
    return exitcodes.STORESCP_EXITCODE_ERROR if failed else code


DIALECT = pipeline.Dialect(
    name="storescp",
    description="DICOM storage (C-STORE) SCP",
    table=STORESCP_TABLE,
    plan=PLAN,
    base_config=_base_config,
    error_code=exitcodes.STORESCP_EXITCODE_ERROR,
    start=_start,
    check_output_directory=_check_output_directory,
    profile_failure=("cannot read config file: %s", exitcodes.STORESCP_EXITCODE_ERROR),
    exit_code=_exit_code,
    params_required=False,
    help_end=STORESCP_TABLE.old_spellings_help() + "\n",
)


#: storescp's grammar over expanded arguments (the port is optional here, and checked
#: by the plan: "Missing parameter port" unless --inetd), and the configuration its
#: options ask for, before any file is read (both raise ArgvError).
parse, evaluate = DIALECT.parse, DIALECT.evaluate


#: storescp's spellings of ``--inetd`` (storescp.man).
INETD_SPELLINGS: Final = frozenset({"-id", "--inetd"})


def wants_inetd(argv: Sequence[str]) -> bool:
    """Whether this storescp command line serves an inetd connection.

    ``--check-config`` serves nothing and keeps its output, as in
    :func:`dcmrecv.commands.storescp._inetd_connection`.  Reads ``@file`` arguments.
    """
    named = any(word in INETD_SPELLINGS for word in argv)
    if not named and not any(word.startswith("@") for word in argv):
        return False  # the common case costs no parse
    try:
        cmdline = parse(expand_command_files(argv, pipeline.read_text))
    except ArgvError:
        return named
    return cmdline.has("--inetd") and not cmdline.has("--check-config")


@click.command(cls=pipeline.DcmtkCommand, name="storescp", add_help_option=False)
@click.pass_context
def main(ctx: click.Context, argv: tuple[str, ...]) -> None:
    """DICOM storage (C-STORE) SCP; run ``storescp --help`` for the options.

    The console script (pyproject.toml).
    """
    # First: under inetd, descriptors 0-2 are the connection.
    inetd_start.protect_connection(wants_inetd(argv))
    ctx.exit(pipeline.run(DIALECT, argv, ctx.info_name or DIALECT.name))
