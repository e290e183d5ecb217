"""DCMRECV_* environment variables -> dcmrecv arguments (dcmrecv.commands.environment).

What an operator sees: a variable sets the option it is named after, the command
line overrides it, a typo or a half-given option is an error that names the
variable.  Results are checked through DCMTK's grammar (``dcmrecv.commands.dcmrecv.parse``),
the way the command will read them.
"""

from __future__ import annotations

import pytest

from dcmrecv.commands.argv import ArgvError, CommandLine
from dcmrecv.commands.dcmrecv import parse
from dcmrecv.commands.environment import (
    EnvConfigError,
    apply_environment,
    env_arguments,
    env_options,
    env_port,
    known_variables,
)
from dcmrecv.commands.options import DCMRECV_TABLE


def command_line(args: list[str], environ: dict[str, str]) -> CommandLine:
    return parse(apply_environment(args, environ))


def value(cmdline: CommandLine, *longs: str) -> tuple[str, ...] | str | None:
    """The rightmost of ``longs`` as the command will see it: its values, or its name."""
    occurrence = cmdline.last(*longs)
    if occurrence is None:
        return None
    return occurrence.values or occurrence.spec.long


# --- one variable, one option ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"DCMRECV_AETITLE": "PACS"}, ["--aetitle", "PACS"]),
        ({"DCMRECV_OUTPUT_DIRECTORY": "/data"}, ["--output-directory", "/data"]),
        ({"DCMRECV_MAX_ASSOCIATIONS": "8"}, ["--max-associations", "8"]),
        ({"DCMRECV_LOG_LEVEL": "info"}, ["--log-level", "info"]),
        (
            {"DCMRECV_CONFIG_FILE": "/etc/dcmrecv/storescp.cfg", "DCMRECV_PROFILE": "Default"},
            ["--config-file", "/etc/dcmrecv/storescp.cfg", "Default"],
        ),
        # values are taken verbatim, even when they look like options or hold spaces
        ({"DCMRECV_AETITLE": "-v"}, ["--aetitle", "-v"]),
        ({"DCMRECV_OUTPUT_DIRECTORY": "/mnt/my data"}, ["--output-directory", "/mnt/my data"]),
        # flags: the usual spellings of yes and no
        ({"DCMRECV_NO_FSYNC": "1"}, ["--no-fsync"]),
        ({"DCMRECV_NO_FSYNC": "true"}, ["--no-fsync"]),
        ({"DCMRECV_NO_FSYNC": "TRUE"}, ["--no-fsync"]),
        ({"DCMRECV_NO_FSYNC": "yes"}, ["--no-fsync"]),
        ({"DCMRECV_NO_FSYNC": " on "}, ["--no-fsync"]),
        ({"DCMRECV_NO_FSYNC": "0"}, []),
        ({"DCMRECV_NO_FSYNC": "false"}, []),
        ({"DCMRECV_NO_FSYNC": "Off"}, []),
        ({"DCMRECV_SERIES_DATE_SUBDIR": "1"}, ["--series-date-subdir"]),
        # empty means unset: compose files often carry "VAR=" for "the default"
        ({"DCMRECV_AETITLE": ""}, []),
        ({"DCMRECV_NO_FSYNC": ""}, []),
        # other variables are none of our business
        ({"PATH": "/usr/bin", "HOME": "/root", "DCMRECVX": "1"}, []),
        # the port is a parameter, not an option
        ({"DCMRECV_PORT": "11112"}, []),
    ],
)
def test_variable_gives_its_option(environ: dict[str, str], expected: list[str]) -> None:
    assert env_arguments(environ) == expected


@pytest.mark.parametrize(
    "spec", [s for s in DCMRECV_TABLE.options if not s.exclusive], ids=lambda s: s.long
)
def test_every_option_of_the_table_can_be_set(spec: object) -> None:
    """An option row added for dcmrecv needs no change here to be configurable."""
    (option,) = [o for o in env_options() if o.spec is spec]
    name = option.spec.long.removeprefix("--").upper().replace("-", "_")
    assert option.variables[0] == f"DCMRECV_{name}"
    assert len(option.variables) == max(option.spec.nargs, 1)
    values = [f"value{i}" for i in range(option.spec.nargs)] or ["1"]
    environ = dict(zip(option.variables, values, strict=True))
    cmdline = parse([*env_arguments(environ), "104"])
    (occurrence,) = cmdline.occurrences
    assert occurrence.spec.long == option.spec.long
    assert list(occurrence.values) == values[: option.spec.nargs]
    assert cmdline.params == ("104",)


def test_variable_names_are_unique() -> None:
    names = [name for option in env_options() for name in option.variables]
    assert len(names) == len(set(names))
    assert "DCMRECV_PORT" not in names
    assert "DCMRECV_PORT" in known_variables()


def test_print_and_exit_options_have_no_variable() -> None:
    # A container that prints its help text and stops is never what a setting means.
    with pytest.raises(EnvConfigError, match="DCMRECV_HELP"):
        env_arguments({"DCMRECV_HELP": "1"})
    with pytest.raises(EnvConfigError, match="DCMRECV_VERSION"):
        env_arguments({"DCMRECV_VERSION": "1"})


