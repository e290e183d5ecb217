"""Evaluating a command line in DCMTK's order: the rows' fields, requires and conflicts.

When several options are wrong, DCMTK reports the first it checks, and scripts and
people see that one; so each command has a *plan*: its steps in DCMTK's order.  A
step is

* a field name (``"acse_timeout"``, ``"tls.password"``): the rightmost of the options
  that set the field is checked (its ``requires`` and ``conflicts``, with DCMTK's
  messages), its value read, and the field set;
* a long option name (``"--no-sni"``): an option without a field, checked and its
  value read (and dropped);
* a function ``(Check, config) -> config``, for a group of options whose interplay is
  more than requires and conflicts (storescp's output encoding, ``-aet``/``-uca``).

After the plan come the fields it does not name, in table order: a new option with a
field needs no step of its own.  Everything here is pure; ArgvError carries the
message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from dcmrecv.commands.argv import ArgvError, CommandLine
from dcmrecv.commands.option import Occurrence
from dcmrecv.commands.table import Table

if TYPE_CHECKING:
    from dcmrecv.config import ReceiverConfig


@dataclass(frozen=True)
class Check:
    """What a step sees: the command line, the command's options, the log level."""

    table: Table
    cmdline: CommandLine
    #: INFO messages are logged (``+v`` needs that).
    verbose: bool

    def in_effect(self, long: str) -> bool:
        """``long`` was given and is the rightmost of its block (so its value counts)."""
        option = self.table.option(long)
        if option.field is None:
            return self.cmdline.has(long)
        found = self.cmdline.last(*(o.long for o in self.table.block(option.field)))
        return found is not None and found.spec.long == long

    def check(self, occurrence: Occurrence) -> None:
        """DCMTK's dependence and conflict checks of the option, in that order."""
        option = occurrence.spec
        for other in option.requires:
            if not self.in_effect(other):
                raise ArgvError(f"{option.long} only allowed with {other}")
        for other in option.conflicts:
            if self.in_effect(other):
                raise ArgvError(f"{option.long} not allowed with {other}")

    def value(self, occurrence: Occurrence) -> object:
        """The option's value: read by its ``parse``, else as given (or its ``const``)."""
        option = occurrence.spec
        if option.parse is not None:
            return option.parse(occurrence)
        if option.nargs == 0:
            return option.const
        return occurrence.values[0] if option.nargs == 1 else occurrence.values


Group: TypeAlias = "Callable[[Check, ReceiverConfig], ReceiverConfig]"
Step: TypeAlias = "str | Group"


_Settings = TypeVar("_Settings")


def set_field(settings: _Settings, path: str, value: object) -> _Settings:
    """``settings`` with the field at ``path`` (dotted: ``tls.password``) set.

    Settings that are absent (None) stay absent: ``--expect-sni`` without
    ``--enable-tls`` is checked, and sets nothing.  A name that is not a field is a
    TypeError, so a typo in a row fails its first test.
    """
    name, _, rest = path.partition(".")
    target: Any = settings
    if rest:
        inner = getattr(target, name)
        if inner is None:
            return settings
        value = set_field(inner, rest, value)
    changed: _Settings = replace(target, **{name: value})
    return changed


def _field(check: Check, field: str, config: ReceiverConfig) -> ReceiverConfig:
    block = check.table.block(field)
    if not block:  # pragma: no cover - a plan typo, caught by the tests
        raise AssertionError(f"{check.table.command}: no option sets {field}")
    found = check.cmdline.last(*(option.long for option in block))
    if found is None:
        return config
    check.check(found)
    if found.spec.many:
        value: object = tuple(check.value(o) for o in check.cmdline.all(found.spec.long))
    else:
        value = check.value(found)
    return set_field(config, field, value)


def _option(check: Check, long: str, config: ReceiverConfig) -> ReceiverConfig:
    found = check.cmdline.last(long)
    if found is not None:
        check.check(found)
        check.value(found)
    return config


def evaluate(
    table: Table,
    plan: Sequence[Step],
    cmdline: CommandLine,
    config: ReceiverConfig,
    verbose: bool,
) -> ReceiverConfig:
    """``config`` with every option of ``cmdline`` applied, checked in ``plan``'s order;
    raises :class:`ArgvError` with DCMTK's message for the first problem."""
    check = Check(table, cmdline, verbose)
    named = {step for step in plan if isinstance(step, str)}
    rest = [field for field in table.fields if field not in named]
    for step in (*plan, *rest):
        if isinstance(step, str):
            if step.startswith("--"):
                config = _option(check, step, config)
            else:
                config = _field(check, step, config)
        else:
            config = step(check, config)
    return config
