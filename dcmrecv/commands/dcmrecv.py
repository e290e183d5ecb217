"""The ``dcmrecv`` command: argv -> :class:`ReceiverConfig` -> :func:`dcmrecv.serve`.

The command line is DCMTK's (dcmrecv.man): the same options, spellings, defaults,
messages and exit codes, so scripts written for DCMTK's ``dcmrecv`` run unchanged.
DCMTK's grammar is not click's (``-ssd`` is one unknown option, values may look
like options, ``@file`` expands, ``--`` is an error), so :mod:`dcmrecv.commands.argv` parses
the arguments; click provides the entry point, output and exit handling.

The steps follow dcmrecv's order, which decides which error a user sees first:
syntax, ``--help``/``--version``, logging options (after which ``-q`` silences
errors), option values, the port, then the ``-xf`` profile (exit 66), the output
directory (exit 45), and finally the server (64 when it cannot listen).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import NoReturn

import click

import dcmrecv
from dcmrecv import exitcodes
from dcmrecv.boundedread import FileTooLarge
from dcmrecv.commands import common as dcmtkcli
from dcmrecv.commands import policy_options, rules
from dcmrecv.commands.argv import (
    ArgvError,
    CommandLine,
    Occurrence,
    expand_command_files,
    format_help,
    option_number,
    option_unsigned,
    param_unsigned,
    parse,
)
from dcmrecv.commands.dictionaries import load_dictionaries
from dcmrecv.commands.environment import EnvConfigError, apply_environment
from dcmrecv.commands.ops_options import OPERATIONS_OPTIONS
from dcmrecv.commands.tls_options import tls_settings
from dcmrecv.config import (
    MAX_MAX_PDU,
    MIN_MAX_PDU,
    FilenameMode,
    IPNetwork,
    ReceiverConfig,
    StorageMode,
    SubdirectoryMode,
)
from dcmrecv.logs.layout import BASE_LOGGER
from dcmrecv.storage.dictionary import DictionaryError
from dcmrecv.storage.naming import PlanError, check_extension

APPNAME = "dcmrecv"
DESCRIPTION = "Simple DICOM storage SCP (receiver)"
PARAMS = (("port", "tcp/ip port number to listen on"),)

#: The application's messages come from the base logger, as DCMTK's come from
#: ``dcmtk.apps.dcmrecv``: a ``%c{1}`` pattern prints ``dcmrecv`` for both.
log = logging.getLogger(BASE_LOGGER)


def identification() -> str:
    return dcmtkcli.identification(APPNAME)


def header() -> str:
    return dcmtkcli.header(APPNAME, DESCRIPTION)


def usage_text() -> str:
    return header() + format_help(f"usage: {APPNAME} [options] port", PARAMS)


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def version_text() -> str:
    """``--version``: DCMTK's layout, with the Python libraries we build on."""
    libraries = "".join(f"- {name} {_package_version(name)}\n" for name in ("pydicom", "click"))
    return dcmtkcli.version_text(APPNAME, DESCRIPTION, libraries)


class CommandLineError(dcmtkcli.DcmtkCommandLineError):
    """dcmrecv's command line problems, under dcmrecv's header."""

    exit_code = exitcodes.EXITCODE_COMMANDLINE_SYNTAX_ERROR

    def banner(self) -> str:
        return header()


# --- evaluating the options (pure) ----------------------------------------------------


@dataclass(frozen=True)
class DcmrecvSettings:
    """The receiver the command line asks for, before any file is read."""

    config: ReceiverConfig
    #: ``-xf FILE PROFILE``, loaded later (its errors have their own exit code).
    profile_source: tuple[str, str] | None
    #: ``--accept-calling-file``: read later, their titles join ``accept_calling``.
    accept_calling_files: tuple[str, ...] = ()


def _values(cmdline: CommandLine, long: str) -> tuple[str, ...]:
    """The first value of every occurrence of ``long``, in command line order."""
    return tuple(o.values[0] for o in cmdline.all(long))


#: PS3.5 6.2, AE: at most 16 characters of the default repertoire, no backslash and
#: no control characters; leading and trailing spaces are not significant.
MAX_AETITLE_LENGTH = 16


def aetitle_problem(title: str) -> str | None:
    """Why ``title`` (already stripped of spaces) is not a valid AE title, or None."""
    if not title:
        return "empty AE title"
    if len(title) > MAX_AETITLE_LENGTH:
        return f"AE title longer than {MAX_AETITLE_LENGTH} characters"
    if any(not (" " <= char <= "~") or char == "\\" for char in title):
        return "AE title with a backslash or a character outside ASCII"
    return None


def accept_calling_titles(values: tuple[str, ...]) -> frozenset[str]:
    """``--accept-calling`` values as the engine compares them (stripped, checked)."""
    titles = set()
    for value in values:
        title = value.strip(" ")
        problem = aetitle_problem(title)
        if problem is not None:
            raise ArgvError(f"Invalid value for option --accept-calling ({problem}: '{value}')")
        titles.add(title)
    return frozenset(titles)


