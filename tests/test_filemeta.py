"""The Part 10 header: what pydicom (and so any reader) finds in it."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pydicom
import pytest

from dcmrecv import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dcmrecv.storage.filemeta import build_file_meta

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
#: (0008,0016) SOP Class UID = CT, then (0008,0018) SOP Instance UID = 1.2.3 (odd, padded).
DATASET = (
    b"\x08\x00\x16\x00UI\x1a\x00" + CT.encode() + b"\x00" + b"\x08\x00\x18\x00UI\x06\x001.2.3\x00"
)


def read_back(header: bytes) -> pydicom.FileDataset:
    return pydicom.dcmread(io.BytesIO(header + DATASET))


def test_header_parses_back_with_every_element() -> None:
    header = build_file_meta(
        sop_class_uid=CT,
        sop_instance_uid="1.2.3",
        transfer_syntax_uid=EXPLICIT_LE,
        source_ae_title="STORESCU",
    )
    assert header[:128] == bytes(128)
    assert header[128:132] == b"DICM"
    ds = read_back(header)
    meta = ds.file_meta
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.MediaStorageSOPClassUID == CT
    assert meta.MediaStorageSOPInstanceUID == "1.2.3"
    assert meta.TransferSyntaxUID == EXPLICIT_LE
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert meta.SourceApplicationEntityTitle == "STORESCU"
    # The group length counts exactly the bytes after it up to the data set.
    (group_length,) = struct.unpack("<I", header[140:144])
    assert 144 + group_length == len(header)
    assert meta.FileMetaInformationGroupLength == group_length
    assert ds.SOPInstanceUID == "1.2.3"


def test_every_value_has_even_length() -> None:
    header = build_file_meta(
        sop_class_uid="1.2.345",
        sop_instance_uid="1.2.3",
        transfer_syntax_uid="1.2.840.10008.1.2",
        source_ae_title="ODD",
    )
    offset = 132
    while offset < len(header):
        vr = header[offset + 4 : offset + 6]
        if vr == b"OB":
            (length,) = struct.unpack("<I", header[offset + 8 : offset + 12])
            offset += 12 + length
        else:
            (length,) = struct.unpack("<H", header[offset + 6 : offset + 8])
            offset += 8 + length
        assert length % 2 == 0
    assert offset == len(header)


@pytest.mark.parametrize("title", [None, "", "   "])
def test_source_ae_title_is_left_out_when_there_is_none(title: str | None) -> None:
    header = build_file_meta(
        sop_class_uid=CT,
        sop_instance_uid="1.2.3",
        transfer_syntax_uid=EXPLICIT_LE,
        source_ae_title=title,
    )
    assert "SourceApplicationEntityTitle" not in read_back(header).file_meta


def test_uid_padding_from_the_request_is_not_doubled() -> None:
    header = build_file_meta(
        sop_class_uid=CT + "\0", sop_instance_uid="1.2.3\0", transfer_syntax_uid=EXPLICIT_LE
    )
    assert read_back(header).file_meta.MediaStorageSOPInstanceUID == "1.2.3"
    assert b"1.2.3\x00\x00" not in header


def test_deflated_transfer_syntax_is_recorded_as_received(tmp_path: Path) -> None:
    header = build_file_meta(
        sop_class_uid=CT, sop_instance_uid="1.2.3", transfer_syntax_uid="1.2.840.10008.1.2.1.99"
    )
    (tmp_path / "f.dcm").write_bytes(header)
    meta = pydicom.filereader.read_file_meta_info(tmp_path / "f.dcm")
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"


def test_value_too_long_for_a_16_bit_length_is_refused() -> None:
    with pytest.raises(ValueError):
        build_file_meta(
            sop_class_uid=CT, sop_instance_uid="1" * 70000, transfer_syntax_uid=EXPLICIT_LE
        )
