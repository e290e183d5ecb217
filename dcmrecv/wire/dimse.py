"""DIMSE command sets (PS3.7 section 9.3 and annex E): decode requests, encode responses.

Command sets are always Implicit VR Little Endian (PS3.7 6.3.1), group 0000 only.
We read the few elements a Storage SCP needs with ``struct`` instead of pydicom:
this runs for every instance, and the command set comes from the peer, so the
decoder bounds every length and raises ``CommandError`` rather than anything else.
Responses are built from a cached prefix and a handful of packed elements.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from dcmrecv.status import Status
from dcmrecv.status import store_status_text as store_status_text

# Command Field values, PS3.7 E.1.
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
N_EVENT_REPORT_RQ = 0x0100
N_EVENT_REPORT_RSP = 0x8100
N_ACTION_RQ = 0x0130
N_ACTION_RSP = 0x8130
#: C-CANCEL-RQ (PS3.7 9.3.2.3, E.1): it has no Message ID of its own, only the
#: Message ID Being Responded To of the request it cancels.
C_CANCEL_RQ = 0x0FFF
#: Command Data Set Type value meaning "no data set" (PS3.7 E.1); any other means one follows.
NO_DATA_SET = 0x0101
#: The value we write when a data set follows (DCMTK's choice; any other than 0101H).
_DATA_SET_PRESENT = 0x0000


#: The longest command set we accept.  Real ones are under 300 bytes; the bound keeps
#: a peer from making us buffer an endless "command".
MAX_COMMAND_LENGTH = 65536

_ELEMENT_HEADER = struct.Struct("<HHL")  # group, element, value length
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<L")

_TAG_AFFECTED_SOP_CLASS = 0x0002
_TAG_REQUESTED_SOP_CLASS = 0x0003
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
_TAG_REQUESTED_SOP_INSTANCE = 0x1001
_TAG_EVENT_TYPE_ID = 0x1002
_TAG_ACTION_TYPE_ID = 0x1008


class CommandError(Exception):
    """A command set that cannot be decoded; the association is aborted.

    ``answer`` is the A-ABORT to send, set by the protocol object that raises it.
    """

    answer: bytes | None = None


@dataclass(frozen=True)
class Command:
    """The fields of a command set that this receiver acts on (PS3.7 E.1).

    Requests carry a Message ID; responses and C-CANCEL-RQ the Message ID Being
    Responded To, responses a Status.  The N-services name their object by the
    Requested SOP Class/Instance UID in a request (N-ACTION-RQ) and the Affected
    ones otherwise.
    """

    command_field: int
    message_id: int
    has_data_set: bool
    affected_sop_class_uid: str = ""
    affected_sop_instance_uid: str = ""
    priority: int = 0
    move_originator_aet: str = ""
    #: (0000,0120): the request a response or a C-CANCEL-RQ answers; 0 for requests.
    message_id_being_responded_to: int = 0
    #: (0000,0900) of a response.
    status: int = 0
    #: (0000,0902) of a response, if any.
    error_comment: str = ""
    requested_sop_class_uid: str = ""
    requested_sop_instance_uid: str = ""
    #: (0000,1002) of N-EVENT-REPORT, (0000,1008) of N-ACTION; 0 when absent.
    event_type_id: int = 0
    action_type_id: int = 0

    @property
    def is_response(self) -> bool:
        return bool(self.command_field & 0x8000)


def _text(value: memoryview | None) -> str:
    # UI values are NUL padded, AE/LO values space padded (PS3.5 6.2).  Latin-1 maps
    # every byte to one character and back: a UID with bytes that are not text
    # (``1.2.3\xff``) stays the value the data set holds (dataset.py reads it the
    # same way), so the two compare equal and the writer's invalid-UID path names it.
    if value is None:
        return ""
    return str(value, "latin-1").strip(" \x00")


def _u16(fields: dict[int, memoryview], element: int) -> int:
    value = fields.get(element)
    if value is None or len(value) != 2:
        raise CommandError(f"command set lacks a valid (0000,{element:04X})")
    return value[0] | value[1] << 8  # little endian (PS3.7 6.3.1)


def _optional_u16(fields: dict[int, memoryview], element: int) -> int:
    return _u16(fields, element) if element in fields else 0


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode a command set; raises CommandError when it is malformed or incomplete."""
    view = memoryview(data)
    end = len(view)
    offset = 0
    fields: dict[int, memoryview] = {}
    header = _ELEMENT_HEADER.unpack_from
    while offset < end:
        if end - offset < 8:
            raise CommandError("truncated element header in command set")
        group, element, length = header(view, offset)
        offset += 8
        if group != 0x0000:
            raise CommandError(f"element ({group:04X},{element:04X}) outside group 0000")
        if length > end - offset:
            raise CommandError(f"element (0000,{element:04X}) length {length} past the end")
        fields[element] = view[offset : offset + length]
        offset += length

    # Runs once per message: module functions and one look-up per element, no closures.
    get = fields.get
    command_field = _u16(fields, _TAG_COMMAND_FIELD)
    responded_to = 0
    status = 0
    if command_field == C_CANCEL_RQ or command_field & 0x8000:
        # PS3.7 9.3.2.3, 9.3.1.2: a C-CANCEL-RQ and the responses name the request
        # they answer instead of carrying a Message ID of their own.
        message_id = 0
        responded_to = _u16(fields, _TAG_MESSAGE_ID_RESPONDED)
        if command_field & 0x8000:
            status = _u16(fields, _TAG_STATUS)
    else:
        message_id = _u16(fields, _TAG_MESSAGE_ID)
    data_set_type = _u16(fields, _TAG_DATA_SET_TYPE)
    return Command(
        command_field=command_field,
        message_id=message_id,
        has_data_set=data_set_type != NO_DATA_SET,
        affected_sop_class_uid=_text(get(_TAG_AFFECTED_SOP_CLASS)),
        affected_sop_instance_uid=_text(get(_TAG_AFFECTED_SOP_INSTANCE)),
        priority=_optional_u16(fields, _TAG_PRIORITY),
        move_originator_aet=_text(get(_TAG_MOVE_ORIGINATOR_AET)),
        message_id_being_responded_to=responded_to,
        status=status,
        error_comment=_text(get(_TAG_ERROR_COMMENT)),
        requested_sop_class_uid=_text(get(_TAG_REQUESTED_SOP_CLASS)),
        requested_sop_instance_uid=_text(get(_TAG_REQUESTED_SOP_INSTANCE)),
        event_type_id=_optional_u16(fields, _TAG_EVENT_TYPE_ID),
        action_type_id=_optional_u16(fields, _TAG_ACTION_TYPE_ID),
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


#: Command Field, Message ID Being Responded To, Command Data Set Type and Status:
#: four US elements in a row in every response, packed at once.
_RESPONSE_FIELDS = struct.Struct("<" + "HHLH" * 4)
_COMMAND_FIELD_HEADER = (0x0000, _TAG_COMMAND_FIELD, 2)
_MESSAGE_ID_RESPONDED_HEADER = (0x0000, _TAG_MESSAGE_ID_RESPONDED, 2)
_DATA_SET_TYPE_HEADER = (0x0000, _TAG_DATA_SET_TYPE, 2)
_STATUS_HEADER = (0x0000, _TAG_STATUS, 2)


@functools.lru_cache(maxsize=256)
def _sop_class_element(sop_class_uid: str) -> bytes:
    """Affected SOP Class UID: a few classes answer most responses, encoded once each."""
    return _element(_TAG_AFFECTED_SOP_CLASS, _ui(sop_class_uid))


def encode_response(
    command_field: int,
    message_id: int,
    status: int,
    sop_class_uid: str,
    sop_instance_uid: str = "",
    error_comment: str | None = None,
    *,
    event_type_id: int | None = None,
    action_type_id: int | None = None,
    has_data_set: bool = False,
) -> bytes:
    """A response command set with its group length, elements in tag order.

    As DCMTK, C-STORE-RSP always carries the Affected SOP Class and Instance UIDs
    (optional in PS3.7 9.3.1.2, but some SCUs check them).
    """
    body = [
        _sop_class_element(sop_class_uid),
        _RESPONSE_FIELDS.pack(
            *_COMMAND_FIELD_HEADER,
            command_field,
            *_MESSAGE_ID_RESPONDED_HEADER,
            message_id,
            *_DATA_SET_TYPE_HEADER,
            _DATA_SET_PRESENT if has_data_set else NO_DATA_SET,
            *_STATUS_HEADER,
            status,
        ),
    ]
    # Error Comment is allowed with failure and warning statuses (PS3.7 C.4).
    if error_comment and status != Status.SUCCESS:
        body.append(_element(_TAG_ERROR_COMMENT, _lo(error_comment)))
    if sop_instance_uid:
        body.append(_element(_TAG_AFFECTED_SOP_INSTANCE, _ui(sop_instance_uid)))
    return _group(body + _type_ids(event_type_id, action_type_id))


def encode_request(
    command_field: int,
    message_id: int,
    sop_class_uid: str,
    sop_instance_uid: str = "",
    *,
    has_data_set: bool = False,
    priority: int | None = None,
    requested: bool = False,
    event_type_id: int | None = None,
    action_type_id: int | None = None,
) -> bytes:
    """A request command set (PS3.7 9.3, 10.3), elements in tag order.

    ``requested`` names the object by Requested SOP Class/Instance UID (N-ACTION,
    N-GET, N-SET, N-DELETE) instead of the Affected ones (C-STORE, N-EVENT-REPORT).
    """
    class_tag = _TAG_REQUESTED_SOP_CLASS if requested else _TAG_AFFECTED_SOP_CLASS
    instance_tag = _TAG_REQUESTED_SOP_INSTANCE if requested else _TAG_AFFECTED_SOP_INSTANCE
    body = [
        _element(class_tag, _ui(sop_class_uid)),
        _element(_TAG_COMMAND_FIELD, _U16.pack(command_field)),
        _element(_TAG_MESSAGE_ID, _U16.pack(message_id)),
    ]
    if priority is not None:
        body.append(_element(_TAG_PRIORITY, _U16.pack(priority)))
    body.append(
        _element(_TAG_DATA_SET_TYPE, _U16.pack(_DATA_SET_PRESENT if has_data_set else NO_DATA_SET))
    )
    if sop_instance_uid:
        body.append(_element(instance_tag, _ui(sop_instance_uid)))
    return _group(body + _type_ids(event_type_id, action_type_id))


def _type_ids(event_type_id: int | None, action_type_id: int | None) -> list[bytes]:
    """Event Type ID (0000,1002) and Action Type ID (0000,1008), after the UIDs."""
    ids = []
    if event_type_id is not None:
        ids.append(_element(_TAG_EVENT_TYPE_ID, _U16.pack(event_type_id)))
    if action_type_id is not None:
        ids.append(_element(_TAG_ACTION_TYPE_ID, _U16.pack(action_type_id)))
    return ids


def _group(elements: list[bytes]) -> bytes:
    """The command set: Command Group Length (0000,0000) first (PS3.7 E.1)."""
    payload = b"".join(elements)
    return _element(0x0000, _U32.pack(len(payload))) + payload
