"""The ``storescp`` command: DCMTK's storescp command line on our receiver.

argv -> :class:`dcmrecv.commands.storescp_options.Settings` -> ReceiverConfig (with
storescp's naming, events and conversions as ``config.storescp``) ->
:func:`dcmrecv.serve`.  The steps follow storescp.cc's order, which decides which
error a user sees first; every error exits with 1, as DCMTK's storescp does (it has
no other exit codes), and a normal stop with 0.

Log lines are storescp's (storescp.cc: "Association Received", "Received Store
Request (MsgID 1, CT)", "storing DICOM file: ./CT.1.2...", "Association Release"),
not dcmrecv's (dcmrecv.logs.dialects), because scripts grep for these texts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, NoReturn

import click

import dcmrecv
from dcmrecv import exitcodes
from dcmrecv.commands import common as dcmtkcli
from dcmrecv.commands import inetd_start, policy_options
from dcmrecv.commands.argv import ArgvError, CommandLine, expand_command_files, format_help
from dcmrecv.commands.dictionaries import load_dictionaries
from dcmrecv.commands.storescp_options import (
    APPNAME,
    OPTIONS,
    PARAMS,
    Settings,
    StorageChoice,
    evaluate,
    old_spellings_help,
    parse,
    storescp_profile,
)
from dcmrecv.commands.tls_options import tls_settings
from dcmrecv.config import ReceiverConfig, StorageMode, StorescpSettings
from dcmrecv.logs.layout import BASE_LOGGER
from dcmrecv.storage.dictionary import DictionaryError
from dcmrecv.wire import inherited

DESCRIPTION: Final = "DICOM storage (C-STORE) SCP"

log = logging.getLogger(BASE_LOGGER)


def identification() -> str:
    return dcmtkcli.identification(APPNAME)


def header() -> str:
    return dcmtkcli.header(APPNAME, DESCRIPTION)


def usage_text() -> str:
    usage = f"usage: {APPNAME} [options] [port]"
    return header() + format_help(usage, PARAMS, OPTIONS) + old_spellings_help() + "\n"


def version_text() -> str:
    return dcmtkcli.version_text(APPNAME, DESCRIPTION)


class CommandLineError(dcmtkcli.DcmtkCommandLineError):
    """storescp's command line problems, under storescp's header."""

    exit_code = exitcodes.STORESCP_EXITCODE_ERROR

    def banner(self) -> str:
        return header()

    def show(self, file: Any = None) -> None:
        # Under --inetd descriptors 0-2 are /dev/null by now: the log is all there is.
        if self.quiet or not inetd_start.report(self.message):
            super().show(file)


# --- the command ---------------------------------------------------------------------------


def build_config(settings: Settings) -> ReceiverConfig:
    """The engine's configuration for checked storescp settings (profile built in)."""
    storage = {
        StorageChoice.NORMAL: StorageMode.NORMAL,
        StorageChoice.BIT_PRESERVING: StorageMode.BIT_PRESERVING,
        StorageChoice.IGNORE: StorageMode.IGNORE,
    }[settings.storage]
    config = ReceiverConfig(
        port=settings.port,
        aetitle=settings.aetitle,
        # storescp answers with its own AE title and accepts any called AE title.
        aetitle_explicit=False,
        use_called_aetitle=False,
        dimse_timeout=settings.dimse_timeout,
        disable_host_lookup=settings.disable_host_lookup,
        profile=storescp_profile(settings.transfer_syntaxes),
        output_directory=Path(settings.output_directory),
        storage_mode=storage,
        fsync=settings.fsync,
        max_associations=settings.max_associations,
        verbose_pc=settings.verbose_pc,
        refuse_associations=settings.refuse,
        require_implementation_uid=settings.reject,
        sleep_after_store=settings.sleep_after,
        sleep_during_store=settings.sleep_during,
        abort_after_store=settings.abort_after,
        abort_during_store=settings.abort_during,
        promiscuous_transfer_syntaxes=(settings.transfer_syntaxes if settings.promiscuous else ()),
        storescp=storescp_settings(settings),
        # DCMTK's storescp acknowledges even when it accepts no context.
        acknowledge_without_contexts=True,
        on_duplicate=settings.on_duplicate,
        min_free_space=settings.min_free_space,
        quarantine_directory=settings.quarantine_directory,
        quarantine_limit=settings.quarantine_limit,
        http_port=settings.http_port,
        http_address=settings.http_address,
        event_log=settings.event_log,
    )
    changes: dict[str, Any] = {}
    if settings.acse_timeout is not None:
        changes["acse_timeout"] = settings.acse_timeout
    if settings.max_pdu is not None:
        changes["max_pdu"] = settings.max_pdu
    if settings.shutdown_timeout is not None:
        changes["shutdown_timeout"] = settings.shutdown_timeout
    return replace(config, **changes)


def storescp_settings(settings: Settings) -> StorescpSettings:
    """What only storescp asks of the engine: naming, events, conversions."""
    encoding = settings.encoding
    wanted = encoding.reencode or not encoding.write_meta or encoding.transfer_syntax
    return StorescpSettings(
        output_directory=settings.output_directory,
        naming=settings.naming,
        events=settings.events,
        encoding=encoding if wanted else None,
        convert_un=settings.convert_un,
    )


