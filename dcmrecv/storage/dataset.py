"""The data set check: a strict walk over a received data set (PS3.5 section 7), pure.

``scan_dataset`` walks a received data set without loading bulk values and reports the
top-level attributes the storage layer needs; ``scan_buffer`` does the same for a data
set held in memory.  Neither touches the file system.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Final

from dcmrecv.storage._sq_tags import SQ_REPEATERS, SQ_TAGS

#
# A strict walk over the element structure of PS3.5 section 7: every header, length and
# nesting is checked, values are skipped (seeked over) unless they are one of the three
# attributes we need.  Pixel data is never loaded.  Anything that does not parse raises
# DatasetError, never another exception.

#: Transfer syntaxes whose data set is deflated on the wire and in the file (PS3.5 A.5):
#: Deflated Explicit VR Little Endian and JPIP Referenced Deflate.
DEFLATED_TRANSFER_SYNTAXES: Final = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})
IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
#: Transfer syntaxes whose top-level Pixel Data is native: a value of defined length
#: (PS3.5 A.1-A.3, A.5).
NATIVE_TRANSFER_SYNTAXES: Final = frozenset(
    {
        IMPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
        "1.2.840.10008.1.2.1.99",
    }
)
#: JPIP Referenced (Deflate): the pixels are not in the data set at all (PS3.5 A.6, A.7).
_JPIP_REFERENCED: Final = frozenset({"1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95"})
#: RLE Lossless (PS3.5 A.4.2) and Encapsulated Uncompressed Explicit VR LE (A.4.11).
_OTHER_ENCAPSULATED: Final = frozenset({"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.98"})


def is_encapsulated(transfer_syntax_uid: str) -> bool:
    """Whether top-level Pixel Data must be encapsulated (PS3.5 A.4): the JPEG, JPEG-LS,
    JPEG 2000, HTJ2K, MPEG and HEVC families under 1.2.840.10008.1.2.4, and RLE."""
    if transfer_syntax_uid in _OTHER_ENCAPSULATED:
        return True
    return (
        transfer_syntax_uid.startswith("1.2.840.10008.1.2.4.")
        and transfer_syntax_uid not in _JPIP_REFERENCED
    )


#: Sequences nested deeper than this are refused (a peer could otherwise make any
#: recursive reader walk a pathological tree).
MAX_SEQUENCE_DEPTH: Final = 64
#: Inflating a deflated data set stops beyond RATIO times the received size (but never
#: below FLOOR) or beyond CAP bytes: a deflate bomb gets a failure status, not our CPU.
INFLATE_RATIO_LIMIT: Final = 256
INFLATE_FLOOR: Final = 64 * 1024 * 1024
INFLATE_CAP: Final = 4 * 1024 * 1024 * 1024

SOP_CLASS_UID_TAG: Final = 0x00080016
SOP_INSTANCE_UID_TAG: Final = 0x00080018
SERIES_DATE_TAG: Final = 0x00080021
#: What storescp's sorting reads (storescp.man, "sorting into subdirectories").
SPECIFIC_CHARACTER_SET_TAG: Final = 0x00080005
PATIENT_NAME_TAG: Final = 0x00100010
STUDY_INSTANCE_UID_TAG: Final = 0x0020000D
#: For the study manifest of ``--exec-on-eostudy`` (README, "Operations").
SERIES_INSTANCE_UID_TAG: Final = 0x0020000E
_PIXEL_DATA_TAG: Final = 0x7FE00010
ITEM: Final = 0xFFFEE000
ITEM_DELIMITATION: Final = 0xFFFEE00D
SEQUENCE_DELIMITATION: Final = 0xFFFEE0DD
UNDEFINED_LENGTH: Final = 0xFFFFFFFF
#: VRs with the 2-byte reserved field and a 32-bit length (PS3.5 Table 7.1-1).
LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
#: Explicit VR: what the two VR bytes make of an element (PS3.5 7.1.2), one look-up per
#: element.  A VR is two upper-case letters (anything else is refused); those of
#: LONG_VRS have 2 reserved bytes and a 32-bit length, SQ holds items, and UN of
#: undefined length holds a sequence in implicit VR LE (PS3.5 6.2.2).
_SHORT_VR: Final = 0
_LONG_VR: Final = 1
_SQ_VR: Final = 2
_UN_VR: Final = 3
_VR_KINDS: Final = {
    bytes((first, second)): _SHORT_VR for first in range(65, 91) for second in range(65, 91)
}
_VR_KINDS.update(dict.fromkeys(LONG_VRS, _LONG_VR))
_VR_KINDS[b"SQ"] = _SQ_VR
_VR_KINDS[b"UN"] = _UN_VR
_WANTED: Final = frozenset(
    {
        SOP_CLASS_UID_TAG,
        SOP_INSTANCE_UID_TAG,
        SERIES_DATE_TAG,
        SPECIFIC_CHARACTER_SET_TAG,
        PATIENT_NAME_TAG,
        STUDY_INSTANCE_UID_TAG,
        SERIES_INSTANCE_UID_TAG,
    }
)
_MAX_WANTED_VALUE: Final = 1024


class DatasetError(ValueError):
    """The received data set cannot be parsed (the message says where and why)."""


@dataclass(frozen=True)
class DatasetSummary:
    """The top-level attributes storage needs, as text without padding."""

    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    #: The raw Series Date value; None when absent or not encoded with VR DA.
    series_date: str | None = None
    #: For storescp's sorting: Study Instance UID, Patient's Name and Specific Character
    #: Set as received (bytes as Latin-1 text, trailing padding removed); None if absent.
    #: Not compared: two summaries are equal when dcmrecv would name the files alike.
    study_instance_uid: str | None = field(default=None, compare=False)
    patient_name: str | None = field(default=None, compare=False)
    specific_character_set: str | None = field(default=None, compare=False)
    #: Series Instance UID, for the study manifest; None if absent.  Not compared.
    series_instance_uid: str | None = field(default=None, compare=False)
    #: Offset in the data set of the top-level Pixel Data element when it is
    #: encapsulated but received with VR OW: the writer stores it as OB (PS3.5 A.4
    #: "shall have the Value Representation OB"), as DCMTK does.  None otherwise.
    encapsulated_ow_offset: int | None = None
    #: Every top-level attribute of the scan's ``wanted`` set that was found (at most
    #: 1024 bytes long): tag -> (VR as received, b"" in implicit VR; raw value).  For
    #: ``--output-template``, whose values are read in the same walk.
    values: dict[int, tuple[bytes, bytes]] = field(default_factory=dict, compare=False)


def wanted_tags(extra: frozenset[int] | None) -> frozenset[int]:
    """The attributes a scan collects: the storage layer's own plus ``extra`` (the
    template's).  Computed once per configuration, so a scan without a template tests
    membership in the same small set as before."""
    return _WANTED | extra if extra else _WANTED


class _Source:
    """Bytes of a data set with a position; read() is exact or raises DatasetError."""

    def __init__(self) -> None:
        self.pos = 0

    def read(self, n: int) -> bytes:
        raise NotImplementedError

    def skip(self, n: int) -> None:
        raise NotImplementedError

    def at_end(self) -> bool:
        raise NotImplementedError


class _PlainSource(_Source):
    def __init__(self, stream: BinaryIO, size: int) -> None:
        super().__init__()
        self._stream = stream
        self._size = size

    def read(self, n: int) -> bytes:
        if self.pos + n > self._size:
            raise DatasetError(f"data set ends inside an element at offset {self.pos}")
        data = self._stream.read(n)
        if len(data) != n:
            raise DatasetError(f"data set ends early at offset {self.pos}")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if self.pos + n > self._size:
            raise DatasetError(f"value at offset {self.pos} runs past the end of the data set")
        self._stream.seek(n, 1)
        self.pos += n

    def at_end(self) -> bool:
        return self.pos >= self._size


class _InflatingSource(_Source):
    """A raw deflate stream (PS3.5 A.5: RFC 1951, no zlib header) inflated on demand."""

    _CHUNK = 65536

    def __init__(self, stream: BinaryIO, size: int) -> None:
        super().__init__()
        self._stream = stream
        self._left = size
        self._limit = min(INFLATE_CAP, max(INFLATE_FLOOR, INFLATE_RATIO_LIMIT * size))
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buffer = bytearray()
        self._produced = 0

    def _more(self) -> bool:
        """Inflate another chunk into the buffer; False when the stream has no more."""
        while True:
            if self._inflater.eof:
                # Bytes after the end of the deflate stream (PDV padding) are ignored.
                return False
            tail = self._inflater.unconsumed_tail
            if tail:
                data = tail
            elif self._left <= 0:
                # All input consumed; zlib may still hold output that max_length kept back.
                data = b""
            else:
                data = self._stream.read(min(self._CHUNK, self._left))
                if not data:
                    return False
                self._left -= len(data)
            try:
                out = self._inflater.decompress(data, self._CHUNK)
            except zlib.error as exc:
                raise DatasetError(f"deflated data set is corrupt: {exc}") from None
            if out:
                self._produced += len(out)
                if self._produced > self._limit:
                    raise DatasetError("deflated data set inflates beyond the limit")
                self._buffer += out
                return True
            if not data:
                return False

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not self._more():
                raise DatasetError(f"data set ends early at offset {self.pos}")
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        while n:
            if not self._buffer and not self._more():
                raise DatasetError(f"value at offset {self.pos} runs past the end of the data set")
            step = min(n, len(self._buffer))
            del self._buffer[:step]
            self.pos += step
            n -= step

    def at_end(self) -> bool:
        return not self._buffer and not self._more()


class _Syntax:
    """Byte order and VR encoding of one transfer syntax, with its packed formats."""

    def __init__(self, *, explicit: bool, little: bool) -> None:
        order = "<" if little else ">"
        self.explicit = explicit
        self.tag = struct.Struct(order + "HH")
        self.u16 = struct.Struct(order + "H")
        self.u32 = struct.Struct(order + "I")
        # Whole element headers (PS3.5 7.1): implicit, and explicit with a 16-bit length.
        self.implicit_header = struct.Struct(order + "HHI")
        self.explicit_header = struct.Struct(order + "HH2sH")


_IMPLICIT_LE: Final = _Syntax(explicit=False, little=True)
_EXPLICIT_LE: Final = _Syntax(explicit=True, little=True)
_EXPLICIT_BE: Final = _Syntax(explicit=True, little=False)


#: Sequences that DCMDICTPATH's dictionaries add (see :func:`register_sequences`):
#: public tags, and private ones as (group, private creator, element byte).
_EXTRA_SQ: frozenset[int] = frozenset()
_PRIVATE_SQ: frozenset[tuple[int, str, int]] = frozenset()
#: A private creator value is LO: at most 64 characters (PS3.5 Table 6.2-1, 7.8.1).
_MAX_CREATOR: Final = 64


def register_sequences(public: frozenset[int], private: frozenset[tuple[int, str, int]]) -> None:
    """Make the data set check know more sequences (from DCMDICTPATH, at start-up).

    In implicit VR only the dictionary tells a sequence from bytes.  A private
    sequence is known by its block's private creator (PS3.5 7.8.1): the walker then
    reads the creator elements (gggg,0010-00FF) of each data set and item, as it goes.
    """
    global _EXTRA_SQ, _PRIVATE_SQ
    _EXTRA_SQ = frozenset(public - SQ_TAGS)
    _PRIVATE_SQ = frozenset(private)


def _private_sequence(tag: int, creators: dict[int, str]) -> bool:
    """Whether private ``tag`` is a sequence by the creator of its block."""
    group, element = tag >> 16, tag & 0xFFFF
    creator = creators.get((group << 8) | (element >> 8))
    return creator is not None and (group, creator, element & 0xFF) in _PRIVATE_SQ


def _is_dictionary_sequence(tag: int) -> bool:
    """Implicit VR carries no VR: a defined-length value is a sequence if the data
    dictionary (PS3.6, plus DCMDICTPATH's) says SQ; unknown tags are opaque bytes."""
    if tag in SQ_TAGS or tag in _EXTRA_SQ:
        return True
    for mask, value in SQ_REPEATERS:  # noqa: SIM110 - per element: no generator here
        if tag & mask == value:
            return True
    return False


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


#: What top-level Pixel Data must look like in a transfer syntax (PS3.5 A.4).
_ANY_PIXELS: Final = 0
_NATIVE_PIXELS: Final = 1
_ENCAPSULATED_PIXELS: Final = 2


def _pixel_rule(transfer_syntax_uid: str) -> int:
    if transfer_syntax_uid in NATIVE_TRANSFER_SYNTAXES:
        return _NATIVE_PIXELS
    if is_encapsulated(transfer_syntax_uid):
        return _ENCAPSULATED_PIXELS
    return _ANY_PIXELS  # a private or unknown syntax: no rule we could check


def _check_pixel_data(rule: int, vr: bytes, length: int, start: int) -> int | None:
    """Refuse top-level Pixel Data that contradicts the transfer syntax (DCMTK refuses
    it too: it aborts the association, or cannot write the file); the offset of an
    encapsulated value received with VR OW, else None."""
    if rule == _ENCAPSULATED_PIXELS:
        if length != UNDEFINED_LENGTH:
            raise DatasetError(
                "native Pixel Data (defined length) in a transfer syntax that needs "
                "encapsulated Pixel Data (PS3.5 A.4)"
            )
        return start if vr == b"OW" else None
    if rule == _NATIVE_PIXELS and length == UNDEFINED_LENGTH:
        raise DatasetError(
            "encapsulated Pixel Data (undefined length) in a native transfer syntax (PS3.5 A.4)"
        )
    return None


def _check_even(size: int) -> None:
    # PS3.5 7.1.1: every value has even length, so a data set does.  DCMTK aborts the
    # association on a data set fragment of odd length ("DIMSE: Odd Fragment Length").
    if size % 2:
        raise DatasetError(f"data set has odd length {size} (PS3.5 7.1.1)")


class _Walker:
    def __init__(
        self,
        source: _Source,
        stop_after: int | None,
        pixel_rule: int,
        wanted: frozenset[int] = _WANTED,
    ) -> None:
        self.source = source
        self.wanted = wanted
        self.stop_after = stop_after
        self.pixel_rule = pixel_rule
        self.found: dict[int, str] = {}
        #: Wanted top-level values as (VR, raw bytes), beside ``found``'s text.
        self.values: dict[int, tuple[bytes, bytes]] = {}
        self.ow_offset: int | None = None

    def header(self, syntax: _Syntax) -> tuple[int, bytes, int]:
        """(tag, VR, length) of the next element; VR is b"" in implicit VR and for items."""
        src = self.source
        raw = src.read(8)
        group, element = syntax.tag.unpack_from(raw)
        tag = (group << 16) | element
        if not syntax.explicit or group == 0xFFFE:
            # Items and delimiters have no VR in any transfer syntax (PS3.5 7.5).
            return tag, b"", syntax.u32.unpack_from(raw, 4)[0]
        vr = raw[4:6]
        if not (vr.isalpha() and vr.isupper()):
            raise DatasetError(f"invalid VR {vr!r} in ({group:04X},{element:04X})")
        if vr in LONG_VRS:
            # 2 reserved bytes, then a 32-bit length (PS3.5 7.1.2).
            return tag, vr, syntax.u32.unpack(src.read(4))[0]
        return tag, vr, syntax.u16.unpack_from(raw, 6)[0]

    def elements(self, syntax: _Syntax, end: int | None, depth: int) -> None:
        """Elements up to ``end`` (or an item delimiter when end is None, or EOF at top)."""
        src = self.source
        top = depth == 0
        # Private creators of this data set or item, (group << 8 | block) -> creator;
        # only read when the dictionaries name private sequences (implicit VR).
        creators: dict[int, str] | None = {} if _PRIVATE_SQ and not syntax.explicit else None
        while True:
            if end is not None:
                if src.pos >= end:
                    if src.pos > end:
                        raise DatasetError(f"element overruns its item at offset {src.pos}")
                    return
            elif top and src.at_end():
                return
            start = src.pos
            tag, vr, length = self.header(syntax)
            if tag >> 16 == 0xFFFE:
                if tag == ITEM_DELIMITATION and end is None and not top:
                    return
                raise DatasetError(
                    f"unexpected ({tag >> 16:04X},{tag & 0xFFFF:04X}) at offset {start}"
                )
            if top and self.stop_after is not None and tag > self.stop_after:
                return
            if top and tag == _PIXEL_DATA_TAG:
                self.ow_offset = _check_pixel_data(self.pixel_rule, vr, length, start)
            private = False
            if creators is not None and tag & 0x10000:
                element = tag & 0xFFFF
                if 0x10 <= element <= 0xFF and length <= _MAX_CREATOR:
                    raw = src.read(length)
                    creators[((tag >> 16) << 8) | element] = raw.decode("latin-1").strip(" \0")
                    if top and tag in self.wanted:
                        self.values[tag] = (vr, raw)
                        self.found[tag] = raw.decode("latin-1").rstrip("\0 ")
                    continue
                private = element >= 0x1000 and _private_sequence(tag, creators)
            self.value(syntax, tag, vr, length, depth, top, private)

    def value(
        self,
        syntax: _Syntax,
        tag: int,
        vr: bytes,
        length: int,
        depth: int,
        top: bool,
        private: bool = False,
    ) -> None:
        src = self.source
        is_sequence = vr == b"SQ" or (
            not syntax.explicit
            and (length == UNDEFINED_LENGTH or private or _is_dictionary_sequence(tag))
        )
        if is_sequence or (vr == b"UN" and length == UNDEFINED_LENGTH):
            # PS3.5 6.2.2: UN of undefined length holds a sequence in implicit VR LE.
            inner = syntax if is_sequence else _IMPLICIT_LE
            self.sequence(inner, length, depth + 1)
        elif length == UNDEFINED_LENGTH:
            if tag == _PIXEL_DATA_TAG and vr in (b"OB", b"OW"):
                self.fragments(syntax)
            else:
                raise DatasetError(f"undefined length on {_tag_text(tag)}")
        elif top and tag in self.wanted and length <= _MAX_WANTED_VALUE:
            raw = src.read(length)
            self.values[tag] = (vr, raw)
            self.found[tag] = raw.decode("latin-1").rstrip("\0 ")
        else:
            src.skip(length)

    def sequence(self, syntax: _Syntax, length: int, depth: int) -> None:
        if depth > MAX_SEQUENCE_DEPTH:
            raise DatasetError(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH}")
        src = self.source
        end = None if length == UNDEFINED_LENGTH else src.pos + length
        while True:
            if end is not None and src.pos >= end:
                if src.pos > end:
                    raise DatasetError(f"item overruns its sequence at offset {src.pos}")
                return
            start = src.pos
            tag, _vr, item_length = self.header(syntax)
            if tag == SEQUENCE_DELIMITATION and end is None:
                return
            if tag != ITEM:
                raise DatasetError(f"expected an item at offset {start}")
            item_end = None if item_length == UNDEFINED_LENGTH else src.pos + item_length
            self.elements(syntax, item_end, depth)

    def fragments(self, syntax: _Syntax) -> None:
        """Encapsulated pixel data (PS3.5 A.4): items of defined length, skipped unread."""
        src = self.source
        while True:
            start = src.pos
            tag, _vr, length = self.header(syntax)
            if tag == SEQUENCE_DELIMITATION:
                return
            if tag != ITEM or length == UNDEFINED_LENGTH:
                raise DatasetError(f"invalid pixel data fragment at offset {start}")
            src.skip(length)


class _BufferWalk:
    """The same walk as _Walker over a stream, for a data set held in memory.

    Small instances (the common case: hundreds per second) are checked before they
    ever touch the disk; one function call per element instead of several, and
    ``unpack_from`` on the buffer instead of reads, make this walk 1.5 to 2.3 times
    faster (CT_small.dcm: 154 -> 67 us).  Explicit and implicit VR have a loop each,
    and the explicit one takes what a VR means from one table look-up: 12 % less
    again (issue 21).  Accepts and refuses exactly what the stream walk does (a
    property test holds the two together).  One object per walk, its loops binding
    what they use to locals: cheaper to set up than nested closures.
    """

    __slots__ = (
        "buf",
        "found",
        "ow_offset",
        "pixel_rule",
        "size",
        "stop_after",
        "values",
        "wanted",
    )

    def __init__(
        self, buf: bytes, stop_after: int | None, pixel_rule: int, wanted: frozenset[int]
    ) -> None:
        self.buf = buf
        self.size = len(buf)
        self.stop_after = stop_after
        self.pixel_rule = pixel_rule
        self.wanted = wanted
        #: Wanted top-level values as text, and as (VR, raw bytes) (_summary).
        self.found: dict[int, str] = {}
        self.values: dict[int, tuple[bytes, bytes]] = {}
        self.ow_offset: int | None = None

    def header(self, pos: int, syntax: _Syntax) -> tuple[int, bytes, int, int]:
        buf, size = self.buf, self.size
        if pos + 8 > size:
            raise DatasetError(f"data set ends inside an element at offset {pos}")
        group, element = syntax.tag.unpack_from(buf, pos)
        tag = (group << 16) | element
        if not syntax.explicit or group == 0xFFFE:
            return tag, b"", syntax.u32.unpack_from(buf, pos + 4)[0], pos + 8
        vr = buf[pos + 4 : pos + 6]
        if not (vr.isalpha() and vr.isupper()):
            raise DatasetError(f"invalid VR {vr!r} in ({group:04X},{element:04X})")
        if vr in LONG_VRS:
            if pos + 12 > size:
                raise DatasetError(f"data set ends inside an element at offset {pos}")
            return tag, vr, syntax.u32.unpack_from(buf, pos + 8)[0], pos + 12
        return tag, vr, syntax.u16.unpack_from(buf, pos + 6)[0], pos + 8

    def elements(self, pos: int, syntax: _Syntax, end: int | None, depth: int) -> int:
        if syntax.explicit:
            return self.explicit_elements(pos, syntax, end, depth)
        return self.implicit_elements(pos, syntax, end, depth)

    def explicit_elements(self, pos: int, syntax: _Syntax, end: int | None, depth: int) -> int:
        # Explicit VR (PS3.5 7.1.2): the VR bytes say all, one unpack and one look-up
        # per element (this loop runs for every element of every instance).  Private
        # creators are not read: they only tell sequences in implicit VR.
        buf, size, wanted, found, values = (
            self.buf,
            self.size,
            self.wanted,
            self.found,
            self.values,
        )
        top = depth == 0
        stop_after = self.stop_after if top else None
        header = syntax.explicit_header.unpack_from
        u32 = syntax.u32.unpack_from
        kinds = _VR_KINDS
        undefined = UNDEFINED_LENGTH
        pixel_data = _PIXEL_DATA_TAG
        while True:
            if end is not None:
                if pos >= end:
                    if pos > end:
                        raise DatasetError(f"element overruns its item at offset {pos}")
                    return pos
            elif top and pos >= size:
                return pos
            start = pos
            if pos + 8 > size:
                raise DatasetError(f"data set ends inside an element at offset {pos}")
            group, element, vr, length = header(buf, pos)
            if group == 0xFFFE:
                # Items and delimiters have no VR in any transfer syntax (PS3.5 7.5).
                tag = (group << 16) | element
                if tag == ITEM_DELIMITATION and end is None and not top:
                    return pos + 8
                raise DatasetError(f"unexpected {_tag_text(tag)} at offset {start}")
            kind = kinds.get(vr)
            if kind is None:
                raise DatasetError(f"invalid VR {vr!r} in ({group:04X},{element:04X})")
            if kind:
                if pos + 12 > size:
                    raise DatasetError(f"data set ends inside an element at offset {pos}")
                length = u32(buf, pos + 8)[0]
                pos += 12
            else:
                pos += 8
            tag = (group << 16) | element
            if top:
                if stop_after is not None and tag > stop_after:
                    return pos
                if tag == pixel_data:
                    self.ow_offset = _check_pixel_data(self.pixel_rule, vr, length, start)
            if kind == _SQ_VR:
                pos = self.sequence(pos, syntax, length, depth + 1)
            elif length == undefined:
                if kind == _UN_VR:
                    pos = self.sequence(pos, _IMPLICIT_LE, length, depth + 1)
                elif tag == pixel_data and (vr == b"OB" or vr == b"OW"):
                    pos = self.fragments(pos, syntax)
                else:
                    raise DatasetError(f"undefined length on {_tag_text(tag)}")
            else:
                if pos + length > size:
                    raise DatasetError(f"value at offset {pos} runs past the end of the data set")
                if top and length <= _MAX_WANTED_VALUE and tag in wanted:
                    raw = buf[pos : pos + length]
                    values[tag] = (vr, raw)
                    found[tag] = raw.decode("latin-1").rstrip("\0 ")
                pos += length

    def implicit_elements(self, pos: int, syntax: _Syntax, end: int | None, depth: int) -> int:
        # Implicit VR (PS3.5 7.1.3) carries no VR: a value is a sequence when it has
        # undefined length, or the dictionary, or its private block's creator, says SQ.
        buf, size, wanted, found, values = (
            self.buf,
            self.size,
            self.wanted,
            self.found,
            self.values,
        )
        top = depth == 0
        stop_after = self.stop_after if top else None
        header = syntax.implicit_header.unpack_from
        creators: dict[int, str] | None = {} if _PRIVATE_SQ else None
        while True:
            if end is not None:
                if pos >= end:
                    if pos > end:
                        raise DatasetError(f"element overruns its item at offset {pos}")
                    return pos
            elif top and pos >= size:
                return pos
            start = pos
            if pos + 8 > size:
                raise DatasetError(f"data set ends inside an element at offset {pos}")
            group, element, length = header(buf, pos)
            pos += 8
            tag = (group << 16) | element
            if group == 0xFFFE:
                if tag == ITEM_DELIMITATION and end is None and not top:
                    return pos
                raise DatasetError(f"unexpected {_tag_text(tag)} at offset {start}")
            if stop_after is not None and tag > stop_after:
                return pos
            if tag == _PIXEL_DATA_TAG and top:
                self.ow_offset = _check_pixel_data(self.pixel_rule, b"", length, start)
            private = False
            if creators is not None and group & 1:
                if 0x10 <= element <= 0xFF and length <= _MAX_CREATOR:
                    if pos + length > size:
                        raise DatasetError(f"data set ends inside an element at offset {pos}")
                    raw = buf[pos : pos + length]
                    creators[(group << 8) | element] = raw.decode("latin-1").strip(" \0")
                    if top and tag in wanted:
                        values[tag] = (b"", raw)
                        found[tag] = raw.decode("latin-1").rstrip("\0 ")
                    pos += length
                    continue
                private = element >= 0x1000 and _private_sequence(tag, creators)
            if length == UNDEFINED_LENGTH or private or _is_dictionary_sequence(tag):
                pos = self.sequence(pos, syntax, length, depth + 1)
            else:
                if pos + length > size:
                    raise DatasetError(f"value at offset {pos} runs past the end of the data set")
                if top and tag in wanted and length <= _MAX_WANTED_VALUE:
                    raw = buf[pos : pos + length]
                    values[tag] = (b"", raw)
                    found[tag] = raw.decode("latin-1").rstrip("\0 ")
                pos += length

    def sequence(self, pos: int, syntax: _Syntax, length: int, depth: int) -> int:
        if depth > MAX_SEQUENCE_DEPTH:
            raise DatasetError(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH}")
        end = None if length == UNDEFINED_LENGTH else pos + length
        while True:
            if end is not None and pos >= end:
                if pos > end:
                    raise DatasetError(f"item overruns its sequence at offset {pos}")
                return pos
            start = pos
            tag, _vr, item_length, pos = self.header(pos, syntax)
            if tag == SEQUENCE_DELIMITATION and end is None:
                return pos
            if tag != ITEM:
                raise DatasetError(f"expected an item at offset {start}")
            item_end = None if item_length == UNDEFINED_LENGTH else pos + item_length
            pos = self.elements(pos, syntax, item_end, depth)

    def fragments(self, pos: int, syntax: _Syntax) -> int:
        size = self.size
        while True:
            start = pos
            tag, _vr, length, pos = self.header(pos, syntax)
            if tag == SEQUENCE_DELIMITATION:
                return pos
            if tag != ITEM or length == UNDEFINED_LENGTH:
                raise DatasetError(f"invalid pixel data fragment at offset {start}")
            if pos + length > size:
                raise DatasetError(f"value at offset {pos} runs past the end of the data set")
            pos += length


def scan_dataset(
    stream: BinaryIO,
    size: int,
    transfer_syntax_uid: str,
    *,
    stop_after: int | None = None,
    wanted: frozenset[int] = _WANTED,
    structure_only: bool = False,
) -> DatasetSummary:
    """Walk ``size`` bytes of a data set from ``stream`` in ``transfer_syntax_uid``.

    Raises DatasetError when the data set does not parse: truncated or overlong
    elements, a bad VR, stray delimiters, sequences nested deeper than
    MAX_SEQUENCE_DEPTH, a deflated stream that is corrupt or inflates beyond the limit,
    or no elements at all; a data set of odd length (PS3.5 7.1.1); top-level Pixel Data
    that contradicts the transfer syntax (native in an encapsulated syntax or the
    reverse, PS3.5 A.4).  With ``stop_after`` the walk ends at the first top-level
    element past that tag (a quick look for the Series Date, no full check, so no
    length check either).  ``wanted`` (from :func:`wanted_tags`) names the top-level
    attributes whose values the summary reports.  ``structure_only`` (``+B``) asks
    only whether the data set reads: no length and Pixel Data checks against the
    transfer syntax.
    """
    deflated = transfer_syntax_uid in DEFLATED_TRANSFER_SYNTAXES
    strict = stop_after is None and not structure_only
    if strict and not deflated:
        _check_even(size)
    if deflated:
        source: _Source = _InflatingSource(stream, size)
    else:
        source = _PlainSource(stream, size)
    syntax = _syntax_of(transfer_syntax_uid)
    if source.at_end():
        raise DatasetError("data set is empty")
    pixel_rule = _ANY_PIXELS if structure_only else _pixel_rule(transfer_syntax_uid)
    walker = _Walker(source, stop_after, pixel_rule, wanted)
    walker.elements(syntax, None, 0)
    if strict and deflated:
        # What counts is the inflated data set; the deflated stream itself may be of
        # odd length in files written without the padding of PS3.5 A.5.
        _check_even(source.pos)
    return _summary(walker.found, walker.values, syntax, walker.ow_offset)


def scan_buffer(
    data: bytes | bytearray | memoryview,
    transfer_syntax_uid: str,
    *,
    stop_after: int | None = None,
    wanted: frozenset[int] = _WANTED,
    structure_only: bool = False,
) -> DatasetSummary:
    """scan_dataset() for a data set held in memory: the same answers, faster."""
    if transfer_syntax_uid in DEFLATED_TRANSFER_SYNTAXES:
        return scan_dataset(
            io.BytesIO(data),
            len(data),
            transfer_syntax_uid,
            stop_after=stop_after,
            wanted=wanted,
            structure_only=structure_only,
        )
    if not len(data):
        raise DatasetError("data set is empty")
    if stop_after is None and not structure_only:
        _check_even(len(data))
    syntax = _syntax_of(transfer_syntax_uid)
    pixel_rule = _ANY_PIXELS if structure_only else _pixel_rule(transfer_syntax_uid)
    walk = _BufferWalk(bytes(data), stop_after, pixel_rule, wanted)
    walk.elements(0, syntax, None, 0)
    return _summary(walk.found, walk.values, syntax, walk.ow_offset)


def _syntax_of(transfer_syntax_uid: str) -> _Syntax:
    # Three encodings in all: built once (their packed formats are immutable).
    if transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN:
        return _IMPLICIT_LE
    return _EXPLICIT_BE if transfer_syntax_uid == EXPLICIT_VR_BIG_ENDIAN else _EXPLICIT_LE


def _summary(
    found: dict[int, str],
    values: dict[int, tuple[bytes, bytes]],
    syntax: _Syntax,
    ow_offset: int | None,
) -> DatasetSummary:
    series_date = found.get(SERIES_DATE_TAG)
    if series_date is not None and syntax.explicit and values[SERIES_DATE_TAG][0] != b"DA":
        series_date = None
    return DatasetSummary(
        sop_class_uid=found.get(SOP_CLASS_UID_TAG),
        sop_instance_uid=found.get(SOP_INSTANCE_UID_TAG),
        series_date=series_date,
        study_instance_uid=found.get(STUDY_INSTANCE_UID_TAG),
        patient_name=found.get(PATIENT_NAME_TAG),
        specific_character_set=found.get(SPECIFIC_CHARACTER_SET_TAG),
        series_instance_uid=found.get(SERIES_INSTANCE_UID_TAG),
        encapsulated_ow_offset=ow_offset,
        values=values,
    )
