"""Who gets a connection slot: per-peer and total limits, and which connection yields.

The accept loop asks this module, for every new TCP connection, what to do with
it; the module only counts and decides (no sockets, no clocks: the caller passes
the time), so the policy is tested without a network.

Why these rules: a thread and a descriptor per connection are cheap, but not
free, and the number the process may hold is bounded.  Without a per-peer limit
one address that opens 512 silent connections (or 512 associations that go
idle, which the default of no DIMSE timeout keeps for ever, as DCMTK) locks out
every other sender.  So:

* a peer (an IPv4 address, an IPv6 /64: one host controls a whole /64) holds at
  most ``max_per_peer`` connections;
* near the total limit, a new connection gets a short time to send its
  A-ASSOCIATE-RQ (the ACSE timeout, ARTIM, PS3.8 9.1.5, shortened);
* when a peer or the receiver is full, the connection that has been quiet
  longest (no bytes from its peer) is reclaimed to make room, if it has been
  quiet long enough; a connection over a limit that cannot make room is served
  only to answer its request with A-ASSOCIATE-RJ (2,3,2), "local limit
  exceeded" (PS3.8 9.3.4), as DCMTK answers over ``--max-associations`` -- a
  bounded number of those at once, beyond that it is closed;
* a few connections are held beyond the limits for a loopback address that holds
  no other connection: the local health probe (a container's HEALTHCHECK,
  an operator's echoscu) is never refused because remote peers hold every slot
  (issue 22: five busy addresses filled the 1024 slots).  A flooding peer holds
  connections, so it cannot take them; a local process that floods from many
  loopback addresses could, as a local process can do worse.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from dcmrecv.config import IPNetwork

Key = TypeVar("Key")


@dataclass(frozen=True)
class Limits:
    """The receiver's connection limits (README, "Limits under load")."""

    #: Connections held at once, pending or established: bounds threads and descriptors.
    max_connections: int = 1024
    #: Connections one peer may hold.  Generous: a router or a migration tool behind
    #: one address may run many associations at once (DCMTK has no such limit), and
    #: a quarter of max_connections still leaves room for everyone else.
    max_per_peer: int = 256
    #: Connections over a limit held at once only to answer A-ASSOCIATE-RJ (2,3,2).
    max_refusing: int = 64
    #: From this many held connections on, the receiver is "near the limit".
    pressure_at: int = 768
    #: Near the limit: seconds a new connection may take to send its request
    #: (a real SCU sends it at once); older silent connections may be reclaimed.
    hurried_request_timeout: float = 5.0
    #: Seconds an established association must have been quiet before it is
    #: reclaimed to make room (it may be between two studies, or stalled).
    reclaim_idle: float = 10.0
    #: Connections (and associations beyond ``--max-associations``) held beyond the
    #: limits for loopback addresses that hold no other: the local health probe.
    loopback_reserve: int = 2


DEFAULT_LIMITS = Limits()


def peer_key(address: str) -> str:
    """The unit a per-peer limit counts: the IPv4 address, or the IPv6 /64 network.

    An IPv4-mapped IPv6 address (``::ffff:10.1.2.3``, a dual-stack listener) is
    the IPv4 peer it maps.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def is_loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1 (an IPv4-mapped loopback address too)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def probe_like(address: str, peer_count: int) -> bool:
    """Whether a new connection may use the loopback reserve: from a loopback address
    that holds no other connection, as a health probe does (a flood holds many, a
    sender's second association one)."""
    return peer_count == 0 and is_loopback(address)


def address_allowed(address: str, networks: tuple[IPNetwork, ...] | None) -> bool:
    """``--accept-from``: is the peer inside one of the networks (None allows all)?"""
    if networks is None:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in network for network in networks)


class Verdict(enum.Enum):
    """What to do with a new connection."""

    #: Serve it with the configured ACSE timeout.
    SERVE = "serve"
    #: Serve it, with ``Limits.hurried_request_timeout`` to send its request.
    SERVE_HURRIED = "serve hurried"
    #: Its peer is at ``max_per_peer``: reclaim one of that peer's quiet connections.
    MAKE_ROOM_IN_PEER = "make room in peer"
    #: The receiver is at ``max_connections``: reclaim the quietest connection.
    MAKE_ROOM = "make room"
    #: Serve it beyond the limits, in the loopback reserve (hurried, as near a limit).
    SERVE_RESERVED = "serve reserved"