COMMAND = dcmtkcli.Command(APPNAME, DESCRIPTION, usage_text, version_text, CommandLineError)


def _run(ctx: click.Context, argv: tuple[str, ...]) -> NoReturn:
    try:
        cmdline: CommandLine = parse(expand_command_files(argv, dcmtkcli.read_text))
    except ArgvError as exc:
        raise CommandLineError(str(exc)) from None
    logging_state = dcmtkcli.prologue(ctx, COMMAND, cmdline)
    quiet = logging_state.quiet
    try:
        load_dictionaries(os.environ)  # DCMDICTPATH (storescp.man, "ENVIRONMENT")
    except DictionaryError as exc:
        raise CommandLineError(f"cannot load data dictionary: {exc}", quiet=quiet) from None

    try:
        settings = evaluate(cmdline, verbose=logging_state.verbose)
        tls_options = tls_settings(cmdline)
    except ArgvError as exc:
        raise CommandLineError(str(exc), quiet=quiet) from None
    inetd_connection = _inetd_connection(ctx, settings, cmdline)
    log.debug("%s\n", identification())
    if inetd_connection is not None and cmdline.params:
        log.warning("Parameter port not required in inetd mode")

    if settings.fork:
        log.info("--fork: associations already run concurrently, each in its own thread")
    if (
        inetd_connection is None
        and settings.port < 1024
        and hasattr(os, "geteuid")
        and os.geteuid() != 0
        and not _socket_activated()
    ):
        log.critical("cannot listen on port %d, insufficient privileges", settings.port)
        dcmtkcli.finish(ctx, exitcodes.STORESCP_EXITCODE_ERROR)

    profile = None
    if settings.profile_source is not None:
        from dcmrecv.negotiation import asconfig

        filename, profile_name = settings.profile_source
        try:
            profile = asconfig.load_profile(filename, profile_name)
        except asconfig.ConfigError as exc:
            log.critical("cannot read config file: %s", exc)
            dcmtkcli.finish(ctx, exitcodes.STORESCP_EXITCODE_ERROR)
    if cmdline.has("--check-config"):
        policy_options.check_config(
            profile or storescp_profile(settings.transfer_syntaxes), None, ""
        )
        dcmtkcli.finish(ctx, exitcodes.EXITCODE_NO_ERROR)

    directory = settings.output_directory
    if directory != "." and not os.path.isdir(directory):
        log.critical("specified output directory does not exist")
        dcmtkcli.finish(ctx, exitcodes.STORESCP_EXITCODE_ERROR)
    if settings.storage is not StorageChoice.IGNORE and not os.access(directory, os.W_OK):
        log.critical("specified output directory is not writeable")
        dcmtkcli.finish(ctx, exitcodes.STORESCP_EXITCODE_ERROR)

    problem = policy_options.quarantine_problem(
        settings.quarantine_directory, Path(settings.output_directory)
    )
    if problem is not None:
        raise CommandLineError(
            f"Invalid value for option --quarantine-dir ({problem})", quiet=quiet
        )

    config = replace(build_config(settings), inetd_connection=inetd_connection, tls=tls_options)
    if profile is not None:
        config = replace(config, profile=profile)
    code = dcmrecv.serve(config)
    # storescp has no exit code 64 or 71: a port it cannot open, a TLS context it
    # cannot build, are its error 1.
    failed = code != exitcodes.EXITCODE_NO_ERROR
    dcmtkcli.finish(ctx, exitcodes.STORESCP_EXITCODE_ERROR if failed else code)


def _inetd_connection(ctx: click.Context, settings: Settings, cmdline: CommandLine) -> int | None:
    """``--inetd``: the descriptor of inetd's connection, standard input, output and
    error then on ``/dev/null`` (storescp.cc); None otherwise.

    The connection was moved off descriptors 0-2 at the start of ``main``, as DCMTK
    does (:mod:`dcmrecv.commands.inetd_start`): messages are log lines, which reach
    only a ``--log-config`` file.  ``--check-config`` serves nothing and keeps its output.
    """
    if not settings.inetd or cmdline.has("--check-config"):
        return None
    try:
        return inetd_start.connection()
    except OSError as exc:
        # storescp.cc exits with 99 when it cannot duplicate standard input.
        log.fatal("cannot take the connection from standard input: %s", exc.strerror or exc)
        dcmtkcli.finish(ctx, exitcodes.STORESCP_EXITCODE_INETD)


def _socket_activated() -> bool:
    """systemd passed a listening socket (it bound the port, privileged or not)."""
    try:
        return inherited.listen_fds(os.environ, os.getpid()) > 0
    except ValueError:
        return False  # the server reports the malformed variables


@click.command(cls=dcmtkcli.DcmtkCommand, name=APPNAME, add_help_option=False)
@click.pass_context
def main(ctx: click.Context, argv: tuple[str, ...]) -> None:
    """DICOM storage (C-STORE) SCP; run ``storescp --help`` for the options."""
    inetd_start.protect_connection(argv)  # first: under inetd, 0-2 are the connection
    _run(ctx, argv)
