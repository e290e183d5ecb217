"""One run of a command, dcmrecv or storescp: argv in, exit code out.

:func:`run` takes the steps in DCMTK's order, which decides what a user sees first
when several things are wrong; each step returns an exit code (the run ends) or the
run as it stands for the next step:

1. the arguments: ``@file`` expanded, ``DCMRECV_*`` variables (dcmrecv), DCMTK's
   grammar (an error here is printed even with ``-q``);
2. ``--help``, ``--version``, ``--list-ciphers``, ``--list-profiles`` (exit 0);
3. the logging options, then ``--arguments``; from here on ``-q`` silences errors;
4. the data dictionaries (``DCMDICTPATH``);
5. the option values, in the command's plan (dcmrecv.commands.checks);
6. what the command does before it loads anything (its :attr:`Dialect.start`);
7. the ``-xf`` profile, then ``--check-config`` (exit 0), ``--accept-calling-file``;
8. the output directory (the command's own check and messages), the quarantine;
9. the receiver (:func:`dcmrecv.serve`), whose exit code the command may translate.

What differs between the commands is data and a few functions of their
:class:`Dialect` (dcmrecv.commands.dcmrecv, dcmrecv.commands.storescp).  Modules that
cost start-up time are imported by the step that needs them: ``--help``,
``--version`` and a mistyped option load neither pydicom, the configuration, the
wire protocol nor the engine (tests/test_startup.py).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dcmrecv import __version__, exitcodes
from dcmrecv.boundedread import MAX_CONFIG_FILE_SIZE, FileTooLarge, read_bounded
from dcmrecv.commands import checks
from dcmrecv.commands.argv import ArgvError, CommandLine, expand_command_files, parse
from dcmrecv.commands.table import Table

if TYPE_CHECKING:
    import logging

    from dcmrecv.config import ReceiverConfig
    from dcmrecv.storage.template import Template


@dataclass(frozen=True)
class Run:
    """A run after the logging options: what the later steps read and change."""

    dialect: Dialect
    cmdline: CommandLine
    #: Errors are not printed (``-q`` or a level above ERROR), as in DCMTK.
    quiet: bool
    #: INFO messages are logged (``+v`` needs that).
    verbose: bool
    config: ReceiverConfig


#: A step of a run: the run as it goes on, or the exit code that ends it.
RunStep = Callable[[Run], "Run | int"]


@dataclass(frozen=True)
class Dialect:
    """What makes a run dcmrecv's or storescp's."""

    name: str
    description: str
    table: Table
    #: The option checks in DCMTK's order (dcmrecv.commands.checks).
    plan: tuple[checks.Step, ...]
    #: The configuration before any option (storescp's AE title, its profile...).
    base_config: Callable[[], ReceiverConfig]
    #: The exit code of a command line error.
    error_code: int
    #: After the checks: announce the start, take inetd's connection...
    start: RunStep
    #: The output directory's checks, with the command's messages and exit codes.
    check_output_directory: RunStep
    #: ``-xf`` cannot be loaded: the log message (``%s`` the reason) and exit code.
    profile_failure: tuple[str, int]
    #: The receiver's exit code as the command reports it.
    exit_code: Callable[[int], int]
    #: ``DCMRECV_*`` variables become options in front of the command line.
    environment: bool = False
    #: The port parameter is required by the grammar (storescp's is not, for --inetd).
    params_required: bool = True
    params: tuple[tuple[str, str], ...] = (("port", "tcp/ip port number to listen on"),)
    #: Without ``-xf``, warn that only Verification is supported (dcmrecv).
    warn_without_profile: bool = False
    #: ``--version`` lists these libraries with their versions.
    libraries: tuple[str, ...] = ()
    #: Printed after the options in ``--help`` (storescp's old spellings).
    help_end: str = ""

    def identification(self) -> str:
        """Our counterpart of DCMTK's ``$dcmtk: dcmrecv v3.6.7 2022-04-22 $`` line."""
        return f"$dcmrecv: {self.name} v{__version__} $"

    def header(self) -> str:
        """The identification lines DCMTK prints above help, version and errors."""
        return f"{self.identification()}\n\n{self.name}: {self.description}\n"

    def usage_text(self) -> str:
        names = " ".join(name if self.params_required else f"[{name}]" for name, _ in self.params)
        usage = f"usage: {self.name} [options] {names}"
        return self.header() + self.table.format_help(usage, self.params) + self.help_end

    def version_text(self) -> str:
        """``--version``: DCMTK's layout (header, host type), then our libraries."""
        text = (
            self.header()
            + f"\nHost type: {platform.machine()}-{sys.platform}\n"
            + f"Python: {platform.python_version()} ({platform.python_implementation()})\n"
        )
        if self.libraries:
            from importlib import metadata

            text += "\nExternal libraries used:\n"
            for name in self.libraries:
                try:
                    version = metadata.version(name)
                except metadata.PackageNotFoundError:
                    version = "(not installed)"
                text += f"- {name} {version}\n"
        return text

    def parse(self, args: Sequence[str]) -> CommandLine:
        """The command's grammar over already expanded arguments (raises ArgvError)."""
        names = [name for name, _ in self.params]
        return parse(args, self.table.find, names, params_required=self.params_required)

    def evaluate(self, cmdline: CommandLine, verbose: bool = False) -> ReceiverConfig:
        """The configuration the options ask for, checked in the command's order
        (raises ArgvError); the profile and files are read by later steps."""
        return checks.evaluate(self.table, self.plan, cmdline, self.base_config(), verbose)


