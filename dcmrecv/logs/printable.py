"""Peer text made safe for a log line: control characters escaped, the rest kept.

A value a peer chose (an AE title, a UID, a study's manifest path) must not be
able to start a line of its own ("\\nI: Stored received object ...") or drive the
operator's terminal (ESC sequences).  Printable text stays as it is, so log lines
read exactly as DCMTK's wherever the values are ordinary.
"""

from __future__ import annotations

import re

#: C0 controls, DEL and C1 controls (ECMA-48): everything a terminal may act on.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")


def printable(text: str) -> str:
    """``text`` with every control character written as a backslash escape."""
    if _CONTROL.search(text) is None:
        return text  # the usual case: no copy
    return _CONTROL.sub(_escape, text)


def printable_value(value: str, limit: int = 80) -> str:
    """A peer value that may be empty or huge (a UID, an AE title) for a log line or
    a sidecar: escaped, at most ``limit`` characters of it shown, "(none)" if empty."""
    if not value:
        return "(none)"
    shown = printable(value[:limit])
    return shown + "..." if len(value) > limit else shown
