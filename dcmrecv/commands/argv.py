"""DCMTK-style command line parsing for both commands: pure functions over strings.

DCMTK's grammar is not the POSIX/GNU one that click implements, and scripts
written for DCMTK depend on its differences (dcmrecv.man, "NOTES" and DCMTK's
``OFCommandLine`` behaviour, checked against DCMTK's ``dcmrecv``):

* options start with ``-`` or ``+`` and are matched as whole words: ``-ssd`` is an
  unknown option, never ``-s -s -d``; ``+fu=`` is unknown, never ``+fu`` with a value;
* a token is an option only if it has two or more characters and a sign is not
  followed by a digit (``-5`` and ``-`` are parameters);
* an option's values are the next tokens, taken verbatim even when they look like
  options (``-aet -v`` sets the AE title ``-v``);
* options and parameters may come in any order; ``--`` is an unknown option;
* ``@file`` is replaced by the words in that file (see :func:`split_command_file`);
* the first problem found stops parsing, with DCMTK's message.

:func:`parse` returns a :class:`CommandLine` that keeps the order of the options, so
the caller can let the rightmost of mutually exclusive options win, as DCMTK does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from dcmrecv.boundedread import FileTooLarge
from dcmrecv.commands.option import Occurrence, Option

#: Prefix of a command file argument (DCMTK's ``@filename``).
COMMAND_FILE_PREFIX = "@"


class ArgvError(Exception):
    """A command line DCMTK would reject; ``str()`` is DCMTK's message."""


def is_option(arg: str) -> bool:
    """True if DCMTK would read ``arg`` as an option rather than a parameter.

    An option has at least two characters, starts with ``-`` or ``+``, and the sign
    is not followed by a digit, so negative numbers stay parameters.
    """
    return len(arg) >= 2 and arg[0] in "-+" and not arg[1].isdigit()


#: What separates the words of a command file (DCMTK: blank, tab and line breaks only).
_SEPARATORS = re.compile(r"[ \t\n\r]+")
#: A command file in pieces: a run of ordinary characters, a quoted part (to the next
#: quote of the same kind, or to the end of the file), or a run of separators.
_PIECE = re.compile(r"[^ \t\n\r\"']+|\"[^\"]*\"?|'[^']*'?|[ \t\n\r]+")


def split_command_file(text: str) -> list[str]:
    """The words of an ``@file``, as DCMTK's command file reader splits them.

    Words are separated by spaces, tabs and line breaks.  A double or single quote
    starts a quoted part that runs to the next quote of the same kind; inside it,
    separators and the other quote character are ordinary characters.  A closing
    quote ends the current word, so ``""`` is an empty argument and ``"a"b`` gives
    two words, ``a`` and ``b``.  An unclosed quote runs to the end of the file.

    The file is taken in pieces by regular expressions, not character by character,
    so the time grows with the file's length and stays well under a second per
    million words.
    """
    if '"' not in text and "'" not in text:
        return [word for word in _SEPARATORS.split(text) if word]
    words: list[str] = []
    value: list[str] = []
    for piece in _PIECE.findall(text):
        first = piece[0]
        if first in "\"'":
            closed = len(piece) > 1 and piece[-1] == first
            value.append(piece[1:-1] if closed else piece[1:])
            if closed:
                words.append("".join(value))
                value.clear()
        elif first in " \t\n\r":
            if value:
                words.append("".join(value))
                value.clear()
        else:
            value.append(piece)
    last = "".join(value)
    if last:
        words.append(last)
    return words


