"""Where Storage Commitment reports go: the peer table (``--commitment-peer``,
``--commitment-peers``).

A report goes to the requester's AE title at the address this table gives for it,
never to an address the requester chose (PS3.4 J.3.3 leaves the address to the
SCP's configuration); a requester missing from the table is refused.

Two file formats, told apart by their content:

* one peer a line, ``AET HOST PORT``, ``#`` starts a comment;
* DCMTK's ``dcmqrscp.cfg``: its ``HostTable BEGIN`` ... ``HostTable END`` section,
  entries ``name = (AET, HOST, PORT)`` (several tuples may follow one name, comma
  separated); entries naming other entries (groups) and the other sections are
  ignored, they give no address.

Pure: text in, peers out; errors name the line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

#: AE titles are at most 16 characters, without backslash or control characters
#: (PS3.5 Table 6.2-1, AE).
_AE_TITLE: Final = re.compile(r"[^\\\x00-\x1f\x7f]{1,16}")
_TUPLE: Final = re.compile(r"\(([^()]*)\)")


@dataclass(frozen=True, slots=True)
class Peer:
    """A Storage Commitment requester: its AE title and where it listens."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}={host}:{self.port}"


class PeerError(ValueError):
    """A peer entry that cannot be used; ``str()`` says where and why."""


def parse_peer(text: str) -> Peer:
    """``AET=HOST:PORT`` (an IPv6 address in brackets: ``AET=[::1]:11113``)."""
    title, sep, address = text.partition("=")
    if not sep:
        raise PeerError(f"{text!r} is not AET=HOST:PORT")
    host, sep, port = address.rpartition(":")
    if not sep:
        raise PeerError(f"{text!r} is not AET=HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return _peer(title, host, port, repr(text))


def parse_peer_file(text: str, filename: str) -> tuple[Peer, ...]:
    """The peers of a ``--commitment-peers`` file (either format, module docstring)."""
    lines = text.splitlines()
    if any(_is_host_table_begin(line) for line in lines):
        return tuple(_host_table(lines, filename))
    peers = []
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 3:
            raise PeerError(f"{filename}:{number}: expected 'AET HOST PORT', got {line.strip()!r}")
        title, host, port = fields
        peers.append(_peer(title, host, port, f"{filename}:{number}"))
    return tuple(peers)


def peer_table(peers: Iterable[Peer]) -> dict[str, Peer]:
    """AE title -> peer; a title listed twice keeps its last address (a file, then
    the command line, as options override)."""
    return {peer.ae_title: peer for peer in peers}


def _is_host_table_begin(line: str) -> bool:
    return line.split("#", 1)[0].split() == ["HostTable", "BEGIN"]


def _host_table(lines: list[str], filename: str) -> Iterable[Peer]:
    inside = False
    for number, line in enumerate(lines, 1):
        content = line.split("#", 1)[0].strip()
        words = content.split()
        if words == ["HostTable", "BEGIN"]:
            inside = True
            continue
        if words == ["HostTable", "END"]:
            inside = False
            continue
        if not inside or "=" not in content:
            continue
        where = f"{filename}:{number}"
        for found in _TUPLE.finditer(content.partition("=")[2]):
            fields = [field.strip() for field in found.group(1).split(",")]
            if len(fields) != 3:
                raise PeerError(f"{where}: expected (AET, HOST, PORT), got {found.group(0)!r}")
            title, host, port = fields
            yield _peer(title, host, port, where)


def _peer(title: str, host: str, port: str, where: str) -> Peer:
    title = title.strip(" ")
    if not _AE_TITLE.fullmatch(title):
        raise PeerError(f"{where}: {title!r} is not an AE title (1 to 16 characters)")
    if not host or any(c.isspace() for c in host):
        raise PeerError(f"{where}: {host!r} is not a host name or address")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise PeerError(f"{where}: {port!r} is not a port number (1-65535)")
    return Peer(title, host, int(port))
