"""DIMSE status codes (PS3.7 Annex C, PS3.4 B.2.3) and the category each belongs to.

One IntEnum for the codes this receiver answers with, so a status is a fact with a
name wherever it travels (storage results, C-STORE responses, logs, the health
probe), and one function for the category PS3.7 C.1 assigns to any 16-bit code.
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """The statuses the receiver answers with (PS3.4 Table B.2-1, PS3.7 C.4, C.5)."""

    SUCCESS = 0x0000
    #: PS3.7 C.4 failures of the DIMSE-N services (storage commitment's N-ACTION).
    PROCESSING_FAILURE = 0x0110
    NO_SUCH_SOP_INSTANCE = 0x0112
    INVALID_ARGUMENT_VALUE = 0x0115
    NO_SUCH_SOP_CLASS = 0x0118
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121
    NO_SUCH_ACTION = 0x0123
    NOT_AUTHORIZED = 0x0124
    RESOURCE_LIMITATION = 0x0213
    #: PS3.7 C.5.18: the SOP class is not supported on this presentation context.
    REFUSED_SOP_CLASS_NOT_SUPPORTED = 0x0122
    #: PS3.7 C.5.13: a DIMSE service we do not provide.
    UNRECOGNIZED_OPERATION = 0x0211
    #: PS3.4 B.2.3: Refused, out of resources.
    OUT_OF_RESOURCES = 0xA700
    #: PS3.4 B.2.3: Error, data set does not match SOP class.
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    #: PS3.4 B.2.3: Error, cannot understand.
    CANNOT_UNDERSTAND = 0xC000
    #: ``--on-duplicate reject``.  PS3.4 B.2.3 has no "duplicate" status for C-STORE
    #: (nor has DCMTK's storescp).  A7xx "out of resources" would invite a retry that
    #: can never succeed; a warning (Bxxx) would tell the sender it was stored.  So a
    #: failure in the Cxxx "cannot understand" range, which senders treat as final,
    #: with the low bits of PS3.7 C.4's 0111H "Duplicate SOP Instance" (an N-CREATE
    #: status) for whoever reads the number, and the Error Comment saying so.
    DUPLICATE_REJECTED = 0xC111
    #: PS3.4 B.2.3 warnings.
    COERCION_OF_DATA_ELEMENTS = 0xB000
    ELEMENTS_DISCARDED = 0xB006
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007


class Category(enum.Enum):
    """PS3.7 C.1: what a status means to the requestor."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    CANCEL = "cancel"
    PENDING = "pending"


def category(status: int) -> Category:
    """The category of any status code, as PS3.7 C.1 and PS3.4 B.2.3 assign them.

    0x0000 is Success; 0x0001 and 0xBxxx are Warnings; 0xFE00 is Cancel; 0xFF00 and
    0xFF01 are Pending; everything else (0x01xx, 0x02xx, 0xAxxx, 0xCxxx, ...) fails.
    """
    if status == Status.SUCCESS:
        return Category.SUCCESS
    if status == 0x0001 or status & 0xF000 == 0xB000:
        return Category.WARNING
    if status == 0xFE00:
        return Category.CANCEL
    if status in (0xFF00, 0xFF01):
        return Category.PENDING
    return Category.FAILURE


def is_stored(status: int) -> bool:
    """Whether a C-STORE answered with ``status`` left the instance stored (Success or Warning)."""
    return category(status) in (Category.SUCCESS, Category.WARNING)


#: DCMTK's wording for C-STORE statuses in "Sending C-STORE Response (...)" lines
#: (DU_cstoreStatusString), so log-grepping scripts keep working.  Exact codes here;
#: the A7xx, A9xx and Cxxx ranges are decided in store_status_text().
_STORE_STATUS_TEXT: dict[int, str] = {
    Status.SUCCESS: "Success",
    Status.REFUSED_SOP_CLASS_NOT_SUPPORTED: "Refused: SOPClassNotSupported",
    Status.COERCION_OF_DATA_ELEMENTS: "Warning: CoercionOfDataElements",
    Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING: "Warning: DataSetDoesNotMatchSOPClass",
    Status.ELEMENTS_DISCARDED: "Warning: ElementsDiscarded",
}


def store_status_text(status: int) -> str:
    """Human text for a C-STORE status, as DCMTK prints it."""
    text = _STORE_STATUS_TEXT.get(status)
    if text is not None:
        return text
    # As DU_cstoreStatusString: then the high byte, then the high nibble decides.
    if status & 0xFF00 == 0xA700:
        return "Refused: OutOfResources"
    if status & 0xFF00 == 0xA900:
        return "Error: DataSetDoesNotMatchSOPClass"
    if status & 0xF000 == 0xC000:
        return "Error: CannotUnderstand"
    return f"Unknown Status: 0x{status:04x}"
