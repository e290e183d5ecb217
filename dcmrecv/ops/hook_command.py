"""storescp's hook commands as shell scripts whose placeholders are parameters (pure).

storescp.man, "event options": ``--exec-on-reception`` and ``--exec-on-eostudy`` take
a command line with the placeholders ``#p #f #a #c #r``; DCMTK replaces them in the
text and hands the result to ``/bin/sh -c`` (storescp.cc, executeCommand()), so site
scripts use redirects, pipes, ``&&``, ``&`` and variables.  Pasting peer-controlled
text (AE titles, host names, paths built from UIDs) into shell source lets a peer run
commands: an AE title ``$(reboot)`` is source code after the paste.

:func:`compile_template` keeps the shell but never the paste.  It reads the template
once, at start-up, with the quoting rules of the POSIX shell (XCU 2.2 Quoting, 2.6
Word Expansions, 2.7.4 Here-Document) and replaces each placeholder by a reference to
a positional parameter, written so that the value is one word wherever it stands:

* outside quotes ``"${1}"``; inside double quotes, ``${...}``, and here-documents
  ``${1}`` (already one word there);
* inside single quotes ``'"${1}"'``: the quote is closed, the value inserted, the
  quote reopened, so ``echo '#a'`` prints the title, not ``#a`` or ``${3}``;
* inside ``$(...)`` and backquotes as outside quotes (a new quoting level starts);
* in a comment unchanged (it is not run).

The values travel beside the script: ``/bin/sh -c SCRIPT sh P F A C R`` sets ``$1``
to ``$5`` in the order of :data:`PLACEHOLDERS`.  A value is only ever expanded, never
parsed, so ``;``, ``|``, quotes, backquotes, ``$(...)`` and newlines in it stay text.

Refused at start-up (TemplateError): an empty command, unbalanced quotes or
brackets, and a placeholder where no reference can keep a value literal: inside
``$((...))`` (the shell evaluates the value as an expression) and in the body of a
here-document with a quoted delimiter (no expansion at all there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

#: The placeholders, in the order of the positional parameters $1..$5.
PLACEHOLDERS: Final = ("#p", "#f", "#a", "#c", "#r")
#: The shell DCMTK uses (storescp.cc executeCommand(): execl("/bin/sh", ..., "-c", cmd)).
SHELL: Final = "/bin/sh"
#: $0 of the script: what the shell names itself in its messages ("sh: 1: ...").
SCRIPT_NAME: Final = "sh"

# Characters after which a "#" starts a comment (XCU 2.3 rule 10: at a word start).
_WORD_BREAK: Final = frozenset(" \t\n;&|()<>")

# Quoting contexts.
_TOP, _SQ, _DQ, _BRACE, _CMD, _BQ, _ARITH = "top", "sq", "dq", "brace", "cmd", "bq", "arith"


class TemplateError(ValueError):
    """A command template that cannot be made safe (the message says why)."""


@dataclass(frozen=True)
class HookCommand:
    """A ``-xcr``/``-xcs`` command: the user's template and the script that runs it."""

    template: str
    #: The template with each placeholder replaced by a quoted parameter reference.
    script: str

    def argv(self, values: Mapping[str, str]) -> list[str]:
        """The program and arguments to run for ``values`` (placeholder -> text).

        A placeholder without a value (``#p``/``#f`` with ``--ignore``) stands for
        itself, as DCMTK leaves it in the command.
        """
        parameters = [values.get(name, name) for name in PLACEHOLDERS]
        return [SHELL, "-c", self.script, SCRIPT_NAME, *parameters]


@dataclass
class _Heredoc:
    delimiter: str
    strip_tabs: bool
    quoted: bool