def parse_aetitle_list(text: str, filename: str) -> frozenset[str]:
    """The titles of an ``--accept-calling-file``: one per line, ``#`` comment lines."""
    titles = set()
    for number, line in enumerate(text.splitlines(), start=1):
        title = line.strip(" \t\r")
        if not title or title.startswith("#"):
            continue
        problem = aetitle_problem(title)
        if problem is not None:
            raise ArgvError(
                f"Invalid AE title in --accept-calling-file '{filename}' line {number}"
                f" ({problem}: '{title}')"
            )
        titles.add(title)
    return frozenset(titles)


def accept_from_networks(values: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """``--accept-from`` values: an address or a network in CIDR notation each."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ArgvError(f"Invalid value for option --accept-from ({value})") from None
    return tuple(networks)


def _aetitle(cmdline: CommandLine) -> rules.Fields:
    # -aet sets our AE title and makes us check the called AE title; -uca (the
    # default) answers with whatever AE title was called.
    found = cmdline.last("--aetitle", "--use-called-aetitle")
    if found is None or found.spec.long != "--aetitle":
        return {}
    return {"aetitle": found.values[0], "aetitle_explicit": True, "use_called_aetitle": False}


def _extension(occurrence: Occurrence) -> str:
    try:
        check_extension(occurrence.values[0])
    except PlanError as exc:
        # A path separator would put files elsewhere (storage.check_extension).
        raise ArgvError(f"Invalid value for option --filename-extension: {exc}") from None
    return occurrence.values[0]


def _accept_calling(cmdline: CommandLine) -> rules.Fields:
    # Titles from --accept-calling-file join later, when the files are read; the
    # option alone already restricts (to nothing, if the files list no title).
    if not cmdline.has("--accept-calling") and not cmdline.has("--accept-calling-file"):
        return {}
    return {"accept_calling": accept_calling_titles(_values(cmdline, "--accept-calling"))}


def _accept_from(cmdline: CommandLine) -> rules.Fields:
    values = _values(cmdline, "--accept-from")
    return {"accept_from": accept_from_networks(values)} if values else {}


#: dcmrecv's options before the port, in the order DCMTK checks their values.
OPTIONS_BEFORE_PORT: tuple[rules.Rule, ...] = (
    # network options
    _aetitle,
    rules.value("--acse-timeout", "acse_timeout", lambda o: float(option_unsigned(o, 1))),
    rules.value("--dimse-timeout", "dimse_timeout", lambda o: float(option_unsigned(o, 1))),
    rules.value("--max-pdu", "max_pdu", lambda o: option_unsigned(o, MIN_MAX_PDU, MAX_MAX_PDU)),
    rules.flag("--disable-host-lookup", "disable_host_lookup"),
    rules.flag("--verbose-pc", "verbose_pc"),
    # output options
    rules.value("--output-directory", "output_directory", lambda o: Path(o.values[0])),
    rules.choice(
        "subdirectory",
        {
            "--no-subdir": SubdirectoryMode.NONE,
            "--series-date-subdir": SubdirectoryMode.SERIES_DATE,
        },
    ),
    rules.choice(
        "filename_mode",
        {
            "--default-filenames": FilenameMode.DEFAULT,
            "--unique-filenames": FilenameMode.UNIQUE,
            "--short-unique-names": FilenameMode.SHORT_UNIQUE,
            "--system-time-names": FilenameMode.SYSTEM_TIME,
        },
    ),
    rules.value("--filename-extension", "filename_extension", _extension),
    # DCMTK refuses +B with +ssd (it reads the Series Date from a parsed data set);
    # we read it from the received file before renaming it, so the pair works.
    rules.choice(
        "storage_mode",
        {
            "--normal": StorageMode.NORMAL,
            "--bit-preserving": StorageMode.BIT_PRESERVING,
            "--ignore": StorageMode.IGNORE,
        },
    ),
    rules.flag("--no-fsync", "fsync", False),
)

#: Our own options (not in DCMTK's dcmrecv), checked after the port and TLS.
OPTIONS_AFTER_PORT: tuple[rules.Rule, ...] = (
    rules.value("--max-associations", "max_associations", lambda o: option_unsigned(o, 1)),
    rules.value("--shutdown-timeout", "shutdown_timeout", lambda o: option_number(o, 0.0)),
    _accept_calling,
    _accept_from,
    *policy_options.POLICY_OPTIONS,
    # operations (README, "Operations")
    *OPERATIONS_OPTIONS,
)


def dcmrecv_settings(cmdline: CommandLine, verbose: bool) -> DcmrecvSettings:
    """Evaluate the receiver options in dcmrecv's order; raises :class:`ArgvError`.

    ``verbose`` tells whether INFO messages are logged (``+v`` needs that).  Of
    mutually exclusive options the rightmost wins.
    """
    if cmdline.has("--verbose-pc") and not verbose:
        raise ArgvError("--verbose-pc only allowed with verbose mode")
    profile = cmdline.last("--config-file")
    profile_source = (profile.values[0], profile.values[1]) if profile else None

    # The port is not known yet: 0 stands in, the real one replaces it below.
    config = rules.apply(ReceiverConfig(port=0), OPTIONS_BEFORE_PORT, cmdline)
    if not cmdline.has("--check-config") or len(cmdline.params) >= 1:
        config = replace(config, port=param_unsigned(cmdline, 1, 1, 65535))
    # Recognised so the command line parses, refused until implemented (-i6, -i0;
    # -i4 is what we do anyway).
    unsupported = cmdline.unsupported()
    if unsupported is not None:
        raise ArgvError(f"{unsupported.spec.unsupported}: {unsupported.given}")
    # DCMTK evaluates the TLS options after the port.
    tls_options = tls_settings(cmdline)
    config = rules.apply(config, OPTIONS_AFTER_PORT, cmdline)
    config = replace(config, tls=tls_options)
    return DcmrecvSettings(config, profile_source, _values(cmdline, "--accept-calling-file"))


def output_directory_problem(path: Path) -> str | None:
    """DCMTK's reason for refusing an output directory, or None if it is usable."""
    if not path.is_dir():
        return "Directory does not exist"
    if not os.access(path, os.W_OK):
        return "Directory is not writable"
    return None


# --- the command ---------------------------------------------------------------------------


COMMAND = dcmtkcli.Command(APPNAME, DESCRIPTION, usage_text, version_text, CommandLineError)


def _run(ctx: click.Context, argv: tuple[str, ...]) -> NoReturn:
    try:
        # DCMRECV_* variables become options placed before the command line, so
        # the command line wins (DCMTK: the rightmost option wins).
        args = apply_environment(expand_command_files(argv, dcmtkcli.read_text), os.environ)
        cmdline = parse(args)
    except (ArgvError, EnvConfigError) as exc:
        raise CommandLineError(str(exc)) from None
    logging_state = dcmtkcli.prologue(ctx, COMMAND, cmdline)
    quiet = logging_state.quiet

    try:
        # Before the options: --output-template may use the dictionaries' names.
        load_dictionaries(os.environ)
    except DictionaryError as exc:
        raise CommandLineError(f"cannot load data dictionary: {exc}", quiet=quiet) from None

    try:
        settings = dcmrecv_settings(cmdline, verbose=logging_state.verbose)
    except ArgvError as exc:
        raise CommandLineError(str(exc), quiet=quiet) from None
    config = settings.config
    log.debug("%s\n", identification())
    log.info("configuring service class provider ...")

    if settings.profile_source is not None:
        from dcmrecv.negotiation import asconfig

        filename, profile_name = settings.profile_source
        try:
            profile = asconfig.load_profile(filename, profile_name)
        except asconfig.ConfigError as exc:
            log.critical("cannot load association configuration: %s", exc)
            dcmtkcli.finish(ctx, exitcodes.EXITCODE_INVALID_ASSOCIATION_CONFIG)
        config = replace(config, profile=profile)
    else:
        # Same words and place as DCMTK's dcmrecv, before the output directory check.
        log.warning(
            "no configuration file specified, SCP will only support the Verification SOP Class"
        )
    if cmdline.has("--check-config"):
        policy_options.check_config(
            config.profile, config.output_template, config.template_fallback
        )
        dcmtkcli.finish(ctx, exitcodes.EXITCODE_NO_ERROR)

    titles = set(config.accept_calling or ())
    for filename in settings.accept_calling_files:
        try:
            titles |= parse_aetitle_list(dcmtkcli.read_text(filename), filename)
        except FileTooLarge as exc:
            message = f"Cannot use --accept-calling-file '{filename}': {exc}"
            raise CommandLineError(message, quiet=quiet) from None
        except OSError as exc:
            message = f"Cannot open --accept-calling-file '{filename}': {exc.strerror or exc}"
            raise CommandLineError(message, quiet=quiet) from None
        except ArgvError as exc:
            raise CommandLineError(str(exc), quiet=quiet) from None
    if config.accept_calling is not None:
        if not titles:
            log.warning("--accept-calling-file lists no AE titles: every association is refused")
        config = replace(config, accept_calling=frozenset(titles))

    problem = output_directory_problem(config.output_directory)
    if problem is not None:
        log.critical("cannot specify output directory: %s", problem)
        dcmtkcli.finish(ctx, exitcodes.EXITCODE_INVALID_OUTPUT_DIRECTORY)
    warning = policy_options.template_warning(config.output_template)
    if warning is not None:
        log.warning("%s", warning)
    problem = policy_options.quarantine_problem(
        config.quarantine_directory, config.output_directory
    )
    if problem is not None:
        raise CommandLineError(
            f"Invalid value for option --quarantine-dir ({problem})", quiet=quiet
        )

    # The transport layer (TLS) is created by serve, last, as DCMTK creates it after
    # the output directory check (exit code 71 when it cannot be).
    dcmtkcli.finish(ctx, dcmrecv.serve(config))


@click.command(cls=dcmtkcli.DcmtkCommand, name=APPNAME, add_help_option=False)
@click.pass_context
def main(ctx: click.Context, argv: tuple[str, ...]) -> None:
    """Simple DICOM storage SCP (receiver); run ``dcmrecv --help`` for the options."""
    _run(ctx, argv)
