"""The Storage Commitment messages' data sets (PS3.4 J.3), decoded and encoded.

N-ACTION-RQ (Request Storage Commitment, Action Type ID 1) carries a Transaction
UID (0008,1195) and a Referenced SOP Sequence (0008,1199) of SOP Class/Instance
UID pairs (0008,1150)/(0008,1155).  N-EVENT-REPORT-RQ answers with the same
Transaction UID, the committed pairs in a Referenced SOP Sequence and the others in
a Failed SOP Sequence (0008,1198), each with a Failure Reason (0008,1197); Event
Type ID 1 when all were committed, 2 when failures exist (PS3.4 J.3.3).

The presentation context of the class is Implicit or Explicit VR Little Endian
(we accept nothing else for it), so these are the only encodings read and written.

Our own reader rather than pydicom's: a request comes from the network with up
to 4 MiB of references (the protocol's MAX_REQUEST_DATA_SET), and pydicom took
5.2 s and 46 MB (traced) to read one of 20,000 references; this walks the bytes
once, keeps only the UIDs, bounds nesting, and raises :class:`InvalidRequest` with
the status to answer for anything malformed.  Pure: bytes in, values out.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from dcmrecv.negotiation.uids import is_valid_uid
from dcmrecv.status import Status
from dcmrecv.storage.dataset import (
    ITEM,
    ITEM_DELIMITATION,
    LONG_VRS,
    SEQUENCE_DELIMITATION,
    UNDEFINED_LENGTH,
)

#: Storage Commitment Push Model SOP Class and its well-known instance (PS3.4 J.3.1).
SOP_CLASS_UID: Final = "1.2.840.10008.1.20.1"
SOP_INSTANCE_UID: Final = "1.2.840.10008.1.20.1.1"
#: Action Type ID of "Request Storage Commitment" (PS3.4 Table J.3-1).
ACTION_REQUEST: Final = 1
#: Event Type IDs (PS3.4 Table J.3-3).
EVENT_ALL_COMMITTED: Final = 1
EVENT_FAILURES_EXIST: Final = 2

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
#: What we accept the class with, in our order of preference.
TRANSFER_SYNTAXES: Final = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)

TRANSACTION_UID: Final = 0x00081195
FAILED_SOP_SEQUENCE: Final = 0x00081198
REFERENCED_SOP_SEQUENCE: Final = 0x00081199
REFERENCED_SOP_CLASS_UID: Final = 0x00081150
REFERENCED_SOP_INSTANCE_UID: Final = 0x00081155
FAILURE_REASON: Final = 0x00081197

#: Sequences nested deeper than this are refused (real requests nest one level).
MAX_DEPTH: Final = 8


class FailureReason(enum.IntEnum):
    """Failure Reason (0008,1197) values of a Failed SOP Sequence item (PS3.3 C.14.1.1)."""

    PROCESSING_FAILURE = 0x0110
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    CLASS_INSTANCE_CONFLICT = 0x0119
    REFERENCED_SOP_CLASS_NOT_SUPPORTED = 0x0122
    RESOURCE_LIMITATION = 0x0213
    DUPLICATE_TRANSACTION_UID = 0x0131


@dataclass(frozen=True, slots=True)
class Reference:
    """One SOP Class/Instance UID pair of a request or report."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class Failure:
    reference: Reference
    reason: int


