"""The DICOM Part 10 header of a stored file: preamble, ``DICM`` and group 0002.

PS3.10 section 7.1: a 128-byte preamble (zeros here, as DCMTK writes it), the prefix
``DICM``, then the File Meta Information in Explicit VR Little Endian whatever the
data set's transfer syntax.  We write the elements DCMTK 3.6.7's ``dcmrecv`` writes in
bit-preserving mode (verified with ``dcmdump -M`` on its files):

    (0002,0000) UL File Meta Information Group Length
    (0002,0001) OB File Meta Information Version 00\\01
    (0002,0002) UI Media Storage SOP Class UID      (from the C-STORE request)
    (0002,0003) UI Media Storage SOP Instance UID   (from the C-STORE request)
    (0002,0010) UI Transfer Syntax UID              (the one the data set arrived in)
    (0002,0012) UI Implementation Class UID         (ours, dcmrecv.IMPLEMENTATION_CLASS_UID)
    (0002,0013) SH Implementation Version Name      (ours)
    (0002,0016) AE Source Application Entity Title  (the calling AE title)

DCMTK's normal mode omits (0002,0016); we write it in every mode, because every mode
of ours keeps the received bytes as bit-preserving mode does, and it tells a reader
where the file came from.

This runs once per received instance, so the parts that never change are encoded once
and the per-instance work is a few joins (about 1 microsecond on this project's
machines).
"""

from __future__ import annotations

import functools
import struct
from typing import Final

from dcmrecv.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

#: Zeroed preamble (PS3.10 7.1: "the preamble shall be filled with 00H when not used").
PREAMBLE: Final = bytes(128)
PREFIX: Final = b"DICM"

_SHORT_HEADER = struct.Struct("<HH2sH")
_MAX_SHORT_LENGTH = 0xFFFE


def _encode(value: str, pad: bytes) -> bytes:
    # UI values may carry any byte a peer sent; latin-1 keeps each one as it was.
    raw = value.encode("latin-1", "replace")
    if len(raw) % 2:
        raw += pad  # PS3.5 6.2: UI pads with NUL, AE and SH with a space.
    if len(raw) > _MAX_SHORT_LENGTH:
        raise ValueError("file meta value is too long for a 16-bit length")
    return raw


def _short_element(element: int, vr: bytes, value: bytes) -> bytes:
    return _SHORT_HEADER.pack(0x0002, element, vr, len(value)) + value


def _uid_element(element: int, uid: str) -> bytes:
    return _short_element(element, b"UI", _encode(uid.rstrip("\0 "), b"\0"))


@functools.lru_cache(maxsize=512)
def _cached_uid_element(element: int, uid: str) -> bytes:
    """SOP class and transfer syntax UIDs come from a small set: encode each once."""
    return _uid_element(element, uid)


@functools.lru_cache(maxsize=256)
def _source_ae_element(ae_title: str) -> bytes:
    title = ae_title.strip(" ")
    if not title:
        return b""
    return _short_element(0x0016, b"AE", _encode(title, b" "))


_VERSION: Final = b"\x02\x00\x01\x00OB\x00\x00" + struct.pack("<I", 2) + b"\x00\x01"
_IMPLEMENTATION: Final = _uid_element(0x0012, IMPLEMENTATION_CLASS_UID) + _short_element(
    0x0013, b"SH", _encode(IMPLEMENTATION_VERSION_NAME, b" ")
)
_GROUP_LENGTH_HEADER: Final = _SHORT_HEADER.pack(0x0002, 0x0000, b"UL", 4)
_HEAD: Final = PREAMBLE + PREFIX + _GROUP_LENGTH_HEADER


def build_file_meta(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    source_ae_title: str | None = None,
) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group for one instance.

    Trailing NUL/space padding on the UIDs is dropped and re-added to even length.
    An empty or missing AE title leaves (0002,0016) out (PS3.10 Table 7.1-1: type 3).
    Raises ValueError when a value cannot be encoded with a 16-bit length.
    """
    body = b"".join(
        (
            _VERSION,
            _cached_uid_element(0x0002, sop_class_uid),
            _uid_element(0x0003, sop_instance_uid),
            _cached_uid_element(0x0010, transfer_syntax_uid),
            _IMPLEMENTATION,
            _source_ae_element(source_ae_title) if source_ae_title else b"",
        )
    )
    return _HEAD + struct.pack("<I", len(body)) + body
