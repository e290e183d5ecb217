"""+v output: DCMTK's association parameter dump layout."""

from __future__ import annotations

from dcmrecv.negotiation.acceptor import ProposedContext, negotiate
from dcmrecv.negotiation.asconfig import verification_only_profile
from dcmrecv.wire.dump import dump_parameters
from dcmrecv.wire.pdu import AssociateRQ, PresentationContextRQ

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"
CT = "1.2.840.10008.5.1.4.1.1.2"

RQ = AssociateRQ(
    protocol_version=1,
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    application_context="1.2.840.10008.3.1.1.1",
    contexts=(
        PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),
        PresentationContextRQ(3, CT, (IMPLICIT, "1.2.3.4")),
    ),
    max_length=16384,
    implementation_class_uid="1.2.276.0.7230010.3.0.3.6.7",
    implementation_version_name="OFFIS_DCMTK_367",
)


def test_request_dump_lists_proposals_with_dcmtk_names() -> None:
    text = dump_parameters("RQ", RQ, 16384).splitlines()
    assert text[0] == "====================== BEGIN A-ASSOCIATE-RQ ====================="
    assert text[-1] == "======================= END A-ASSOCIATE-RQ ======================"
    assert "Calling Application Name:    ECHOSCU" in text
    index = text.index("  Context ID:        3 (Proposed)")
    assert text[index + 1 : index + 6] == [
        "    Abstract Syntax: =CTImageStorage",
        "    Proposed SCP/SCU Role: Default",
        "    Proposed Transfer Syntax(es):",
        "      =LittleEndianImplicit",
        "      1.2.3.4",  # no name: printed without "="
    ]


def test_acknowledge_dump_shows_results() -> None:
    result = negotiate(
        [
            ProposedContext(c.context_id, c.abstract_syntax, c.transfer_syntaxes)
            for c in RQ.contexts
        ],
        verification_only_profile(),
    )
    text = dump_parameters("AC", RQ, 16384, result, "ANY-SCP").splitlines()
    assert "  Context ID:        1 (Accepted)" in text
    assert "    Accepted Transfer Syntax: =LittleEndianImplicit" in text
    assert "  Context ID:        3 (Abstract Syntax Not Supported)" in text
    assert "Responding Application Name: ANY-SCP" in text
    assert "Accepted Extended Negotiation:  none" in text