@dataclass(frozen=True, slots=True)
class CommitmentRequest:
    """A decoded N-ACTION Request Storage Commitment."""

    transaction_uid: str
    references: tuple[Reference, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """What an N-EVENT-REPORT says about a transaction."""

    transaction_uid: str
    committed: tuple[Reference, ...]
    failed: tuple[Failure, ...]

    @property
    def event_type_id(self) -> int:
        return EVENT_FAILURES_EXIST if self.failed else EVENT_ALL_COMMITTED


class InvalidRequest(Exception):
    """A request we cannot act on: ``status`` for the N-ACTION-RSP, ``str()`` its
    Error Comment and log text."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status


# --- the N-ACTION-RQ -------------------------------------------------------------------


def check_action(
    requested_sop_class_uid: str, requested_sop_instance_uid: str, action_type_id: int
) -> None:
    """The command set's part of the request (PS3.4 J.3.2); InvalidRequest if wrong."""
    if requested_sop_class_uid != SOP_CLASS_UID:
        raise InvalidRequest(
            Status.NO_SUCH_SOP_CLASS,
            f"Requested SOP Class UID is not Storage Commitment Push Model ({SOP_CLASS_UID})",
        )
    if requested_sop_instance_uid != SOP_INSTANCE_UID:
        raise InvalidRequest(
            Status.NO_SUCH_SOP_INSTANCE,
            f"Requested SOP Instance UID is not the well-known {SOP_INSTANCE_UID}",
        )
    if action_type_id != ACTION_REQUEST:
        raise InvalidRequest(
            Status.NO_SUCH_ACTION,
            f"Action Type ID {action_type_id}: only 1 (Request Storage Commitment) exists",
        )


def decode_request(data: bytes, transfer_syntax: str) -> CommitmentRequest:
    """The Action Information of an N-ACTION-RQ; InvalidRequest with the status to
    answer when it is malformed or incomplete."""
    top = _parse(data, transfer_syntax, {REFERENCED_SOP_SEQUENCE})
    transaction_uid = _uid(top, TRANSACTION_UID, "Transaction UID (0008,1195)")
    items = top.sequences.get(REFERENCED_SOP_SEQUENCE)
    if items is None:
        raise InvalidRequest(Status.MISSING_ATTRIBUTE, "no Referenced SOP Sequence (0008,1199)")
    if not items:
        raise InvalidRequest(
            Status.MISSING_ATTRIBUTE_VALUE, "the Referenced SOP Sequence (0008,1199) is empty"
        )
    references = []
    for number, item in enumerate(items, 1):
        where = f"item {number} of the Referenced SOP Sequence"
        references.append(
            Reference(
                _uid(item, REFERENCED_SOP_CLASS_UID, f"Referenced SOP Class UID in {where}"),
                _uid(item, REFERENCED_SOP_INSTANCE_UID, f"Referenced SOP Instance UID in {where}"),
            )
        )
    return CommitmentRequest(transaction_uid, tuple(references))


def encode_request(request: CommitmentRequest, transfer_syntax: str) -> bytes:
    """The Action Information of ``request`` (the tests' requester; symmetric to decode)."""
    writer = _Writer(transfer_syntax)
    return writer.ui(TRANSACTION_UID, request.transaction_uid) + writer.sequence(
        REFERENCED_SOP_SEQUENCE, [_reference(writer, r) for r in request.references]
    )


# --- the N-EVENT-REPORT-RQ -------------------------------------------------------------


def encode_report(report: Report, transfer_syntax: str) -> bytes:
    """The Event Information of ``report``, elements in tag order (PS3.5 7.1)."""
    writer = _Writer(transfer_syntax)
    data = writer.ui(TRANSACTION_UID, report.transaction_uid)
    if report.failed:
        data += writer.sequence(
            FAILED_SOP_SEQUENCE,
            [
                _reference(writer, f.reference) + writer.us(FAILURE_REASON, f.reason)
                for f in report.failed
            ],
        )
    if report.committed:
        data += writer.sequence(
            REFERENCED_SOP_SEQUENCE, [_reference(writer, r) for r in report.committed]
        )
    return data


def decode_report(data: bytes, transfer_syntax: str) -> Report:
    """An N-EVENT-REPORT's Event Information (the tests read ours back with it)."""
    top = _parse(data, transfer_syntax, {REFERENCED_SOP_SEQUENCE, FAILED_SOP_SEQUENCE})
    committed = tuple(
        Reference(
            _uid(item, REFERENCED_SOP_CLASS_UID, "Referenced SOP Class UID"),
            _uid(item, REFERENCED_SOP_INSTANCE_UID, "Referenced SOP Instance UID"),
        )
        for item in top.sequences.get(REFERENCED_SOP_SEQUENCE, [])
    )
    failed = []
    for item in top.sequences.get(FAILED_SOP_SEQUENCE, []):
        reason = item.values.get(FAILURE_REASON)
        if reason is None or len(reason) != 2:
            raise InvalidRequest(Status.MISSING_ATTRIBUTE, "Failure Reason (0008,1197)")
        failed.append(
            Failure(
                Reference(
                    _uid(item, REFERENCED_SOP_CLASS_UID, "Referenced SOP Class UID"),
                    _uid(item, REFERENCED_SOP_INSTANCE_UID, "Referenced SOP Instance UID"),
                ),
                int.from_bytes(reason, "little"),
            )
        )
    return Report(_uid(top, TRANSACTION_UID, "Transaction UID"), committed, tuple(failed))


def _reference(writer: _Writer, reference: Reference) -> bytes:
    return writer.ui(REFERENCED_SOP_CLASS_UID, reference.sop_class_uid) + writer.ui(
        REFERENCED_SOP_INSTANCE_UID, reference.sop_instance_uid
    )


# --- reading ---------------------------------------------------------------------------

_TAG: Final = struct.Struct("<HH")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<L")
#: The elements we keep (every other is skipped): UIDs and the Failure Reason.
_KEPT: Final = frozenset(
    {TRANSACTION_UID, REFERENCED_SOP_CLASS_UID, REFERENCED_SOP_INSTANCE_UID, FAILURE_REASON}
)


@dataclass
class _Items:
    """The kept values of one data set or item, and its kept sequences' items."""

    values: dict[int, bytes]
    sequences: dict[int, list[_Items]]


def _malformed(why: str) -> InvalidRequest:
    return InvalidRequest(Status.PROCESSING_FAILURE, f"cannot decode the data set: {why}")


def _parse(data: bytes, transfer_syntax: str, sequences: set[int]) -> _Items:
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise _malformed(f"transfer syntax {transfer_syntax} is not Little Endian")
    parser = _Parser(memoryview(data), transfer_syntax == EXPLICIT_VR_LITTLE_ENDIAN, sequences)
    items, _ = parser.data_set(0, len(data), 0, until_item_end=False)
    return items


class _Parser:
    def __init__(self, view: memoryview, explicit: bool, sequences: set[int]) -> None:
        self.view = view
        self.explicit = explicit
        self.sequences = sequences

    def header(self, offset: int, end: int) -> tuple[int, bytes, int, int]:
        """(tag, VR or b"", value length, value offset) of the element at ``offset``."""
        view = self.view
        if end - offset < 8:
            raise _malformed(f"element header cut short at byte {offset}")
        group, element = _TAG.unpack_from(view, offset)
        tag = group << 16 | element
        if group == 0xFFFE or not self.explicit:
            # Items and delimiters have no VR in either encoding (PS3.5 7.5).
            return tag, b"", _U32.unpack_from(view, offset + 4)[0], offset + 8
        vr = bytes(view[offset + 4 : offset + 6])
        if vr in LONG_VRS:
            if end - offset < 12:
                raise _malformed(f"element header cut short at byte {offset}")
            return tag, vr, _U32.unpack_from(view, offset + 8)[0], offset + 12
        return tag, vr, _U16.unpack_from(view, offset + 6)[0], offset + 8

    def data_set(
        self, offset: int, end: int, depth: int, *, until_item_end: bool
    ) -> tuple[_Items, int]:
        """The elements from ``offset`` to ``end`` (or to an Item Delimitation Item)."""
        found = _Items({}, {})
        while offset < end:
            tag, vr, length, start = self.header(offset, end)
            if tag == ITEM_DELIMITATION and until_item_end:
                return found, start
            if tag >> 16 == 0xFFFE:
                raise _malformed(f"unexpected delimiter ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            # A sequence: SQ, or (implicit VR, UN) one of undefined length or one we read.
            if vr == b"SQ" or (
                vr in (b"", b"UN") and (length == UNDEFINED_LENGTH or tag in self.sequences)
            ):
                # An undefined or UN sequence's items are Implicit VR (PS3.5 6.2.2).
                explicit = self.explicit
                self.explicit = explicit and vr == b"SQ"
                try:
                    items, offset = self.sequence(start, length, end, depth + 1, tag)
                finally:
                    self.explicit = explicit
                if tag in self.sequences and tag not in found.sequences:
                    found.sequences[tag] = items
                continue
            if length > end - start:
                raise _malformed(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past the end")
            if tag in _KEPT and tag not in found.values:
                found.values[tag] = bytes(self.view[start : start + length])
            offset = start + length
        if until_item_end:
            raise _malformed("item without its end")
        return found, offset

    def sequence(
        self, offset: int, length: int, end: int, depth: int, tag: int
    ) -> tuple[list[_Items], int]:
        """The items of a sequence value starting at ``offset``; kept only for the
        sequences asked for (others are walked and dropped)."""
        if depth > MAX_DEPTH:
            raise _malformed(f"sequences nested deeper than {MAX_DEPTH}")
        keep = tag in self.sequences
        if length != UNDEFINED_LENGTH:
            if length > end - offset:
                raise _malformed(f"sequence ({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past the end")
            end = offset + length
        items: list[_Items] = []
        while offset < end:
            item_tag, _, item_length, start = self.header(offset, end)
            if item_tag == SEQUENCE_DELIMITATION and length == UNDEFINED_LENGTH:
                return items, start
            if item_tag != ITEM:
                raise _malformed(f"sequence ({tag >> 16:04X},{tag & 0xFFFF:04X}) holds no item")
            if item_length == UNDEFINED_LENGTH:
                item, offset = self.data_set(start, end, depth, until_item_end=True)
            else:
                if item_length > end - start:
                    raise _malformed("item runs past the end of its sequence")
                item, _ = self.data_set(start, start + item_length, depth, until_item_end=False)
                offset = start + item_length
            if keep:
                items.append(item)
        if length == UNDEFINED_LENGTH:
            raise _malformed(f"sequence ({tag >> 16:04X},{tag & 0xFFFF:04X}) without its end")
        return items, offset


def _uid(found: _Items, tag: int, name: str) -> str:
    raw = found.values.get(tag)
    if raw is None:
        raise InvalidRequest(Status.MISSING_ATTRIBUTE, f"no {name}")
    value = raw.decode("latin-1").strip(" \x00")
    if not value:
        raise InvalidRequest(Status.MISSING_ATTRIBUTE_VALUE, f"{name} is empty")
    if not is_valid_uid(value):
        raise InvalidRequest(Status.INVALID_ARGUMENT_VALUE, f"{name} is not a valid UID")
    return value


# --- writing ---------------------------------------------------------------------------


class _Writer:
    """Elements in Implicit or Explicit VR Little Endian, defined lengths."""

    def __init__(self, transfer_syntax: str) -> None:
        if transfer_syntax not in TRANSFER_SYNTAXES:
            raise ValueError(f"transfer syntax {transfer_syntax} is not Little Endian")
        self.explicit = transfer_syntax == EXPLICIT_VR_LITTLE_ENDIAN

    def element(self, tag: int, vr: bytes, value: bytes) -> bytes:
        head = _TAG.pack(tag >> 16, tag & 0xFFFF)
        if not self.explicit:
            return head + _U32.pack(len(value)) + value
        if vr in LONG_VRS:
            return head + vr + b"\x00\x00" + _U32.pack(len(value)) + value
        return head + vr + _U16.pack(len(value)) + value

    def ui(self, tag: int, uid: str) -> bytes:
        raw = uid.encode("ascii")
        return self.element(tag, b"UI", raw + b"\x00" if len(raw) % 2 else raw)

    def us(self, tag: int, value: int) -> bytes:
        return self.element(tag, b"US", _U16.pack(value))

    def sequence(self, tag: int, items: Sequence[bytes]) -> bytes:
        head = _TAG.pack(ITEM >> 16, ITEM & 0xFFFF)
        body = b"".join(head + _U32.pack(len(item)) + item for item in items)
        return self.element(tag, b"SQ", body)


# --- as kept in the state store (JSON) ---------------------------------------------------


def references_to_json(references: Sequence[Reference]) -> str:
    return json.dumps([[r.sop_class_uid, r.sop_instance_uid] for r in references])


def references_from_json(text: str) -> tuple[Reference, ...]:
    return tuple(Reference(str(c), str(i)) for c, i in json.loads(text))


def report_to_json(report: Report) -> str:
    return json.dumps(
        {
            "transaction_uid": report.transaction_uid,
            "committed": [[r.sop_class_uid, r.sop_instance_uid] for r in report.committed],
            "failed": [
                [f.reference.sop_class_uid, f.reference.sop_instance_uid, f.reason]
                for f in report.failed
            ],
        }
    )


def report_from_json(text: str) -> Report:
    values = json.loads(text)
    return Report(
        str(values["transaction_uid"]),
        tuple(Reference(str(c), str(i)) for c, i in values["committed"]),
        tuple(Failure(Reference(str(c), str(i)), int(r)) for c, i, r in values["failed"]),
    )
