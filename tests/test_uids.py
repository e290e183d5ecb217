"""UID names, keywords and DCMTK file name prefixes (dcmrecv/negotiation/uids.py and
_uid_table.py).

Expected values are the DICOM standard's (PS3.6 Annex A) and DCMTK's (dcuid.cc,
storescp.cfg), written out here, not taken from the code under test.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcmrecv.negotiation import uids
from dcmrecv.negotiation.uids import (
    STORAGE_SOP_CLASSES,
    TRANSFER_SYNTAXES,
    is_valid_uid,
    modality_prefix,
    resolve_uid,
    uid_name,
)

REPO = Path(__file__).resolve().parent.parent
TSV = REPO.parent / "shared" / "reference" / "dcmtk-uids.tsv"

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


def _load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constants_are_the_standard_uids() -> None:
    # PS3.6 Annex A.
    assert uids.VERIFICATION_SOP_CLASS == "1.2.840.10008.1.1"
    assert uids.IMPLICIT_VR_LITTLE_ENDIAN == "1.2.840.10008.1.2"
    assert uids.EXPLICIT_VR_LITTLE_ENDIAN == "1.2.840.10008.1.2.1"
    assert uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN == "1.2.840.10008.1.2.1.99"
    assert uids.EXPLICIT_VR_BIG_ENDIAN == "1.2.840.10008.1.2.2"


@pytest.mark.parametrize(
    "value",
    ["0", "1.2.840.10008.1.2", "2.25.197569959940699883042804459687912996985", "1.0.2", "1" * 64],
)
def test_valid_uids(value: str) -> None:
    assert is_valid_uid(value)


@pytest.mark.parametrize(
    "value",
    ["", ".", "1.", ".1", "1..2", "01.2", "1.02", "1.2.a", "1.2 ", " 1.2", "1,2", "1" * 65, "١.٢"],
)
def test_invalid_uids(value: str) -> None:
    assert not is_valid_uid(value)
    assert resolve_uid(value) is None


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=12))
def test_uid_syntax_is_dotted_integers_up_to_64_characters(components: list[int]) -> None:
    text = ".".join(str(c) for c in components)
    assert is_valid_uid(text) == (len(text) <= 64)


@pytest.mark.parametrize(
    ("name", "uid"),
    [
        # DCMTK's current names, as in its storescp.cfg.
        ("LittleEndianExplicit", "1.2.840.10008.1.2.1"),
        ("LittleEndianImplicit", "1.2.840.10008.1.2"),
        ("BigEndianExplicit", "1.2.840.10008.1.2.2"),
        ("JPEGLossless:Non-hierarchical-1stOrderPrediction", "1.2.840.10008.1.2.4.70"),
        ("MPEG2MainProfile@MainLevel", "1.2.840.10008.1.2.4.100"),
        ("VerificationSOPClass", "1.2.840.10008.1.1"),
        ("CTImageStorage", CT),
        ("RETIRED_UltrasoundImageStorage", "1.2.840.10008.5.1.4.1.1.6"),
        ("DRAFT_SRTextStorage", "1.2.840.10008.5.1.4.1.1.88.1"),
        ("DICOS_CTImageStorage", "1.2.840.10008.5.1.4.1.1.501.1"),
        # Names older DCMTK releases wrote into their configuration files.
        ("ImplantationPlanSRDocumentStorage", "1.2.840.10008.5.1.4.1.1.88.70"),
        ("PETImageStorage", "1.2.840.10008.5.1.4.1.1.128"),
        ("StandaloneCurveStorage", "1.2.840.10008.5.1.4.1.1.9"),  # DCMTK 3.5.4
        ("RFC2557MIMEEncapsulation", "1.2.840.10008.1.2.6.1"),  # DCMTK 3.6.0 to 3.6.7
        # DCMTK 3.6.2 and later mean the final UPS class by this name (3.6.0: the trial one).
        ("UnifiedProcedureStepPushSOPClass", "1.2.840.10008.5.1.4.34.6.1"),
        # DICOM keywords (PS3.6).
        ("ExplicitVRLittleEndian", "1.2.840.10008.1.2.1"),
        ("JPEGBaseline8Bit", "1.2.840.10008.1.2.4.50"),
        ("Verification", "1.2.840.10008.1.1"),
        ("EnhancedCTImageStorage", "1.2.840.10008.5.1.4.1.1.2.1"),
    ],
)
def test_names_resolve(name: str, uid: str) -> None:
    assert resolve_uid(name) == uid


@pytest.mark.parametrize(
    "value", ["littleendianexplicit", "CTImageStorage ", "JPEGFoo", "", "=CTImageStorage"]
)
def test_unknown_or_differently_written_names_do_not_resolve(value: str) -> None:
    assert resolve_uid(value) is None


def test_numeric_uid_resolves_to_itself_known_or_not() -> None:
    assert resolve_uid(CT) == CT
    assert resolve_uid("1.2.3.4.5") == "1.2.3.4.5"


@pytest.mark.parametrize(
    ("byteorder", "local", "opposite"),
    [
        ("little", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"),
        ("big", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1"),
    ],
)
def test_local_and_opposite_endian_follow_the_machine(
    monkeypatch: pytest.MonkeyPatch, byteorder: str, local: str, opposite: str
) -> None:
    monkeypatch.setattr(sys, "byteorder", byteorder)
    assert resolve_uid("LocalEndianExplicit") == local
    assert resolve_uid("OppositeEndianExplicit") == opposite


@pytest.mark.parametrize(
    ("uid", "name"),
    [
        ("1.2.840.10008.1.2.1", "LittleEndianExplicit"),
        ("1.2.840.10008.1.2.4.50", "JPEGBaseline"),
        ("1.2.840.10008.1.1", "VerificationSOPClass"),
        (CT, "CTImageStorage"),
        ("1.2.840.10008.5.1.1.30", "RETIRED_HardcopyColorImageStorage"),
        ("1.2.3.4", "1.2.3.4"),
    ],
)
def test_uid_name_is_dcmtks_current_name(uid: str, name: str) -> None:
    assert uid_name(uid) == name


def test_every_table_name_resolves_back_to_its_uid() -> None:
    for row in uids.UID_ROWS:
        assert resolve_uid(uid_name(row[0])) == row[0], row


@pytest.mark.parametrize(
    ("uid", "prefix"),
    [
        (CT, "CT"),
        (MR, "MR"),
        ("1.2.840.10008.5.1.4.1.1.2.1", "CTe"),
        ("1.2.840.10008.5.1.4.1.1.7", "SC"),
        ("1.2.840.10008.5.1.4.1.1.88.11", "SRt"),
        ("1.2.840.10008.5.1.4.1.1.128", "PI"),
        ("1.2.840.10008.5.1.4.1.1.6", "USr"),
        ("1.2.840.10008.1.1", "UNKNOWN"),
        ("1.2.3.4", "UNKNOWN"),
    ],
)
def test_modality_prefix_as_dcmrecv_names_files(uid: str, prefix: str) -> None:
    assert modality_prefix(uid) == prefix


def test_storage_sop_classes() -> None:
    assert len(set(STORAGE_SOP_CLASSES)) == len(STORAGE_SOP_CLASSES)
    for uid in (CT, MR, "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.501.1"):
        assert uid in STORAGE_SOP_CLASSES
    # Not storage: Verification, the DICOMDIR class, transfer syntaxes, query models.
    for uid in ("1.2.840.10008.1.1", "1.2.840.10008.1.3.10", "1.2.840.10008.1.2.1"):
        assert uid not in STORAGE_SOP_CLASSES
    assert "1.2.840.10008.5.1.4.1.2.2.1" not in STORAGE_SOP_CLASSES
    assert all(is_valid_uid(uid) for uid in STORAGE_SOP_CLASSES)


def test_transfer_syntaxes() -> None:
    for uid in (
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.5",
    ):
        assert uid in TRANSFER_SYNTAXES
    assert CT not in TRANSFER_SYNTAXES
    assert not set(TRANSFER_SYNTAXES) & set(STORAGE_SOP_CLASSES)


def test_generated_uid_table_is_up_to_date() -> None:
    if not TSV.exists():
        # The source data lives outside the repository (shared/ beside it); the
        # generated table is committed, so without the source there is nothing to
        # compare, in CI or not.
        pytest.skip(f"{TSV} missing: the reference table lives in shared/ beside the repository")
    generator = _load_tool("gen_uid_table")
    expected = generator.render(generator.read_rows(TSV))
    current = (REPO / "dcmrecv" / "negotiation" / "_uid_table.py").read_text(encoding="utf-8")
    assert current == expected, "run python3 tools/gen_uid_table.py"
