"""Where a received instance goes, and what its data set says: pure functions.

``plan_path`` turns the naming options of ``dcmrecv`` (dcmrecv.man, "Subdirectory
Generation" and "Filename Generation") plus the values of one instance into a relative
path below the output directory.  ``scan_dataset`` walks a received data set strictly
(PS3.5 section 7) without loading bulk values and reports the three attributes the
storage layer needs.  Neither touches the file system; ``dcmrecv.storage.writer`` does.

Naming, as DCMTK 3.6.7's ``DcmStorageSCP::generateDirAndFilename`` does it (verified by
running its ``dcmrecv``):

* ``+fd``  ``<modality>.<SOP Instance UID><ext>``; a second copy of the same instance
  replaces the first (DCMTK warns "file already exists, overwriting: <path>").
* ``+fu``  ``<modality>.X.<new UID><ext>``.  DCMTK takes the UID under OFFIS' own root
  (1.2.276.0.7230010.3.1.4); we have no registered root and use the UUID-derived
  ``2.25`` arc (PS3.5 B.2), which needs no registration and cannot collide in practice.
* ``+fsu`` ``<modality>_<16 lower-case hex digits><ext>``: DCMTK's digits are 8 for the
  time the receiver started and 8 pseudo-random; we keep that layout, with the random half
  from the OS.  Never overwrites: the caller retries with another random half.
* ``+fst`` ``<YYYYMMDDHHMMSS>.<microseconds, 6 digits>.<modality><ext>`` in local time.
  DCMTK overwrites on a collision (same microsecond); we never overwrite a different
  instance: the caller retries with a later time stamp.

The modality is DCMTK's short code for the SOP class; without one DCMTK writes
``UNKNOWN`` (``XX`` for ``+fsu``).  ``+ssd`` puts files into ``data/YYYY/MM/DD`` from a
valid Series Date (0008,0021), else ``undef/YYYYMMDD`` from today's local date.  "Valid"
is DCMTK's rule (``DcmDate::getISOFormattedDate``): the first value, trailing spaces
removed, is eight digits with month 1-12 and day 1-31 (no calendar check, so 20230231
is accepted), or the pre-3.0 form ``YYYY.MM.DD``; and the element's VR is DA.

Values from the peer never leave the output directory: the only peer value in a name is
the SOP Instance UID (``+fd``), made safe by ``sanitize_uid``.  Equipment sends values
that are not UIDs (PS3.5 9.1), e.g. 64 hexadecimal digits; DCMTK 3.6.7 stores them under
``<prefix>.<value>`` with ``/`` replaced by ``_`` (verified: ``1.2.3/4`` ->
``CT.1.2.3_4``, ``..`` -> ``CT...``, ``1.2 3`` -> ``CT.1.2 3``), so two values can share
a file and overwrite each other.  We keep letters, digits, ``.`` and ``-`` as they are
(a valid UID and the hexadecimal case get DCMTK's name); any other value gets ``_`` for
each other character, is cut to 64 characters, and ends in ``_`` and 16 hex digits of
the SHA-256 of the value.  ``_`` only ever appears in names so made, so distinct values
never share a name (short of a 64-bit hash collision) and one value always gets the
same one.  A name is always prefixed by the modality, so it can never be ``.`` or
``..``; a name longer than 255 bytes (the usual file-system limit) is refused.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Final

from dcmrecv.storage.model import FilenameMode, SubdirectoryMode

# The plan and its error are naming's answers; they live in model so that the
# writer's types need not import this module.
from dcmrecv.storage.model import PathPlan as PathPlan
from dcmrecv.storage.model import PlanError as PlanError

#: DCMTK's ``DcmStorageSCP::DEF_StandardSubdirectory`` / ``DEF_UndefinedSubdirectory``.
STANDARD_SUBDIRECTORY: Final = "data"
UNDEFINED_SUBDIRECTORY: Final = "undef"
#: What DCMTK's ``dcmSOPClassUIDToModality`` falls back to for a SOP class it does not
#: know: "UNKNOWN" for +fd, +fu and +fst, "XX" for +fsu.
UNKNOWN_MODALITY: Final = "UNKNOWN"
SHORT_UNKNOWN_MODALITY: Final = "XX"
#: NAME_MAX of Linux file systems (ext4, xfs, btrfs, tmpfs): bytes in one path component.
MAX_NAME_BYTES: Final = 255

#: A UID (PS3.5 9.1): components of digits, no leading zero, separated by dots.
_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
MAX_UID_LENGTH: Final = 64
#: Characters of a SOP Instance UID that go into a file name unchanged.
_KEPT_IN_NAME = re.compile(r"[0-9A-Za-z.-]{1,64}")
_NOT_KEPT_IN_NAME = re.compile(r"[^0-9A-Za-z.-]")
#: Hex digits of SHA-256 that tell apart values whose safe forms coincide.
DISAMBIGUATOR_DIGITS: Final = 16
_NOT_MODALITY_CHARACTER = re.compile(r"[^A-Za-z0-9_-]")
_NEW_DATE = re.compile(r"[0-9]{8}")
_OLD_DATE = re.compile(r"[0-9]{4}\.[0-9]{2}\.[0-9]{2}")


def parse_series_date(value: str | None) -> tuple[str, str, str] | None:
    """(YYYY, MM, DD) from a Series Date value if DCMTK counts it as valid, else None.

    DCMTK reads the first of several values, drops trailing spaces (DA's padding,
    PS3.5 6.2) and accepts ``YYYYMMDD`` or the ACR-NEMA form ``YYYY.MM.DD`` with month
    1..12 and day 1..31 (``OFDate::isDateValid``: no check of the month's length).
    """
    if value is None:
        return None
    first = value.split("\\", 1)[0].rstrip(" ")
    if _NEW_DATE.fullmatch(first):
        year, month, day = first[0:4], first[4:6], first[6:8]
    elif _OLD_DATE.fullmatch(first):
        year, month, day = first[0:4], first[5:7], first[8:10]
    else:
        return None
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return None
    return year, month, day


def series_date_directory(series_date: str | None, now: datetime) -> tuple[str, ...]:
    """``+ssd``: ``data/YYYY/MM/DD`` from a valid Series Date, else ``undef/YYYYMMDD``."""
    parsed = parse_series_date(series_date)
    if parsed is not None:
        return (STANDARD_SUBDIRECTORY, *parsed)
    return (UNDEFINED_SUBDIRECTORY, now.strftime("%Y%m%d"))


def check_extension(extension: str) -> str:
    """The ``-fe`` extension, refused when it could name another directory."""
    if "/" in extension or "\\" in extension or "\0" in extension:
        raise PlanError(f"filename extension must not contain a path separator: {extension!r}")
    if len(extension.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES // 2:
        raise PlanError("filename extension is too long")
    return extension


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` (padding removed) is a UID by the rules of PS3.5 9.1."""
    return len(value) <= MAX_UID_LENGTH and _UID.fullmatch(value) is not None


def sanitize_uid(uid: str) -> str:
    """The part of a ``<prefix>.<SOP Instance UID>`` file name that comes from the UID
    (dcmrecv's ``+fd``, storescp's default); "" for an empty value.

    The value itself when it holds only letters, digits, ``.`` and ``-`` (at most 64);
    otherwise a safe form of it plus ``_`` and a hash of the value (see module
    docstring), so that distinct values never map to one name.
    """
    value = uid.rstrip("\0 ")
    if not value or _KEPT_IN_NAME.fullmatch(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    safe = _NOT_KEPT_IN_NAME.sub("_", value[:64])
    return f"{safe}_{digest[:DISAMBIGUATOR_DIGITS]}"


def _modality_or(modality: str | None, fallback: str) -> str:
    if not modality:
        return fallback
    # The code comes from our own table, but a file name is no place to trust that.
    return _NOT_MODALITY_CHARACTER.sub("_", modality)


def short_unique_name(creation_time: int, random32: int) -> str:
    """DCMTK's ``OFFilenameCreator`` layout: 8 hex digits of time, 8 of randomness."""
    return f"{creation_time & 0xFFFFFFFF:08x}{random32 & 0xFFFFFFFF:08x}"


def uuid_uid(uuid_int: int) -> str:
    """A UID under the 2.25 arc from a 128-bit UUID (PS3.5 B.2, ISO/IEC 9834-8)."""
    return f"2.25.{uuid_int}"


def plan_path(
    *,
    subdirectory: SubdirectoryMode,
    filename_mode: FilenameMode,
    extension: str,
    sop_instance_uid: str,
    modality: str | None,
    series_date: str | None,
    now: datetime,
    new_uid: str | None = None,
    short_name: str | None = None,
) -> PathPlan:
    """The relative path for one instance, as DCMTK's dcmrecv names it.

    ``modality`` is the short code for the SOP class (None if there is none),
    ``series_date`` the raw Series Date value (None if absent or not of VR DA), ``now``
    the local time of reception.  ``new_uid`` (``+fu``) and ``short_name`` (``+fsu``,
    16 hex digits) are drawn by the caller so that this stays a pure function.
    """
    directory: tuple[str, ...] = ()
    if subdirectory is SubdirectoryMode.SERIES_DATE:
        directory = series_date_directory(series_date, now)
    extension = check_extension(extension)
    replace = False
    if filename_mode is FilenameMode.DEFAULT:
        uid = sanitize_uid(sop_instance_uid)
        if not uid:
            raise PlanError("SOP Instance UID is empty")
        name = f"{_modality_or(modality, UNKNOWN_MODALITY)}.{uid}{extension}"
        replace = True
    elif filename_mode is FilenameMode.UNIQUE:
        if new_uid is None:
            raise PlanError("+fu needs a new UID")
        name = f"{_modality_or(modality, UNKNOWN_MODALITY)}.X.{sanitize_uid(new_uid)}{extension}"
    elif filename_mode is FilenameMode.SHORT_UNIQUE:
        if short_name is None or not re.fullmatch(r"[0-9a-f]{16}", short_name):
            raise PlanError("+fsu needs 16 hex digits")
        name = f"{_modality_or(modality, SHORT_UNKNOWN_MODALITY)}_{short_name}{extension}"
    else:
        stamp = f"{now:%Y%m%d%H%M%S}.{now.microsecond:06d}"
        name = f"{stamp}.{_modality_or(modality, UNKNOWN_MODALITY)}{extension}"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise PlanError("file name would be longer than 255 bytes")
    return PathPlan(directory=directory, filename=name, replace_existing=replace)


# --- Reading what the storage layer needs from a received data set -------------------
