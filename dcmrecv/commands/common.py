"""What dcmrecv and storescp share as DCMTK-style click commands.

Both commands read their arguments with DCMTK's grammar (dcmrecv.commands.argv), not with
click's parser, and print DCMTK's identification lines and ``error:`` block.  Both
begin the same way (:func:`prologue`): ``--help``, ``--version``, the cipher and
profile lists, the logging options and ``--arguments``, in DCMTK's order; only what
follows differs.
"""

from __future__ import annotations

import logging
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, NoReturn

import click

from dcmrecv import __version__, exitcodes
from dcmrecv.boundedread import MAX_CONFIG_FILE_SIZE, read_bounded
from dcmrecv.commands.argv import ArgvError, CommandLine
from dcmrecv.logs.layout import BASE_LOGGER, DEFAULT_LEVEL, level_from_name, log_forced
from dcmrecv.logs.logger_config import LogConfigError, configure_logging
from dcmrecv.wire import tls


def identification(appname: str) -> str:
    """Our counterpart of DCMTK's ``$dcmtk: dcmrecv v3.6.7 2022-04-22 $`` line."""
    return f"$dcmrecv: {appname} v{__version__} $"


def header(appname: str, description: str) -> str:
    """The identification lines DCMTK prints above help, version and errors."""
    return f"{identification(appname)}\n\n{appname}: {description}\n"


def version_text(appname: str, description: str, libraries: str = "") -> str:
    """``--version``: DCMTK's layout (header, host type), then ``libraries`` lines."""
    return (
        header(appname, description)
        + f"\nHost type: {platform.machine()}-{sys.platform}\n"
        + f"Python: {platform.python_version()} ({platform.python_implementation()})\n"
        + (f"\nExternal libraries used:\n{libraries}" if libraries else "")
    )


class DcmtkCommandLineError(click.ClickException):
    """A command line problem: DCMTK's ``error: ...`` block on stderr, exit code 1.

    In quiet mode (``-q``, or any log level above ERROR) DCMTK prints nothing for
    errors found after the logging options are evaluated; ``quiet`` does the same.
    Subclasses say which command's header goes above the message.
    """

    exit_code = exitcodes.EXITCODE_COMMANDLINE_SYNTAX_ERROR

    def __init__(self, message: str, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet

    def banner(self) -> str:
        raise NotImplementedError

    def show(self, file: IO[Any] | None = None) -> None:
        if not self.quiet:
            click.echo(f"{self.banner()}error: {self.message}", err=True, file=file)


class DcmtkCommand(click.Command):
    """A click command that hands its raw arguments to the DCMTK-style parser."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.params["argv"] = tuple(args)
        return []


def read_text(name: str) -> str:
    """A command line file's text (``@file``, ``--accept-calling-file``), bytes that are
    not UTF-8 kept; :class:`dcmrecv.boundedread.FileTooLarge` past
    :data:`~dcmrecv.boundedread.MAX_CONFIG_FILE_SIZE`."""
    return read_bounded(name, MAX_CONFIG_FILE_SIZE).decode("utf-8", errors="surrogateescape")


def finish(ctx: click.Context, code: int) -> NoReturn:
    ctx.exit(code)
    raise AssertionError("unreachable")  # pragma: no cover - ctx.exit raises


# --- the logging options ------------------------------------------------------------------


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
    """Evaluate ``-q -v -d -ll -lc --arguments``.

    ``-q``, ``-v`` and ``-d`` are one block (the rightmost wins); ``-ll`` may not be
    combined with them, ``-lc`` with neither, as in DCMTK.
    """
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


# --- the prologue both commands share -----------------------------------------------------


@dataclass(frozen=True)
class Command:
    """What the prologue needs to know of a command."""

    appname: str
    description: str
    usage_text: Callable[[], str]
    version_text: Callable[[], str]
    #: The command's error class (its header above ``error:``).
    error: type[DcmtkCommandLineError]


@dataclass(frozen=True)
class LoggingState:
    """How logging came out of the prologue, for the steps that follow."""

    #: Errors are not printed (``-q`` or a level above ERROR), as in DCMTK.
    quiet: bool
    #: INFO messages are logged (``+v`` / ``--verbose-pc`` need that).
    verbose: bool


def prologue(ctx: click.Context, command: Command, cmdline: CommandLine) -> LoggingState:
    """The first steps of both commands, in DCMTK's order; exits for the informational
    options (code 0) and for bad logging options (the command's error, exit code 1).

    An empty command line and ``--help`` print the usage text, then ``--version``,
    ``--list-ciphers`` and ``--list-profiles``; then the logging options take effect
    and ``--arguments`` prints the expanded command line (DCMTK's ``OFLog`` and
    ``OFConsoleApplication`` do these in this order).
    """
    informational: tuple[tuple[bool, Callable[[], str]], ...] = (
        (cmdline.empty or cmdline.has("--help"), command.usage_text),
        (cmdline.has("--version"), command.version_text),
        (
            cmdline.has("--list-ciphers"),
            lambda: (
                header(command.appname, command.description)
                + tls.list_ciphers_text(tls.available_ciphers())
            ),
        ),
        (
            cmdline.has("--list-profiles"),
            lambda: (
                header(command.appname, command.description)
                + tls.list_profiles_text(tls.available_ciphers())
            ),
        ),
    )
    for wanted, text in informational:
        if wanted:
            click.echo(text(), nl=False)
            finish(ctx, exitcodes.EXITCODE_NO_ERROR)

    try:
        settings = log_settings(cmdline)
        configure_logging(
            settings.level, settings.config_file, command.appname, json_lines=settings.json_lines
        )
    except (ArgvError, LogConfigError, ValueError) as exc:
        raise command.error(str(exc)) from None
    base = logging.getLogger(BASE_LOGGER)
    if settings.show_arguments:
        program = ctx.info_name or command.appname
        quoted = "".join(f"'{arg}' " for arg in cmdline.arguments)
        message = f"calling '{program}' with {len(cmdline.arguments)} arguments: {quoted}\n"
        log_forced(base, logging.INFO, message)
    return LoggingState(
        quiet=not base.isEnabledFor(logging.ERROR), verbose=base.isEnabledFor(logging.INFO)
    )