# --- mistakes are errors that name the variable -----------------------------------------------


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"DCMRECV_PORTT": "104"}, ["DCMRECV_PORTT", "did you mean DCMRECV_PORT?"]),
        ({"DCMRECV_AE_TITLE": "X"}, ["DCMRECV_AE_TITLE", "did you mean DCMRECV_AETITLE?"]),
        ({"DCMRECV_XYZZY": "1"}, ["unknown environment variable DCMRECV_XYZZY"]),
        ({"DCMRECV_NO_FSYNC": "maybe"}, ["DCMRECV_NO_FSYNC=maybe", "true"]),
        ({"DCMRECV_CONFIG_FILE": "storescp.cfg"}, ["without DCMRECV_PROFILE"]),
        ({"DCMRECV_PROFILE": "Default"}, ["without DCMRECV_CONFIG_FILE"]),
        (
            {"DCMRECV_VERBOSE": "1", "DCMRECV_LOG_LEVEL": "debug"},
            ["DCMRECV_VERBOSE", "DCMRECV_LOG_LEVEL", "cannot be combined"],
        ),
    ],
)
def test_mistake_is_reported_with_the_variable_name(
    environ: dict[str, str], words: list[str]
) -> None:
    with pytest.raises(EnvConfigError) as raised:
        env_arguments(environ)
    for word in words:
        assert word in str(raised.value)
    # The command reports the same mistake, whatever its own arguments are.
    with pytest.raises(EnvConfigError):
        apply_environment(["-v", "104"], environ)


def test_a_logging_flag_switched_off_does_not_conflict() -> None:
    environ = {"DCMRECV_VERBOSE": "0", "DCMRECV_LOG_LEVEL": "debug"}
    assert env_arguments(environ) == ["--log-level", "debug"]


# --- the command line wins ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "environ", "longs", "expected"),
    [
        # environment only
        (["104"], {"DCMRECV_OUTPUT_DIRECTORY": "/a"}, ("--output-directory",), ("/a",)),
        # the same option on the command line overrides it
        (
            ["-od", "/b", "104"],
            {"DCMRECV_OUTPUT_DIRECTORY": "/a"},
            ("--output-directory",),
            ("/b",),
        ),
        (
            ["104", "-xf", "mine.cfg", "Mine"],
            {"DCMRECV_CONFIG_FILE": "storescp.cfg", "DCMRECV_PROFILE": "Default"},
            ("--config-file",),
            ("mine.cfg", "Mine"),
        ),
        # ... and so does the other option of an exclusive pair (rightmost wins)
        (
            ["-uca", "104"],
            {"DCMRECV_AETITLE": "PACS"},
            ("--aetitle", "--use-called-aetitle"),
            "--use-called-aetitle",
        ),
        (
            ["+ssd", "104"],
            {"DCMRECV_NO_SUBDIR": "1"},
            ("--no-subdir", "--series-date-subdir"),
            "--series-date-subdir",
        ),
        (
            ["-B", "104"],
            {"DCMRECV_IGNORE": "1"},
            ("--normal", "--bit-preserving", "--ignore"),
            "--normal",
        ),
        # logging options refuse each other in DCMTK: the command line's replaces the
        # environment's instead of causing "--log-level not allowed with --debug"
        (["-d", "104"], {"DCMRECV_LOG_LEVEL": "info"}, ("--log-level",), None),
        (["-ll", "trace", "104"], {"DCMRECV_VERBOSE": "1"}, ("--verbose",), None),
        (["104"], {"DCMRECV_LOG_LEVEL": "info"}, ("--log-level",), ("info",)),
    ],
)
def test_command_line_wins(
    args: list[str],
    environ: dict[str, str],
    longs: tuple[str, ...],
    expected: tuple[str, ...] | str | None,
) -> None:
    assert value(command_line(args, environ), *longs) == expected


@pytest.mark.parametrize(
    ("args", "environ", "params"),
    [
        ([], {"DCMRECV_PORT": "11112"}, ("11112",)),
        (["-v"], {"DCMRECV_PORT": "11112"}, ("11112",)),
        # a port on the command line replaces DCMRECV_PORT (two would be an error)
        (["104"], {"DCMRECV_PORT": "11112"}, ("104",)),
        (["-v", "104", "-od", "out"], {"DCMRECV_PORT": "11112"}, ("104",)),
        # an option's value is not a port, even when it is a number
        (["-aet", "104"], {"DCMRECV_PORT": "11112"}, ("11112",)),
        (["-xf", "a.cfg", "104"], {"DCMRECV_PORT": "11112"}, ("11112",)),
        # without DCMRECV_PORT the command line must name the port, as with DCMTK
        (["104"], {}, ("104",)),
    ],
)
def test_port_from_environment_only_when_the_command_line_has_none(
    args: list[str], environ: dict[str, str], params: tuple[str, ...]
) -> None:
    assert command_line(args, environ).params == params


def test_missing_port_is_still_dcmtks_error() -> None:
    with pytest.raises(ArgvError, match="Missing parameter port"):
        command_line(["-v"], {"DCMRECV_AETITLE": "PACS"})


def test_bare_command_still_prints_usage() -> None:
    # dcmrecv with no arguments prints its usage (DCMTK); settings without a port
    # do not change that, a port from the environment makes a runnable command.
    assert apply_environment([], {"DCMRECV_AETITLE": "PACS"}) == []
    assert command_line([], {"DCMRECV_AETITLE": "PACS"}).empty
    assert not command_line([], {"DCMRECV_PORT": "104"}).empty


def test_help_still_works_with_a_configured_environment() -> None:
    environ = {"DCMRECV_PORT": "11112", "DCMRECV_LOG_LEVEL": "info"}
    assert command_line(["--help"], environ).has("--help")


def test_env_port() -> None:
    assert env_port({"DCMRECV_PORT": "11112"}) == "11112"
    assert env_port({"DCMRECV_PORT": ""}) is None
    assert env_port({}) is None