class _Compiler:
    """One pass over a template with a stack of quoting contexts."""

    def __init__(self, template: str) -> None:
        self.text = template
        self.pos = 0
        self.out: list[str] = []
        self.stack: list[str] = [_TOP]
        #: Parenthesis depth inside each $( ) / $(( )) context on the stack.
        self.depth: list[int] = [0]
        self.heredocs: list[_Heredoc] = []

    def run(self) -> str:
        text = self.text
        while self.pos < len(text):
            if text.startswith(PLACEHOLDERS, self.pos):
                self._placeholder(text[self.pos : self.pos + 2])
                continue
            context = self.stack[-1]
            if context == _SQ:
                self._single_quoted()
            elif context == _DQ:
                self._double_quoted()
            else:
                self._unquoted(context)
        if len(self.stack) > 1:
            raise TemplateError(f"unterminated {_DESCRIPTION[self.stack[-1]]}")
        # A here-document without its delimiter line runs to the end, as in the shell.
        return "".join(self.out)

    def _in_double_quotes(self) -> bool:
        """Whether ``${...}`` contexts at the top of the stack sit in double quotes."""
        for context in reversed(self.stack):
            if context != _BRACE:
                return context == _DQ
        return False

    # --- placeholders ---------------------------------------------------------------

    def _placeholder(self, name: str) -> None:
        number = PLACEHOLDERS.index(name) + 1
        context = self.stack[-1]
        if context == _ARITH:
            raise TemplateError(f"placeholder {name} inside $((...)) cannot be kept literal")
        if context == _SQ:
            reference = f"'\"${{{number}}}\"'"
        elif context == _DQ or (context == _BRACE and self._in_double_quotes()):
            reference = f"${{{number}}}"
        else:
            reference = f'"${{{number}}}"'
        self.out.append(reference)
        self.pos += 2

    # --- contexts ---------------------------------------------------------------------

    def _copy(self, count: int = 1) -> None:
        self.out.append(self.text[self.pos : self.pos + count])
        self.pos += count

    def _push(self, context: str, opener_length: int) -> None:
        self.stack.append(context)
        self.depth.append(0)
        self._copy(opener_length)

    def _pop(self, closer_length: int = 1) -> None:
        self.stack.pop()
        self.depth.pop()
        self._copy(closer_length)

    def _single_quoted(self) -> None:
        if self.text[self.pos] == "'":
            self._pop()
        else:
            self._copy()

    def _escaped_placeholder(self) -> bool:
        return self.text[self.pos + 1 : self.pos + 3] in PLACEHOLDERS

    def _double_quoted(self) -> None:
        char = self.text[self.pos]
        if char == "\\" and self._escaped_placeholder():
            # DCMTK pastes the value after the backslash, which stays a backslash in
            # double quotes: keep it as one, escaped, before the reference.
            self.out.append("\\\\")
            self.pos += 1
        elif char == "\\":
            self._copy(2)
        elif char == '"':
            self._pop()
        elif not self._expansion_start():
            self._copy()

    def _expansion_start(self) -> bool:
        """Enter ``$((``, ``$(``, ``${`` or a backquote at the position, if one starts."""
        text, pos = self.text, self.pos
        if text.startswith("$((", pos):
            self._push(_ARITH, 3)
        elif text.startswith("$(", pos):
            self._push(_CMD, 2)
        elif text.startswith("${", pos):
            self._push(_BRACE, 2)
        elif text[pos] == "`" and self.stack[-1] != _BQ:
            self._push(_BQ, 1)
        else:
            return False
        return True

    def _unquoted(self, context: str) -> None:
        text, pos = self.text, self.pos
        char = text[pos]
        if char == "\\" and self._escaped_placeholder():
            # DCMTK pastes the value after the backslash, which then only quotes the
            # value's first character: the value, literal, is the same.
            self.pos += 1
        elif char == "\\":
            self._copy(2)
        elif char == "'" and not (context == _BRACE and self._in_double_quotes()):
            self._push(_SQ, 1)
        elif char == '"':
            self._push(_DQ, 1)
        elif (char == "`" and context == _BQ) or (char == "}" and context == _BRACE):
            self._pop()
        elif self._expansion_start():
            pass
        elif context in (_CMD, _ARITH) and char in "()":
            self._parenthesis(context, char)
        elif context in (_ARITH, _BRACE):
            self._copy()
        elif char == "#" and (pos == 0 or text[pos - 1] in _WORD_BREAK):
            self._comment()
        elif char == "<" and text.startswith("<<", pos) and not text.startswith("<<<", pos):
            self._heredoc_operator()
        elif char == "\n" and self.heredocs:
            self._copy()
            self._heredoc_bodies()
        else:
            self._copy()

    def _parenthesis(self, context: str, char: str) -> None:
        if char == "(":
            self.depth[-1] += 1
            self._copy()
        elif self.depth[-1] > 0:
            self.depth[-1] -= 1
            self._copy()
        elif context == _ARITH:
            if not self.text.startswith("))", self.pos):
                raise TemplateError("unterminated $((...))")
            self._pop(2)
        else:
            self._pop()

    def _comment(self) -> None:
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end == -1 else end
        self.out.append(self.text[self.pos : end])  # placeholders here are never run
        self.pos = end

    # --- here-documents (XCU 2.7.4) ----------------------------------------------------

    def _heredoc_operator(self) -> None:
        text = self.text
        start = self.pos
        self.pos += 2
        strip_tabs = text.startswith("-", self.pos)
        if strip_tabs:
            self.pos += 1
        while self.pos < len(text) and text[self.pos] in " \t":
            self.pos += 1
        word_start = self.pos
        word: list[str] = []
        quoted = False
        while self.pos < len(text) and text[self.pos] not in _WORD_BREAK:
            char = text[self.pos]
            if char in "'\"":
                end = text.find(char, self.pos + 1)
                if end == -1:
                    raise TemplateError("unterminated quote in a here-document delimiter")
                word.append(text[self.pos + 1 : end])
                quoted = True
                self.pos = end + 1
            elif char == "\\":
                word.append(text[self.pos + 1 : self.pos + 2])
                quoted = True
                self.pos += 2
            elif text.startswith(PLACEHOLDERS, self.pos):
                raise TemplateError("placeholder in a here-document delimiter")
            else:
                word.append(char)
                self.pos += 1
        if self.pos == word_start:
            raise TemplateError("here-document without a delimiter")
        self.out.append(text[start : self.pos])
        self.heredocs.append(_Heredoc("".join(word), strip_tabs, quoted))

    def _heredoc_bodies(self) -> None:
        text = self.text
        for heredoc in self.heredocs:
            while self.pos < len(text):
                end = text.find("\n", self.pos)
                end = len(text) if end == -1 else end + 1
                line = text[self.pos : end]
                bare = line.rstrip("\n")
                if (bare.lstrip("\t") if heredoc.strip_tabs else bare) == heredoc.delimiter:
                    self.out.append(line)
                    self.pos = end
                    break
                self.out.append(self._heredoc_line(line, heredoc))
                self.pos = end
        self.heredocs.clear()

    @staticmethod
    def _heredoc_line(line: str, heredoc: _Heredoc) -> str:
        parts: list[str] = []
        index = 0
        while index < len(line):
            name = line[index : index + 2]
            if name in PLACEHOLDERS:
                if heredoc.quoted:
                    raise TemplateError(
                        f"placeholder {name} in a here-document with a quoted delimiter"
                        " (no expansion there)"
                    )
                parts.append(f"${{{PLACEHOLDERS.index(name) + 1}}}")
                index += 2
            elif line[index] == "\\" and not heredoc.quoted:
                escaped = line[index + 1 : index + 3] in PLACEHOLDERS
                parts.append("\\\\" if escaped else line[index : index + 2])
                index += 1 if escaped else 2
            else:
                parts.append(line[index])
                index += 1
        return "".join(parts)


_DESCRIPTION: Final = {
    _SQ: "single quote",
    _DQ: "double quote",
    _BRACE: "${...}",
    _CMD: "$(...)",
    _BQ: "backquote",
    _ARITH: "$((...))",
}


def compile_template(template: str) -> HookCommand:
    """The shell script for a ``-xcr``/``-xcs`` template (see the module notes).

    Raises TemplateError for an empty command, unbalanced quotes or brackets, or a
    placeholder inside ``$((...))`` or a quoted here-document.
    """
    if not template.strip():
        raise TemplateError("empty command")
    if "\0" in template:
        raise TemplateError("command contains a NUL character")
    return HookCommand(template, _Compiler(template).run())