def expand_command_files(args: Iterable[str], read_text: Callable[[str], str]) -> list[str]:
    """Replace every ``@file`` argument by the words in that file.

    ``read_text(path)`` returns the file's text or raises :class:`OSError` (or
    :class:`dcmrecv.boundedread.FileTooLarge`).  Command files are not expanded
    recursively (DCMTK does not either); a lone ``@`` is an ordinary argument.
    """
    expanded: list[str] = []
    for arg in args:
        if arg.startswith(COMMAND_FILE_PREFIX) and len(arg) > 1:
            name = arg[1:]
            try:
                text = read_text(name)
            except FileTooLarge as exc:
                raise ArgvError(f"Command file '{name}' is {exc}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ArgvError(f"Cannot open command file '{name}'") from exc
            expanded.extend(split_command_file(text))
        else:
            expanded.append(arg)
    return expanded


@dataclass(frozen=True)
class CommandLine:
    """A syntactically valid command line, options in the order given."""

    #: The arguments with options in their long spelling, as ``--arguments`` shows them.
    arguments: tuple[str, ...]
    occurrences: tuple[Occurrence, ...]
    params: tuple[str, ...]
    #: Where each option (long name) occurs, in order: ``has`` and ``last`` are then
    #: lookups, not scans, however long an ``@file`` made the command line.
    _positions: dict[str, list[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        positions: dict[str, list[int]] = {}
        for index, occurrence in enumerate(self.occurrences):
            long = occurrence.spec.long
            found = positions.get(long)
            if found is None:
                positions[long] = [index]
            else:
                found.append(index)
        object.__setattr__(self, "_positions", positions)

    @property
    def empty(self) -> bool:
        """No arguments at all: DCMTK then prints the usage text."""
        return not self.arguments

    @property
    def exclusive(self) -> bool:
        return any(self.occurrences[at[0]].spec.exclusive for at in self._positions.values())

    def has(self, long: str) -> bool:
        return long in self._positions

    def last(self, *longs: str) -> Occurrence | None:
        """The rightmost occurrence of any of ``longs``.

        Called with the options of one mutually exclusive block (e.g. ``--no-subdir``
        and ``--series-date-subdir``) this gives DCMTK's "rightmost wins" rule.
        """
        found = [self._positions[long][-1] for long in longs if long in self._positions]
        return self.occurrences[max(found)] if found else None

    def all(self, long: str) -> tuple[Occurrence, ...]:
        """Every occurrence of ``long``, in command line order."""
        return tuple(self.occurrences[i] for i in self._positions.get(long, ()))

    def unsupported(self) -> Occurrence | None:
        """The first option that is recognised but not implemented, if any."""
        found = [
            at[0]
            for at in self._positions.values()
            if self.occurrences[at[0]].spec.unsupported is not None
        ]
        return self.occurrences[min(found)] if found else None


def parse(
    args: Sequence[str],
    lookup: Callable[[str], Option | None],
    param_names: Sequence[str] = ("port",),
    *,
    params_required: bool = True,
) -> CommandLine:
    """Check every token of an (already ``@``-expanded) argument list.

    Raises :class:`ArgvError` with DCMTK's message for an unknown option, a missing
    option value, a missing parameter or too many parameters.  The parameter count is
    not checked when the list is empty (the caller prints the usage text) or holds an
    exclusive option such as ``--help``.  ``lookup`` finds an option of the command
    by any of its spellings (dcmrecv.commands.table); ``params_required=False`` leaves
    missing parameters to the caller (storescp's port is optional with ``--inetd``).
    """
    arguments: list[str] = []
    occurrences: list[Occurrence] = []
    params: list[str] = []
    # A long @file repeats a few spellings many times: a word costs one dictionary
    # lookup (every spelling of the table is an option, so a word that is not one is
    # a parameter or an unknown option), and an option without values is the same
    # (immutable) Occurrence wherever it appears.
    flags: dict[str, Occurrence] = {}
    count = len(args)
    i = 0
    while i < count:
        arg = args[i]
        i += 1
        spec = lookup(arg)
        if spec is None:
            if is_option(arg):
                raise ArgvError(f"Unknown option {arg}")
            arguments.append(arg)
            params.append(arg)
            continue
        nargs = spec.nargs
        if nargs:
            if i + nargs > count:
                raise ArgvError(f"Missing value for option {spec.long}")
            values = tuple(args[i : i + nargs])
            i += nargs
            arguments.append(spec.long)
            arguments.extend(values)
            occurrences.append(Occurrence(spec, arg, values))
        else:
            arguments.append(spec.long)
            occurrence = flags.get(arg)
            if occurrence is None:
                occurrence = flags[arg] = Occurrence(spec, arg, ())
            occurrences.append(occurrence)
    cmdline = CommandLine(tuple(arguments), tuple(occurrences), tuple(params))
    if not cmdline.empty and not cmdline.exclusive:
        if params_required and len(params) < len(param_names):
            raise ArgvError(f"Missing parameter {param_names[len(params)]}")
        if len(params) > len(param_names):
            raise ArgvError("Too many parameters")
    return cmdline


# --- numbers, read the way DCMTK reads them -----------------------------------------

_ULONG_RANGE = 2**64


def _scan_unsigned(text: str) -> int | None:
    """C's ``sscanf(text, "%lu")``: leading white space, a sign, digits, rest ignored.

    A negative number wraps around as an unsigned long does; a value too large for
    an unsigned long saturates, as ``strtoul`` does.  None if no digits follow.
    """
    rest = text.lstrip(" \t\n\r\f\v")
    negative = rest[:1] == "-"
    if rest[:1] in "+-" and rest:
        rest = rest[1:]
    digits = ""
    for char in rest:
        if not char.isascii() or not char.isdigit():
            break
        digits += char
    if not digits:
        return None
    value = min(int(digits), _ULONG_RANGE - 1)
    if negative and value:
        value = _ULONG_RANGE - value
    return value


def option_unsigned(
    occurrence: Occurrence, low: int, high: int | None = None, index: int = 0
) -> int:
    """An option's unsigned integer value, checked as DCMTK checks it.

    Like DCMTK, trailing characters after the digits are ignored (``-ta 5s`` is 5)
    and a minus sign is refused.  Messages are DCMTK's, e.g.
    ``Invalid value for option --max-pdu (underflow: 10)``.
    """
    text = occurrence.values[index]
    prefix = f"Invalid value for option {occurrence.spec.long}"
    value = _scan_unsigned(text)
    if value is None or text.lstrip(" ")[:1] == "-":
        raise ArgvError(f"{prefix} ({text})")
    if value < low:
        raise ArgvError(f"{prefix} (underflow: {text})")
    if high is not None and value > high:
        raise ArgvError(f"{prefix} (overflow: {text})")
    return value


def option_number(occurrence: Occurrence, low: float) -> float:
    """A non-integer option value (our own options), with DCMTK-style messages."""
    text = occurrence.values[0]
    prefix = f"Invalid value for option {occurrence.spec.long}"
    try:
        value = float(text)
    except ValueError:
        raise ArgvError(f"{prefix} ({text})") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ArgvError(f"{prefix} ({text})")
    if value < low:
        raise ArgvError(f"{prefix} (underflow: {text})")
    return value


def param_unsigned(cmdline: CommandLine, position: int, low: int, high: int) -> int:
    """Parameter ``position`` (1-based) as an unsigned integer in ``low..high``.

    Messages are DCMTK's: ``Invalid parameter value abc``, ``... 0 (underflow)``,
    ``... 70000 (overflow)``.
    """
    text = cmdline.params[position - 1]
    value = _scan_unsigned(text)
    if value is None:
        raise ArgvError(f"Invalid parameter value {text}")
    if value < low:
        raise ArgvError(f"Invalid parameter value {text} (underflow)")
    if value > high:
        raise ArgvError(f"Invalid parameter value {text} (overflow)")
    return value
