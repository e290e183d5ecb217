"""DIMSE command sets (PS3.7 section 9.3 and annex E): decode requests, encode responses.

Command sets are always Implicit VR Little Endian (PS3.7 6.3.1), group 0000 only.
We read the few elements a Storage SCP needs with ``struct`` instead of pydicom:
this runs for every instance, and the command set comes from the peer, so the
decoder bounds every length and raises ``CommandError`` rather than anything else.
Responses are built from a cached prefix and a handful of packed elements.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dcmrecv.status import Status
from dcmrecv.status import store_status_text as store_status_text

# Command Field values, PS3.7 E.1.
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
#: C-CANCEL-RQ (PS3.7 9.3.2.3, E.1): it has no Message ID of its own, only the
#: Message ID Being Responded To of the request it cancels.
C_CANCEL_RQ = 0x0FFF
#: Command Data Set Type value meaning "no data set" (PS3.7 E.1); any other means one follows.
NO_DATA_SET = 0x0101


#: The longest command set we accept.  Real ones are under 300 bytes; the bound keeps
#: a peer from making us buffer an endless "command".
MAX_COMMAND_LENGTH = 65536

_ELEMENT_HEADER = struct.Struct("<HHL")  # group, element, value length
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<L")

_TAG_AFFECTED_SOP_CLASS = 0x0002
_TAG_COMMAND_FIELD = 0x0100
_TAG_MESSAGE_ID = 0x0110
_TAG_MESSAGE_ID_RESPONDED = 0x0120
_TAG_MOVE_ORIGINATOR_AET = 0x1030
_TAG_MOVE_ORIGINATOR_ID = 0x1031
_TAG_PRIORITY = 0x0700
_TAG_DATA_SET_TYPE = 0x0800
_TAG_STATUS = 0x0900
_TAG_ERROR_COMMENT = 0x0902
_TAG_AFFECTED_SOP_INSTANCE = 0x1000


class CommandError(Exception):
    """A command set that cannot be decoded; the association is aborted."""


@dataclass(frozen=True)
class Command:
    """The request fields a Storage SCP acts on."""

    command_field: int
    message_id: int
    has_data_set: bool
    affected_sop_class_uid: str = ""
    affected_sop_instance_uid: str = ""
    priority: int = 0
    move_originator_aet: str = ""
    #: (0000,0120): the request a C-CANCEL-RQ cancels; 0 for other commands.
    message_id_being_responded_to: int = 0


def _text(value: memoryview) -> str:
    # UI values are NUL padded, AE/LO values space padded (PS3.5 6.2).  Latin-1 maps
    # every byte to one character and back: a UID with bytes that are not text
    # (``1.2.3\xff``) stays the value the data set holds (dataset.py reads it the
    # same way), so the two compare equal and the writer's invalid-UID path names it.
    return bytes(value).decode("latin-1").strip(" \x00")


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode a command set; raises CommandError when it is malformed or incomplete."""
    view = memoryview(data)
    end = len(view)
    offset = 0
    fields: dict[int, memoryview] = {}
    while offset < end:
        if end - offset < _ELEMENT_HEADER.size:
            raise CommandError("truncated element header in command set")
        group, element, length = _ELEMENT_HEADER.unpack_from(view, offset)
        offset += _ELEMENT_HEADER.size
        if group != 0x0000:
            raise CommandError(f"element ({group:04X},{element:04X}) outside group 0000")
        if length > end - offset:
            raise CommandError(f"element (0000,{element:04X}) length {length} past the end")
        fields[element] = view[offset : offset + length]
        offset += length

    def u16(element: int) -> int:
        value = fields.get(element)
        if value is None or len(value) != 2:
            raise CommandError(f"command set lacks a valid (0000,{element:04X})")
        return int(_U16.unpack_from(value)[0])

    command_field = u16(_TAG_COMMAND_FIELD)
    responded_to = 0
    if command_field == C_CANCEL_RQ:
        # PS3.7 9.3.2.3: a C-CANCEL-RQ names the request it cancels instead.
        message_id = 0
        responded_to = u16(_TAG_MESSAGE_ID_RESPONDED)
    else:
        message_id = u16(_TAG_MESSAGE_ID)
    data_set_type = u16(_TAG_DATA_SET_TYPE)
    priority = u16(_TAG_PRIORITY) if _TAG_PRIORITY in fields else 0
    return Command(
        command_field=command_field,
        message_id=message_id,
        has_data_set=data_set_type != NO_DATA_SET,
        affected_sop_class_uid=_text(fields.get(_TAG_AFFECTED_SOP_CLASS, memoryview(b""))),
        affected_sop_instance_uid=_text(fields.get(_TAG_AFFECTED_SOP_INSTANCE, memoryview(b""))),
        priority=priority,
        move_originator_aet=_text(fields.get(_TAG_MOVE_ORIGINATOR_AET, memoryview(b""))),
        message_id_being_responded_to=responded_to,
    )


def _element(element: int, value: bytes) -> bytes:
    return _ELEMENT_HEADER.pack(0x0000, element, len(value)) + value


def _ui(value: str) -> bytes:
    # The response echoes the request's bytes (decoded as Latin-1 by _text).
    raw = value.encode("latin-1", errors="replace")
    return raw + b"\x00" if len(raw) % 2 else raw  # UI pads with NUL (PS3.5 9.1)


def _lo(value: str) -> bytes:
    raw = value.encode("ascii", errors="replace")[:64]
    return raw + b" " if len(raw) % 2 else raw


def encode_response(
    command_field: int,
    message_id: int,
    status: int,
    sop_class_uid: str,
    sop_instance_uid: str = "",
    error_comment: str | None = None,
) -> bytes:
    """A response command set with its group length, elements in tag order.

    As DCMTK, C-STORE-RSP always carries the Affected SOP Class and Instance UIDs
    (optional in PS3.7 9.3.1.2, but some SCUs check them).
    """
    body = [
        _element(_TAG_AFFECTED_SOP_CLASS, _ui(sop_class_uid)),
        _element(_TAG_COMMAND_FIELD, _U16.pack(command_field)),
        _element(_TAG_MESSAGE_ID_RESPONDED, _U16.pack(message_id)),
        _element(_TAG_DATA_SET_TYPE, _U16.pack(NO_DATA_SET)),
        _element(_TAG_STATUS, _U16.pack(status)),
    ]
    # Error Comment is allowed with failure and warning statuses (PS3.7 C.4).
    if error_comment and status != Status.SUCCESS:
        body.append(_element(_TAG_ERROR_COMMENT, _lo(error_comment)))
    if sop_instance_uid:
        body.append(_element(_TAG_AFFECTED_SOP_INSTANCE, _ui(sop_instance_uid)))
    payload = b"".join(body)
    return _element(0x0000, _U32.pack(len(payload))) + payload
