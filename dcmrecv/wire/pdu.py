"""DICOM Upper Layer PDUs (PS3.8 section 9.3): bytes in, values out; values in, bytes out.

No sockets here.  Every decoder either returns a value or raises ``ProtocolError``
carrying the A-ABORT reason (PS3.8 9.3.8) to send; no other exception escapes for
any input (the fuzz invariant the tests check).

We decode the A-ASSOCIATE-RQ ourselves instead of with pynetdicom's PDU classes:
a hostile peer controls every length in it, and the receiver must bound memory and
time and answer with the precise A-ABORT or A-ASSOCIATE-RJ.  pynetdicom is used in
the tests as an independent encoder and decoder to cross-check these bytes.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

# PDU types, PS3.8 9.3.1 table 9-1.
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07
PDU_TYPE_NAMES = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
    A_ABORT: "A-ABORT",
}

#: The only application context name of DICOM (PS3.7 A.2.1).
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

#: The largest A-ASSOCIATE-RQ we read.  128 presentation contexts (the most
#: odd context IDs allow) with generous transfer syntax lists fit in far less;
#: a larger declared length is refused before anything is allocated.
MAX_ASSOCIATE_RQ_LENGTH = 1024 * 1024

PDU_HEADER = struct.Struct(">BxL")  # type, reserved, length (PS3.8 9.3.1)
_ITEM_HEADER = struct.Struct(">BxH")  # item type, reserved, item length
_PDV_HEADER = struct.Struct(">LBB")  # PDV length, context ID, message control header
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">L")
#: Below this much free space the buffer is compacted before the next receive, so
#: that a receive never asks the kernel for a handful of bytes.
_MIN_RECEIVE = 16384


class AbortSource(enum.IntEnum):
    """A-ABORT source field, PS3.8 9.3.8."""

    SERVICE_USER = 0
    SERVICE_PROVIDER = 2


class AbortReason(enum.IntEnum):
    """A-ABORT reason/diag for source 2, PS3.8 9.3.8."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


class ProtocolError(Exception):
    """The peer broke PS3.8; answer with A-ABORT (source 2, ``reason``) and close.

    The subclasses carry the facts of the violation as fields, so callers and tests
    act on values, not on the message text.  ``answer`` is the A-ABORT PDU to send
    once the state machine (dcmrecv.wire.acceptor) has handled the error; None
    while nobody has decided the answer yet.
    """

    def __init__(self, message: str, reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE):
        super().__init__(message)
        self.reason = reason
        self.answer: bytes | None = None


class UnrecognizedPDU(ProtocolError):
    """A PDU type PS3.8 9.3.1 does not define (PS3.8 9.2, Evt19)."""

    def __init__(self, pdu_type: int) -> None:
        super().__init__(f"unrecognized PDU type 0x{pdu_type:02X}", AbortReason.UNRECOGNIZED_PDU)
        self.pdu_type = pdu_type


class PDUTooLong(ProtocolError):
    """A PDU header declares more than we accept for its type (checked before the body)."""

    def __init__(self, pdu_type: int, length: int, limit: int) -> None:
        super().__init__(
            f"{PDU_TYPE_NAMES[pdu_type]} of {length} bytes exceeds the maximum of {limit}"
        )
        self.pdu_type = pdu_type
        self.length = length
        self.limit = limit


class UnexpectedPDU(ProtocolError):
    """A known PDU the state machine does not allow in its current state (PS3.8 9.2)."""

    def __init__(self, pdu_type: int, state: str, message: str) -> None:
        super().__init__(message, AbortReason.UNEXPECTED_PDU)
        self.pdu_type = pdu_type
        #: The PS3.8 state name (``"Sta6"``) in which the PDU arrived.
        self.state = state


class LengthMismatch(ProtocolError):
    """An item or PDV declares more bytes than its enclosing PDU holds."""

    def __init__(self, message: str, declared: int, available: int) -> None:
        super().__init__(message)
        self.declared = declared
        self.available = available


# --- A-ASSOCIATE-RJ reasons (PS3.8 9.3.4), one table for the receiver and the probe ---


