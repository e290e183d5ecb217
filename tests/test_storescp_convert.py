"""storescp's output conversions (dcmrecv.storage.convert), read back with pydicom."""

from __future__ import annotations

import copy
import io
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from dcmrecv.storage.convert import GroupLength, OutputEncoding, configure_pydicom, convert
from dcmrecv.storage.filemeta import build_file_meta
from dcmrecv.storage.writer import ConversionError

IMPLICIT, LE, BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


@pytest.fixture(autouse=True)
def _pydicom_as_storescp() -> None:
    configure_pydicom(convert_un=False)


def received_file(tmp_path: Path, name: str, syntax: str) -> tuple[Path, Dataset]:
    """A file as our receiver stores it: our file meta, then the data set in ``syntax``."""
    original = pydicom.dcmread(str(get_testdata_file(name, download=False)))
    encoded = copy.deepcopy(original)
    if syntax == BE and "PixelData" in encoded:
        # pydicom writes OW values as they are: give it big endian words.
        encoded.PixelData = original.pixel_array.byteswap().tobytes()
    buffer = DicomBytesIO()
    buffer.is_little_endian = syntax != BE
    buffer.is_implicit_VR = syntax == IMPLICIT
    write_dataset(buffer, encoded)
    meta = build_file_meta(
        sop_class_uid=str(original.SOPClassUID),
        sop_instance_uid=str(original.SOPInstanceUID),
        transfer_syntax_uid=syntax,
        source_ae_title="SENDER",
    )
    path = tmp_path / "received.part"
    path.write_bytes(meta + buffer.getvalue())
    return path, original


def run(path: Path, received: str, encoding: OutputEncoding) -> bytes:
    target = io.BytesIO()
    with path.open("rb") as source:
        convert(source, str(path), received, encoding, target)  # type: ignore[arg-type]
    return target.getvalue()


def read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


@pytest.mark.parametrize("received", [IMPLICIT, LE, BE])
@pytest.mark.parametrize("wanted", [IMPLICIT, LE, BE, DEFLATED])
def test_output_transfer_syntax_keeps_every_value(
    tmp_path: Path, received: str, wanted: str
) -> None:
    path, original = received_file(tmp_path, "CT_small.dcm", received)
    result = read(run(path, received, OutputEncoding(transfer_syntax=wanted)))
    assert result.file_meta.TransferSyntaxUID == wanted
    assert result.file_meta.SourceApplicationEntityTitle == "SENDER"
    assert (result.pixel_array == original.pixel_array).all()
    assert result.PatientName == original.PatientName
    assert result.SOPInstanceUID == original.SOPInstanceUID
    assert result.ImagePositionPatient == original.ImagePositionPatient


def test_deflated_output_is_raw_deflate_after_the_meta_header(tmp_path: Path) -> None:
    path, original = received_file(tmp_path, "rtplan.dcm", IMPLICIT)
    data = run(path, IMPLICIT, OutputEncoding(transfer_syntax=DEFLATED, compression_level=9))
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")
    inflated = zlib.decompress(data[meta_end:], -15)
    plain = pydicom.dcmread(
        io.BytesIO(inflated), force=True, specific_tags=None
    )  # a bare explicit VR LE data set
    assert plain.SOPInstanceUID == original.SOPInstanceUID


def test_write_dataset_only_drops_preamble_and_meta(tmp_path: Path) -> None:
    path, original = received_file(tmp_path, "CT_small.dcm", LE)
    received = path.read_bytes()
    data = run(path, LE, OutputEncoding(write_meta=False))
    assert b"DICM" not in data[:200]
    assert received.endswith(data)
    assert read(data).SOPInstanceUID == original.SOPInstanceUID


def test_write_dataset_with_another_syntax(tmp_path: Path) -> None:
    path, original = received_file(tmp_path, "CT_small.dcm", LE)
    data = run(path, LE, OutputEncoding(write_meta=False, transfer_syntax=IMPLICIT))
    assert data[:4] == b"\x08\x00\x05\x00"  # (0008,0005), no preamble
    dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    assert dataset.SOPInstanceUID == original.SOPInstanceUID


def test_group_length_create_and_remove(tmp_path: Path) -> None:
    path, _original = received_file(tmp_path, "CT_small.dcm", LE)
    created = read(run(path, LE, OutputEncoding(group_length=GroupLength.CREATE, reencode=True)))
    assert (0x0008, 0x0000) in created and (0x0028, 0x0000) in created
    # The value is the length of the rest of group 0008 as encoded (PS3.5 7.2).
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    group = Dataset()
    for element in created.group_dataset(0x0008):
        if element.tag.element:
            group.add(element)
    write_dataset(buffer, group)
    assert created[0x0008, 0x0000].value == len(buffer.getvalue())
    removed = read(run(path, LE, OutputEncoding(group_length=GroupLength.REMOVE, reencode=True)))
    assert not any(tag.element == 0 for tag in list(removed.keys()))


