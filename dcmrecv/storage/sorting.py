"""storescp's study subdirectories and time-based file names: pure functions.

storescp.man, "NOTES": ``--sort-conc-studies p`` puts each study into
``[prefix]_[YYYYMMDD]_[HHMMSSPPP]`` (the time its first object arrived; no ``_``
after an empty prefix), ``--sort-on-study-uid p`` into ``[prefix]_[StudyInstanceUID]``
and ``--sort-on-patientname`` into ``[PatientName]_[YYYYMMDD]_[HHMMSSPPP]``, with
``ANONYMOUS`` for an empty or absent Patient's Name and the name mapped to ASCII.
``--timenames`` names files ``[YYYYMMDDHHMMSSPPP]_[SERIALNO].[MD]``: the serial
number (4 digits) appears only when the name without it equals the last name
written (DCMTK's storescp.cc, ``storeSCP``).

Values from the peer never leave the output directory: the Study Instance UID is
mapped with DCMTK's file name character table (``OFStandard::sanitizeFilename``:
letters, digits, space, ``-``, ``.``, ``:`` and ``@`` stay, everything else becomes
``_``), the Patient's Name with storescp's Latin-1 to ASCII table (which keeps
letters and digits only), and a directory name that is empty, ``.`` or ``..`` is
refused, as current DCMTK does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Final


class SortMode(enum.Enum):
    """``-ss`` / ``-su`` / ``-sp`` (storescp.man, "sorting into subdirectories")."""

    NONE = "none"
    TIMESTAMP = "sort-conc-studies"
    STUDY_UID = "sort-on-study-uid"
    PATIENT_NAME = "sort-on-patientname"


class SortError(ValueError):
    """No safe subdirectory name can be made (the message says why)."""


#: storescp's name for a study without a Patient's Name.
ANONYMOUS: Final = "ANONYMOUS"

# OFStandard::sanitizeFilename's table for the printable ASCII range 0x20..0x7E.
_FILENAME_KEEP: Final = frozenset(
    " -.:@0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

# storescp's mapCharacterAndAppendToString(): Latin-1 code -> ASCII, for 0xC0..0xFF.
# Below 0xC0 only letters and digits survive; everything else becomes "_".
_LATIN1_HIGH: Final = (
    "A", "A", "A", "A", "Ae", "A", "A", "C", "E", "E", "E", "E", "I", "I", "I", "I",
    "D", "N", "O", "O", "O", "O", "Oe", "_", "O", "U", "U", "U", "Ue", "Y", "_", "ss",
    "a", "a", "a", "a", "ae", "a", "a", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    "d", "n", "o", "o", "o", "o", "oe", "_", "o", "u", "u", "u", "ue", "y", "_", "y",
)  # fmt: skip


def sanitize_filename(text: str) -> str:
    """DCMTK's ``OFStandard::sanitizeFilename``: unsafe characters become ``_``."""
    return "".join(char if char in _FILENAME_KEEP else "_" for char in text)


def patient_name_to_ascii(raw: bytes) -> str:
    """The Patient's Name bytes mapped as storescp maps them (Latin-1 table).

    Each byte is read as a Latin-1 character: ASCII letters and digits stay, accented
    Latin-1 letters lose their accent (``Ä`` -> ``Ae``, ``ß`` -> ``ss``), and
    everything else, including ``^``, space and ``.``, becomes ``_``.  Bytes of other
    character sets therefore give ``_`` or odd letters, as in DCMTK (which warns).
    """
    out: list[str] = []
    for byte in raw:
        if 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A:
            out.append(chr(byte))
        elif byte >= 0xC0:
            out.append(_LATIN1_HIGH[byte - 0xC0])
        else:
            out.append("_")
    return "".join(out)


def first_value(value: str | None) -> str:
    """The first value of a multi-valued string, without trailing padding."""
    if value is None:
        return ""
    return value.split("\\", 1)[0].rstrip(" \0")


def timestamp(now: datetime) -> str:
    """``YYYYMMDD_HHMMSSPPP`` (PPP: milliseconds), storescp's study time stamp."""
    return f"{now:%Y%m%d}_{now:%H%M%S}{now.microsecond // 1000:03d}"