class RejectResult(enum.IntEnum):
    """A-ASSOCIATE-RJ Result field."""

    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class RejectSource(enum.IntEnum):
    """A-ASSOCIATE-RJ Source field."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class UserRejectReason(enum.IntEnum):
    """Reason/Diag. when the source is the service user (1)."""

    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AE_TITLE_NOT_RECOGNIZED = 3
    CALLED_AE_TITLE_NOT_RECOGNIZED = 7


class ACSERejectReason(enum.IntEnum):
    """Reason/Diag. when the source is the service provider, ACSE related (2)."""

    NO_REASON_GIVEN = 1
    PROTOCOL_VERSION_NOT_SUPPORTED = 2


class PresentationRejectReason(enum.IntEnum):
    """Reason/Diag. when the source is the service provider, presentation related (3)."""

    TEMPORARY_CONGESTION = 1
    LOCAL_LIMIT_EXCEEDED = 2


RejectReason = UserRejectReason | ACSERejectReason | PresentationRejectReason

#: Which reason enumeration a source uses (PS3.8 9.3.4: the reasons depend on the source).
REJECT_REASONS: dict[RejectSource, type[RejectReason]] = {
    RejectSource.SERVICE_USER: UserRejectReason,
    RejectSource.SERVICE_PROVIDER_ACSE: ACSERejectReason,
    RejectSource.SERVICE_PROVIDER_PRESENTATION: PresentationRejectReason,
}


def reject_reason(source: int, reason: int) -> RejectReason | None:
    """The named reason of an A-ASSOCIATE-RJ, or None when PS3.8 defines no such pair."""
    try:
        return REJECT_REASONS[RejectSource(source)](reason)
    except (ValueError, KeyError):
        return None


def reject_text(source: int, reason: int) -> str:
    """Plain words for a reason, as the health probe prints them."""
    named = reject_reason(source, reason)
    if named is None:
        return "reason unknown"
    return named.name.lower().replace("_", " ").replace(" ae ", " AE ")


# --- A-ASSOCIATE-RQ -------------------------------------------------------------


@dataclass(frozen=True)
class PresentationContextRQ:
    """Presentation context item (0x20) of an A-ASSOCIATE-RQ, PS3.8 9.3.2.2."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class AssociateRQ:
    """The parts of an A-ASSOCIATE-RQ an acceptor decides on (PS3.8 9.3.2, PS3.7 D.3.3)."""

    protocol_version: int
    called_ae_title: str
    calling_ae_title: str
    application_context: str
    contexts: tuple[PresentationContextRQ, ...]
    #: Maximum Length Received of the requestor (PS3.8 D.1); 0 means no limit.
    max_length: int = 0
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    #: SCP/SCU Role Selection (PS3.7 D.3.3.4): SOP class -> (SCU role, SCP role).
    roles: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    #: SOP Class Extended Negotiation (PS3.7 D.3.3.5): SOP class -> application information.
    extended_negotiation: dict[str, bytes] = field(default_factory=dict)
    #: Asynchronous Operations Window (PS3.7 D.3.3.3): (invoked, performed), if proposed.
    async_ops: tuple[int, int] | None = None

    pdu_type: ClassVar[int] = A_ASSOCIATE_RQ


def _ae_title(raw: bytes) -> str:
    # AE titles are 16 bytes padded with spaces (PS3.8 9.3.2); leading and trailing
    # spaces are not significant (PS3.5 6.2, AE).  Non-ASCII bytes are kept visible
    # but harmless: they never reach a path or a shell.
    return raw.decode("ascii", errors="replace").strip(" \x00")


def _uid(raw: bytes | memoryview, what: str) -> str:
    # UIDs on the wire may be padded with a trailing NUL (PS3.8 9.3.2.2.1 allows it).
    text = bytes(raw).rstrip(b"\x00").decode("ascii", errors="replace")
    if not text or len(text) > 64:
        raise ProtocolError(f"{what} has invalid length {len(text)}")
    return text


