"""Every code block in the README is run by a test, is a shipped file, or says why not.

The markers are described in tests/readme.py.  A run block is run by
scripts/deployment-test.sh, which reads it from the README by name
(``readme_block NAME``), so changing the README changes what CI runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.readme import KINDS, README, Block, blocks, run_block

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT_TEST = ROOT / "scripts" / "deployment-test.sh"
ALL = blocks(README.read_text())


def used_by_deployment_test() -> set[str]:
    return set(re.findall(r"\breadme_block\s+([a-z][a-z0-9-]*)", DEPLOYMENT_TEST.read_text()))


def test_the_readme_has_blocks_of_each_kind() -> None:
    assert {block.kind for block in ALL} == set(KINDS)


@pytest.mark.parametrize("block", ALL, ids=lambda block: f"line{block.line}")
def test_every_block_is_marked_with_a_reason(block: Block) -> None:
    assert block.kind in KINDS, (
        f"README.md line {block.line}: a code block needs a marker on the line before it, "
        "<!-- run: NAME -->, <!-- file: PATH -->, <!-- example: why --> or <!-- output: what -->"
    )
    assert block.label, f"README.md line {block.line}: the marker says nothing"


def test_run_blocks_are_unique_and_run_by_the_deployment_test() -> None:
    names = [block.name for block in ALL if block.kind == "run"]
    assert len(names) == len(set(names)), names
    assert set(names) == used_by_deployment_test()


@pytest.mark.parametrize(
    "block", [b for b in ALL if b.kind == "file"], ids=lambda block: block.label
)
def test_file_blocks_are_the_shipped_files(block: Block) -> None:
    assert block.text == (ROOT / block.label).read_text()


def test_the_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    commands = [
        line
        for line in run_block("quickstart").text.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert commands == ["bash scripts/run.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text().splitlines()


def test_an_unmarked_block_is_found() -> None:
    text = "x\n\n```sh\nrm -rf /\n```\n\n<!-- example: no -->\n```\nls\n```\n"
    found = blocks(text)
    assert [(b.kind, b.line, b.text) for b in found] == [
        (None, 3, "rm -rf /\n"),
        ("example", 8, "ls\n"),
    ]
