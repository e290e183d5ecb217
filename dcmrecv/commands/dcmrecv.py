"""The ``dcmrecv`` command: argv -> :class:`ReceiverConfig` -> :func:`dcmrecv.serve`.

The command line is DCMTK's (dcmrecv.man): the same options, spellings, defaults,
messages and exit codes, so scripts written for DCMTK's ``dcmrecv`` run unchanged.
The options are rows of dcmrecv.commands.options; this module says in which order
dcmrecv checks them (:data:`PLAN`), which decides the error a user sees first:
syntax, ``--help``/``--version``, logging options (after which ``-q`` silences
errors), option values, the port, the TLS options, our own options, then the ``-xf``
profile (exit 66), the output directory (exit 45), and finally the server (64 when
it cannot listen, 71 when the TLS context cannot be built).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import click

from dcmrecv import exitcodes
from dcmrecv.commands import pipeline
from dcmrecv.commands.argv import ArgvError, param_unsigned
from dcmrecv.commands.checks import Check, Step
from dcmrecv.commands.groups import COMMITMENT_CHECKS, TLS_CHECKS, verbose_pc_needs_verbose
from dcmrecv.commands.options import DCMRECV_TABLE

if TYPE_CHECKING:
    from dcmrecv.config import ReceiverConfig


def aetitle_or_called(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """``-aet`` sets our AE title and makes us check the called AE title; ``-uca`` (the
    default) answers with whatever AE title was called.  The rightmost wins."""
    found = check.cmdline.last("--aetitle", "--use-called-aetitle")
    if found is None or found.spec.long != "--aetitle":
        return config
    return replace(config, aetitle=found.values[0], aetitle_explicit=True, use_called_aetitle=False)


def port_parameter(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """The port, checked as DCMTK checks it; ``--check-config`` needs none."""
    if check.cmdline.has("--check-config") and not check.cmdline.params:
        return config
    return replace(config, port=param_unsigned(check.cmdline, 1, 1, 65535))


def refuse_unsupported(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """Recognised so the command line parses, refused until implemented (``-i6``,
    ``-i0``; ``-i4`` is what we do anyway): the first one given."""
    unsupported = check.cmdline.unsupported()
    if unsupported is not None:
        raise ArgvError(f"{unsupported.spec.unsupported}: {unsupported.given}")
    return config


def accept_calling(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """``--accept-calling`` titles; with ``--accept-calling-file`` alone the list starts
    empty (the files are read after the profile, and their titles join it)."""
    from dcmrecv.commands.values import accept_calling_titles

    cmdline = check.cmdline
    if not cmdline.has("--accept-calling") and not cmdline.has("--accept-calling-file"):
        return config
    given = tuple(o.values[0] for o in cmdline.all("--accept-calling"))
    return replace(config, accept_calling=accept_calling_titles(given))


def study_completion(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """``--eostudy-timeout`` with ``--exec-on-eostudy`` and ``--exec-timeout``: as in
    DCMTK's storescp, without the timeout no study is ever complete."""
    from dcmrecv.commands.argv import option_number

    cmdline = check.cmdline
    timeout = cmdline.last("--eostudy-timeout")
    for dependent in ("--exec-on-eostudy", "--exec-timeout"):
        if cmdline.has(dependent) and timeout is None:
            raise ArgvError(f"{dependent} only with --eostudy-timeout")
    if timeout is None:
        return config
    config = replace(config, study_timeout=option_number(timeout, 0.0))
    command = cmdline.last("--exec-on-eostudy")
    if command is not None:
        if not command.values[0].strip():
            raise ArgvError("Invalid value for option --exec-on-eostudy (empty command)")
        config = replace(config, study_command=command.values[0])
    limit = cmdline.last("--exec-timeout")
    if limit is not None:
        config = replace(config, study_command_timeout=option_number(limit, 0.001))
    return config


#: dcmrecv's checks in its order (dcmrecv.cc): DCMTK's options before the port, the port,
#: the TLS options after it, and then our own options.  DCMTK refuses +B with +ssd (it
#: reads the Series Date from a parsed data set); we read it from the received file
#: before renaming it, so the pair works.
PLAN: tuple[Step, ...] = (
    verbose_pc_needs_verbose,
    aetitle_or_called,
    "acse_timeout",
    "dimse_timeout",
    "max_pdu",
    "disable_host_lookup",
    "verbose_pc",
    "output_directory",
    "subdirectory",
    "filename_mode",
    "filename_extension",
    "storage_mode",
    "fsync",
    port_parameter,
    refuse_unsupported,
    *TLS_CHECKS,
    "max_associations",
    "shutdown_timeout",
    accept_calling,
    "accept_from",
    "max_associations_per_peer",
    "output_template",
    "template_fallback",
    "on_duplicate",
    "min_free_space",
    "quarantine_directory",
    "quarantine_limit",
    "http_port",
    "http_address",
    "event_log",
    study_completion,
    "workers",
    "state",
    *COMMITMENT_CHECKS,
)


def _base_config() -> ReceiverConfig:
    from dcmrecv.config import ReceiverConfig

    # The port is not known yet: 0 stands in until the port step.
    return ReceiverConfig(port=0)


def _start(run: pipeline.Run) -> pipeline.Run | int:
    log = pipeline.logger()
    log.debug("%s\n", run.dialect.identification())
    log.info("configuring service class provider ...")
    return run


def _check_output_directory(run: pipeline.Run) -> pipeline.Run | int:
    problem = pipeline.directory_problem(run.config.output_directory)
    if problem is not None:
        pipeline.logger().critical("cannot specify output directory: %s", problem)
        return exitcodes.EXITCODE_INVALID_OUTPUT_DIRECTORY
    return run


DIALECT = pipeline.Dialect(
    name="dcmrecv",
    description="Simple DICOM storage SCP (receiver)",
    table=DCMRECV_TABLE,
    plan=PLAN,
    base_config=_base_config,
    error_code=exitcodes.EXITCODE_COMMANDLINE_SYNTAX_ERROR,
    start=_start,
    check_output_directory=_check_output_directory,
    profile_failure=(
        "cannot load association configuration: %s",
        exitcodes.EXITCODE_INVALID_ASSOCIATION_CONFIG,
    ),
    exit_code=lambda code: code,
    environment=True,
    warn_without_profile=True,
    libraries=("pydicom", "click"),
)


#: dcmrecv's grammar over expanded arguments (no environment), and the configuration
#: its options ask for, before any file is read (both raise ArgvError).
parse, evaluate = DIALECT.parse, DIALECT.evaluate


@click.command(cls=pipeline.DcmtkCommand, name="dcmrecv", add_help_option=False)
@click.pass_context
def main(ctx: click.Context, argv: tuple[str, ...]) -> None:
    """Simple DICOM storage SCP (receiver); run ``dcmrecv --help`` for the options.

    The console script (pyproject.toml) and ``python -m dcmrecv``.
    """
    ctx.exit(pipeline.run(DIALECT, argv, ctx.info_name or DIALECT.name))