def _items(body: memoryview, what: str) -> Iterator[tuple[int, memoryview]]:
    """Type-length-value items inside a PDU or item; lengths must fit exactly."""
    offset = 0
    end = len(body)
    while offset < end:
        if end - offset < _ITEM_HEADER.size:
            raise ProtocolError(f"truncated item header in {what}")
        item_type, length = _ITEM_HEADER.unpack_from(body, offset)
        offset += _ITEM_HEADER.size
        if length > end - offset:
            raise LengthMismatch(
                f"item 0x{item_type:02X} in {what} declares {length} bytes, {end - offset} remain",
                length,
                end - offset,
            )
        yield item_type, body[offset : offset + length]
        offset += length


def _presentation_context(value: memoryview) -> PresentationContextRQ:
    if len(value) < 4:
        raise ProtocolError("presentation context item shorter than 4 bytes")
    context_id = value[0]
    # Context IDs are odd integers 1..255 (PS3.8 9.3.2.2).
    if context_id % 2 == 0:
        raise ProtocolError(f"presentation context ID {context_id} is even")
    abstract: str | None = None
    transfer: list[str] = []
    for item_type, sub in _items(value[4:], f"presentation context {context_id}"):
        if item_type == 0x30:
            if abstract is not None:
                raise ProtocolError(f"presentation context {context_id} has two abstract syntaxes")
            abstract = _uid(sub, "abstract syntax")
        elif item_type == 0x40:
            transfer.append(_uid(sub, "transfer syntax"))
        else:
            raise ProtocolError(
                f"unexpected sub-item 0x{item_type:02X} in presentation context {context_id}",
                AbortReason.UNEXPECTED_PDU_PARAMETER,
            )
    if abstract is None or not transfer:
        raise ProtocolError(f"presentation context {context_id} lacks abstract or transfer syntax")
    return PresentationContextRQ(context_id, abstract, tuple(transfer))


@dataclass
class _UserInformation:
    """The sub-items of a User Information item (PS3.8 D.1, PS3.7 D.3.3) we decode."""

    #: None until a Maximum Length sub-item is seen (it is mandatory).
    max_length: int | None = None
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    async_ops: tuple[int, int] | None = None
    roles: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    extended_negotiation: dict[str, bytes] = field(default_factory=dict)


def _user_information(value: memoryview) -> _UserInformation:
    fields = _UserInformation()
    roles = fields.roles
    extended = fields.extended_negotiation
    for item_type, sub in _items(value, "user information"):
        if item_type == 0x51:  # Maximum Length, PS3.8 D.1
            if len(sub) != 4:
                raise ProtocolError("maximum length sub-item is not 4 bytes")
            fields.max_length = _U32.unpack_from(sub)[0]
        elif item_type == 0x52:  # Implementation Class UID, PS3.7 D.3.3.2
            fields.implementation_class_uid = _uid(sub, "implementation class UID")
        elif item_type == 0x55:  # Implementation Version Name, PS3.7 D.3.3.2
            fields.implementation_version_name = bytes(sub).decode("ascii", "replace").strip()
        elif item_type == 0x53:  # Asynchronous Operations Window, PS3.7 D.3.3.3
            if len(sub) != 4:
                raise ProtocolError("asynchronous operations window sub-item is not 4 bytes")
            fields.async_ops = (_U16.unpack_from(sub)[0], _U16.unpack_from(sub, 2)[0])
        elif item_type == 0x54:  # SCP/SCU Role Selection, PS3.7 D.3.3.4
            if len(sub) < 4:
                raise ProtocolError("role selection sub-item too short")
            uid_length = _U16.unpack_from(sub)[0]
            if uid_length + 4 != len(sub):
                raise ProtocolError("role selection sub-item length mismatch")
            uid = _uid(sub[2 : 2 + uid_length], "role selection SOP class UID")
            roles[uid] = (sub[2 + uid_length] == 1, sub[3 + uid_length] == 1)
        elif item_type == 0x56:  # SOP Class Extended Negotiation, PS3.7 D.3.3.5
            if len(sub) < 2:
                raise ProtocolError("extended negotiation sub-item too short")
            uid_length = _U16.unpack_from(sub)[0]
            if uid_length + 2 > len(sub):
                raise ProtocolError("extended negotiation sub-item length mismatch")
            uid = _uid(sub[2 : 2 + uid_length], "extended negotiation SOP class UID")
            extended[uid] = bytes(sub[2 + uid_length :])
        # Others (0x57 common extended negotiation, 0x58 user identity, unknown
        # types) are not ours to answer; PS3.7 D.3.3 lets an acceptor ignore them.
    return fields


