"""Peer-supplied text made safe for a log line.

AE titles, implementation version names and UIDs come from the network.  Written
raw, a newline in one starts a forged log line ("I: Stored received object to
file: ...") and an ESC starts a terminal control sequence.  ``printable`` escapes
every character that is not printable (C0 and C1 controls, DEL, line and paragraph
separators) the way Python writes them in a string literal, and leaves printable
text untouched, so normal values log exactly as DCMTK logs them.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(character: str) -> str:
    named = _NAMED.get(character)
    if named is not None:
        return named
    code = ord(character)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``"\\n"``, ``"\\x1b"``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)
