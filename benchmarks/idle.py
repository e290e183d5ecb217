"""Idle associations: open many, let them sit, and see what the receiver burns meanwhile.

The peer side is raw sockets, not pynetdicom: an SCU library's own polling threads
would compete for the same two cores and blur the receiver's CPU time.  The only
PDUs needed are an A-ASSOCIATE-RQ for Verification and an A-RELEASE-RQ, encoded
here by hand after PS3.8 9.3.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from dataclasses import dataclass
from typing import cast

#: PS3.7 Annex A.2.1: the DICOM Application Context Name.
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
#: PS3.4 A.4: Verification SOP Class; PS3.5 10.1: Implicit VR Little Endian.
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
#: PDU types (PS3.8 9.3.1).
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03


def _item(item_type: int, payload: bytes) -> bytes:
    # PS3.8 9.3.2.x: item type, reserved byte, 2-byte big-endian item length.
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def _ae_title(title: str) -> bytes:
    # PS3.8 9.3.2: 16 bytes, space padded.
    encoded = title.encode("ascii")
    if not 0 < len(encoded) <= 16:
        raise ValueError(f"AE title {title!r} must be 1 to 16 characters")
    return encoded.ljust(16, b" ")


def associate_rq(called: str, calling: str, max_pdu: int = 16384) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing Verification with Implicit VR Little Endian."""
    application_context = _item(0x10, APPLICATION_CONTEXT.encode("ascii"))
    presentation_context = _item(
        0x20,
        bytes([1, 0, 0, 0])  # PS3.8 9.3.2.2: context ID 1 (odd), three reserved bytes
        + _item(0x30, VERIFICATION_SOP_CLASS.encode("ascii"))
        + _item(0x40, IMPLICIT_VR_LITTLE_ENDIAN.encode("ascii")),
    )
    # PS3.8 D.1: Maximum Length sub-item inside the User Information item.
    user_information = _item(0x50, _item(0x51, struct.pack(">I", max_pdu)))
    body = (
        struct.pack(">HH", 1, 0)  # protocol version 1, reserved
        + _ae_title(called)
        + _ae_title(calling)
        + bytes(32)
        + application_context
        + presentation_context
        + user_information
    )
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def release_rq() -> bytes:
    """PS3.8 9.3.6: A-RELEASE-RQ, fixed 4 reserved bytes."""
    return struct.pack(">BBI", 0x05, 0, 4) + bytes(4)


@dataclass
class IdleOutcome:
    """How many associations were accepted, and the receiver's CPU use while idle."""

    opened: int
    accepted: int
    cpu_seconds: float
    window: float

    @property
    def cpu_percent(self) -> float:
        """Percent of one core over the idle window."""
        return 100.0 * self.cpu_seconds / self.window if self.window > 0 else 0.0


#: Connections per loopback source address: our receiver limits connections per peer
#: (README, "Limits under load"); all of 127/8 is loopback on Linux.
PER_SOURCE = 16


def source_address(number: int) -> tuple[str, int]:
    """The local address for the ``number``-th connection: 16 per 127.0.0.x."""
    return (f"127.0.0.{1 + number // PER_SOURCE}", 0)


def open_associations(
    port: int, count: int, *, called: str = "DCMRECV", settle: float = 1.0
) -> tuple[list[socket.socket], int]:
    """Connect ``count`` sockets and request an association on each.

    Returns the sockets still open and how many got an A-ASSOCIATE-AC.  A receiver
    that serves one association at a time (DCMTK) answers only the first; we stop
    waiting once no answer has come for ``settle`` seconds.  A connection the receiver closes or
    resets (a limit on open connections) counts as not accepted.
    """
    request = associate_rq(called, "IDLEBENCH")
    sockets: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    try:
        pending = 0
        for number in range(count):
            try:
                sock = socket.create_connection(
                    ("127.0.0.1", port), timeout=10, source_address=source_address(number)
                )
            except ConnectionResetError:
                continue  # reset at once (a receiver's connection limit): not accepted
            except TimeoutError:
                # The listen backlog is full (a receiver that serves one association
                # at a time): every further attempt would wait as long.
                break
            sockets.append(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.sendall(request)
            except OSError:
                continue  # closed at once: not accepted
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            pending += 1
        accepted = 0
        last_answer = time.monotonic()
        while pending and time.monotonic() - last_answer < settle:
            for key, _ in selector.select(timeout=settle):
                sock = cast(socket.socket, key.fileobj)
                selector.unregister(sock)
                pending -= 1
                last_answer = time.monotonic()
                try:
                    header = sock.recv(1)
                except OSError:
                    header = b""  # reset: the receiver refused the connection
                if header and header[0] == A_ASSOCIATE_AC:
                    accepted += 1
        return sockets, accepted
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    finally:
        selector.close()


def close_associations(sockets: list[socket.socket]) -> None:
    """Ask for release on each and close; the receiver may still be busy, we do not wait."""
    for sock in sockets:
        try:
            sock.setblocking(True)
            sock.sendall(release_rq())
        except OSError:
            pass
        finally:
            sock.close()
