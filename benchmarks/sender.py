"""Many associations from one process: the scale curve's load generator.

``python3 -m benchmarks.sender PORT DIR [DIR ...]`` opens one association per
directory, all at once, sends every file in its directory as a C-STORE and
releases; it prints one JSON line: the seconds from the first A-ASSOCIATE-RQ to
the last A-RELEASE-RP, and the instances stored.

Why not 64 storescu processes: on two cores, starting 64 DCMTK processes (each
loads its data dictionary) took longer than sending the data, so the curve showed
the senders' start-up instead of the receiver.  Here the files are read before the
clock starts and one event loop drives every association, so adding senders adds
only associations.  The PDUs are encoded by hand after PS3.8 9.3 (association,
P-DATA-TF) and PS3.7 9.3.1 (C-STORE-RQ), as in idle.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.idle import APPLICATION_CONTEXT, _ae_title, _item, release_rq, source_address

#: PS3.5 A.2: the transfer syntax the benchmark's files are written in.
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
#: PDU types (PS3.8 9.3.1).
A_ASSOCIATE_AC = 0x02
P_DATA_TF = 0x04
A_RELEASE_RP = 0x06
#: The max PDU length we announce, and assume when the acceptor sets none (PS3.8 D.1).
OUR_MAX_PDU = 16384
#: PDV message control header bits (PS3.8 E.2).
COMMAND = 0x01
LAST = 0x02
#: PS3.7 E.1: C-STORE-RQ command field, medium priority, "a data set follows".
C_STORE_RQ = 0x0001
PRIORITY_MEDIUM = 0x0000
DATA_SET_PRESENT = 0x0000


class SendError(RuntimeError):
    """The receiver did not accept an association or an instance."""


@dataclass(frozen=True)
class Instance:
    """What a C-STORE sends: the SOP class and instance UIDs, and the data set bytes."""

    sop_class_uid: str
    sop_instance_uid: str
    data_set: bytes


def _uid_value(uid: str) -> bytes:
    # PS3.5 9.1: UIDs are padded to even length with a trailing NUL.
    encoded = uid.encode("ascii")
    return encoded + b"\0" if len(encoded) % 2 else encoded


def _implicit(group: int, element: int, value: bytes) -> bytes:
    # PS3.5 7.1.3: implicit VR little endian, as every command set is (PS3.7 6.3.1).
    return struct.pack("<HHI", group, element, len(value)) + value


def c_store_rq(message_id: int, instance: Instance) -> bytes:
    """The command set of a C-STORE-RQ (PS3.7 9.3.1.1), group length first."""
    body = (
        _implicit(0x0000, 0x0002, _uid_value(instance.sop_class_uid))
        + _implicit(0x0000, 0x0100, struct.pack("<H", C_STORE_RQ))
        + _implicit(0x0000, 0x0110, struct.pack("<H", message_id))
        + _implicit(0x0000, 0x0700, struct.pack("<H", PRIORITY_MEDIUM))
        + _implicit(0x0000, 0x0800, struct.pack("<H", DATA_SET_PRESENT))
        + _implicit(0x0000, 0x1000, _uid_value(instance.sop_instance_uid))
    )
    return _implicit(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def associate_rq(called: str, calling: str, sop_classes: Sequence[str]) -> bytes:
    """An A-ASSOCIATE-RQ with one context (odd IDs 1, 3, ...) per SOP class."""
    contexts = b"".join(
        _item(
            0x20,
            bytes([2 * index + 1, 0, 0, 0])
            + _item(0x30, sop_class.encode("ascii"))
            + _item(0x40, EXPLICIT_VR_LITTLE_ENDIAN.encode("ascii")),
        )
        for index, sop_class in enumerate(sop_classes)
    )
    user_information = _item(0x50, _item(0x51, struct.pack(">I", OUR_MAX_PDU)))
    body = (
        struct.pack(">HH", 1, 0)
        + _ae_title(called)
        + _ae_title(calling)
        + bytes(32)
        + _item(0x10, APPLICATION_CONTEXT.encode("ascii"))
        + contexts
        + user_information
    )
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


@dataclass(frozen=True)
class Acceptance:
    """What an A-ASSOCIATE-AC says: accepted context IDs, and the acceptor's max PDU."""

    accepted_contexts: frozenset[int]
    max_pdu: int


