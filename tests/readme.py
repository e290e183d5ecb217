"""The README's code blocks and what each one is: run by a test, a shipped file,
an example that no test runs, or output.

Every fenced block is preceded by an HTML comment (invisible on the rendered page):

* ``<!-- run: NAME ... -->``: ``scripts/deployment-test.sh`` runs it, reading it from
  the README by NAME (``python3 tests/readme.py NAME`` prints its text), so what is
  run is what the README says;
* ``<!-- file: PATH -->``: the block is the content of the shipped file PATH, which a
  test uses;
* ``<!-- example: why no test runs it -->``;
* ``<!-- output: what it shows -->``: not commands (log lines, a listing).

``tests/test_readme_blocks.py`` checks that every block is marked, that each run
block is used by the deployment test and each file block matches its file.
Standard library only: the deployment test calls it with any Python 3.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
KINDS = ("run", "file", "example", "output")
_MARKER = re.compile(r"^<!--\s*(\w+):\s*(.*?)\s*-->$")
_FENCE = re.compile(r"^```")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, counted from 1
    kind: str | None  # one of KINDS; None when the block is not marked
    label: str  # the marker's text after "kind:"
    language: str
    text: str

    @property
    def name(self) -> str:
        """A run block's name: the label's first word."""
        return self.label.split()[0] if self.label else ""


def blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the marker on the line before it."""
    found: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not _FENCE.match(line):
            index += 1
            continue
        language = line[3:].strip()
        end = index + 1
        while end < len(lines) and not _FENCE.match(lines[end]):
            end += 1
        marker = _MARKER.match(lines[index - 1].strip()) if index > 0 else None
        kind, label = (marker.group(1), marker.group(2)) if marker else (None, "")
        body = "".join(f"{text_line}\n" for text_line in lines[index + 1 : end])
        found.append(Block(index + 1, kind, label, language, body))
        index = end + 1
    return found


def run_block(name: str, text: str | None = None) -> Block:
    """The run block called ``name``; KeyError when there is none."""
    for block in blocks(README.read_text() if text is None else text):
        if block.kind == "run" and block.name == name:
            return block
    raise KeyError(name)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 tests/readme.py NAME  (prints the README's run block NAME)")
        return 2
    try:
        sys.stdout.write(run_block(argv[0]).text)
    except KeyError:
        print(f"README.md has no block marked <!-- run: {argv[0]} -->", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
