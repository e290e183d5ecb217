"""A scripted raw-socket DICOM peer: send exactly these bytes, then expect exactly this.

Hostile-peer tests need a requestor that does what no real SCU library will do
(dribble a request a byte at a time, declare a 4 GiB PDU, put a PDV on a context
that was never accepted, reset the connection in the middle of a data set).  This
module builds PDUs and command sets byte by byte (PS3.8 section 9.3, PS3.7 section
9.3 and annex E) and drives a plain socket with them.  It deliberately shares no
code with ``dcmrecv``: the bytes are built here from the standard, and
``ECHO_RQ_FIXTURE`` below is decoded by hand, so an encoder bug in the receiver
cannot hide behind the same bug in the test.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# PDU types, PS3.8 9.3.1 table 9-1.
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07
PDU_NAMES = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
    A_ABORT: "A-ABORT",
}

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # PS3.7 A.2.1
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
IMPLEMENTATION_CLASS_UID = "1.2.3.4"

# PDV message control header bits, PS3.8 E.2.
COMMAND = 0x01
LAST = 0x02

# DIMSE command fields and statuses, PS3.7 E.1 and annex C.
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
NO_DATA_SET = 0x0101
SUCCESS = 0x0000

#: The A-ASSOCIATE-RQ that ``associate_rq()`` builds with its defaults, decoded by
#: hand from PS3.8 9.3.2 so the builder is checked against the standard, not itself.
ECHO_RQ_FIXTURE = bytes.fromhex(
    # PDU header: type 01 (A-ASSOCIATE-RQ), reserved 00, length 0x000000A6 = 166
    "01 00 000000a6"
    # protocol version 0x0001 (bit 0: version 1), reserved 0000
    "0001 0000"
    # called AE title "ANY-SCP" padded with spaces to 16 bytes
    "414e592d534350 202020202020202020"
    # calling AE title "RAWPEER" padded with spaces to 16 bytes
    "52415750454552 202020202020202020"
    # 32 reserved bytes
    "0000000000000000000000000000000000000000000000000000000000000000"
    # application context item: type 10, reserved, length 0x15 = 21, "1.2.840.10008.3.1.1.1"
    "10 00 0015 312e322e3834302e31303030382e332e312e312e31"
    # presentation context item: type 20, reserved, length 0x2E = 46,
    # context ID 01, three reserved bytes
    "20 00 002e 01 000000"
    # abstract syntax sub-item: type 30, length 0x11 = 17, "1.2.840.10008.1.1" (Verification)
    "30 00 0011 312e322e3834302e31303030382e312e31"
    # transfer syntax sub-item: type 40, length 17, "1.2.840.10008.1.2" (Implicit VR LE)
    "40 00 0011 312e322e3834302e31303030382e312e32"
    # user information item: type 50, length 0x13 = 19
    "50 00 0013"
    # maximum length sub-item (PS3.8 D.1): type 51, length 4, value 0x4000 = 16384
    "51 00 0004 00004000"
    # implementation class UID sub-item (PS3.7 D.3.3.2): type 52, length 7, "1.2.3.4"
    "52 00 0007 312e322e332e34"
)

#: A-RELEASE-RQ and A-RELEASE-RP (PS3.8 9.3.6, 9.3.7): type, reserved, length 4, 4 reserved.
RELEASE_RQ = bytes.fromhex("05 00 00000004 00000000")
RELEASE_RP = bytes.fromhex("06 00 00000004 00000000")


# --- PDU builders -------------------------------------------------------------------


def pdu(pdu_type: int, body: bytes, length: int | None = None) -> bytes:
    """A PDU: type, reserved byte, 32-bit big-endian length (``length`` may lie)."""
    return struct.pack(">BxL", pdu_type, len(body) if length is None else length) + body


def item(item_type: int, value: bytes, length: int | None = None) -> bytes:
    """An item or sub-item: type, reserved byte, 16-bit big-endian length (may lie)."""
    return struct.pack(">BxH", item_type, len(value) if length is None else length) + value


def presentation_context(
    context_id: int, abstract_syntax: str, transfer_syntaxes: Sequence[str]
) -> bytes:
    """Presentation context item of an A-ASSOCIATE-RQ (PS3.8 9.3.2.2)."""
    subitems = item(0x30, abstract_syntax.encode()) + b"".join(
        item(0x40, ts.encode()) for ts in transfer_syntaxes
    )
    return item(0x20, bytes((context_id, 0, 0, 0)) + subitems)


def user_information(
    max_length: int | None = 16384,
    implementation_class_uid: str | None = IMPLEMENTATION_CLASS_UID,
    extra: bytes = b"",
) -> bytes:
    """User information item (PS3.8 9.3.2.3) with the sub-items PS3.7 D.3.3 requires."""
    subitems = b""
    if max_length is not None:
        subitems += item(0x51, struct.pack(">L", max_length))
    if implementation_class_uid is not None:
        subitems += item(0x52, implementation_class_uid.encode())
    return item(0x50, subitems + extra)


def associate_rq(
    contexts: Iterable[tuple[int, str, Sequence[str]]] = ((1, VERIFICATION, (IMPLICIT_VR_LE,)),),
    *,
    called: str = "ANY-SCP",
    calling: str = "RAWPEER",
    protocol_version: int = 1,
    application_context: str = APPLICATION_CONTEXT,
    user: bytes | None = None,
    items: bytes | None = None,
) -> bytes:
    """An A-ASSOCIATE-RQ (PS3.8 9.3.2); ``items`` replaces the whole variable part."""
    if items is None:
        items = (
            item(0x10, application_context.encode())
            + b"".join(presentation_context(*cx) for cx in contexts)
            + (user_information() if user is None else user)
        )
    fixed = (
        struct.pack(">H", protocol_version)
        + b"\x00\x00"
        + called.encode().ljust(16, b" ")[:16]
        + calling.encode().ljust(16, b" ")[:16]
        + bytes(32)
    )
    return pdu(A_ASSOCIATE_RQ, fixed + items)


def pdv(context_id: int, control: int, payload: bytes, length: int | None = None) -> bytes:
    """A presentation data value item (PS3.8 9.3.5.1): its length counts ID and control."""
    declared = len(payload) + 2 if length is None else length
    return struct.pack(">LBB", declared, context_id, control) + payload


def p_data_tf(*pdvs: bytes) -> bytes:
    """A P-DATA-TF PDU (PS3.8 9.3.5) carrying the given PDV items."""
    return pdu(P_DATA_TF, b"".join(pdvs))


def message(context_id: int, is_command: bool, payload: bytes, max_pdu: int = 16384) -> bytes:
    """A whole command or data set as P-DATA-TF PDUs within ``max_pdu`` (PS3.8 D.1)."""
    chunk = max_pdu - 6  # the PDV header (length, ID, control) counts against the maximum
    base = COMMAND if is_command else 0
    out = []
    for start in range(0, max(len(payload), 1), chunk):
        fragment = payload[start : start + chunk]
        last = start + chunk >= len(payload)
        out.append(p_data_tf(pdv(context_id, base | (LAST if last else 0), fragment)))
    return b"".join(out)


def abort(source: int = 0, reason: int = 0) -> bytes:
    """A-ABORT (PS3.8 9.3.8): source 0 is the service user, as an SCU aborting."""
    return pdu(A_ABORT, bytes((0, 0, source, reason)))


# --- DIMSE command sets (Implicit VR Little Endian, PS3.7 6.3.1) ------------------------


def element(tag_element: int, value: bytes) -> bytes:
    """A group 0000 element: tag, 32-bit length, value (implicit VR, little endian)."""
    return struct.pack("<HHL", 0x0000, tag_element, len(value)) + value


def ui(value: str | bytes) -> bytes:
    """A UI value, padded with NUL to even length (PS3.5 9.1)."""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    return raw + b"\x00" if len(raw) % 2 else raw


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def command_set(*elements: bytes) -> bytes:
    """Elements behind their Command Group Length (0000,0000), PS3.7 E.1."""
    body = b"".join(elements)
    return element(0x0000, struct.pack("<L", len(body))) + body


def c_echo_rq(message_id: int = 1) -> bytes:
    """C-ECHO-RQ command set (PS3.7 9.3.5.1)."""
    return command_set(
        element(0x0002, ui(VERIFICATION)),
        element(0x0100, us(C_ECHO_RQ)),
        element(0x0110, us(message_id)),
        element(0x0800, us(NO_DATA_SET)),
    )


def c_store_rq(
    sop_class_uid: str | bytes, sop_instance_uid: str | bytes, message_id: int = 1
) -> bytes:
    """C-STORE-RQ command set (PS3.7 9.3.1.1), priority medium, data set follows."""
    return command_set(
        element(0x0002, ui(sop_class_uid)),
        element(0x0100, us(C_STORE_RQ)),
        element(0x0110, us(message_id)),
        element(0x0700, us(0)),
        element(0x0800, us(0x0000)),
        element(0x1000, ui(sop_instance_uid)),
    )


# --- Data sets (Explicit VR Little Endian, PS3.5 7.1.2) ----------------------------------

#: VRs with two reserved bytes and a 32-bit length (PS3.5 table 7.1-1).
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
UNDEFINED_LENGTH = 0xFFFFFFFF


def explicit(tag: int, vr: str, value: bytes, length: int | None = None) -> bytes:
    """One data element in Explicit VR Little Endian; ``length`` may differ from the value."""
    declared = len(value) if length is None else length
    group, number = tag >> 16, tag & 0xFFFF
    if vr in _LONG_VRS:
        return struct.pack("<HH2s2xL", group, number, vr.encode(), declared) + value
    return struct.pack("<HH2sH", group, number, vr.encode(), declared) + value


def text(value: str | bytes, pad: bytes = b" ") -> bytes:
    """A string value padded to even length (PS3.5 6.2: space, or NUL for UI)."""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    return raw + pad if len(raw) % 2 else raw


def nested_sequences(depth: int) -> bytes:
    """``depth`` sequences of undefined length, each inside an item of the one above."""
    sq_tag = 0x0040A730  # Content Sequence, SQ
    inner = explicit(0x00080100, "SH", text("INNER"))
    for _ in range(depth):
        item_bytes = (
            struct.pack("<HHL", 0xFFFE, 0xE000, UNDEFINED_LENGTH)
            + inner
            + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)  # item delimitation
        )
        inner = (
            explicit(sq_tag, "SQ", b"", UNDEFINED_LENGTH)
            + item_bytes
            + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)  # sequence delimitation
        )
    return inner


def ct_data_set(
    sop_instance_uid: str | bytes,
    *,
    sop_class_uid: str | bytes = CT_IMAGE_STORAGE,
    series_date: str | bytes = "20240131",
    extra: bytes = b"",
    pixel_data: bytes = bytes(64),
) -> bytes:
    """A small CT image data set in Explicit VR Little Endian, elements in tag order.

    ``extra`` goes between the Study Description (0008,1030) and Patient's Name
    (0010,0010), so it must hold elements of group 0008 above 1030 or of 0009-000F.
    """
    return b"".join(
        [
            explicit(0x00080016, "UI", text(sop_class_uid, b"\x00")),
            explicit(0x00080018, "UI", text(sop_instance_uid, b"\x00")),
            explicit(0x00080021, "DA", text(series_date)),
            explicit(0x00080060, "CS", text("CT")),
            explicit(0x00081030, "LO", text("RAW PEER")),
            extra,
            explicit(0x00100010, "PN", text("RAW^PEER")),
            explicit(0x0020000D, "UI", text("1.2.3.4.5.1", b"\x00")),
            explicit(0x0020000E, "UI", text("1.2.3.4.5.2", b"\x00")),
            explicit(0x7FE00010, "OB", text(pixel_data, b"\x00")),
        ]
    )


def parse_command(data: bytes) -> dict[int, bytes]:
    """Group 0000 elements of a command set, by element number."""
    fields: dict[int, bytes] = {}
    offset = 0
    while offset + 8 <= len(data):
        group, number, length = struct.unpack_from("<HHL", data, offset)
        assert group == 0x0000, f"element ({group:04X},{number:04X}) in a command set"
        fields[number] = data[offset + 8 : offset + 8 + length]
        offset += 8 + length
    assert offset == len(data), "command set does not end on an element boundary"
    return fields


def status_of(fields: dict[int, bytes]) -> int:
    """The Status (0000,0900) of a response command set."""
    return int(struct.unpack("<H", fields[0x0900])[0])


def pynetdicom_echo(port: int) -> int:
    """Status of a C-ECHO from a well-behaved SCU (pynetdicom), -1 if not associated."""
    from pynetdicom import AE

    ae = AE(ae_title="WELLBEHAVED")
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", port, ae_title="ANY-SCP")
    if not assoc.is_established:
        return -1
    try:
        response = assoc.send_c_echo()
        return int(response.Status) if "Status" in response else -1
    finally:
        assoc.release()


# --- Reading what the receiver answers ------------------------------------------------------


@dataclass(frozen=True)
class Pdu:
    pdu_type: int
    body: bytes

    @property
    def name(self) -> str:
        return PDU_NAMES.get(self.pdu_type, f"PDU type 0x{self.pdu_type:02X}")

    def abort_fields(self) -> tuple[int, int]:
        """(source, reason) of an A-ABORT (PS3.8 9.3.8)."""
        assert self.pdu_type == A_ABORT, f"expected A-ABORT, got {self.name}"
        return self.body[2], self.body[3]

    def reject_fields(self) -> tuple[int, int, int]:
        """(result, source, reason) of an A-ASSOCIATE-RJ (PS3.8 9.3.4)."""
        assert self.pdu_type == A_ASSOCIATE_RJ, f"expected A-ASSOCIATE-RJ, got {self.name}"
        return self.body[1], self.body[2], self.body[3]

    def accepted_contexts(self) -> dict[int, str]:
        """Context ID -> transfer syntax of each accepted context in an A-ASSOCIATE-AC."""
        assert self.pdu_type == A_ASSOCIATE_AC, f"expected A-ASSOCIATE-AC, got {self.name}"
        accepted: dict[int, str] = {}
        offset = 68
        while offset < len(self.body):
            item_type, length = struct.unpack_from(">BxH", self.body, offset)
            value = self.body[offset + 4 : offset + 4 + length]
            if item_type == 0x21 and value[2] == 0:  # result 0: acceptance (PS3.8 9.3.3.2)
                sub_length = struct.unpack_from(">H", value, 6)[0]
                accepted[value[0]] = value[8 : 8 + sub_length].decode().rstrip("\x00")
            offset += 4 + length
        return accepted


class RawPeer:
    """One TCP connection to the receiver, driven step by step by a test."""

    def __init__(self, port: int, timeout: float = 5.0, source: str | None = None) -> None:
        # ``source``: another loopback address (127.0.0.2 ...) to connect from, as a
        # second host would.
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.connected_at = time.monotonic()
        self._pending = b""

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST instead of FIN (a crashed peer)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def dribble(self, data: bytes, interval: float) -> bool:
        """Send one byte every ``interval`` seconds; False once the receiver has closed."""
        for index in range(len(data)):
            try:
                self.sock.sendall(data[index : index + 1])
            except OSError:
                return False
            if self._peer_closed(interval):
                return False
        return True

    def _peer_closed(self, wait: float) -> bool:
        """Wait up to ``wait`` seconds; True if the receiver closed (or sent something)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        self._pending += chunk
        return True

    def _read(self, count: int) -> bytes | None:
        while len(self._pending) < count:
            try:
                chunk = self.sock.recv(max(count - len(self._pending), 65536))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self._pending += chunk
        data, self._pending = self._pending[:count], self._pending[count:]
        return data

    def receive(self) -> Pdu | None:
        """The next PDU from the receiver, or None if it closed the connection.

        Raises TimeoutError if nothing complete arrives within the peer's timeout.
        """
        header = self._read(6)
        if header is None:
            return None
        pdu_type, length = struct.unpack(">BxL", header)
        assert length <= 4 * 1024 * 1024, f"receiver announced a {length} byte PDU"
        body = self._read(length)
        if body is None:
            return None
        return Pdu(pdu_type, body)

    def expect(self, pdu_type: int) -> Pdu:
        answer = self.receive()
        assert answer is not None, f"connection closed, expected {PDU_NAMES[pdu_type]}"
        assert answer.pdu_type == pdu_type, f"expected {PDU_NAMES[pdu_type]}, got {answer.name}"
        return answer

    def expect_abort(self) -> tuple[int, int]:
        """(source, reason) of the A-ABORT the receiver sends; then it must close."""
        fields = self.expect(A_ABORT).abort_fields()
        self.expect_closed()
        return fields

    def expect_closed(self) -> None:
        """The receiver closes the connection (after any PDU it still had to send)."""
        answer = self.receive()
        assert answer is None, f"expected the connection to close, got {answer.name}"

    def associate(self, request: bytes = ECHO_RQ_FIXTURE) -> dict[int, str]:
        """Send an A-ASSOCIATE-RQ, require an A-ASSOCIATE-AC; accepted contexts."""
        self.send(request)
        return self.expect(A_ASSOCIATE_AC).accepted_contexts()

    def receive_command(self) -> dict[int, bytes]:
        """The next command set, reassembled from command PDVs (PS3.8 E.2)."""
        data = b""
        while True:
            answer = self.expect(P_DATA_TF)
            body = answer.body
            offset = 0
            while offset < len(body):
                length, _context_id, control = struct.unpack_from(">LBB", body, offset)
                assert control & COMMAND, "data set PDV where a response command was expected"
                data += body[offset + 6 : offset + 4 + length]
                offset += 4 + length
                if control & LAST:
                    return parse_command(data)

    def echo(self, context_id: int = 1, message_id: int = 1) -> int:
        """A C-ECHO on an established association; the response status."""
        self.send(message(context_id, True, c_echo_rq(message_id)))
        fields = self.receive_command()
        assert struct.unpack("<H", fields[0x0100])[0] == C_ECHO_RSP
        return status_of(fields)

    def store(
        self,
        context_id: int,
        command: bytes,
        data_set: bytes,
        max_pdu: int = 16384,
    ) -> int:
        """Send a C-STORE-RQ command and its data set; the C-STORE-RSP status."""
        self.send(message(context_id, True, command, max_pdu))
        self.send(message(context_id, False, data_set, max_pdu))
        fields = self.receive_command()
        assert struct.unpack("<H", fields[0x0100])[0] == C_STORE_RSP
        return status_of(fields)

    def release(self) -> None:
        """A-RELEASE-RQ, expect A-RELEASE-RP, then the receiver closes (PS3.8 7.2)."""
        self.send(RELEASE_RQ)
        self.expect(A_RELEASE_RP)
        self.expect_closed()