def decode_associate_rq(body: bytes | bytearray | memoryview) -> AssociateRQ:
    """Decode the variable part of an A-ASSOCIATE-RQ (after the 6-byte PDU header).

    Raises ProtocolError for anything that is not a well-formed request.  A wrong
    protocol version or application context is *not* an error here: those are
    answered with A-ASSOCIATE-RJ, so the caller inspects the returned fields.
    """
    view = memoryview(body)
    if len(view) < 68:
        raise ProtocolError(f"A-ASSOCIATE-RQ too short ({len(view)} bytes, at least 68 needed)")
    protocol_version = _U16.unpack_from(view)[0]
    called = _ae_title(bytes(view[4:20]))
    calling = _ae_title(bytes(view[20:36]))
    application_context: str | None = None
    contexts: list[PresentationContextRQ] = []
    seen_ids: set[int] = set()
    user: _UserInformation | None = None
    for item_type, value in _items(view[68:], "A-ASSOCIATE-RQ"):
        if item_type == 0x10:
            if application_context is not None:
                raise ProtocolError("two application context items")
            application_context = _uid(value, "application context name")
        elif item_type == 0x20:
            context = _presentation_context(value)
            if context.context_id in seen_ids:
                raise ProtocolError(f"presentation context ID {context.context_id} used twice")
            seen_ids.add(context.context_id)
            contexts.append(context)
        elif item_type == 0x50:
            if user is not None:
                raise ProtocolError("two user information items")
            user = _user_information(value)
        else:
            raise ProtocolError(
                f"unrecognized item 0x{item_type:02X} in A-ASSOCIATE-RQ",
                AbortReason.UNRECOGNIZED_PDU_PARAMETER,
            )
    if application_context is None:
        raise ProtocolError("A-ASSOCIATE-RQ has no application context item")
    if not contexts:
        raise ProtocolError("A-ASSOCIATE-RQ proposes no presentation context")
    if user is None or user.max_length is None:
        # PS3.7 D.3.3.1: the Maximum Length sub-item is mandatory.
        raise ProtocolError("A-ASSOCIATE-RQ lacks the user information maximum length")
    return AssociateRQ(
        protocol_version=protocol_version,
        called_ae_title=called,
        calling_ae_title=calling,
        application_context=application_context,
        contexts=tuple(contexts),
        max_length=user.max_length,
        implementation_class_uid=user.implementation_class_uid,
        implementation_version_name=user.implementation_version_name,
        roles=user.roles,
        extended_negotiation=user.extended_negotiation,
        async_ops=user.async_ops,
    )


# --- A-ASSOCIATE-AC and the other PDUs we send ------------------------------------


@dataclass(frozen=True)
class PresentationContextAC:
    """Result of one proposed context (PS3.8 9.3.3.2); transfer syntax empty when rejected."""

    context_id: int
    result: int
    transfer_syntax: str


def _item(item_type: int, value: bytes) -> bytes:
    return _ITEM_HEADER.pack(item_type, len(value)) + value


def _ae_field(title: str) -> bytes:
    return title.encode("ascii", "replace")[:16].ljust(16, b" ")


