"""storescp's output conversions: re-encode a received file with pydicom.

storescp.man, "output options": ``+t= +te +tb +ti +td`` (output transfer syntax),
``+F/-F`` (with or without file meta information), ``+g= +g -g`` (group lengths),
``+e/-e`` (explicit or undefined sequence and item lengths), ``-p/+p f i``
(trailing padding), ``+u/-u`` (post-1993 VRs), ``-uc/+uc`` (UN with a known VR) and
``+cl`` (deflate level).  DCMTK always re-encodes in normal mode; we keep the
received bytes unless one of these options asks for something else (README), and
then re-encode here, after the whole instance is on disk:

* The received file is read with ``pydicom.dcmread`` with large values deferred
  (read again from the file when they are written), so memory grows with the
  largest single value.  Deflated data sets are inflated in memory, and a deflated
  output, sequences with explicit lengths and a group that needs its length are
  encoded in memory (up to 64 MB, then in a temporary file) before they are written:
  this path may use much more memory than receiving does.
* Encapsulated (compressed) pixel data cannot be decompressed here, as in DCMTK's
  storescp (it has no decoders registered): asking for an uncompressed output
  transfer syntax then fails for that instance (ConversionError).

What pydicom can and cannot write (said in the help and README):

* ``+p f i`` pads the file to a multiple of ``f`` bytes and every item, at every
  depth, to a multiple of ``i`` bytes with Data Set Trailing Padding (FFFC,FFFC), as
  DCMTK's DcmItem::computeGroupLengthAndPadding() does: pydicom writes a padding
  element like any other, and the item's length is measured with pydicom's own
  encoding of it, innermost items first.  Received padding is dropped (``-p``, the
  default, drops it everywhere).
* Group lengths are created (``+g``) or recalculated (``+g=``) in the top-level data
  set only.  In items, pydicom's writer never writes group length elements (it skips
  them as retired, PS3.5 7.2), so nested group lengths are dropped by any conversion;
  writing them would mean encoding items without pydicom.
"""

from __future__ import annotations

import array
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from typing import IO, BinaryIO, Final

import pydicom
import pydicom.config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO, DicomFileLike
from pydicom.filewriter import (
    correct_ambiguous_vr,
    write_data_element,
    write_dataset,
    write_file_meta_info,
)
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from dcmrecv.negotiation.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    uid_name,
)
from dcmrecv.storage.encoding import GroupLength as GroupLength
from dcmrecv.storage.encoding import OutputEncoding as OutputEncoding
from dcmrecv.storage.model import ConversionError, InstanceFacts

#: Transfer syntaxes whose data set is native (not encapsulated): the ones we can write.
NATIVE_TRANSFER_SYNTAXES: Final = frozenset(
    {
        IMPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    }
)
#: Values above this size stay in the received file until they are written.
DEFER_SIZE: Final = 64 * 1024
#: In-memory buffers (deflate input, group lengths) spill to a temporary file beyond this.
SPOOL_SIZE: Final = 64 * 1024 * 1024
#: Post-1993 VRs that ``-u`` writes as OB (DCMTK's dcmDisableGenerationOfNewVRs()).
NEW_VRS: Final = frozenset({"UN", "UT", "UC", "UR", "OF", "OD", "OL", "OV", "SV", "UV"})
#: Word sizes of the VRs whose bytes pydicom keeps in the received byte order.
_SWAP_WIDTH: Final = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_SWAP_TYPECODE: Final = {2: "H", 4: "I", 8: "Q"}
_PADDING_TAG: Final = Tag(0xFFFC, 0xFFFC)
_PREAMBLE: Final = bytes(128) + b"DICM"
#: File meta information group length element: tag, "UL", length 4, then the value.
_META_LENGTH_HEADER: Final = struct.Struct("<HH2sHI")


class EncodingConverter:
    """The writer's converter (``writer.Converter``) for storescp's output options."""

    def __init__(self, encoding: OutputEncoding) -> None:
        self.encoding = encoding

    def changes(self, facts: InstanceFacts) -> bool:
        return self.encoding.changes(facts.transfer_syntax_uid)

    def convert(
        self, source: BinaryIO, source_path: str, facts: InstanceFacts, target: BinaryIO
    ) -> None:
        convert(source, source_path, facts.transfer_syntax_uid, self.encoding, target)


def configure_pydicom(convert_un: bool) -> None:
    """Set pydicom's process-wide reading options for ``-uc``/``+uc``.

    pydicom replaces UN by the dictionary VR by default, which is DCMTK's ``+uc``;
    DCMTK's default (``-uc``) keeps UN.  Called once, before any association.
    """
    pydicom.config.replace_un_with_known_vr = convert_un
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE


