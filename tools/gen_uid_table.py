#!/usr/bin/env python3
"""Generate dcmrecv/negotiation/_uid_table.py from the project's UID reference table.

Usage: python3 tools/gen_uid_table.py [TSV] [--output PATH] [--check]

TSV defaults to ../shared/reference/dcmtk-uids.tsv relative to the repository
root (the layout of a checkout with shared/ beside it).  The TSV columns are
described in shared/reference/README.md: uid, dicom_keyword, dcmtk_name,
older_dcmtk_names, status, kind, modality_prefix.

--check compares instead of writing and exits 1 when the committed module is
out of date, so a test or CI can tell that someone edited one without the
other.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TSV = REPO.parent / "shared" / "reference" / "dcmtk-uids.tsv"
DEFAULT_OUTPUT = REPO / "dcmrecv" / "negotiation" / "_uid_table.py"
COLUMNS = (
    "uid",
    "dicom_keyword",
    "dcmtk_name",
    "older_dcmtk_names",
    "status",
    "kind",
    "modality_prefix",
)
LINE_LENGTH = 100  # pyproject.toml [tool.ruff] line-length

HEADER = '''\
"""UID facts DCMTK's configuration files and file names depend on.

GENERATED FILE, do not edit: regenerate with

    python3 tools/gen_uid_table.py [path/to/dcmtk-uids.tsv]

from shared/reference/dcmtk-uids.tsv (DCMTK's UID name map and modality table,
dcmdata/libsrc/dcuid.cc, merged over DCMTK 3.5.4 to 3.7.0).  dcmrecv/negotiation/uids.py is
the API over this table.

Each row: (uid, DICOM keyword (PS3.6 Annex A) or "", DCMTK's current name,
names older DCMTK releases used, status, kind, DCMTK's file name prefix or "").
"""

UID_ROWS: tuple[tuple[str, str, str, tuple[str, ...], str, str, str], ...] = (
'''


class TableError(Exception):
    """The TSV does not have the shape this generator expects."""


def read_rows(tsv: Path) -> list[tuple[str, str, str, tuple[str, ...], str, str, str]]:
    with tsv.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or tuple(header) != COLUMNS:
            raise TableError(f"{tsv}: expected columns {', '.join(COLUMNS)}; found {header}")
        rows = []
        seen: set[str] = set()
        for number, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) != len(COLUMNS):
                raise TableError(f"{tsv}:{number}: expected {len(COLUMNS)} columns")
            uid, keyword, name, older, status, kind, prefix = (f.strip() for f in fields)
            if not uid or not name:
                raise TableError(f"{tsv}:{number}: uid and dcmtk_name must not be empty")
            if uid in seen:
                raise TableError(f"{tsv}:{number}: duplicate uid {uid}")
            seen.add(uid)
            older_names = tuple(n.strip() for n in older.split(",") if n.strip())
            rows.append((uid, keyword, name, older_names, status, kind, prefix))
    return rows


def _literal(value: str | tuple[str, ...]) -> str:
    if isinstance(value, tuple):
        if len(value) == 1:
            return f'("{value[0]}",)'
        return "(" + ", ".join(f'"{v}"' for v in value) + ")"
    if '"' in value or "\\" in value:
        raise TableError(f"unexpected quote or backslash in {value!r}")
    return f'"{value}"'


def render(rows: list[tuple[str, str, str, tuple[str, ...], str, str, str]]) -> str:
    """The module text, laid out the way `ruff format` leaves it."""
    lines = [HEADER]
    for row in rows:
        literals = [_literal(field) for field in row]
        one_line = "    (" + ", ".join(literals) + "),"
        if len(one_line) <= LINE_LENGTH:
            lines.append(one_line + "\n")
        else:
            lines.append("    (\n")
            lines.extend(f"        {literal},\n" for literal in literals)
            lines.append("    ),\n")
    lines.append(")\n")
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tsv", nargs="?", type=Path, default=DEFAULT_TSV)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the output is stale")
    args = parser.parse_args(argv)
    try:
        text = render(read_rows(args.tsv))
    except (OSError, TableError) as exc:
        print(f"gen_uid_table: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run tools/gen_uid_table.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