def admit(
    peer_count: int,
    total: int,
    limits: Limits,
    short_of_descriptors: bool,
    *,
    newcomer_from_loopback: bool = False,
    reserved: int = 0,
) -> Verdict:
    """The verdict for a new connection from a peer that holds ``peer_count`` of ``total``.

    ``newcomer_from_loopback``: it may use the loopback reserve (probe_like), of
    which ``reserved`` connections are in use.
    """
    if (
        total >= limits.max_connections
        and newcomer_from_loopback
        and reserved < limits.loopback_reserve
    ):
        return Verdict.SERVE_RESERVED
    if peer_count >= limits.max_per_peer:
        return Verdict.MAKE_ROOM_IN_PEER
    if total >= limits.max_connections:
        return Verdict.MAKE_ROOM
    if short_of_descriptors or total >= limits.pressure_at:
        return Verdict.SERVE_HURRIED
    return Verdict.SERVE


class Excess(enum.Enum):
    """What to do with a connection over a limit when no room could be made."""

    #: Serve it only to answer its request with A-ASSOCIATE-RJ (2,3,2).
    REFUSE = "refuse"
    #: Too many are being refused already: close the connection.
    CLOSE = "close"


def may_associate(
    admitted: int, limit: int | None, newcomer_from_loopback: bool, beyond: int, limits: Limits
) -> tuple[bool, bool]:
    """``--max-associations``: (accept the association?, beyond the limit?).

    At the limit an association that may use the loopback reserve (probe_like)
    is still accepted while fewer than ``loopback_reserve`` are beyond it.
    """
    if limit is None or admitted < limit:
        return True, False
    if newcomer_from_loopback and beyond < limits.loopback_reserve:
        return True, True
    return False, False


def excess(refusing: int, limits: Limits) -> Excess:
    return Excess.REFUSE if refusing < limits.max_refusing else Excess.CLOSE


@dataclass(frozen=True)
class Candidate(Generic[Key]):
    """A held connection, as the reclaim choice sees it."""

    key: Key
    peer: str
    #: True once an A-ASSOCIATE-RQ was accepted; False while it is still silent.
    established: bool
    #: Seconds since its peer last sent anything (or connected, if it never did).
    quiet: float


def choose_reclaim(
    candidates: Iterable[Candidate[Key]], limits: Limits, peer: str | None = None
) -> Candidate[Key] | None:
    """The connection to close to make room, or None if none may be closed.

    Only connections that have been quiet long enough qualify: a silent one for
    ``hurried_request_timeout`` (it would have sent its request by then), an
    established one for ``reclaim_idle``; an association receiving data never
    does.  Of those the longest-quiet goes first; on a tie, the one whose peer
    holds more connections.  ``peer`` restricts the choice to that peer's.
    """
    chosen: Candidate[Key] | None = None
    counts: Counter[str] = Counter()
    eligible: list[Candidate[Key]] = []
    for candidate in candidates:
        counts[candidate.peer] += 1
        if peer is not None and candidate.peer != peer:
            continue
        needed = limits.reclaim_idle if candidate.established else limits.hurried_request_timeout
        if candidate.quiet >= needed:
            eligible.append(candidate)
    for candidate in eligible:
        if chosen is None or (candidate.quiet, counts[candidate.peer]) > (
            chosen.quiet,
            counts[chosen.peer],
        ):
            chosen = candidate
    return chosen


class Tally:
    """Connections held, per peer key and in total."""

    def __init__(self) -> None:
        self._per_peer: Counter[str] = Counter()
        self.total = 0

    def count(self, peer: str) -> int:
        return self._per_peer[peer]

    def add(self, peer: str) -> None:
        self._per_peer[peer] += 1
        self.total += 1

    def remove(self, peer: str) -> None:
        if self._per_peer[peer] <= 0:
            raise ValueError(f"no connection from {peer} is counted")
        self._per_peer[peer] -= 1
        if not self._per_peer[peer]:
            del self._per_peer[peer]
        self.total -= 1


class Throttle:
    """Say something at most once per ``interval`` seconds, counting what was held back.

    A flood must not turn into a flood of log lines: each kind of overload
    message is logged once per interval with the number of occurrences since.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next: float | None = None
        self._held_back = 0

    def note(self, now: float) -> int | None:
        """None: stay quiet; else log now, and this many were held back since the last."""
        if self._next is not None and now < self._next:
            self._held_back += 1
            return None
        held_back, self._held_back = self._held_back, 0
        self._next = now + self.interval
        return held_back
