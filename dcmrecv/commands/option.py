"""The shape of one option row (gunicorn's ``Setting``): everything about an option in one place.

A row (:class:`Option`) says how the option is spelled (``long``, ``short``, and
storescp's old spellings in :mod:`dcmrecv.commands.options`), how ``--help`` shows it
(``help``, ``values``, ``section``), which commands have it, and what it does: the
configuration ``field`` it sets, read from its values by ``parse`` (or ``const`` for an
option without values), and the options it ``requires`` or ``conflicts`` with, checked
with DCMTK's messages.  From the rows come the parser's lookup and the help text
(:mod:`dcmrecv.commands.table`) and the checks (:mod:`dcmrecv.commands.checks`).

DCMTK's two tools spell or describe a few shared options differently (storescp's
``--unique-filenames`` is ``+uf``, dcmrecv's ``+fu``): the row carries a
:class:`Variant` for the command that differs, and :meth:`Option.resolve` gives the
row as one command sees it.  The value count is not written down: it is the number of
``[x]`` names in ``values`` (``[f]ilename, [p]rofile: string`` takes two), as the help
text shows it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, replace
from functools import cached_property
from typing import Final, NamedTuple

DCMRECV: Final = "dcmrecv"
STORESCP: Final = "storescp"
BOTH: Final = frozenset({DCMRECV, STORESCP})
DCMRECV_ONLY: Final = frozenset({DCMRECV})
STORESCP_ONLY: Final = frozenset({STORESCP})


@dataclass(frozen=True)
class Section:
    """Where ``--help`` lists an option: a group (``network options:``) and, below it,
    an optional subgroup (``other network options:``)."""

    group: str
    subgroup: str | None = None


class Occurrence(NamedTuple):
    """One option as it appeared: the option, the spelling used, and its values.

    A named tuple rather than a frozen dataclass: a command file may hold millions of
    options, and a tuple is several times cheaper to build.
    """

    spec: Option
    given: str
    values: tuple[str, ...]


#: Reads an option's value from its occurrence; raises ArgvError with DCMTK's message.
Reader = Callable[[Occurrence], object]


class _Same(enum.Enum):
    SAME = "same"


#: In a :class:`Variant`: as the row says.
SAME: Final = _Same.SAME


@dataclass(frozen=True)
class Variant:
    """What one command has different from the row (DCMTK's storescp and dcmrecv
    describe some options in their own words, or place them elsewhere)."""

    short: str | _Same | None = SAME
    help: str | _Same = SAME
    values: str | _Same = SAME
    section: Section | _Same = SAME
    field: str | _Same | None = SAME
    parse: Reader | _Same | None = SAME


#: ``[f]ilename``: one value of an option, in its ``values`` text.
_VALUE_NAME = re.compile(r"\[\w\]")


@dataclass(frozen=True)
class Option:
    """One command line option, for every command that has it.

    ``field`` is a path in :class:`dcmrecv.config.ReceiverConfig` (``acse_timeout``;
    dotted into nested settings: ``tls.password``, ``storescp.output_directory``).
    Options that share a field are one block: the rightmost of them sets it (DCMTK's
    "rightmost wins").  A field in settings that are absent (``tls`` without
    ``--enable-tls``) is checked but not set.  Options without a field are read by a
    step of their command (the logging options by the prologue, ``-xf`` by the
    profile step) or by the function of their group (storescp's output encoding).
    """

    long: str
    short: str | None
    help: str
    _: KW_ONLY
    section: Section
    #: The values as ``--help`` describes them, e.g. ``[s]econds: integer (default: 30)``.
    values: str = ""
    commands: frozenset[str] = BOTH
    field: str | None = None
    #: The field's value from an occurrence; None: the first value as given, or
    #: ``const`` for an option without values.
    parse: Reader | None = None
    const: object = True
    #: Every occurrence counts, in order (``+cf a +cf b``): the field gets a tuple.
    many: bool = False
    #: DCMTK's ``checkDependence``: ``X only allowed with Y`` unless Y is in effect.
    requires: tuple[str, ...] = ()
    #: DCMTK's ``checkConflict``: ``X not allowed with Y`` when Y is in effect.
    conflicts: tuple[str, ...] = ()
    #: ``--help``, ``--version``...: print or check something and exit; the command line
    #: then needs no parameters, and the environment cannot set them.
    exclusive: bool = False
    #: Recognised so that the command line parses, but refused with this message.
    unsupported: str | None = None
    dcmrecv: Variant | None = None
    storescp: Variant | None = None

    @cached_property
    def nargs(self) -> int:
        """How many values follow the option: the ``[x]`` names in ``values``
        (cached: the parser asks for every word of a long ``@file``)."""
        return len(_VALUE_NAME.findall(self.values.split(":")[0]))

    def resolve(self, command: str) -> Option:
        """The row as ``command`` has it, its variant applied."""
        variant = self.dcmrecv if command == DCMRECV else self.storescp
        changes: dict[str, object] = {"dcmrecv": None, "storescp": None}
        if variant is not None:
            for name in ("short", "help", "values", "section", "field", "parse"):
                value = getattr(variant, name)
                if value is not SAME:
                    changes[name] = value
        return replace(self, **changes)  # type: ignore[arg-type]