def logger() -> logging.Logger:
    """The application's logger: the base logger, as DCMTK's messages come from
    ``dcmtk.apps.dcmrecv`` (a ``%c{1}`` pattern prints the command's name for both)."""
    import logging

    from dcmrecv.logs.layout import BASE_LOGGER

    return logging.getLogger(BASE_LOGGER)


def error(dialect: Dialect, message: str, quiet: bool = False) -> int:
    """DCMTK's ``error: ...`` block on stderr (nothing in quiet mode); the exit code."""
    # Under storescp --inetd, descriptors 0-2 are /dev/null by now: the log is all
    # there is (commands/inetd_start.py).
    from dcmrecv.commands import inetd_start

    if not quiet and not inetd_start.report(message):
        click.echo(f"{dialect.header()}error: {message}", err=True)
    return dialect.error_code


def read_text(name: str) -> str:
    """A command line file's text (``@file``, ``--accept-calling-file``), bytes that are
    not UTF-8 kept; :class:`dcmrecv.boundedread.FileTooLarge` past
    :data:`~dcmrecv.boundedread.MAX_CONFIG_FILE_SIZE`."""
    return read_bounded(name, MAX_CONFIG_FILE_SIZE).decode("utf-8", errors="surrogateescape")


def directory_problem(path: Path) -> str | None:
    """DCMTK's reason for refusing a directory to write to, or None if it is usable."""
    if not path.is_dir():
        return "Directory does not exist"
    if not os.access(path, os.W_OK):
        return "Directory is not writable"
    return None


# --- up to the logging options ---------------------------------------------------------------


def read_command_line(dialect: Dialect, argv: Sequence[str]) -> CommandLine | int:
    try:
        args = expand_command_files(argv, read_text)
        if dialect.environment:
            from dcmrecv.commands.environment import EnvConfigError, apply_environment

            try:
                # The variables become options in front of the command line, so the
                # command line wins (DCMTK: the rightmost option wins).
                args = apply_environment(args, os.environ)
            except EnvConfigError as exc:
                raise ArgvError(str(exc)) from None
        return dialect.parse(args)
    except ArgvError as exc:
        return error(dialect, str(exc))


def show_information(dialect: Dialect, cmdline: CommandLine) -> int | None:
    """An empty command line and ``--help`` print the usage text, then ``--version``,
    ``--list-ciphers`` and ``--list-profiles``, in DCMTK's order (exit 0)."""
    text: str | None = None
    if cmdline.empty or cmdline.has("--help"):
        text = dialect.usage_text()
    elif cmdline.has("--version"):
        text = dialect.version_text()
    elif cmdline.has("--list-ciphers") or cmdline.has("--list-profiles"):
        from dcmrecv.wire import tls

        ciphers = tls.available_ciphers()
        if cmdline.has("--list-ciphers"):
            text = dialect.header() + tls.list_ciphers_text(ciphers)
        else:
            text = dialect.header() + tls.list_profiles_text(ciphers)
    if text is None:
        return None
    click.echo(text, nl=False)
    return exitcodes.EXITCODE_NO_ERROR