def encode_associate_ac(
    rq: AssociateRQ,
    responding_ae_title: str,
    contexts: tuple[PresentationContextAC, ...],
    max_length: int,
    implementation_class_uid: str,
    implementation_version_name: str,
    roles: tuple[tuple[str, bool, bool], ...] = (),
    extended_negotiation: tuple[tuple[str, bytes], ...] = (),
) -> bytes:
    """Encode an A-ASSOCIATE-AC (PS3.8 9.3.3).

    The called and calling AE title fields echo the request (PS3.8 9.3.3: "shall
    be the same" as in the RQ, not tested) except that the called field carries
    the title we respond with, as DCMTK does for ``-aet`` without ``-uca``.
    """
    items = [_item(0x10, DICOM_APPLICATION_CONTEXT.encode())]
    for cx in contexts:
        # A rejected context still carries one transfer syntax sub-item whose
        # value is not significant (PS3.8 9.3.3.2).
        ts = cx.transfer_syntax.encode() if cx.transfer_syntax else b""
        items.append(_item(0x21, bytes((cx.context_id, 0, cx.result, 0)) + _item(0x40, ts)))
    user = [_item(0x51, _U32.pack(max_length)), _item(0x52, implementation_class_uid.encode())]
    if rq.async_ops is not None:
        # We perform operations one at a time (PS3.7 D.3.3.3): window 1/1.
        user.append(_item(0x53, _U16.pack(1) + _U16.pack(1)))
    for uid, scu, scp in roles:
        raw = uid.encode()
        user.append(_item(0x54, _U16.pack(len(raw)) + raw + bytes((int(scu), int(scp)))))
    user.append(_item(0x55, implementation_version_name.encode()[:16]))
    for uid, data in extended_negotiation:
        raw = uid.encode()
        user.append(_item(0x56, _U16.pack(len(raw)) + raw + data))
    items.append(_item(0x50, b"".join(user)))
    fixed = (
        _U16.pack(1)
        + b"\x00\x00"
        + _ae_field(responding_ae_title)
        + _ae_field(rq.calling_ae_title)
        + bytes(32)
    )
    body = fixed + b"".join(items)
    return PDU_HEADER.pack(A_ASSOCIATE_AC, len(body)) + body


def encode_associate_rq(
    called_ae_title: str,
    calling_ae_title: str,
    contexts: Sequence[PresentationContextRQ],
    max_length: int,
    implementation_class_uid: str,
    implementation_version_name: str,
    roles: Mapping[str, tuple[bool, bool]] | None = None,
) -> bytes:
    """Encode an A-ASSOCIATE-RQ (PS3.8 9.3.2) as a requestor sends it.

    ``roles`` proposes SCP/SCU Role Selection (PS3.7 D.3.3.4): SOP class ->
    (SCU role, SCP role).
    """
    items = [_item(0x10, DICOM_APPLICATION_CONTEXT.encode())]
    for cx in contexts:
        sub = _item(0x30, cx.abstract_syntax.encode())
        sub += b"".join(_item(0x40, ts.encode()) for ts in cx.transfer_syntaxes)
        items.append(_item(0x20, bytes((cx.context_id, 0, 0, 0)) + sub))
    user = [_item(0x51, _U32.pack(max_length)), _item(0x52, implementation_class_uid.encode())]
    for uid, (scu, scp) in (roles or {}).items():
        raw = uid.encode()
        user.append(_item(0x54, _U16.pack(len(raw)) + raw + bytes((int(scu), int(scp)))))
    user.append(_item(0x55, implementation_version_name.encode()[:16]))
    items.append(_item(0x50, b"".join(user)))
    fixed = (
        _U16.pack(1)
        + b"\x00\x00"
        + _ae_field(called_ae_title)
        + _ae_field(calling_ae_title)
        + bytes(32)
    )
    body = fixed + b"".join(items)
    return PDU_HEADER.pack(A_ASSOCIATE_RQ, len(body)) + body


@dataclass(frozen=True)
class AssociateACFields:
    """The parts of an A-ASSOCIATE-AC a requestor acts on (PS3.8 9.3.3, PS3.7 D.3.3)."""

    responding_ae_title: str
    contexts: tuple[PresentationContextAC, ...]
    #: The acceptor's Maximum Length Received (PS3.8 D.1); 0 means no limit.
    max_length: int
    implementation_class_uid: str
    #: SCP/SCU Role Selection replies: SOP class -> (SCU role, SCP role).
    roles: dict[str, tuple[bool, bool]]


