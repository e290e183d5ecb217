"""Reading option values (pure): the ``parse`` of the option rows, with DCMTK's messages.

Each reader takes an occurrence and returns the value for the option's field, or
raises ArgvError (``Invalid value for option --max-pdu (underflow: 10)``).  Numbers
are read as DCMTK reads them (dcmrecv.commands.argv); the rest are our own options'
values.  Modules that cost start-up time are imported by the reader that needs them,
so ``--help`` and ``--version`` do not pay for them.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from dcmrecv.commands.argv import ArgvError, option_number, option_unsigned
from dcmrecv.commands.option import Occurrence

if TYPE_CHECKING:
    from dcmrecv.commitment.peers import Peer
    from dcmrecv.config import DuplicatePolicy, IPNetwork
    from dcmrecv.storage.freespace import Watermark
    from dcmrecv.storage.template import Template
    from dcmrecv.tlsconfig import TLSOptions

_Value = TypeVar("_Value")


def invalid(occurrence: Occurrence, why: object) -> ArgvError:
    """DCMTK's message for a value an option cannot take, with the reason."""
    return ArgvError(f"Invalid value for option {occurrence.spec.long} ({why})")


# --- numbers -----------------------------------------------------------------------------


def unsigned(low: int, high: int | None = None) -> Callable[[Occurrence], int]:
    """An unsigned integer in ``low..high``, as DCMTK reads it (``-pdu 8192``)."""
    return lambda occurrence: option_unsigned(occurrence, low, high)


def seconds(low: int) -> Callable[[Occurrence], float]:
    """Whole seconds, at least ``low`` (``-ta 30``), as a float."""
    return lambda occurrence: float(option_unsigned(occurrence, low))


def number(low: float) -> Callable[[Occurrence], float]:
    """A number, at least ``low`` (our own options: ``--shutdown-timeout 2.5``)."""
    return lambda occurrence: option_number(occurrence, low)


def signed(low: int) -> Callable[[Occurrence], int]:
    """A signed integer (DCMTK's getValueAndCheckMin for OFCmdSignedInt), at least ``low``."""

    def read(occurrence: Occurrence) -> int:
        text = occurrence.values[0]
        stripped = text.strip()
        digits = stripped[1:] if stripped[:1] in "+-" else stripped
        if not digits.isdigit():
            raise invalid(occurrence, text)
        value = int(stripped)
        if value < low:
            raise invalid(occurrence, f"underflow: {text}")
        return value

    return read


def max_pdu(occurrence: Occurrence) -> int:
    """``-pdu``: the range DCMTK allows on the command line."""
    from dcmrecv.config import MAX_MAX_PDU, MIN_MAX_PDU

    return option_unsigned(occurrence, MIN_MAX_PDU, MAX_MAX_PDU)


# --- names, paths and addresses --------------------------------------------------------------


def path(occurrence: Occurrence) -> Path:
    return Path(occurrence.values[0])


def normalized_directory(occurrence: Occurrence) -> str:
    """storescp's ``-od``: DCMTK's normalizeDirName, no trailing separator (storescp
    prints file paths joined to it)."""
    return occurrence.values[0].rstrip("/") or "/"


def filename_extension(occurrence: Occurrence) -> str:
    """dcmrecv's ``-fe``: a path separator would put files elsewhere."""
    from dcmrecv.storage.naming import PlanError, check_extension

    try:
        return check_extension(occurrence.values[0])
    except PlanError as exc:
        raise ArgvError(f"Invalid value for option --filename-extension: {exc}") from None


#: PS3.5 6.2, AE: at most 16 characters of the default repertoire, no backslash and
#: no control characters; leading and trailing spaces are not significant.
MAX_AETITLE_LENGTH = 16


def aetitle_problem(title: str) -> str | None:
    """Why ``title`` (already stripped of spaces) is not a valid AE title, or None."""
    if not title:
        return "empty AE title"
    if len(title) > MAX_AETITLE_LENGTH:
        return f"AE title longer than {MAX_AETITLE_LENGTH} characters"
    if any(not (" " <= char <= "~") or char == "\\" for char in title):
        return "AE title with a backslash or a character outside ASCII"
    return None


def accept_calling_titles(values: tuple[str, ...]) -> frozenset[str]:
    """``--accept-calling`` values as the engine compares them (stripped, checked)."""
    titles = set()
    for value in values:
        title = value.strip(" ")
        problem = aetitle_problem(title)
        if problem is not None:
            raise ArgvError(f"Invalid value for option --accept-calling ({problem}: '{value}')")
        titles.add(title)
    return frozenset(titles)