@dataclass(frozen=True)
class LogSettings:
    """What the logging options ask for (DCMTK's ``OFLog::configureFromCommandLine``)."""

    level: str
    config_file: str | None
    show_arguments: bool
    #: ``--log-format json``: one JSON object per record (not with ``--log-config``).
    json_lines: bool = False


_VERBOSITY = {"--debug": "debug", "--verbose": "info", "--quiet": "fatal"}


def log_settings(cmdline: CommandLine) -> LogSettings:
    """Evaluate ``-q -v -d -ll -lc --arguments --log-format``.

    ``-q``, ``-v`` and ``-d`` are one block (the rightmost wins); ``-ll`` may not be
    combined with them, ``-lc`` with neither, as in DCMTK.
    """
    from dcmrecv.logs.layout import DEFAULT_LEVEL, level_from_name

    verbosity = cmdline.last(*_VERBOSITY)
    level = _VERBOSITY[verbosity.spec.long] if verbosity else DEFAULT_LEVEL
    level_option = cmdline.last("--log-level")
    if level_option is not None:
        if verbosity is not None:
            raise ArgvError("--log-level not allowed with --verbose, --debug or --quiet")
        level = level_option.values[0]
        if level_from_name(level) is None:
            raise ArgvError("Invalid log level for --log-level option")
    config_option = cmdline.last("--log-config")
    config_file = None
    if config_option is not None:
        if level_option is not None:
            raise ArgvError("--log-config not allowed with --log-level")
        if verbosity is not None:
            raise ArgvError("--log-config not allowed with --verbose, --debug or --quiet")
        config_file = config_option.values[0]
    json_lines = False
    format_option = cmdline.last("--log-format")
    if format_option is not None:
        if format_option.values[0] not in ("dcmtk", "json"):
            raise ArgvError(f"Invalid value for option --log-format ({format_option.values[0]})")
        json_lines = format_option.values[0] == "json"
        if json_lines and config_file is not None:
            raise ArgvError("--log-format json not allowed with --log-config")
    return LogSettings(level, config_file, cmdline.has("--arguments"), json_lines)


def start_logging(dialect: Dialect, cmdline: CommandLine, program: str) -> Run | int:
    """The logging options take effect, then ``--arguments`` prints the expanded
    command line (DCMTK's ``OFLog`` and ``OFConsoleApplication`` in this order)."""
    import logging

    from dcmrecv.logs.layout import log_forced
    from dcmrecv.logs.logger_config import LogConfigError, configure_logging

    try:
        settings = log_settings(cmdline)
        configure_logging(
            settings.level, settings.config_file, dialect.name, json_lines=settings.json_lines
        )
    except (ArgvError, LogConfigError, ValueError) as exc:
        return error(dialect, str(exc))
    log = logger()
    if settings.show_arguments:
        quoted = "".join(f"'{arg}' " for arg in cmdline.arguments)
        message = f"calling '{program}' with {len(cmdline.arguments)} arguments: {quoted}\n"
        log_forced(log, logging.INFO, message)
    from dcmrecv.config import LogOptions

    options = LogOptions(settings.level, settings.config_file, dialect.name, settings.json_lines)
    return Run(
        dialect,
        cmdline,
        quiet=not log.isEnabledFor(logging.ERROR),
        verbose=log.isEnabledFor(logging.INFO),
        config=replace(dialect.base_config(), logging=options),
    )


# --- from the dictionaries to the receiver ----------------------------------------------------


def load_dictionaries(run: Run) -> Run | int:
    """``DCMDICTPATH`` (dcmrecv.man and storescp.man, "ENVIRONMENT"), before the option
    values: ``--output-template`` may use the dictionaries' names."""
    from dcmrecv.storage.dictionary import DictionaryError
    from dcmrecv.storage.dictionary_files import load_dictionaries as load

    try:
        load(os.environ)
    except DictionaryError as exc:
        return error(run.dialect, f"cannot load data dictionary: {exc}", run.quiet)
    return run


def evaluate_options(run: Run) -> Run | int:
    try:
        config = run.dialect.evaluate(run.cmdline, run.verbose)
    except ArgvError as exc:
        return error(run.dialect, str(exc), run.quiet)
    return replace(run, config=replace(config, logging=run.config.logging))