def decode_associate_ac(body: bytes | bytearray | memoryview) -> AssociateACFields:
    """Decode the variable part of an A-ASSOCIATE-AC; ProtocolError when malformed."""
    view = memoryview(body)
    if len(view) < 68:
        raise ProtocolError(f"A-ASSOCIATE-AC too short ({len(view)} bytes, at least 68 needed)")
    responding = _ae_title(bytes(view[4:20]))
    contexts: list[PresentationContextAC] = []
    user: _UserInformation | None = None
    for item_type, value in _items(view[68:], "A-ASSOCIATE-AC"):
        if item_type == 0x21:
            if len(value) < 4:
                raise ProtocolError("presentation context reply shorter than 4 bytes")
            transfer = ""
            for sub_type, sub in _items(value[4:], "presentation context reply"):
                if sub_type == 0x40 and len(sub):
                    transfer = _uid(sub, "transfer syntax")
            contexts.append(PresentationContextAC(value[0], value[2], transfer))
        elif item_type == 0x50:
            user = _user_information(value)
    if user is None or user.max_length is None:
        raise ProtocolError("A-ASSOCIATE-AC lacks the user information maximum length")
    return AssociateACFields(
        responding, tuple(contexts), user.max_length, user.implementation_class_uid, user.roles
    )