def convert(
    source: BinaryIO,
    source_path: str,
    received_syntax: str,
    encoding: OutputEncoding,
    target: BinaryIO,
) -> None:
    """Write the received Part 10 file ``source`` to ``target`` as ``encoding`` asks.

    ``source`` is positioned at its start (preamble) and was written by our receiver
    (so its file meta information starts with the group length).  ``source_path``
    names the same file, for pydicom's deferred reads.  Raises ConversionError when
    the data set cannot be written as asked.
    """
    if not encoding.reencodes(received_syntax):
        if encoding.write_meta:
            shutil.copyfileobj(source, target, 1024 * 1024)
        else:
            _copy_data_set(source, target)  # -F alone: drop preamble and file meta
        return
    syntax = encoding.target_syntax(received_syntax)
    if syntax not in NATIVE_TRANSFER_SYNTAXES and syntax != received_syntax:
        raise ConversionError(f"no conversion to {uid_name(syntax)} possible")
    if received_syntax not in NATIVE_TRANSFER_SYNTAXES and syntax != received_syntax:
        raise ConversionError(
            f"no conversion from {uid_name(received_syntax)} to {uid_name(syntax)} possible"
        )
    try:
        dataset = pydicom.dcmread(source_path, defer_size=DEFER_SIZE, force=True)
    except Exception as exc:  # pydicom raises many kinds for a bad file
        raise ConversionError(f"cannot read received data set: {exc}") from None
    try:
        _write(dataset, received_syntax, syntax, encoding, target)
    except ConversionError:
        raise
    except (ValueError, TypeError, KeyError, NotImplementedError, struct.error) as exc:
        raise ConversionError(f"cannot encode data set: {exc}") from None


def _copy_data_set(source: BinaryIO, target: BinaryIO) -> None:
    head = source.read(len(_PREAMBLE) + _META_LENGTH_HEADER.size)
    if len(head) < len(_PREAMBLE) + _META_LENGTH_HEADER.size or head[128:132] != b"DICM":
        raise ConversionError("received file has no file meta information")
    group, element, vr, _size, length = _META_LENGTH_HEADER.unpack_from(head, len(_PREAMBLE))
    if (group, element, vr) != (0x0002, 0x0000, b"UL"):
        raise ConversionError("received file meta information has no group length")
    source.seek(length, 1)
    shutil.copyfileobj(source, target, 1024 * 1024)


def _write(
    dataset: Dataset, received: str, syntax: str, encoding: OutputEncoding, target: BinaryIO
) -> None:
    little = syntax != EXPLICIT_VR_BIG_ENDIAN
    implicit = syntax == IMPLICIT_VR_LITTLE_ENDIAN
    received_little = received != EXPLICIT_VR_BIG_ENDIAN
    correct_ambiguous_vr(dataset, little)
    _prepare(
        dataset,
        swap=little != received_little,
        old_vrs=not encoding.new_vrs and not implicit,
        undefined=encoding.undefined_lengths,
        little=little,
    )
    if encoding.item_padding:
        _pad_items(dataset, encoding.item_padding, little=little, implicit=implicit)
    if encoding.write_meta:
        meta = FileMetaDataset(dataset.file_meta)
        meta.TransferSyntaxUID = UID(syntax)
        target.write(_PREAMBLE)
        meta_fp = DicomFileLike(target)
        meta_fp.is_little_endian, meta_fp.is_implicit_VR = True, False
        write_file_meta_info(meta_fp, meta, enforce_standard=False)
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        # PS3.5 A.5: the whole data set, Explicit VR Little Endian, raw deflate.
        with tempfile.SpooledTemporaryFile(SPOOL_SIZE) as plain:
            _write_data_set(dataset, plain, little=True, implicit=False, encoding=encoding)
            plain.seek(0)
            compressor = zlib.compressobj(encoding.compression_level, zlib.DEFLATED, -15)
            for chunk in iter(lambda: plain.read(1024 * 1024), b""):
                target.write(compressor.compress(chunk))
            target.write(compressor.flush())
        return
    _write_data_set(dataset, target, little=little, implicit=implicit, encoding=encoding)
    if encoding.file_padding:
        _pad(target, encoding.file_padding, implicit=implicit, little=little)


def _prepare(dataset: Dataset, *, swap: bool, old_vrs: bool, undefined: bool, little: bool) -> None:
    """Fix the byte order of word values, old VRs and sequence lengths, recursively."""
    for tag in list(dataset.keys()):
        if tag == _PADDING_TAG:
            # DCMTK drops received Data Set Trailing Padding (-p) or makes its own (+p).
            del dataset[tag]
            continue
        element = dataset[tag]
        if element.VR == "SQ":
            element.is_undefined_length = undefined
            for item in element.value:
                item.is_undefined_length_sequence_item = undefined
                _prepare(item, swap=swap, old_vrs=old_vrs, undefined=undefined, little=little)
            continue
        width = _SWAP_WIDTH.get(str(element.VR))
        if swap and width and isinstance(element.value, bytes) and not element.is_undefined_length:
            element.value = _swapped(element.value, width)
        if old_vrs and element.VR in NEW_VRS and not element.is_undefined_length:
            dataset[tag] = DataElement(tag, "OB", _value_bytes(element, little))