def load_profile(run: Run) -> Run | int:
    """``-xf FILE PROFILE``, read and checked as DCMTK reads it."""
    log = logger()
    found = run.cmdline.last("--config-file")
    if found is None:
        if run.dialect.warn_without_profile:
            # Same words and place as DCMTK's dcmrecv, before the output directory check.
            log.warning(
                "no configuration file specified, SCP will only support the Verification SOP Class"
            )
        return run
    from dcmrecv.negotiation import asconfig

    try:
        profile = asconfig.load_profile(found.values[0], found.values[1])
    except asconfig.ConfigError as exc:
        message, code = run.dialect.profile_failure
        log.critical(message, exc)
        return code
    return replace(run, config=replace(run.config, profile=profile))


def storage_commitment(run: Run) -> Run | int:
    """``--storage-commitment``: the Push Model class joins what the profile accepts
    (SCP role; Explicit, then Implicit VR Little Endian), and the peer table is read
    (``--commitment-peers`` files first, then ``--commitment-peer``: the last address
    given for an AE title wins)."""
    config = run.config
    if not config.storage_commitment:
        return run
    from dcmrecv.commitment import messages
    from dcmrecv.commitment.peers import Peer, PeerError, parse_peer_file, peer_table
    from dcmrecv.negotiation.asconfig import PresentationContextSpec, verification_only_profile

    peers: list[Peer] = []
    for found in run.cmdline.all("--commitment-peers"):
        filename = found.values[0]
        try:
            peers += parse_peer_file(read_text(filename), filename)
        except (FileTooLarge, PeerError) as exc:
            return error(
                run.dialect, f"Cannot use --commitment-peers '{filename}': {exc}", run.quiet
            )
        except OSError as exc:
            message = f"Cannot open --commitment-peers '{filename}': {exc.strerror or exc}"
            return error(run.dialect, message, run.quiet)
    table = peer_table([*peers, *config.commitment_peers])
    if not table:
        logger().warning(
            "--storage-commitment without --commitment-peer or --commitment-peers: "
            "every request is refused until its requester is listed"
        )
    profile = config.profile or verification_only_profile()
    if all(c.abstract_syntax != messages.SOP_CLASS_UID for c in profile.contexts):
        context = PresentationContextSpec(messages.SOP_CLASS_UID, messages.TRANSFER_SYNTAXES)
        profile = replace(profile, contexts=(*profile.contexts, context))
    return replace(
        run, config=replace(config, profile=profile, commitment_peers=tuple(table.values()))
    )


def template_warning(template: Template | None) -> str | None:
    """A template that names no per-instance value puts several instances under one
    name, where ``--on-duplicate`` then decides (by default: the last one stays)."""
    if template is None or template.uses("SOPInstanceUID") or template.uses("UniqueName"):
        return None
    if 0x00080018 in template.tags:
        return None
    return (
        f"--output-template {template.text!r} names neither {{SOPInstanceUID}} nor "
        "{UniqueName}: instances with the same values share one file (--on-duplicate)"
    )


def check_config(run: Run) -> Run | int:
    """``--check-config``: the negotiation table on stdout, likely mistakes as W: lines,
    and with ``--output-template`` the path of a sample data set; exit 0."""
    if not run.cmdline.has("--check-config"):
        return run
    from dcmrecv.commands import checkconfig
    from dcmrecv.negotiation.asconfig import verification_only_profile

    log = logger()
    config = run.config
    profile = config.profile or verification_only_profile()
    click.echo("\n".join(checkconfig.negotiation_table(profile)))
    for warning in checkconfig.profile_warnings(profile):
        log.warning("%s", warning)
    template = config.output_template
    if template is not None:
        shared = template_warning(template)
        if shared is not None:
            log.warning("%s", shared)
        import pydicom
        from pydicom.data import get_testdata_file

        sample = get_testdata_file("CT_small.dcm")
        dataset = pydicom.dcmread(str(sample), stop_before_pixels=True)
        path = checkconfig.sample_path(dataset, template, config.template_fallback)
        click.echo(f"--output-template: pydicom's CT_small.dcm would be stored as {path}")
    if config.storage_commitment:
        peers = ", ".join(str(peer) for peer in config.commitment_peers)
        click.echo(f"--storage-commitment: reports to {peers or 'nobody: every request refused'}")
    return check_state(config)


