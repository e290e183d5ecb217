"""Orthanc (Debian's orthanc package) as a real peer of our receiver (tests/orthanc.py).

Orthanc's C-STORE SCU is DCMTK's network library driven by Orthanc's own job engine: it
proposes every storage SOP class it knows (126 presentation contexts) and sends each
instance in its original transfer syntax when the receiver accepts it.  This is the
harness the storage commitment tests build on: Orthanc stores into us, then asks us to
commit.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from dcmrecv.negotiation.asconfig import Profile, load_profile
from tests.conftest import running_receiver
from tests.orthanc import OrthancFactory, orthanc  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent

#: pydicom's test files Orthanc sends: two SOP classes, and one kept JPEG 2000 on the way.
SENT = (
    "CT_small.dcm",  # CT Image Storage, Explicit VR Little Endian
    "MR_small.dcm",  # MR Image Storage, Explicit VR Little Endian
    "JPEG2000.dcm",  # Secondary Capture, JPEG 2000
)


def pydicom_file(name: str) -> str:
    path = get_testdata_file(name, download=False)
    assert isinstance(path, str), f"pydicom's test file {name} is missing"
    return path


@pytest.fixture
def default_profile() -> Profile:
    return load_profile(ROOT / "storescp.cfg", "Default")


def test_orthanc_stores_instances_in_our_receiver(
    tmp_path: Path,
    default_profile: Profile,
    orthanc: OrthancFactory,  # noqa: F811
) -> None:
    """Orthanc's synchronous C-STORE job reports every instance sent, and each one is in
    our output directory as Orthanc had it: same SOP Instance UID, transfer syntax and
    pixel data."""
    output = tmp_path / "out"
    output.mkdir()
    files = [pydicom_file(name) for name in SENT]
    originals = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, files)}

    with running_receiver(output_directory=output, profile=default_profile) as server:
        peer = orthanc(modalities={"dcmrecv": ("DCMRECV", "127.0.0.1", server.port)})
        summary = peer.store("dcmrecv", [peer.upload(path) for path in files])

    assert summary["InstancesCount"] == len(SENT)
    assert summary["FailedInstancesCount"] == 0
    stored = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, output.iterdir())}
    assert sorted(stored) == sorted(originals)
    for uid, original in originals.items():
        received = stored[uid]
        assert received.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert received.SOPClassUID == original.SOPClassUID
        assert received.PixelData == original.PixelData
