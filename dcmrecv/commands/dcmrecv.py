"""The ``dcmrecv`` command: argv -> :class:`ReceiverConfig` -> ``server.serve()``.

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
import platform
import sys
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import click

from dcmrecv import exitcodes
from dcmrecv.commands import common as dcmtkcli
from dcmrecv.commands.argv import (
    ArgvError,
    CommandLine,
    expand_command_files,
    format_help,
    option_number,
    option_unsigned,
    param_unsigned,
    parse,
)
from dcmrecv.commands.environment import EnvConfigError, apply_environment
from dcmrecv.config import (
    DEFAULT_AETITLE,
    MAX_MAX_PDU,
    MIN_MAX_PDU,
    FilenameMode,
    IPNetwork,
    ReceiverConfig,
    StorageMode,
    SubdirectoryMode,
)
from dcmrecv.logs.layout import (
    BASE_LOGGER,
    DEFAULT_LEVEL,
    level_from_name,
    log_forced,
)
from dcmrecv.logs.logger_config import LogConfigError, configure_logging
from dcmrecv.storage.naming import PlanError, check_extension
from dcmrecv.wire import tls

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
    libraries = "".join(
        f"- {name} {_package_version(name)}\n" for name in ("pydicom", "pynetdicom", "click")
    )
    return (
        header()
        + f"\nHost type: {platform.machine()}-{sys.platform}\n"
        + f"Python: {platform.python_version()} ({platform.python_implementation()})\n"
        + f"\nExternal libraries used:\n{libraries}"
    )


class CommandLineError(dcmtkcli.DcmtkCommandLineError):
    """dcmrecv's command line problems, under dcmrecv's header."""

    exit_code = exitcodes.EXITCODE_COMMANDLINE_SYNTAX_ERROR

    def banner(self) -> str:
        return header()


# --- evaluating the options (pure) ----------------------------------------------------


@dataclass(frozen=True)
class LogRequest:
    """What the logging options ask for (DCMTK's ``OFLog::configureFromCommandLine``)."""

    level: str
    config_file: str | None
    show_arguments: bool


_VERBOSITY = {"--debug": "debug", "--verbose": "info", "--quiet": "fatal"}


def log_request(cmdline: CommandLine) -> LogRequest:
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
    return LogRequest(level, config_file, cmdline.has("--arguments"))


@dataclass(frozen=True)
class Request:
    """The receiver the command line asks for, before any file is read."""

    config: ReceiverConfig
    #: ``-xf FILE PROFILE``, loaded later (its errors have their own exit code).
    profile_source: tuple[str, str] | None
    #: ``+tls`` and friends; the context is built later (its errors exit with 71).
    tls_options: tls.TLSOptions | None = None
    #: ``--accept-calling-file``: read later, their titles join ``accept_calling``.
    accept_calling_files: tuple[str, ...] = ()


def _values(cmdline: CommandLine, long: str) -> tuple[str, ...]:
    """The first value of every occurrence of ``long``, in command line order."""
    return tuple(o.values[0] for o in cmdline.occurrences if o.spec.long == long)


_PROFILES = tuple(profile.value for profile in tls.SecurityProfile)
_VERIFICATION = {
    "--require-peer-cert": tls.PeerVerification.REQUIRE,
    "--verify-peer-cert": tls.PeerVerification.VERIFY,
    "--ignore-peer-cert": tls.PeerVerification.IGNORE,
}


def tls_request(cmdline: CommandLine) -> tls.TLSOptions | None:
    """Evaluate the TLS options as DCMTK's ``DcmTLSOptions::parseArguments`` does.

    The checks come in DCMTK's order with its messages (``--use-passwd only allowed
    with --enable-tls``, ``--cipher not allowed with --profile-bcp195-ex``); of each
    block of alternatives the rightmost wins.  None when TLS is not enabled.
    """
    transport = cmdline.last("--disable-tls", "--enable-tls")
    enabled = transport is not None and transport.spec.long == "--enable-tls"

    def rightmost(*longs: str) -> str | None:
        found = cmdline.last(*longs)
        return found.spec.long if found is not None else None

    def depend(long: str | None, condition: bool, on: str = "--enable-tls") -> None:
        if long is not None and not condition:
            raise ArgvError(f"{long} only allowed with {on}")

    def present(long: str) -> str | None:
        return long if cmdline.has(long) else None

    password_option = cmdline.last("--std-passwd", "--use-passwd", "--null-passwd")
    depend(password_option.spec.long if password_option else None, enabled)
    password: str | None = None
    if password_option is not None and password_option.spec.long == "--use-passwd":
        password = password_option.values[0]
    elif password_option is not None and password_option.spec.long == "--null-passwd":
        password = ""
    key_format_option = rightmost("--pem-keys", "--der-keys")
    depend(key_format_option, enabled)
    crl_option = rightmost("--enable-crl-vfy", "--enable-crl-all")
    depend(crl_option, enabled)
    depend(present("--dhparam"), enabled)
    dhparam = cmdline.last("--dhparam")
    expect_sni = cmdline.last("--expect-sni")
    if cmdline.has("--no-sni") and expect_sni is not None:
        raise ArgvError("--no-sni not allowed with --expect-sni")
    seed = cmdline.last("--seed")
    depend(present("--seed"), enabled)
    write_seed = cmdline.last("--write-seed", "--write-seed-file")
    if write_seed is not None:
        depend(write_seed.spec.long, enabled)
        depend(write_seed.spec.long, seed is not None, "--seed")
    verification = rightmost(*_VERIFICATION)
    depend(verification, enabled)
    profile_option = rightmost(*_PROFILES)
    depend(profile_option, enabled)
    profile = (
        tls.SecurityProfile(profile_option)
        if profile_option is not None
        else tls.SecurityProfile.BCP195_RFC8996
    )
    for long in ("--add-cert-file", "--add-cert-dir", "--add-crl-file"):
        depend(present(long), enabled)
    if cmdline.has("--cipher"):
        depend("--cipher", enabled)
        if profile is tls.SecurityProfile.BCP195_EXTENDED:
            raise ArgvError("--cipher not allowed with --profile-bcp195-ex")

    if not enabled:
        return None
    assert transport is not None
    crl_mode = {
        None: tls.CRLMode.NONE,
        "--enable-crl-vfy": tls.CRLMode.LEAF,
        "--enable-crl-all": tls.CRLMode.CHAIN,
    }[crl_option]
    write_seed_file: str | None = None
    if write_seed is not None and seed is not None:
        write_seed_file = (
            seed.values[0] if write_seed.spec.long == "--write-seed" else write_seed.values[0]
        )
    return tls.TLSOptions(
        private_key=transport.values[0],
        certificate=transport.values[1],
        password=password,
        key_format=tls.KeyFormat.DER if key_format_option == "--der-keys" else tls.KeyFormat.PEM,
        ca_files=_values(cmdline, "--add-cert-file"),
        ca_dirs=_values(cmdline, "--add-cert-dir"),
        crl_files=_values(cmdline, "--add-crl-file"),
        crl_mode=crl_mode,
        profile=profile,
        ciphers=_values(cmdline, "--cipher"),
        dhparam=dhparam.values[0] if dhparam else None,
        verification=_VERIFICATION[verification] if verification else tls.PeerVerification.REQUIRE,
        expected_sni=expect_sni.values[0] if expect_sni else None,
        seed_file=seed.values[0] if seed else None,
        write_seed_file=write_seed_file,
    )


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


def receiver_request(cmdline: CommandLine, verbose: bool) -> Request:
    """Evaluate the receiver options in dcmrecv's order; raises :class:`ArgvError`.

    ``verbose`` tells whether INFO messages are logged (``+v`` needs that).  Of
    mutually exclusive options the rightmost wins.
    """
    if cmdline.has("--verbose-pc") and not verbose:
        raise ArgvError("--verbose-pc only allowed with verbose mode")

    profile = cmdline.last("--config-file")
    profile_source = (profile.values[0], profile.values[1]) if profile else None

    # -aet sets our AE title and makes us check the called AE title; -uca (the
    # default) answers with whatever AE title was called.
    aetitle = DEFAULT_AETITLE
    explicit = False
    ae_option = cmdline.last("--aetitle", "--use-called-aetitle")
    if ae_option is not None and ae_option.spec.long == "--aetitle":
        aetitle, explicit = ae_option.values[0], True

    acse = cmdline.last("--acse-timeout")
    acse_timeout = float(option_unsigned(acse, 1)) if acse else None
    dimse = cmdline.last("--dimse-timeout")
    dimse_timeout = float(option_unsigned(dimse, 1)) if dimse else None
    pdu = cmdline.last("--max-pdu")
    max_pdu = option_unsigned(pdu, MIN_MAX_PDU, MAX_MAX_PDU) if pdu else None

    output = cmdline.last("--output-directory")
    output_directory = Path(output.values[0]) if output else Path(".")

    subdir = cmdline.last("--no-subdir", "--series-date-subdir")
    subdirectory = (
        SubdirectoryMode.SERIES_DATE
        if subdir and subdir.spec.long == "--series-date-subdir"
        else SubdirectoryMode.NONE
    )
    names = cmdline.last(
        "--default-filenames", "--unique-filenames", "--short-unique-names", "--system-time-names"
    )
    filename_mode = {
        None: FilenameMode.DEFAULT,
        "--default-filenames": FilenameMode.DEFAULT,
        "--unique-filenames": FilenameMode.UNIQUE,
        "--short-unique-names": FilenameMode.SHORT_UNIQUE,
        "--system-time-names": FilenameMode.SYSTEM_TIME,
    }[names.spec.long if names else None]
    extension = cmdline.last("--filename-extension")
    if extension is not None:
        try:
            check_extension(extension.values[0])
        except PlanError as exc:
            # A path separator would put files elsewhere (storage.check_extension).
            raise ArgvError(f"Invalid value for option --filename-extension: {exc}") from None

    storage = cmdline.last("--normal", "--bit-preserving", "--ignore")
    storage_mode = {
        None: StorageMode.NORMAL,
        "--normal": StorageMode.NORMAL,
        "--bit-preserving": StorageMode.BIT_PRESERVING,
        "--ignore": StorageMode.IGNORE,
    }[storage.spec.long if storage else None]
    # DCMTK refuses +B with +ssd (it reads the Series Date from a parsed data set);
    # we read it from the received file before renaming it, so the pair works.

    associations = cmdline.last("--max-associations")
    shutdown = cmdline.last("--shutdown-timeout")

    port = param_unsigned(cmdline, 1, 1, 65535)

    # Recognised so the command line parses, refused until implemented (-i6, -i0;
    # -i4 is what we do anyway).
    unsupported = cmdline.unsupported()
    if unsupported is not None:
        raise ArgvError(f"{unsupported.spec.unsupported}: {unsupported.given}")
    # DCMTK evaluates the TLS options after the port.
    tls_options = tls_request(cmdline)

    accept_calling = _values(cmdline, "--accept-calling")
    accept_calling_files = _values(cmdline, "--accept-calling-file")
    accept_from = _values(cmdline, "--accept-from")

    config = ReceiverConfig(port=port, aetitle=aetitle, aetitle_explicit=explicit)
    changes: dict[str, Any] = {
        "use_called_aetitle": not explicit,
        "disable_host_lookup": cmdline.has("--disable-host-lookup"),
        "output_directory": output_directory,
        "subdirectory": subdirectory,
        "filename_mode": filename_mode,
        "filename_extension": extension.values[0] if extension else "",
        "storage_mode": storage_mode,
        "fsync": not cmdline.has("--no-fsync"),
        "verbose_pc": cmdline.has("--verbose-pc"),
        "dimse_timeout": dimse_timeout,
    }
    if acse_timeout is not None:
        changes["acse_timeout"] = acse_timeout
    if max_pdu is not None:
        changes["max_pdu"] = max_pdu
    if associations is not None:
        changes["max_associations"] = option_unsigned(associations, 1)
    if shutdown is not None:
        changes["shutdown_timeout"] = option_number(shutdown, 0.0)
    if accept_calling or accept_calling_files:
        changes["accept_calling"] = accept_calling_titles(accept_calling)
    if accept_from:
        changes["accept_from"] = accept_from_networks(accept_from)
    if tls_options is not None:
        changes["expected_sni"] = tls_options.expected_sni
    return Request(replace(config, **changes), profile_source, tls_options, accept_calling_files)


def output_directory_problem(path: Path) -> str | None:
    """DCMTK's reason for refusing an output directory, or None if it is usable."""
    if not path.is_dir():
        return "Directory does not exist"
    if not os.access(path, os.W_OK):
        return "Directory is not writable"
    return None


# --- the command ---------------------------------------------------------------------------


def _run(ctx: click.Context, argv: tuple[str, ...]) -> NoReturn:
    try:
        # DCMRECV_* variables become options placed before the command line, so
        # the command line wins (DCMTK: the rightmost option wins).
        args = apply_environment(expand_command_files(argv, dcmtkcli.read_text), os.environ)
        cmdline = parse(args)
    except (ArgvError, EnvConfigError) as exc:
        raise CommandLineError(str(exc)) from None

    if cmdline.empty or cmdline.has("--help"):
        click.echo(usage_text(), nl=False)
        dcmtkcli.finish(ctx, exitcodes.EXITCODE_NO_ERROR)
    if cmdline.has("--version"):
        click.echo(version_text(), nl=False)
        dcmtkcli.finish(ctx, exitcodes.EXITCODE_NO_ERROR)
    if cmdline.has("--list-ciphers"):
        click.echo(header() + tls.list_ciphers_text(tls.available_ciphers()), nl=False)
        dcmtkcli.finish(ctx, exitcodes.EXITCODE_NO_ERROR)
    if cmdline.has("--list-profiles"):
        click.echo(header() + tls.list_profiles_text(tls.available_ciphers()), nl=False)
        dcmtkcli.finish(ctx, exitcodes.EXITCODE_NO_ERROR)

    try:
        logging_request = log_request(cmdline)
        configure_logging(logging_request.level, logging_request.config_file, APPNAME)
    except (ArgvError, LogConfigError) as exc:
        raise CommandLineError(str(exc)) from None
    base = logging.getLogger(BASE_LOGGER)
    quiet = not base.isEnabledFor(logging.ERROR)
    if logging_request.show_arguments:
        program = ctx.info_name or APPNAME
        quoted = "".join(f"'{arg}' " for arg in cmdline.arguments)
        message = f"calling '{program}' with {len(cmdline.arguments)} arguments: {quoted}\n"
        log_forced(base, logging.INFO, message)

    try:
        request = receiver_request(cmdline, verbose=base.isEnabledFor(logging.INFO))
    except ArgvError as exc:
        raise CommandLineError(str(exc), quiet=quiet) from None
    config = request.config
    log.debug("%s\n", identification())
    log.info("configuring service class provider ...")

    if request.profile_source is not None:
        from dcmrecv.negotiation import asconfig

        filename, profile_name = request.profile_source
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

    titles = set(config.accept_calling or ())
    for filename in request.accept_calling_files:
        try:
            titles |= parse_aetitle_list(dcmtkcli.read_text(filename), filename)
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

    if request.tls_options is not None:
        # DCMTK creates the transport layer last, after the output directory check.
        try:
            context = tls.create_context(request.tls_options)
        except tls.TLSError as exc:
            for detail in exc.details:
                log.error("%s", detail)
            log.critical("%s", exc)
            dcmtkcli.finish(ctx, exitcodes.EXITCODE_CANNOT_CREATE_TRANSPORT_LAYER)
        config = replace(config, tls_context=context)

    from dcmrecv.wire import server

    dcmtkcli.finish(ctx, server.serve(config))


@click.command(cls=dcmtkcli.DcmtkCommand, name=APPNAME, add_help_option=False)
@click.pass_context
def main(ctx: click.Context, argv: tuple[str, ...]) -> None:
    """Simple DICOM storage SCP (receiver); run ``dcmrecv --help`` for the options."""
    _run(ctx, argv)
