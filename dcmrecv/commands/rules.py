"""Option tables: each row turns one option (or one block of exclusive options) into
settings fields, so that adding an option to a command is adding a row.

A row is a :data:`Rule`, a function from the command line to the fields it sets
(nothing when its options are absent, so the dataclass default stands).  Most rows
come from the three shapes below; rows with more logic (``-aet`` sets three fields)
are small functions of the same type.  :func:`apply` evaluates the rows in order,
so the table's order is the order in which DCMTK reports a bad value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from dcmrecv.commands.argv import CommandLine, Occurrence

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: The fields a row sets, by name; checked against the dataclass by :func:`apply`.
Fields = Mapping[str, Any]
Rule = Callable[[CommandLine], Fields]

T = TypeVar("T", bound="DataclassInstance")


def apply(settings: T, rules: Iterable[Rule], cmdline: CommandLine) -> T:
    """``settings`` with the fields every rule sets (a field name that is not one of
    the dataclass's is a TypeError: a typo in a table fails its first test)."""
    for rule in rules:
        fields = rule(cmdline)
        if fields:
            settings = replace(settings, **fields)
    return settings


def value(long: str, field: str, read: Callable[[Occurrence], object]) -> Rule:
    """``long`` sets ``field`` to ``read(occurrence)`` (the rightmost occurrence)."""

    def rule(cmdline: CommandLine) -> Fields:
        found = cmdline.last(long)
        return {field: read(found)} if found is not None else {}

    return rule


def flag(long: str, field: str, present: object = True) -> Rule:
    """``long`` (no value) sets ``field`` to ``present``."""
    return value(long, field, lambda _: present)


def choice(field: str, options: Mapping[str, object]) -> Rule:
    """A block of exclusive options: the rightmost sets ``field`` to its value."""

    def rule(cmdline: CommandLine) -> Fields:
        found = cmdline.last(*options)
        return {field: options[found.spec.long]} if found is not None else {}

    return rule