def encode_associate_rj(result: int, source: int, reason: int) -> bytes:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4): result 1 permanent / 2 transient, source, reason."""
    return PDU_HEADER.pack(A_ASSOCIATE_RJ, 4) + bytes((0, result, source, reason))


def encode_abort(source: int = AbortSource.SERVICE_PROVIDER, reason: int = 0) -> bytes:
    """A-ABORT (PS3.8 9.3.8)."""
    return PDU_HEADER.pack(A_ABORT, 4) + bytes((0, 0, source, reason))


RELEASE_RQ = PDU_HEADER.pack(A_RELEASE_RQ, 4) + bytes(4)
RELEASE_RP = PDU_HEADER.pack(A_RELEASE_RP, 4) + bytes(4)


# --- P-DATA-TF ----------------------------------------------------------------------


def iter_pdvs(body: memoryview) -> Iterator[tuple[int, int, memoryview]]:
    """Presentation data values of a P-DATA-TF body (PS3.8 9.3.5, annex E.2).

    Yields (context ID, message control header, fragment).  The fragment is a view
    into ``body``: no copy.  PDV lengths must tile the PDU exactly.
    """
    offset = 0
    end = len(body)
    if end == 0:
        raise ProtocolError("P-DATA-TF without any presentation data value")
    while offset < end:
        if end - offset < _PDV_HEADER.size:
            raise ProtocolError("truncated PDV header in P-DATA-TF")
        length, context_id, control = _PDV_HEADER.unpack_from(body, offset)
        # The PDV length counts the context ID and the control byte (PS3.8 9.3.5.1).
        if length < 2 or length > end - offset - 4:
            raise LengthMismatch(
                f"PDV length {length} does not fit the P-DATA-TF", length, end - offset - 4
            )
        # Bits 2-7 of the message control header are reserved and "never checked by
        # the receiver" (PS3.8 E.2); only bits 0 and 1 mean anything.
        yield context_id, control, body[offset + 6 : offset + 4 + length]
        offset += 4 + length


def encode_p_data(context_id: int, is_command: bool, payload: bytes, max_length: int) -> bytes:
    """One message (command or data set) as P-DATA-TF PDUs within the peer's maximum.

    ``max_length`` is the requestor's Maximum Length Received (PS3.8 D.1), which
    bounds the variable part of each P-DATA-TF; 0 means unlimited.  Each PDU holds
    one PDV; the last fragment sets bit 1 of the control header (PS3.8 E.2).
    """
    base = 0x01 if is_command else 0x00
    # PDV header (4 + 2) must fit; DCMTK never offers less than 4096 anyway.
    chunk = len(payload) if max_length == 0 else max(max_length - 6, 1)
    pieces = []
    offset = 0
    total = len(payload)
    while True:
        fragment = payload[offset : offset + chunk]
        offset += len(fragment)
        control = base | (0x02 if offset >= total else 0)
        pdv = _PDV_HEADER.pack(len(fragment) + 2, context_id, control) + fragment
        pieces.append(PDU_HEADER.pack(P_DATA_TF, len(pdv)) + pdv)
        if offset >= total:
            return b"".join(pieces)


# --- Typed PDUs as they are read (PS3.8 9.3.1) ------------------------------------------


class PDataTF:
    """A P-DATA-TF (PS3.8 9.3.5): its body as a view into the receive buffer, no copy.

    The view is valid until the buffer is next written to; ``iter_pdvs`` slices it.
    A plain class with slots: one is made per PDU on the hot path.
    """

    __slots__ = ("body",)
    pdu_type: ClassVar[int] = P_DATA_TF

    def __init__(self, body: memoryview) -> None:
        self.body = body

    def __repr__(self) -> str:
        return f"PDataTF({len(self.body)} bytes)"


@dataclass(frozen=True)
class AssociateAC:
    """An A-ASSOCIATE-AC (PS3.8 9.3.3), kept as its body; only requestors read it."""

    body: bytes
    pdu_type: ClassVar[int] = A_ASSOCIATE_AC


@dataclass(frozen=True)
class AssociateRJ:
    """An A-ASSOCIATE-RJ (PS3.8 9.3.4), its fields decoded."""

    result: int
    source: int
    reason: int
    pdu_type: ClassVar[int] = A_ASSOCIATE_RJ

    @property
    def named_reason(self) -> RejectReason | None:
        return reject_reason(self.source, self.reason)


@dataclass(frozen=True)
class ReleaseRQ:
    """An A-RELEASE-RQ (PS3.8 9.3.6)."""

    pdu_type: ClassVar[int] = A_RELEASE_RQ


@dataclass(frozen=True)
class ReleaseRP:
    """An A-RELEASE-RP (PS3.8 9.3.7)."""

    pdu_type: ClassVar[int] = A_RELEASE_RP


@dataclass(frozen=True)
class Abort:
    """An A-ABORT (PS3.8 9.3.8): source 0 service user, 2 service provider; reason if 2."""

    source: int
    reason: int
    pdu_type: ClassVar[int] = A_ABORT

    @property
    def by_provider(self) -> bool:
        return self.source == AbortSource.SERVICE_PROVIDER


PDU = AssociateRQ | AssociateAC | AssociateRJ | PDataTF | ReleaseRQ | ReleaseRP | Abort


def _fixed_fields(body: memoryview) -> tuple[int, int]:
    # Bytes 3 and 4 of the 4-byte bodies of A-ASSOCIATE-RJ and A-ABORT; a shorter
    # body (not well-formed) reads as zeros rather than failing the whole read.
    if len(body) >= 4:
        return body[2], body[3]
    return 0, 0


def decode_pdu(pdu_type: int, body: memoryview) -> PDU:
    """A typed PDU from its type and body (the body of P-DATA-TF stays a view)."""
    if pdu_type == P_DATA_TF:
        return PDataTF(body)
    if pdu_type == A_ASSOCIATE_RQ:
        return decode_associate_rq(body)
    if pdu_type == A_ABORT:
        return Abort(*_fixed_fields(body))
    if pdu_type == A_RELEASE_RQ:
        return ReleaseRQ()
    if pdu_type == A_RELEASE_RP:
        return ReleaseRP()
    if pdu_type == A_ASSOCIATE_RJ:
        result = body[1] if len(body) >= 2 else 0
        return AssociateRJ(result, *_fixed_fields(body))
    if pdu_type == A_ASSOCIATE_AC:
        return AssociateAC(bytes(body))
    raise UnrecognizedPDU(pdu_type)


# --- Reading whole PDUs from a stream -------------------------------------------------


class PDUBuffer:
    """Accumulates received bytes and hands out whole PDUs (type, body view).

    Sans-I/O: the caller fills ``writable()`` (e.g. with ``socket.recv_into``) and
    calls ``advance(n)``; ``next_pdu()`` returns None until a whole PDU is buffered
    (the dicom-rs ``read_pdu`` idea).  The buffer is sized for our largest allowed
    PDU and grows only as data for a bigger allowed PDU actually arrives, so a peer
    that merely declares a large length costs nothing.  Body views stay valid until
    the next ``writable()`` call.
    """

    def __init__(self, initial_capacity: int = 16384) -> None:
        self._buffer = bytearray(initial_capacity)
        self._start = 0  # first unconsumed byte
        self._end = 0  # end of received bytes
        self.max_lengths: dict[int, int] = {}

    def writable(self) -> memoryview:
        """Free space to receive into; compacts or grows as needed."""
        pending = self._end - self._start
        missing = max(self._pending_pdu_size() - pending, 1)
        # Room worth a receive call: what the PDU still needs, up to a decent chunk.
        wanted = min(missing, _MIN_RECEIVE)
        if len(self._buffer) - self._end < wanted:
            if self._start:
                # Same-size move: keeps the bytearray (resizing one with exported
                # views is refused, and callers have released theirs by now).
                self._buffer[:pending] = self._buffer[self._start : self._end]
                self._start, self._end = 0, pending
            if len(self._buffer) - self._end < wanted:
                # Double at most, and only once the space is really used up: memory
                # follows the data that arrives, not what a header claims.
                self.reserve(self._end + min(missing, max(len(self._buffer), _MIN_RECEIVE)))
        return memoryview(self._buffer)[self._end :]

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` bytes (e.g. two maximum-size P-DATA-TF PDUs)."""
        if capacity <= len(self._buffer):
            return
        pending = self._end - self._start
        grown = bytearray(capacity)
        grown[:pending] = self._buffer[self._start : self._end]
        self._buffer, self._start, self._end = grown, 0, pending

    def _pending_pdu_size(self) -> int:
        pending = self._end - self._start
        if pending < PDU_HEADER.size:
            return PDU_HEADER.size
        return PDU_HEADER.size + int(_U32.unpack_from(self._buffer, self._start + 2)[0])

    def advance(self, count: int) -> None:
        self._end += count

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (the copying way in, for callers that hold bytes already)."""
        offset = 0
        while offset < len(data):
            view = self.writable()
            count = min(len(view), len(data) - offset)
            view[:count] = data[offset : offset + count]
            del view
            self.advance(count)
            offset += count

    @property
    def buffered(self) -> int:
        return self._end - self._start

    def peek_header(self) -> tuple[int, int] | None:
        """(type, length) of the next PDU once its header has arrived."""
        if self._end - self._start < PDU_HEADER.size:
            return None
        pdu_type, length = PDU_HEADER.unpack_from(self._buffer, self._start)
        return int(pdu_type), int(length)

    def next_pdu(self) -> PDU | None:
        """The next whole PDU, typed (see ``decode_pdu``), or None if more bytes are needed.

        Raises UnrecognizedPDU or PDUTooLong when the header announces an unknown PDU
        type or a length above ``max_lengths[type]`` (checked before any body is
        buffered), and ProtocolError for a malformed A-ASSOCIATE-RQ.
        """
        whole = self.next_raw()
        if whole is None:
            return None
        pdu_type, body = whole
        if pdu_type == P_DATA_TF:
            return PDataTF(body)
        return decode_pdu(pdu_type, body)

    def take_body(self, length: int) -> memoryview | None:
        """The body of the PDU whose header ``peek_header`` gave, once all ``length`` bytes are in.

        The caller has checked the header (type and length); this only slices and
        consumes, for the hot path of an established association.
        """
        start = self._start
        total = PDU_HEADER.size + length
        if self._end - start < total:
            return None
        body = memoryview(self._buffer)[start + PDU_HEADER.size : start + total]
        start += total
        if start == self._end:
            self._start = self._end = 0
        else:
            self._start = start
        return body

    def next_raw(self) -> tuple[int, memoryview] | None:
        """The next whole PDU as (type, body view), with the checks of ``next_pdu``."""
        header = self.peek_header()
        if header is None:
            return None
        pdu_type, length = header
        limit = self.max_lengths.get(pdu_type)
        if pdu_type not in PDU_TYPE_NAMES:
            raise UnrecognizedPDU(pdu_type)
        if limit is not None and length > limit:
            raise PDUTooLong(pdu_type, length, limit)
        total = PDU_HEADER.size + length
        if self._end - self._start < total:
            return None
        body = memoryview(self._buffer)[self._start + PDU_HEADER.size : self._start + total]
        self._start += total
        if self._start == self._end:
            self._start = self._end = 0
        return pdu_type, body