def check_state(config: ReceiverConfig) -> int:
    """``--check-config`` with a state store in use (``--state``, or the embedded one
    for ``--eostudy-timeout``): connect, create or migrate its tables, say so; 1 when
    it cannot be used."""
    if config.state is None and not config.uses_state:
        return exitcodes.EXITCODE_NO_ERROR
    from dcmrecv.state.model import StateUnavailable
    from dcmrecv.state.url import open_state

    try:
        store = open_state(config.state_url, durable=config.fsync)
        try:
            click.echo(f"--state: {store.check()}")
        finally:
            store.close()
    except (ValueError, StateUnavailable) as exc:
        logger().error("%s", exc)
        return exitcodes.EXITCODE_COMMANDLINE_SYNTAX_ERROR
    return exitcodes.EXITCODE_NO_ERROR


def read_title_files(run: Run) -> Run | int:
    """``--accept-calling-file``: their titles join ``--accept-calling``'s."""
    from dcmrecv.commands.values import parse_aetitle_list

    config = run.config
    if config.accept_calling is None:
        return run
    titles = set(config.accept_calling)
    for found in run.cmdline.all("--accept-calling-file"):
        filename = found.values[0]
        try:
            titles |= parse_aetitle_list(read_text(filename), filename)
        except FileTooLarge as exc:
            message = f"Cannot use --accept-calling-file '{filename}': {exc}"
            return error(run.dialect, message, run.quiet)
        except OSError as exc:
            message = f"Cannot open --accept-calling-file '{filename}': {exc.strerror or exc}"
            return error(run.dialect, message, run.quiet)
        except ArgvError as exc:
            return error(run.dialect, str(exc), run.quiet)
    if not titles:
        logger().warning("--accept-calling-file lists no AE titles: every association is refused")
    return replace(run, config=replace(config, accept_calling=frozenset(titles)))


def warn_about_template(run: Run) -> Run | int:
    warning = template_warning(run.config.output_template)
    if warning is not None:
        logger().warning("%s", warning)
    return run


def quarantine_problem(quarantine: Path | None, output_directory: Path) -> str | None:
    """Why ``--quarantine-dir`` cannot be used, or None.  It must be a writable
    directory outside the output directory, so a refused data set never appears
    among the stored ones."""
    if quarantine is None:
        return None
    problem = directory_problem(quarantine)
    if problem is not None:
        return f"{quarantine}: {problem}"
    inner, outer = quarantine.resolve(), output_directory.resolve()
    if inner == outer or outer in inner.parents:
        return f"{quarantine}: must not be inside the output directory"
    return None


def check_quarantine(run: Run) -> Run | int:
    problem = quarantine_problem(run.config.quarantine_directory, run.config.output_directory)
    if problem is not None:
        message = f"Invalid value for option --quarantine-dir ({problem})"
        return error(run.dialect, message, run.quiet)
    return run


def serve(run: Run) -> int:
    """The receiver runs until SIGTERM or SIGINT.  The transport layer (TLS) is created
    by serve, last, as DCMTK creates it after the output directory check."""
    import dcmrecv

    return run.dialect.exit_code(dcmrecv.serve(run.config))


def run(dialect: Dialect, argv: Sequence[str], program: str) -> int:
    """Run ``dialect``'s command on ``argv`` (``program``: the name for ``--arguments``);
    the process's exit code."""
    cmdline = read_command_line(dialect, argv)
    if isinstance(cmdline, int):
        return cmdline
    shown = show_information(dialect, cmdline)
    if shown is not None:
        return shown
    state = start_logging(dialect, cmdline, program)
    steps: tuple[RunStep, ...] = (
        load_dictionaries,
        evaluate_options,
        dialect.start,
        load_profile,
        storage_commitment,
        check_config,
        read_title_files,
        dialect.check_output_directory,
        warn_about_template,
        check_quarantine,
        serve,
    )
    for step in steps:
        if isinstance(state, int):
            break
        state = step(state)
    assert isinstance(state, int)  # serve returns the exit code
    return state


class DcmtkCommand(click.Command):
    """A click command that hands its raw arguments to the command's own parser.

    DCMTK's grammar is not click's (``-ssd`` is one unknown option, values may look
    like options, ``@file`` expands, ``--`` is an error): click provides the entry
    point, output and exit handling only.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.params["argv"] = tuple(args)
        return []
