"""Orthanc (Debian's orthanc package) as a real peer of our receiver (tests/orthanc.py).

Orthanc's C-STORE SCU is DCMTK's network library driven by Orthanc's job engine: its
association proposes 63 storage SOP classes in 126 presentation contexts.  This is the
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
TRAILING_PADDING = 0xFFFCFFFC

#: pydicom's test files Orthanc sends: three SOP classes, both uncompressed little endian
#: transfer syntaxes.  No compressed file: Orthanc 1.12 (Debian 13) does not open a new
#: association for a transfer syntax the first one did not negotiate, it transcodes, and
#: cannot decode JPEG 2000 with Debian's DCMTK, so such a file fails before it is sent.
SENT = (
    "CT_small.dcm",  # CT Image Storage, Explicit VR Little Endian
    "MR_small.dcm",  # MR Image Storage, Explicit VR Little Endian
    "rtplan.dcm",  # RT Plan Storage, Implicit VR Little Endian
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
    our output directory with the data set Orthanc had.  (Not always in the same transfer
    syntax: Orthanc 1.12 sends the Implicit VR file as Explicit VR, the syntax it
    negotiated for the first instance.)"""
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
        # Orthanc (DCMTK) drops the trailing padding (FFFC,FFFC) pydicom's CT and MR files
        # end with; PS3.5 7.8 lets any application remove it.
        original.pop(TRAILING_PADDING, None)
        assert received == original
