"""UIDs by number, DCMTK name or DICOM keyword.

DCMTK's configuration files (asconfig.txt) name SOP classes and transfer
syntaxes by DCMTK's symbolic names, by names older DCMTK releases used, or by
numeric UID; the DICOM standard's keywords (PS3.6 Annex A) are accepted too.
The facts live in the generated table dcmrecv/negotiation/_uid_table.py.
"""

from __future__ import annotations

import re
import sys
from typing import Final

from dcmrecv.negotiation._uid_table import UID_ROWS

VERIFICATION_SOP_CLASS: Final = "1.2.840.10008.1.1"
IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"

# DCMTK resolves these two at run time to the machine's byte order
# (dcmnet/docs/asconfig.txt, section 2.1); they are not in the UID table.
LOCAL_ENDIAN_EXPLICIT: Final = "LocalEndianExplicit"
OPPOSITE_ENDIAN_EXPLICIT: Final = "OppositeEndianExplicit"

# PS3.5 section 9.1: components of digits separated by ".", no leading zero
# in a component other than "0" itself, at most 64 characters in all.
_UID_SYNTAX: Final = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_MAX_UID_LENGTH: Final = 64

_NAME_BY_UID: Final[dict[str, str]] = {row[0]: row[2] for row in UID_ROWS}
_KIND_BY_UID: Final[dict[str, str]] = {row[0]: row[5] for row in UID_ROWS}
_PREFIX_BY_UID: Final[dict[str, str]] = {row[0]: row[6] for row in UID_ROWS if row[6]}


def _build_name_index() -> dict[str, str]:
    # A name may mean different UIDs in different sources: DCMTK 3.6.0 called
    # the trial UPS SOP classes (1.2.840.10008.5.1.4.34.4.x) by the names that
    # later releases give the final ones (34.6.x).  Current DCMTK names win
    # over older DCMTK names, and those over DICOM keywords, because the files
    # being read are DCMTK's.
    index: dict[str, str] = {}
    for row in UID_ROWS:
        index.setdefault(row[2], row[0])
    for row in UID_ROWS:
        for older in row[3]:
            index.setdefault(older, row[0])
    for row in UID_ROWS:
        if row[1]:
            index.setdefault(row[1], row[0])
    return index


_UID_BY_NAME: Final[dict[str, str]] = _build_name_index()

STORAGE_SOP_CLASSES: Final[tuple[str, ...]] = tuple(row[0] for row in UID_ROWS if row[6])
"""Every storage SOP class DCMTK has a file name prefix for, in table order:
standard, retired, draft, DICOS and DICONDE classes, the ones dcmrecv and
storescp store."""

TRANSFER_SYNTAXES: Final[tuple[str, ...]] = tuple(
    row[0] for row in UID_ROWS if row[5] == "transfer_syntax"
)
"""Every transfer syntax in the table, in table order."""


def is_valid_uid(value: str) -> bool:
    """True if ``value`` is a UID as PS3.5 section 9.1 defines it."""
    return len(value) <= _MAX_UID_LENGTH and _UID_SYNTAX.fullmatch(value) is not None


def resolve_uid(value: str) -> str | None:
    """The UID ``value`` stands for, or None if it is neither a valid UID nor a known name.

    Names are case-sensitive, as in DCMTK's dcmFindUIDFromName().
    """
    if "0" <= value[:1] <= "9":
        return value if is_valid_uid(value) else None
    if value == LOCAL_ENDIAN_EXPLICIT:
        return EXPLICIT_VR_LITTLE_ENDIAN if sys.byteorder == "little" else EXPLICIT_VR_BIG_ENDIAN
    if value == OPPOSITE_ENDIAN_EXPLICIT:
        return EXPLICIT_VR_BIG_ENDIAN if sys.byteorder == "little" else EXPLICIT_VR_LITTLE_ENDIAN
    return _UID_BY_NAME.get(value)


def uid_name(uid: str) -> str:
    """DCMTK's current name for ``uid`` (as dcmFindNameOfUID() prints it), else the UID."""
    return _NAME_BY_UID.get(uid, uid)


def uid_kind(uid: str) -> str:
    """The table's kind of ``uid`` ("transfer_syntax", "sop_class", ...), "" if not in it."""
    return _KIND_BY_UID.get(uid, "")


def modality_prefix(sop_class_uid: str) -> str:
    """The short code DCMTK puts in front of file names for this SOP class.

    "UNKNOWN" for a class without one, as dcmrecv's default naming scheme
    writes (dcmnet/libsrc/dstorscp.cc, dcmSOPClassUIDToModality(uid, "UNKNOWN")).
    """
    return _PREFIX_BY_UID.get(sop_class_uid, "UNKNOWN")


def known_names() -> tuple[str, ...]:
    """Every name resolve_uid() accepts other than numeric UIDs, for suggestions."""
    return (*_UID_BY_NAME, LOCAL_ENDIAN_EXPLICIT, OPPOSITE_ENDIAN_EXPLICIT)
