"""The ``storescp`` command: DCMTK's storescp command line on our receiver.

argv -> :class:`dcmrecv.commands.storescp_options.Settings` -> ReceiverConfig (with a
:class:`dcmrecv.ops.storescp_session.StorescpSession` as naming/conversion policy and event
handler) -> :func:`dcmrecv.serve`.  The steps follow storescp.cc's order, which decides
which error a user sees first; every error exits with 1, as DCMTK's storescp does
(it has no other exit codes), and a normal stop with 0.

Log lines are storescp's (storescp.cc: "Association Received", "Received Store
Request (MsgID 1, CT)", "storing DICOM file: ./CT.1.2...", "Association Release"),
not dcmrecv's: :class:`StorescpLogDialect` rewrites the engine's records, because
scripts grep for these texts.
"""

from __future__ import annotations

import logging
import os
import threading
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
from dcmrecv.config import ReceiverConfig, StorageMode
from dcmrecv.logs.layout import BASE_LOGGER
from dcmrecv.negotiation.uids import modality_prefix
from dcmrecv.ops.storescp_session import StorescpSession
from dcmrecv.storage.convert import configure_pydicom
from dcmrecv.storage.dictionary import DictionaryError
from dcmrecv.wire import inherited, tls

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


# --- storescp's log lines ---------------------------------------------------------------

_pending = threading.local()

#: Engine message templates -> storescp's text (None: storescp prints nothing there).
_REWRITES: Final[dict[str, str | None]] = {
    "Association Received %s: %s -> %s": "Association Received",
    "Received C-ECHO Request (MsgID %d)": "Received Echo Request (MsgID %d)",
    "Sending C-ECHO Response (Success)": None,
    "Sending C-STORE Response (%s)": None,
    "Stored received object to file: %s": "storing DICOM file: %s",
    "file already exists, overwriting: %s": "DICOM file already exists, overwriting: %s",
    "Received Association Release Request": "Association Release",
    "Received Association Abort Request": "Association Aborted",
    "Refusing Association (%s)": "Refusing Association (%s)",
    "starting service class provider and listening ...": None,
}
_STORE_REQUEST: Final = "Received C-STORE Request (MsgID %d)"
_CANNOT_LISTEN: Final = "cannot start SCP and listen on port %d: %s"


class StorescpLogDialect(logging.Filter):
    """Turn the engine's dcmrecv-style records into storescp's lines.

    storescp names the SOP class in "Received Store Request (MsgID 1, CT)"; the
    engine's record has only the message ID, so it is held back (per thread) until
    the session hears of the request's SOP class (:meth:`store_request`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        template = record.msg
        if template == _STORE_REQUEST:
            _pending.message_id = record.args[0] if isinstance(record.args, tuple) else 0
            return False
        if template == "Refusing Association (%s)" and record.args == (
            "no implementation class UID provided",
        ):
            record.msg, record.args = (
                "Association Rejected: No Implementation Class UID provided",
                (),
            )
            return True
        if template == _CANNOT_LISTEN and isinstance(record.args, tuple):
            # storescp: "E: cannot create network: <DCMTK condition>" (exit code 1).
            record.msg = "cannot create network: 0006:031c TCP Initialization Error: %s"
            record.args = (record.args[-1],)
            record.levelno, record.levelname = logging.ERROR, "ERROR"
            return True
        if not isinstance(template, str) or template not in _REWRITES:
            return True
        replacement = _REWRITES[template]
        if replacement is None:
            return False
        if replacement != template:
            record.msg = replacement
            if "%" not in replacement:
                record.args = ()
        return True


def store_request(sop_class_uid: str) -> None:
    """Log storescp's "Received Store Request (MsgID n, XX)" held back by the filter."""
    message_id = getattr(_pending, "message_id", None)
    _pending.message_id = None
    if message_id is None:
        return
    code = modality_prefix(sop_class_uid)
    logging.getLogger("dcmrecv.wire.association").info(
        "Received Store Request (MsgID %d, %s)", message_id, "OT" if code == "UNKNOWN" else code
    )


class _Session(StorescpSession):
    def announce(self, sop_class_uid: str) -> None:
        store_request(sop_class_uid)


def install_log_dialect() -> None:
    dialect = StorescpLogDialect()
    for name in ("dcmrecv.wire.association", "dcmrecv.wire.server"):
        logger = logging.getLogger(name)
        for existing in list(logger.filters):
            if isinstance(existing, StorescpLogDialect):
                logger.removeFilter(existing)
        logger.addFilter(dialect)


# --- the command ---------------------------------------------------------------------------


def build_config(settings: Settings, session: StorescpSession) -> ReceiverConfig:
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
        events=session,
        output_policy=session,
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


def make_session(settings: Settings) -> StorescpSession:
    encoding = settings.encoding
    wanted = encoding.reencode or not encoding.write_meta or encoding.transfer_syntax
    return _Session(
        settings.output_directory,
        settings.naming,
        settings.events,
        encoding if wanted else None,
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

    configure_pydicom(settings.convert_un)
    session = make_session(settings)
    config = replace(build_config(settings, session), inetd_connection=inetd_connection)
    if profile is not None:
        config = replace(config, profile=profile)
    if tls_options is not None:
        try:
            context = tls.create_context(tls_options)
        except tls.TLSError as exc:
            for detail in exc.details:
                log.error("%s", detail)
            log.critical("%s", exc)
            dcmtkcli.finish(ctx, exitcodes.STORESCP_EXITCODE_ERROR)
        config = replace(config, tls_context=context, expected_sni=tls_options.expected_sni)
    install_log_dialect()
    try:
        code = dcmrecv.serve(config)
    finally:
        session.close()
    # storescp has no exit code 64: a port it cannot open is its error 1.
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
