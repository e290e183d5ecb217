"""Benchmark input: valid DICOM instances written with pydicom, each with its own UIDs.

Pixel data is random-ish (one random block per size, salted per instance or frame)
so that nothing along the way can shortcut it by compression or deduplication, and
so that generating a thousand files stays quick.  Only pydicom and the standard
library are needed (no numpy).  The large multi-frame instance is written
streaming: pydicom writes everything up to the Pixel Data element, then the frames
are appended block by block, so generating 1 GiB needs a few MB of memory.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    generate_uid,
)

#: Bytes per pixel: 16-bit grayscale, as CT images are (PS3.3 C.8.2.1.1.4).
BYTES_PER_PIXEL = 2


@dataclass(frozen=True)
class SeriesSpec:
    """A series of single-frame CT images of ``rows`` x ``columns`` 16-bit pixels."""

    count: int
    rows: int
    columns: int

    @property
    def pixel_bytes(self) -> int:
        return self.rows * self.columns * BYTES_PER_PIXEL


def square_side_for(pixel_bytes: int) -> int:
    """Side of the largest square 16-bit image whose pixel data fits ``pixel_bytes``."""
    side = int((pixel_bytes // BYTES_PER_PIXEL) ** 0.5)
    while (side + 1) * (side + 1) * BYTES_PER_PIXEL <= pixel_bytes:
        side += 1
    return max(side, 1)


def _file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    # PS3.10 7.1: the File Meta Information; pydicom adds the group length and version.
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _ct_dataset(
    *,
    study_uid: str,
    series_uid: str,
    frame_of_reference_uid: str,
    number: int,
    rows: int,
    columns: int,
) -> Dataset:
    """The attributes of the CT Image IOD (PS3.3 A.3) that a receiver or viewer reads."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240102"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = "BENCH0001"
    ds.Modality = "CT"
    ds.Manufacturer = "dcmrecv benchmark"
    ds.ReferringPhysicianName = ""
    ds.PatientName = "Bench^Mark"
    ds.PatientID = "BENCH"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.KVP = "120"
    ds.SliceThickness = "1.0"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [0.0, 0.0, float(number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [0.5, 0.5]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    return ds


def _noise_block(nbytes: int, seed: int) -> bytes:
    """``nbytes`` of random pixel data (rounded down to whole 16-bit pixels)."""
    return random.Random(seed).randbytes(nbytes - nbytes % BYTES_PER_PIXEL)


def _salted(block: bytes, salt: int) -> bytes:
    """``block`` with ``salt`` in its first 8 bytes: unique content at the cost of a copy."""
    salted = bytearray(block)
    if len(salted) >= 8:
        struct.pack_into("<Q", salted, 0, salt)
    return bytes(salted)


def write_series(directory: Path, spec: SeriesSpec, *, seed: int = 0) -> list[Path]:
    """Write ``spec.count`` CT images of one series into ``directory``; return their paths.

    Every instance gets a new SOP Instance UID; the pixel data of instance ``n`` is a
    shared random block with ``n`` in its first pixels, so no two are byte-identical.
    """
    directory.mkdir(parents=True, exist_ok=True)
    base = _noise_block(spec.pixel_bytes, seed)
    study_uid, series_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    paths: list[Path] = []
    for number in range(1, spec.count + 1):
        ds = _ct_dataset(
            study_uid=study_uid,
            series_uid=series_uid,
            frame_of_reference_uid=for_uid,
            number=number,
            rows=spec.rows,
            columns=spec.columns,
        )
        ds.PixelData = _salted(base, number)
        ds.file_meta = _file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
        path = directory / f"CT{number:06d}.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def multiframe_frame_count(total_pixel_bytes: int, rows: int, columns: int) -> int:
    """Whole frames of ``rows`` x ``columns`` 16-bit pixels in ``total_pixel_bytes`` (>= 1)."""
    return max(1, total_pixel_bytes // (rows * columns * BYTES_PER_PIXEL))


def _pixel_data_header(length: int) -> bytes:
    # PS3.5 7.1.2: explicit VR little endian, OW has a 2-byte reserved field and a
    # 4-byte length; the length must be even and below the undefined length 0xFFFFFFFF.
    if length % 2 or length >= 0xFFFFFFFF:
        raise ValueError(f"Pixel Data length {length} cannot be encoded")
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length)


def _frames(frame: bytes, count: int) -> Iterator[bytes]:
    for index in range(count):
        yield _salted(frame, index)


def write_large_multiframe(
    path: Path, total_pixel_bytes: int, *, rows: int = 512, columns: int = 512, seed: int = 1
) -> Path:
    """Write one Multi-frame Grayscale Word Secondary Capture instance, streaming its frames.

    PS3.3 A.8.3 (Multi-frame Grayscale Word SC Image IOD).  The pixel data holds as
    many whole ``rows`` x ``columns`` frames as fit in ``total_pixel_bytes``.
    """
    frames = multiframe_frame_count(total_pixel_bytes, rows, columns)
    ds = _ct_dataset(
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        frame_of_reference_uid=generate_uid(),
        number=1,
        rows=rows,
        columns=columns,
    )
    ds.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.NumberOfFrames = frames
    # PS3.3 C.7.6.6: Frame Increment Pointer -> Frame Time (0018,1063).
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = "100"
    for keyword in ("KVP", "SliceThickness", "RescaleIntercept", "RescaleSlope"):
        delattr(ds, keyword)
    ds.file_meta = _file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    # Everything before Pixel Data (7FE0,0010), which is the last element we write.
    head = BytesIO()
    dcmwrite(head, ds, enforce_file_format=True)
    frame = _noise_block(rows * columns * BYTES_PER_PIXEL, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(head.getvalue())
        out.write(_pixel_data_header(frames * len(frame)))
        for chunk in _frames(frame, frames):
            out.write(chunk)
    return path


def split_into(paths: list[Path], parts: int, root: Path) -> list[Path]:
    """Hard-link ``paths`` round-robin into ``parts`` sub-directories of ``root``.

    Used by the concurrent scenario: each sender gets a directory of its own, and the
    instances stay distinct across senders (no file names collide at the receiver).
    """
    if parts < 1:
        raise ValueError("parts must be >= 1")
    directories = [root / f"part{index}" for index in range(parts)]
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
    for index, source in enumerate(paths):
        target = directories[index % parts] / source.name
        try:
            target.hardlink_to(source)
        except OSError:
            target.write_bytes(source.read_bytes())
    return directories