def _items(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        item_type, length = data[offset], struct.unpack_from(">H", data, offset + 2)[0]
        yield item_type, data[offset + 4 : offset + 4 + length]
        offset += 4 + length


def parse_associate_ac(body: bytes) -> Acceptance:
    """The variable items of an A-ASSOCIATE-AC body (after the 6-byte PDU header).

    PS3.8 9.3.3: 68 fixed bytes, then items; a presentation context item (0x21)
    has its ID in byte 0 and the result in byte 2 (0 = acceptance); the maximum
    length sub-item (0x51) of the user information (0x50) may be 0: no limit.
    """
    accepted: set[int] = set()
    max_pdu = OUR_MAX_PDU
    for item_type, value in _items(body[68:]):
        if item_type == 0x21 and len(value) >= 4 and value[2] == 0:
            accepted.add(value[0])
        elif item_type == 0x50:
            for sub_type, sub_value in _items(value):
                if sub_type == 0x51 and len(sub_value) == 4:
                    max_pdu = struct.unpack(">I", sub_value)[0] or 1 << 31
    return Acceptance(frozenset(accepted), max_pdu)


def p_data_tf(context_id: int, control: int, fragment: bytes | memoryview) -> bytes:
    """The header of a P-DATA-TF with one PDV (PS3.8 9.3.5); the fragment follows it."""
    pdv_length = len(fragment) + 2  # context ID and message control header
    return struct.pack(">BBIIBB", P_DATA_TF, 0, pdv_length + 4, pdv_length, context_id, control)


def pdus(context_id: int, control: int, payload: bytes, max_pdu: int) -> Iterator[bytes]:
    """``payload`` in P-DATA-TF PDUs that fit ``max_pdu``; LAST marks the final one."""
    room = max(1, max_pdu - 6)  # PDV item length (4) + context ID + control header
    view = memoryview(payload)
    for start in range(0, max(len(payload), 1), room):
        fragment = view[start : start + room]
        last = LAST if start + room >= len(payload) else 0
        yield p_data_tf(context_id, control | last, fragment) + bytes(fragment)


def command_status(command_set: bytes) -> int | None:
    """(0000,0900) Status from an implicit VR little endian command set, or None."""
    offset = 0
    while offset + 8 <= len(command_set):
        group, element, length = struct.unpack_from("<HHI", command_set, offset)
        if (group, element) == (0x0000, 0x0900) and length == 2:
            status: int = struct.unpack_from("<H", command_set, offset + 8)[0]
            return status
        offset += 8 + length
    return None


def read_instance(path: Path) -> Instance:
    """The data set of a Part 10 file written by data.py (explicit VR little endian meta).

    PS3.10 7.1: 128-byte preamble, "DICM", then group 0002 whose first element,
    (0002,0000) File Meta Information Group Length, says where the data set starts.
    """
    raw = path.read_bytes()
    if raw[128:132] != b"DICM":
        raise SendError(f"{path}: not a DICOM Part 10 file")
    group_length = struct.unpack_from("<I", raw, 140)[0]
    data_set_start = 144 + group_length
    meta = raw[132:data_set_start]
    return Instance(
        sop_class_uid=_meta_uid(meta, 0x0002),
        sop_instance_uid=_meta_uid(meta, 0x0003),
        data_set=raw[data_set_start:],
    )


def _meta_uid(meta: bytes, element: int) -> str:
    # Explicit VR little endian; UI has a 2-byte length (PS3.5 7.1.2).
    offset = 0
    while offset + 8 <= len(meta):
        group, found, vr = struct.unpack_from("<HH2s", meta, offset)
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length, header = struct.unpack_from("<I", meta, offset + 8)[0], 12
        else:
            length, header = struct.unpack_from("<H", meta, offset + 6)[0], 8
        if (group, found) == (0x0002, element):
            return meta[offset + header : offset + header + length].rstrip(b"\0 ").decode()
        offset += header + length
    raise SendError(f"file meta has no (0002,{element:04X})")


async def _read_pdu(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(6)
    pdu_type, _, length = struct.unpack(">BBI", header)
    return pdu_type, await reader.readexactly(length)


async def _response_status(reader: asyncio.StreamReader) -> int:
    """Read P-DATA-TFs until the last command fragment; the status it carries."""
    command = b""
    while True:
        pdu_type, body = await _read_pdu(reader)
        if pdu_type != P_DATA_TF:
            raise SendError(f"expected P-DATA-TF, got PDU type 0x{pdu_type:02X}")
        offset = 0
        while offset + 6 <= len(body):
            length = struct.unpack_from(">I", body, offset)[0]
            control = body[offset + 5]
            command += body[offset + 6 : offset + 4 + length]
            offset += 4 + length
            if control & COMMAND and control & LAST:
                status = command_status(command)
                if status is None:
                    raise SendError("C-STORE-RSP without a status")
                return status


async def send_association(
    port: int, called: str, instances: Sequence[Instance], number: int = 0
) -> int:
    """One association: every instance, one at a time; returns how many succeeded.

    ``number`` picks the loopback source address (idle.source_address), so that 64
    associations are not 64 connections from one peer address.
    """
    sop_classes = sorted({instance.sop_class_uid for instance in instances})
    context_of = {uid: 2 * index + 1 for index, uid in enumerate(sop_classes)}
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=source_address(number)
    )
    try:
        writer.write(associate_rq(called, "BENCHSCU", sop_classes))
        pdu_type, body = await _read_pdu(reader)
        if pdu_type != A_ASSOCIATE_AC:
            raise SendError(f"association not accepted (PDU type 0x{pdu_type:02X})")
        acceptance = parse_associate_ac(body)
        stored = 0
        for message_id, instance in enumerate(instances, start=1):
            context = context_of[instance.sop_class_uid]
            if context not in acceptance.accepted_contexts:
                raise SendError(f"{instance.sop_class_uid} not accepted")
            command = c_store_rq(message_id, instance)
            writer.writelines(pdus(context, COMMAND, command, acceptance.max_pdu))
            writer.writelines(pdus(context, 0, instance.data_set, acceptance.max_pdu))
            await writer.drain()
            # PS3.7 C.4.2.1.5 (Status): 0x0000 Success; Warnings are 0xB000-0xBFFF.
            status = await _response_status(reader)
            if status == 0x0000 or 0xB000 <= status <= 0xBFFF:
                stored += 1
        writer.write(release_rq())
        await writer.drain()
        pdu_type, _ = await _read_pdu(reader)
        if pdu_type != A_RELEASE_RP:
            raise SendError(f"expected A-RELEASE-RP, got PDU type 0x{pdu_type:02X}")
        return stored
    finally:
        writer.close()


async def send_all(port: int, called: str, shares: Sequence[Sequence[Instance]]) -> int:
    """All associations at once; the instances stored over all of them."""
    stored = await asyncio.gather(
        *(send_association(port, called, s, number) for number, s in enumerate(shares))
    )
    return sum(stored)


@dataclass(frozen=True)
class Outcome:
    seconds: float
    stored: int
    sent: int


def parse_outcome(output: str) -> Outcome | None:
    """The JSON line :func:`main` prints, from the sender's output; None if absent."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            try:
                fields = json.loads(line)
                return Outcome(float(fields["seconds"]), int(fields["stored"]), int(fields["sent"]))
            except (ValueError, KeyError, TypeError):
                return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.sender")
    parser.add_argument("port", type=int)
    parser.add_argument("directories", type=Path, nargs="+", help="one per association")
    parser.add_argument("--called", default="DCMRECV", help="called AE title")
    args = parser.parse_args(argv)
    shares = [
        [read_instance(path) for path in sorted(d.iterdir()) if path.is_file()]
        for d in args.directories
    ]
    started = time.perf_counter()
    stored = asyncio.run(send_all(args.port, args.called, shares))
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "stored": stored, "sent": sum(map(len, shares))}))
    return 0 if stored == sum(map(len, shares)) else 1


if __name__ == "__main__":
    sys.exit(main())