def needs_charset_warning(raw_name: bytes, specific_character_set: str | None) -> bool:
    """storescp warns when a non-ASCII name is in a character set other than Latin-1."""
    charset = (specific_character_set or "").strip(" \0")
    return bool(charset) and charset != "ISO_IR 100" and any(b >= 0x80 for b in raw_name)


def study_directory(
    mode: SortMode,
    prefix: str,
    *,
    study_instance_uid: str,
    patient_name: bytes | None,
    now: datetime,
) -> str:
    """The name of a new study's subdirectory (storescp.man, "NOTES").

    ``patient_name`` is the first value of (0010,0010) as bytes (None or empty when
    absent); ``now`` the local time the study's first object arrived.  The prefix
    comes from our own command line and is used as given (it cannot contain a path
    separator: see check_prefix).  Raises SortError for an empty, ``.`` or ``..``
    name, or when the mode is NONE.
    """
    if mode is SortMode.TIMESTAMP:
        name = f"{prefix}_{timestamp(now)}" if prefix else timestamp(now)
    elif mode is SortMode.STUDY_UID:
        uid = sanitize_filename(study_instance_uid)
        name = f"{prefix}_{uid}" if prefix else uid
    elif mode is SortMode.PATIENT_NAME:
        person = patient_name_to_ascii(patient_name) if patient_name else ANONYMOUS
        name = f"{person}_{timestamp(now)}"
    else:
        raise SortError("no sort mode")
    if name in ("", ".", ".."):
        raise SortError(
            f'Refusing to use subdirectory name "{name}" derived from received attributes'
            " (would resolve to the output directory itself or its parent)"
        )
    if len(name.encode("utf-8", "surrogateescape")) > 255:
        raise SortError("subdirectory name would be longer than 255 bytes")
    return name


def check_prefix(prefix: str) -> str | None:
    """Why a ``-ss``/``-su`` prefix cannot be used, or None.

    DCMTK joins the prefix into the path unchecked; a separator would make the
    "subdirectory" a path elsewhere, so we refuse it on the command line.
    """
    if "/" in prefix or "\0" in prefix:
        return "prefix must not contain '/'"
    if prefix in (".", ".."):
        return f"prefix must not be '{prefix}'"
    return None


@dataclass(frozen=True)
class TimeName:
    """A ``--timenames`` file name and the serial counter state after it."""

    name: str
    counter: int


def time_name(
    now: datetime, modality: str, extension: str, last_name: str | None, counter: int
) -> TimeName:
    """DCMTK's ``--timenames`` rule for the next file name.

    ``counter`` is -1 while the last name had no serial number.  The candidate is the
    name with the current serial (or without one at -1); when it equals ``last_name``
    (the last file name written), the serial is incremented and used, else the name
    has no serial and the counter goes back to -1.
    """
    stamp = f"{now:%Y%m%d%H%M%S}{now.microsecond // 1000:03d}"
    plain = f"{stamp}.{modality}{extension}"
    candidate = plain if counter == -1 else f"{stamp}_{counter:04d}.{modality}{extension}"
    if last_name is not None and candidate == last_name:
        counter += 1
        return TimeName(f"{stamp}_{counter:04d}.{modality}{extension}", counter)
    return TimeName(plain, -1)


def renamed_prefix(filename: str, time_names: bool) -> str:
    """The two-character kind prefix ``--rename-on-eostudy`` keeps, as storescp takes it.

    Normally the first two characters of the file name (``CT.1.2...`` -> ``CT``); for
    ``--timenames`` the two after the time stamp (and after ``_NNNN.`` when a serial
    number is present).
    """
    if time_names:
        serial = filename.find("_")
        if serial != -1:
            return filename[serial + 6 : serial + 8]
        return filename[18:20]
    return filename[:2]


def renamed_name(prefix: str, number: int) -> str:
    """``[prefix][6-digit consecutive number]``, storescp's end-of-study name."""
    return f"{prefix}{number:06d}"