def _pad_items(dataset: Dataset, multiple: int, *, little: bool, implicit: bool) -> None:
    """Pad every item below ``dataset``, innermost first (``+p f i``'s ``i``).

    DCMTK's DcmItem::computeGroupLengthAndPadding() pads items of every depth to the
    item padding length; an inner item's padding lengthens the item around it, so
    inner items are padded before their parents are measured.
    """
    for tag in list(dataset.keys()):
        element = dataset[tag]
        if element.VR != "SQ":
            continue
        for item in element.value:
            _pad_items(item, multiple, little=little, implicit=implicit)
            _pad_item(item, multiple, little=little, implicit=implicit)


def _encoder(little: bool, implicit: bool) -> DicomBytesIO:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = little, implicit
    return buffer


def _pad_item(item: Dataset, multiple: int, *, little: bool, implicit: bool) -> None:
    """Add (FFFC,FFFC) so that the item's value length is a multiple of ``multiple``.

    As DCMTK: nothing when it already is; otherwise the padding element (header
    included) takes the missing bytes, plus ``multiple`` as often as its header needs.
    """
    buffer = _encoder(little, implicit)
    write_dataset(buffer, item, item._character_set)
    padding = multiple - len(buffer.getvalue()) % multiple
    if padding == multiple:
        return
    header = 8 if implicit else 12
    while padding < header:
        padding += multiple
    item[_PADDING_TAG] = DataElement(_PADDING_TAG, "OB", bytes(padding - header))


def _swapped(value: bytes, width: int) -> bytes:
    usable = len(value) - len(value) % width
    words = array.array(_SWAP_TYPECODE[width])
    words.frombytes(value[:usable])
    words.byteswap()
    return words.tobytes() + value[usable:]


def _value_bytes(element: DataElement, little: bool) -> bytes:
    """The encoded value of ``element`` (explicit VR), without its header."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = little, False
    write_data_element(buffer, element)
    # Every VR in NEW_VRS has the 12-byte header: tag, VR, 2 reserved, 32-bit length.
    return buffer.getvalue()[12:]


def _groups(dataset: Dataset) -> Iterator[tuple[int, list[BaseTag], bool]]:
    """(group, element tags without the group length, had a group length) in order."""
    current: int | None = None
    tags: list[BaseTag] = []
    had_length = False
    for tag in sorted(dataset.keys()):
        if tag.group == 0x0002:
            continue  # file meta information belongs in the meta header only
        if tag.group != current:
            if current is not None:
                yield current, tags, had_length
            current, tags, had_length = tag.group, [], False
        if tag.element == 0:
            had_length = True
        else:
            tags.append(tag)
    if current is not None:
        yield current, tags, had_length


def _write_data_set(
    dataset: Dataset,
    target: BinaryIO | IO[bytes],
    *,
    little: bool,
    implicit: bool,
    encoding: OutputEncoding,
) -> None:
    fp = DicomFileLike(target)
    fp.is_little_endian, fp.is_implicit_VR = little, implicit
    charset = dataset.get("SpecificCharacterSet", None)
    encodings = list(charset) if isinstance(charset, list | tuple) else charset
    for group, tags, had_length in _groups(dataset):
        wanted = encoding.group_length is GroupLength.CREATE or (
            encoding.group_length is GroupLength.RECALC and had_length
        )
        if not wanted:
            for tag in tags:
                write_data_element(fp, dataset[tag], encodings)
            continue
        with tempfile.SpooledTemporaryFile(SPOOL_SIZE) as spool:
            group_fp = DicomFileLike(spool)
            group_fp.is_little_endian, group_fp.is_implicit_VR = little, implicit
            for tag in tags:
                write_data_element(group_fp, dataset[tag], encodings)
            length = spool.tell()
            write_data_element(fp, DataElement(Tag(group, 0), "UL", length))
            spool.seek(0)
            shutil.copyfileobj(spool, target, 1024 * 1024)


def _pad(target: BinaryIO, multiple: int, *, implicit: bool, little: bool) -> None:
    """Append (FFFC,FFFC) so that the file length is a multiple of ``multiple``."""
    header = 8 if implicit else 12
    end = target.tell() + header
    padding = (multiple - end % multiple) % multiple
    fp = DicomFileLike(target)
    fp.is_little_endian, fp.is_implicit_VR = little, implicit
    write_data_element(fp, DataElement(_PADDING_TAG, "OB", bytes(padding)))