def parse_aetitle_list(text: str, filename: str) -> frozenset[str]:
    """The titles of an ``--accept-calling-file``: one per line, ``#`` comment lines."""
    titles = set()
    for number, line in enumerate(text.splitlines(), start=1):
        title = line.strip(" \t\r")
        if not title or title.startswith("#"):
            continue
        problem = aetitle_problem(title)
        if problem is not None:
            raise ArgvError(
                f"Invalid AE title in --accept-calling-file '{filename}' line {number}"
                f" ({problem}: '{title}')"
            )
        titles.add(title)
    return frozenset(titles)


def network(occurrence: Occurrence) -> IPNetwork:
    """``--accept-from``: an address or a network in CIDR notation."""
    try:
        return ipaddress.ip_network(occurrence.values[0].strip(), strict=False)
    except ValueError:
        raise invalid(occurrence, occurrence.values[0]) from None


def http_address(occurrence: Occurrence) -> str:
    """``--http-address``: an IPv4 or IPv6 address (no name: nothing to resolve at start)."""
    try:
        return str(ipaddress.ip_address(occurrence.values[0]))
    except ValueError:
        raise invalid(occurrence, occurrence.values[0]) from None


def tls_files(occurrence: Occurrence) -> TLSOptions:
    """``+tls KEY CERT``: TLS on, with DCMTK's defaults for the other TLS options."""
    from dcmrecv.tlsconfig import TLSOptions

    return TLSOptions(private_key=occurrence.values[0], certificate=occurrence.values[1])


# --- storage policies (not in DCMTK) -----------------------------------------------------------


def _checked(occurrence: Occurrence, read: Callable[[str], _Value]) -> _Value:
    """``read`` of the option's value; its ValueError (the reason) in DCMTK's message."""
    try:
        return read(occurrence.values[0])
    except ValueError as exc:
        raise invalid(occurrence, exc) from None


def output_template(occurrence: Occurrence) -> Template:
    """``--output-template``: checked once; one that could leave the output directory is
    refused here (exit 1).  Read after DCMDICTPATH is installed, so the dictionary's
    names work too."""
    from dcmrecv.storage.template import parse_template

    return _checked(occurrence, parse_template)


def template_fallback(occurrence: Occurrence) -> str:
    from dcmrecv.storage.template import check_fallback

    return _checked(occurrence, check_fallback)


def duplicate_policy(occurrence: Occurrence) -> DuplicatePolicy:
    from dcmrecv.config import DuplicatePolicy

    try:
        return DuplicatePolicy(occurrence.values[0])
    except ValueError:
        choices = ", ".join(policy.value for policy in DuplicatePolicy)
        raise invalid(occurrence, f"expected one of {choices}") from None


def watermark(occurrence: Occurrence) -> Watermark:
    """``--min-free-space``: ``5G``, ``500M`` or ``10%``."""
    from dcmrecv.storage.freespace import parse_watermark

    return _checked(occurrence, parse_watermark)


def quarantine_limit(occurrence: Occurrence) -> Watermark:
    """``--quarantine-limit``: a size such as ``1G``, or a percentage of the
    quarantine's file system (``5%``, the default: storage.quarantine)."""
    mark = watermark(occurrence)
    if mark.size is not None and mark.size <= 0:
        raise invalid(occurrence, "expected a size such as 1G or 500M, or 5%")
    return mark


#: More workers than this is a typo, not a machine (``--workers``).
MAX_WORKERS: Final = 256


def workers(occurrence: Occurrence) -> int:
    """``--workers``: 0 means one per CPU this process may run on."""
    count = unsigned(0, MAX_WORKERS)(occurrence)
    if count == 0:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(count, 1)


#: The schemes ``--state`` takes (dcmrecv/state).
STATE_SCHEMES: Final = ("sqlite:", "postgresql:", "postgres:")


def state_url(occurrence: Occurrence) -> str:
    """``--state``: a URL whose scheme we know (the store is opened at start-up)."""
    text = occurrence.values[0]
    if not text.startswith(STATE_SCHEMES):
        raise invalid(occurrence, "expected sqlite:///path or postgresql://...")
    return text


def commitment_peer(occurrence: Occurrence) -> Peer:
    """``--commitment-peer AET=HOST:PORT``."""
    from dcmrecv.commitment.peers import PeerError, parse_peer

    try:
        return parse_peer(occurrence.values[0])
    except PeerError as exc:
        raise invalid(occurrence, exc) from None