def test_sequence_lengths_explicit_and_undefined(tmp_path: Path) -> None:
    path, _original = received_file(tmp_path, "rtplan.dcm", IMPLICIT)
    explicit = run(path, IMPLICIT, OutputEncoding(transfer_syntax=LE, undefined_lengths=False))
    undefined = run(path, IMPLICIT, OutputEncoding(transfer_syntax=LE, undefined_lengths=True))
    delimiter = b"\xfe\xff\xdd\xe0"  # sequence delimitation item (FFFE,E0DD)
    assert delimiter not in explicit
    assert delimiter in undefined
    assert read(explicit).BeamSequence[0].BeamName == read(undefined).BeamSequence[0].BeamName


def test_file_padding_makes_the_length_a_multiple(tmp_path: Path) -> None:
    path, _original = received_file(tmp_path, "CT_small.dcm", LE)
    data = run(path, LE, OutputEncoding(file_padding=256, reencode=True))
    assert len(data) % 256 == 0
    assert (0xFFFC, 0xFFFC) in read(data)


def item_lengths(data: bytes) -> list[int]:
    """The lengths of the explicit-length items in a little endian encoding."""
    lengths = []
    start = data.find(b"\xfe\xff\x00\xe0")  # item tag (FFFE,E000)
    while start != -1:
        lengths.append(int.from_bytes(data[start + 4 : start + 8], "little"))
        start = data.find(b"\xfe\xff\x00\xe0", start + 8)
    return lengths


@pytest.mark.parametrize("syntax", [LE, IMPLICIT])
@pytest.mark.parametrize("item_pad", [8, 16, 64])
def test_item_padding_pads_every_item(tmp_path: Path, syntax: str, item_pad: int) -> None:
    path, original = received_file(tmp_path, "rtplan.dcm", IMPLICIT)
    encoding = OutputEncoding(
        transfer_syntax=syntax, file_padding=32, item_padding=item_pad, reencode=True
    )
    data = run(path, IMPLICIT, encoding)
    plain = OutputEncoding(transfer_syntax=syntax, reencode=True)
    unpadded = item_lengths(run(path, IMPLICIT, plain))
    lengths = item_lengths(data)
    assert len(lengths) == len(unpadded) > 10  # sequences three deep in rtplan
    assert [length % item_pad for length in lengths] == [0] * len(lengths)
    assert any(padded > plain for padded, plain in zip(lengths, unpadded, strict=True))
    assert len(data) % 32 == 0
    beam = read(data).BeamSequence[0]
    assert beam.BeamName == original.BeamSequence[0].BeamName
    assert beam.ControlPointSequence[1].ControlPointIndex == 1


def test_item_padding_replaces_received_padding(tmp_path: Path) -> None:
    path, _original = received_file(tmp_path, "rtplan.dcm", LE)
    once = run(path, LE, OutputEncoding(item_padding=16, reencode=True))
    again_path = tmp_path / "again.part"
    again_path.write_bytes(once)
    twice = run(again_path, LE, OutputEncoding(item_padding=16, reencode=True))
    assert twice == once  # received item padding is dropped, not padded again
    unpadded = run(again_path, LE, OutputEncoding(reencode=True))
    assert b"\xfc\xff\xfc\xff" not in unpadded  # -p: no padding anywhere


def test_disabled_new_vrs_become_ob(tmp_path: Path) -> None:
    dataset = pydicom.dcmread(str(get_testdata_file("CT_small.dcm", download=False)))
    dataset.add_new(0x00081040, "UT", "long text value")  # not UT in the dictionary: LO
    dataset.add_new(0x00091010, "UN", b"\x01\x02")
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, dataset)
    meta = build_file_meta(
        sop_class_uid=str(dataset.SOPClassUID),
        sop_instance_uid=str(dataset.SOPInstanceUID),
        transfer_syntax_uid=LE,
    )
    path = tmp_path / "r.part"
    path.write_bytes(meta + buffer.getvalue())
    result = read(run(path, LE, OutputEncoding(new_vrs=False, reencode=True)))
    assert result[0x00081040].VR == "OB"
    assert bytes(result[0x00081040].value).rstrip(b" ") == b"long text value"
    assert result[0x00091010].VR == "OB"


def test_compressed_data_cannot_become_uncompressed(tmp_path: Path) -> None:
    source = Path(str(get_testdata_file("SC_jpeg_no_color_transform.dcm", download=False)))
    original = pydicom.dcmread(source)
    assert original.file_meta.TransferSyntaxUID == JPEG_BASELINE
    with pytest.raises(ConversionError, match="no conversion from"):
        run(source, JPEG_BASELINE, OutputEncoding(transfer_syntax=LE))


def test_compressed_data_keeps_its_syntax_for_other_conversions(tmp_path: Path) -> None:
    source = Path(str(get_testdata_file("SC_jpeg_no_color_transform.dcm", download=False)))
    original = pydicom.dcmread(source)
    data = run(
        source, JPEG_BASELINE, OutputEncoding(group_length=GroupLength.REMOVE, reencode=True)
    )
    result = read(data)
    assert result.file_meta.TransferSyntaxUID == JPEG_BASELINE
    assert result.PixelData == original.PixelData


def test_unparsable_file_is_a_conversion_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.part"
    path.write_bytes(b"\0" * 10)
    with pytest.raises(ConversionError):
        run(path, LE, OutputEncoding(write_meta=False))
