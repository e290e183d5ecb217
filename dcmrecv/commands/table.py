"""One command's view of the option rows: the parser's lookup and ``--help`` in DCMTK's layout.

Built once per command from :data:`dcmrecv.commands.options.OPTIONS`: the rows the
command has, each resolved to the command's spelling and wording
(:meth:`~dcmrecv.commands.option.Option.resolve`), looked up by every spelling
(long, short, old), and listed by ``--help`` section by section in the command's
order, rows within a section in table order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from dcmrecv.commands.option import Option, Section


class Table:
    """The options of one command."""

    def __init__(
        self,
        command: str,
        rows: Iterable[Option],
        sections: Sequence[Section],
        old_spellings: Mapping[str, str] | None = None,
    ) -> None:
        self.command = command
        #: The command's options in table order (the order of the rows).
        self.options: tuple[Option, ...] = tuple(
            row.resolve(command) for row in rows if command in row.commands
        )
        place = {section: index for index, section in enumerate(sections)}
        missing = {option.long for option in self.options if option.section not in place}
        if missing:  # pragma: no cover - a table typo, caught at import
            raise AssertionError(f"{command}: no help section for {sorted(missing)}")
        #: In ``--help`` order: by section, then in table order.
        self.help_order: tuple[Option, ...] = tuple(
            sorted(self.options, key=lambda option: place[option.section])
        )
        self._by_spelling: dict[str, Option] = {}
        #: The option spelled exactly so (long, short or old), or None; the dictionary's
        #: own lookup, as the parser asks it for every word of a long ``@file``.
        self.find: Callable[[str], Option | None] = self._by_spelling.get
        for option in self.options:
            for name in (option.long, option.short):
                if name is None:
                    continue
                if name in self._by_spelling:  # pragma: no cover - caught at import
                    raise AssertionError(f"{command}: option {name} defined twice")
                self._by_spelling[name] = option
        #: Old spellings (storescp's 1998 manual) that are not also current ones: the
        #: current meaning wins where they collide.
        self.old_spellings: dict[str, str] = {}
        self.collisions: tuple[str, ...] = ()
        collisions = []
        for old, long in (old_spellings or {}).items():
            if old in self._by_spelling:
                collisions.append(old)
            else:
                self.old_spellings[old] = long
                self._by_spelling[old] = self._by_spelling[long]
        self.collisions = tuple(collisions)
        self._blocks: dict[str, tuple[Option, ...]] = {}
        for option in self.options:
            if option.field is not None:
                self._blocks[option.field] = (*self._blocks.get(option.field, ()), option)

    def option(self, long: str) -> Option:
        """The option named ``long`` (a KeyError for a name the command lacks)."""
        option = self._by_spelling[long]
        if option.long != long:  # pragma: no cover - a short name given as a long one
            raise KeyError(long)
        return option

    def block(self, field: str) -> tuple[Option, ...]:
        """The options that set ``field`` (one, or a block of alternatives)."""
        return self._blocks.get(field, ())

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field the command's options set, in table order."""
        return tuple(self._blocks)

    def format_help(self, usage: str, params: Sequence[tuple[str, str]]) -> str:
        """Usage, parameters and options laid out like DCMTK's ``--help``."""
        return format_help(usage, params, self.help_order)

    def old_spellings_help(self) -> str:
        """storescp: the old spellings, for the end of ``--help``."""
        lines = ["old storescp spellings (still accepted):"]
        for old, long in self.old_spellings.items():
            value = " n" if self.option(long).nargs else ""
            lines.append(f"  {(old + value).ljust(8)}same as {long}")
        return "\n".join(lines) + "\n"


#: Column where descriptions start (DCMTK: long column 21 + short column 4 + margins).
_TEXT_COLUMN = 33


def format_help(usage: str, params: Sequence[tuple[str, str]], options: Iterable[Option]) -> str:
    """Usage, parameters and option groups laid out like DCMTK's ``--help``.

    Top-level options are indented by two, options in a subgroup by four; short
    spellings, long spellings and descriptions each start in a fixed column.
    """
    lines = [usage, "", "parameters:"]
    lines += [f"  {name}".ljust(_TEXT_COLUMN) + text for name, text in params]
    lines.append("")
    group: str | None = None
    subgroup: str | None = None
    for option in options:
        if option.section.group != group:
            group, subgroup = option.section.group, None
            lines.append(group)
        if option.section.subgroup != subgroup:
            subgroup = option.section.subgroup
            if subgroup is not None:
                lines.append(f"  {subgroup}")
        indent, short_width = ("    ", 6) if subgroup else ("  ", 8)
        head = indent + (option.short or "").ljust(short_width) + option.long.ljust(23)
        texts = ([option.values] if option.values else []) + option.help.split("\n")
        if len(head) > _TEXT_COLUMN:
            lines.append(head.rstrip())
            head = ""
        lines.append(head.ljust(_TEXT_COLUMN) + texts[0])
        lines += [" " * _TEXT_COLUMN + text for text in texts[1:]]
    # DCMTK ends its help with an empty line.
    return "\n".join(lines) + "\n\n"
