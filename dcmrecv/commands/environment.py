"""Configuration from the environment: ``DCMRECV_*`` variables -> DCMTK-style arguments.

A container is configured with environment variables more often than with a
command line.  Every option of ``dcmrecv`` (its rows in dcmrecv.commands.options) has
a variable named ``DCMRECV_`` plus its long name, upper-cased, dashes as underscores
(``--max-associations`` -> ``DCMRECV_MAX_ASSOCIATIONS``); the ``port`` parameter is
``DCMRECV_PORT``.  The names are derived from the option rows, so an option added
there can be set from the environment without touching this module.

The command line is DCMTK's grammar, not click's, so click's ``auto_envvar_prefix``
has nothing to attach to.  Instead the variables become argument tokens *in front
of* the command line: DCMTK lets the rightmost of repeated or mutually exclusive
options win (dcmrecv.man, "NOTES"), so an option given on the command line
overrides the same setting from the environment without any merging rules here.
Two exceptions need care:

* the logging options ``-q -v -d -ll -lc`` are not "rightmost wins" in DCMTK but
  refuse each other (``--log-level not allowed with --verbose``), so when the
  command line has any of them, the environment's logging setting is dropped;
* the port is a parameter, and a second one is an error (``Too many
  parameters``), so ``DCMRECV_PORT`` is appended only when the command line names
  no port.

Everything here is pure: ``environ`` is any mapping, nothing is read or changed.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from dcmrecv.commands.argv import is_option

if TYPE_CHECKING:
    from dcmrecv.commands.option import Option
    from dcmrecv.commands.table import Table

#: Prefix of every variable this module reads.
PREFIX = "DCMRECV_"
#: The ``port`` parameter (dcmrecv.man, "PARAMETERS").
PORT_VARIABLE = PREFIX + "PORT"

#: Names for the values after the first of options that take several.  The first
#: value always uses the option's own name (``DCMRECV_CONFIG_FILE``); ``-xf FILE
#: PROFILE`` reads its profile from ``DCMRECV_PROFILE``.  An option with more values
#: and no entry here gets ``<NAME>_2``, ``<NAME>_3``, ...
FURTHER_VALUE_NAMES: dict[str, tuple[str, ...]] = {
    "--config-file": ("PROFILE",),
    "--enable-tls": ("CERTIFICATE_FILE",),
}

#: DCMTK's logging options (OFLog::addOptions): these exclude each other instead of
#: letting the rightmost win, so the command line replaces the environment's choice.
LOGGING_OPTIONS = frozenset({"--quiet", "--verbose", "--debug", "--log-level", "--log-config"})

#: How a flag (an option without values) is switched on or off.
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class EnvConfigError(ValueError):
    """A ``DCMRECV_*`` variable that cannot be turned into an option."""


@dataclass(frozen=True)
class EnvOption:
    """One option as the environment can set it: its variables, in value order."""

    spec: Option
    variables: tuple[str, ...]


def variable_name(long: str) -> str:
    """``--max-associations`` -> ``DCMRECV_MAX_ASSOCIATIONS``."""
    return PREFIX + long.removeprefix("--").upper().replace("-", "_")


def _dcmrecv_table() -> Table:
    # Imported when needed: the health probe reads DCMRECV_PORT through this module
    # and should not pay for the option rows.
    from dcmrecv.commands.options import DCMRECV_TABLE

    return DCMRECV_TABLE


@cache
def env_options() -> tuple[EnvOption, ...]:
    """Every option the environment can set, in the order of ``dcmrecv --help``."""
    result = []
    for spec in _dcmrecv_table().help_order:
        # --help, --version and the list-and-exit options make no sense as a
        # standing setting: a container would print a text and stop.
        if spec.exclusive:
            continue
        first = variable_name(spec.long)
        further = FURTHER_VALUE_NAMES.get(spec.long, ())
        names = [first] + [PREFIX + name for name in further[: max(spec.nargs - 1, 0)]]
        names += [f"{first}_{n}" for n in range(len(names) + 1, spec.nargs + 1)]
        result.append(EnvOption(spec, tuple(names)))
    return tuple(result)


def known_variables() -> frozenset[str]:
    """All variable names this module understands, ``DCMRECV_PORT`` included."""
    names = {PORT_VARIABLE}
    for option in env_options():
        names.update(option.variables)
    return frozenset(names)


def _set(environ: Mapping[str, str], name: str) -> str | None:
    # An empty value counts as unset: compose files and Kubernetes manifests often
    # carry a variable with nothing in it, meaning "leave the default".
    value = environ.get(name)
    return value if value else None


def _flag(name: str, value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise EnvConfigError(f"{name}={value}: expected 1, true, yes or on (0, false, no, off)")


def _check_names(environ: Mapping[str, str], known: frozenset[str]) -> None:
    unknown = sorted(name for name in environ if name.startswith(PREFIX) and name not in known)
    if not unknown:
        return
    name = unknown[0]
    hint = difflib.get_close_matches(name, sorted(known), n=1)
    suggestion = f" (did you mean {hint[0]}?)" if hint else ""
    raise EnvConfigError(
        f"unknown environment variable {name}{suggestion}; variables are {PREFIX} plus a long "
        "option name of 'dcmrecv --help', upper-cased, dashes as underscores, or DCMRECV_PORT"
    )


def _occurrences(environ: Mapping[str, str]) -> list[tuple[Option, list[str]]]:
    _check_names(environ, known_variables())
    found: list[tuple[Option, list[str]]] = []
    for option in env_options():
        values = [_set(environ, name) for name in option.variables]
        given = [name for name, value in zip(option.variables, values, strict=True) if value]
        if not given:
            continue
        spec = option.spec
        if spec.nargs == 0:
            if _flag(given[0], values[0] or ""):
                found.append((spec, [spec.long]))
            continue
        missing = [name for name, value in zip(option.variables, values, strict=True) if not value]
        if missing:
            raise EnvConfigError(
                f"{' and '.join(given)} set without {' and '.join(missing)} "
                f"({spec.long} takes {spec.nargs} values)"
            )
        found.append((spec, [spec.long, *(value or "" for value in values)]))
    logging_set = [variable_name(spec.long) for spec, _ in found if spec.long in LOGGING_OPTIONS]
    if len(logging_set) > 1:
        raise EnvConfigError(f"{' and '.join(logging_set)} cannot be combined; choose one")
    return found


def env_arguments(environ: Mapping[str, str]) -> list[str]:
    """The option tokens the ``DCMRECV_*`` variables ask for (the port excluded).

    Options come in help order, each with its values, e.g. ``DCMRECV_CONFIG_FILE=f
    DCMRECV_PROFILE=Default`` gives ``["--config-file", "f", "Default"]``.  Raises
    :class:`EnvConfigError` for an unknown ``DCMRECV_*`` name, a flag that is neither
    true nor false, an option with some of its values missing, or two logging
    settings at once.
    """
    return [token for _, tokens in _occurrences(environ) for token in tokens]


def env_port(environ: Mapping[str, str]) -> str | None:
    """``DCMRECV_PORT`` as given, or None; the command line checks it like a port."""
    return _set(environ, PORT_VARIABLE)


def _scan(args: Sequence[str]) -> tuple[bool, set[str]]:
    """Whether ``args`` hold a parameter, and which options (long names) they use.

    Walks the tokens with DCMTK's rules from :mod:`dcmrecv.commands.argv` (an option's values
    are taken verbatim, so ``-aet 104`` holds no parameter).  Unknown options are
    skipped here; :func:`dcmrecv.commands.argv.parse` reports them afterwards.
    """
    has_param = False
    longs: set[str] = set()
    find = _dcmrecv_table().find  # one dictionary lookup per word, as in argv.parse
    words = iter(args)
    for arg in words:
        spec = find(arg)
        if spec is None:
            has_param = has_param or not is_option(arg)
            continue
        longs.add(spec.long)
        for _ in range(spec.nargs):  # the values, whatever they look like
            next(words, None)
    return has_param, longs


def apply_environment(args: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The command line to parse: environment options, then ``args``, then the port.

    ``args`` is the command line after ``@file`` expansion.  An empty command line
    with no ``DCMRECV_PORT`` stays empty, so ``dcmrecv`` alone still prints its usage
    text as DCMTK's does.  Raises :class:`EnvConfigError` (see :func:`env_arguments`).
    """
    found = _occurrences(environ)
    port = env_port(environ)
    if not args and port is None:
        return []
    has_param, given = _scan(args)
    if given & LOGGING_OPTIONS:
        found = [(spec, tokens) for spec, tokens in found if spec.long not in LOGGING_OPTIONS]
    result = [token for _, tokens in found for token in tokens]
    result.extend(args)
    if port is not None and not has_param:
        result.append(port)
    return result
