"""Presentation context negotiation as DCMTK's dcmrecv does it (dcmrecv/negotiation/acceptor.py).

The unit tests state DCMTK's rules (dcasccfg.cc, the role table in dul.h);
the tests marked dcmtk put the same proposals to DCMTK 3.6.7's dcmrecv and
compare its A-ASSOCIATE-AC with negotiate(), context by context.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from dcmrecv.negotiation.acceptor import (
    ABSTRACT_SYNTAX_NOT_SUPPORTED,
    ACCEPTANCE,
    NO_REASON,
    TRANSFER_SYNTAXES_NOT_SUPPORTED,
    ContextResult,
    NegotiationResult,
    ProposedContext,
    RoleReply,
    negotiate,
)
from dcmrecv.negotiation.asconfig import (
    ExtendedNegotiationSpec,
    PresentationContextSpec,
    Profile,
    RoleSpec,
    load_profile,
    verification_only_profile,
)
from tests.conftest import IN_CI, free_port, require_tool, wait_for_port

DATA = Path(__file__).resolve().parent / "data" / "asconfig"

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
US = "1.2.840.10008.5.1.4.1.1.6.1"
SC = "1.2.840.10008.5.1.4.1.1.7"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
PRIVATE_CLASS = "1.2.826.0.1.3680043.8.1.99"
ILE = "1.2.840.10008.1.2"
ELE = "1.2.840.10008.1.2.1"
EBE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
RLE = "1.2.840.10008.1.2.5"

SCU_ONLY = (True, False)
SCP_ONLY = (False, True)
BOTH = (True, True)

PROFILE = Profile(
    name="Test",
    contexts=(
        PresentationContextSpec(VERIFICATION, (ILE,)),
        PresentationContextSpec(CT, (ELE, ILE, JPEG_BASELINE)),
        PresentationContextSpec(MR, (JPEG_LS_LOSSLESS, ELE)),
    ),
)


def _proposed(*contexts: tuple[str, Sequence[str]]) -> list[ProposedContext]:
    return [
        ProposedContext(2 * n + 1, abstract, tuple(syntaxes))
        for n, (abstract, syntaxes) in enumerate(contexts)
    ]


def test_scp_preference_wins_over_the_peers_order() -> None:
    result = negotiate(_proposed((CT, [JPEG_BASELINE, ILE, ELE])), PROFILE)
    assert result.contexts == (ContextResult(1, CT, ACCEPTANCE, ELE),)


def test_first_acceptable_of_the_scps_list_even_if_compressed() -> None:
    result = negotiate(_proposed((MR, [ILE, ELE, JPEG_LS_LOSSLESS])), PROFILE)
    assert result.contexts[0].transfer_syntax == JPEG_LS_LOSSLESS


def test_unknown_abstract_syntax_is_result_3() -> None:
    result = negotiate(_proposed((PRIVATE_CLASS, [ILE])), PROFILE)
    assert result.contexts == (ContextResult(1, PRIVATE_CLASS, ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),)


def test_no_common_transfer_syntax_is_result_4() -> None:
    result = negotiate(_proposed((MR, [ILE, JPEG_BASELINE])), PROFILE)
    assert result.contexts == (ContextResult(1, MR, TRANSFER_SYNTAXES_NOT_SUPPORTED, ""),)


def test_every_context_is_answered_in_the_proposed_order() -> None:
    proposed = [
        ProposedContext(7, MR, (ELE,)),
        ProposedContext(1, CT, (JPEG_2000,)),
        ProposedContext(3, CT, (JPEG_BASELINE,)),
        ProposedContext(5, PRIVATE_CLASS, (ELE,)),
    ]
    result = negotiate(proposed, PROFILE)
    assert [(c.context_id, c.result) for c in result.contexts] == [
        (7, ACCEPTANCE),
        (1, TRANSFER_SYNTAXES_NOT_SUPPORTED),
        (3, ACCEPTANCE),
        (5, ABSTRACT_SYNTAX_NOT_SUPPORTED),
    ]
    assert [c.context_id for c in result.accepted] == [7, 3]
    assert result.accepted[1].transfer_syntax == JPEG_BASELINE


def test_nothing_proposed_nothing_accepted() -> None:
    assert negotiate([], PROFILE) == NegotiationResult((), (), ())


def test_without_profile_dcmrecv_only_answers_echo_in_implicit_little_endian() -> None:
    proposed = _proposed((VERIFICATION, [ELE, ILE]), (VERIFICATION, [ELE]), (CT, [ILE]))
    result = negotiate(proposed, verification_only_profile())
    assert [(c.result, c.transfer_syntax) for c in result.contexts] == [
        (ACCEPTANCE, ILE),
        (TRANSFER_SYNTAXES_NOT_SUPPORTED, ""),
        (ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
    ]


def test_scu_profile_with_a_class_twice_uses_its_first_entry() -> None:
    profile = Profile(
        "SCU",
        (PresentationContextSpec(CT, (JPEG_BASELINE,)), PresentationContextSpec(CT, (ELE,))),
    )
    result = negotiate(_proposed((CT, [ELE])), profile)
    assert result.contexts[0].result == TRANSFER_SYNTAXES_NOT_SUPPORTED


# DCMTK's acceptor role table (dcmnet/include/dcmtk/dcmnet/dul.h, DUL_SC_ROLE):
# requestor proposal x acceptor setting -> rejected, or the role item returned.
ROLE_TABLE = [
    # proposal, setting, result, reply (None: no role item returned)
    (SCU_ONLY, SCP_ONLY, ACCEPTANCE, (False, False)),
    (SCU_ONLY, SCU_ONLY, ACCEPTANCE, (True, False)),
    (SCU_ONLY, BOTH, ACCEPTANCE, (True, False)),
    (SCU_ONLY, None, ACCEPTANCE, None),
    (SCP_ONLY, SCP_ONLY, ACCEPTANCE, (False, True)),
    (SCP_ONLY, SCU_ONLY, ACCEPTANCE, (False, False)),
    (SCP_ONLY, BOTH, ACCEPTANCE, (False, True)),
    (SCP_ONLY, None, ACCEPTANCE, None),
    (BOTH, SCP_ONLY, ACCEPTANCE, (False, True)),
    (BOTH, SCU_ONLY, ACCEPTANCE, (True, False)),
    (BOTH, BOTH, ACCEPTANCE, (True, True)),
    (BOTH, None, ACCEPTANCE, None),
    (None, SCP_ONLY, NO_REASON, None),
    (None, SCU_ONLY, ACCEPTANCE, None),
    (None, BOTH, ACCEPTANCE, None),
    (None, None, ACCEPTANCE, None),
    # A (0, 0) item is read as both roles (dulfsm.cc).
    ((False, False), SCU_ONLY, ACCEPTANCE, (True, False)),
    ((None, None), BOTH, ACCEPTANCE, (True, True)),
]


@pytest.mark.parametrize(("proposal", "setting", "result", "reply"), ROLE_TABLE)
def test_role_selection_as_dcmtk(
    proposal: tuple[bool | None, bool | None] | None,
    setting: tuple[bool, bool] | None,
    result: int,
    reply: tuple[bool, bool] | None,
) -> None:
    roles = () if setting is None else (RoleSpec(CT, *setting),)
    profile = Profile("Roles", (PresentationContextSpec(CT, (ELE,)),), roles)
    proposed_roles = {} if proposal is None else {CT: proposal}
    outcome = negotiate(_proposed((CT, [ELE])), profile, proposed_roles)
    assert outcome.contexts[0].result == result
    assert outcome.contexts[0].transfer_syntax == (ELE if result == ACCEPTANCE else "")
    assert outcome.roles == (() if reply is None else (RoleReply(CT, *reply),))


def test_role_reply_once_per_class_and_only_for_accepted_ones() -> None:
    profile = Profile(
        "Roles",
        (PresentationContextSpec(CT, (ELE,)), PresentationContextSpec(MR, (ELE,))),
        (RoleSpec(CT, True, True), RoleSpec(MR, True, True)),
    )
    proposed = _proposed((CT, [ELE]), (CT, [ILE, ELE]), (MR, [ILE]))
    outcome = negotiate(proposed, profile, {CT: BOTH, MR: BOTH})
    assert outcome.roles == (RoleReply(CT, True, True),)


def test_extended_negotiation_follows_the_profile_for_accepted_classes_only() -> None:
    profile = Profile(
        "Ext",
        (
            PresentationContextSpec(CT, (ELE,)),
            PresentationContextSpec(MR, (ELE,)),
            PresentationContextSpec(SC, (ELE,)),
        ),
        extended_negotiation=(
            ExtendedNegotiationSpec(SC, b"\x01"),
            ExtendedNegotiationSpec(MR, b"\x02"),
            ExtendedNegotiationSpec(CT, b"\x03"),
        ),
    )
    proposed = _proposed((CT, [ELE]), (MR, [ILE]), (SC, [ELE]))
    expected = (ExtendedNegotiationSpec(SC, b"\x01"), ExtendedNegotiationSpec(CT, b"\x03"))
    # DCMTK answers from the profile whatever the requestor sent, or if it sent nothing.
    assert negotiate(proposed, profile).extended_negotiation == expected
    asked = {CT: b"\xff", MR: b"\x02", PRIVATE_CLASS: b"\x00"}
    assert negotiate(proposed, profile, proposed_extended=asked).extended_negotiation == expected


# ---------------------------------------------------------------------------
# The same proposals to DCMTK 3.6.7's dcmrecv.


@dataclass
class DcmtkAnswer:
    contexts: dict[int, tuple[int, str]]  # context ID -> (result, transfer syntax if accepted)
    roles: dict[str, tuple[bool, bool]]
    extended: list[tuple[str, bytes]]


class Dcmrecv:
    """DCMTK's dcmrecv with a profile, on a port of its own."""

    def __init__(self, config: Path, profile: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [require_tool("dcmrecv"), "-xf", str(config), profile, str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        self.process.kill()
        self.process.communicate()

    def ask(
        self,
        proposed: Sequence[ProposedContext],
        roles: dict[str, tuple[bool, bool]] | None = None,
    ) -> DcmtkAnswer:
        from pynetdicom import AE, build_role, evt
        from pynetdicom.events import Event
        from pynetdicom.pdu_primitives import (
            A_ASSOCIATE,
            SCP_SCU_RoleSelectionNegotiation,
            SOPClassExtendedNegotiation,
        )

        ae = AE()
        ae.acse_timeout = 10
        for context in proposed:
            ae.add_requested_context(context.abstract_syntax, list(context.transfer_syntaxes))
        received: list[A_ASSOCIATE] = []

        def on_acse_recv(event: Event) -> None:
            received.append(event.primitive)

        ext_neg = [
            build_role(uid, scu_role=scu, scp_role=scp) for uid, (scu, scp) in (roles or {}).items()
        ]
        assoc = ae.associate(
            "127.0.0.1",
            self.port,
            ext_neg=ext_neg,
            evt_handlers=[(evt.EVT_ACSE_RECV, on_acse_recv)],
        )
        try:
            assert received, "no answer to the A-ASSOCIATE-RQ"
            answer = received[0]
            assert answer.result == 0, "DCMTK rejected the association"
            contexts = {}
            for item in answer.presentation_context_definition_results_list:
                accepted = item.result == ACCEPTANCE
                assert item.context_id is not None and item.result is not None
                contexts[item.context_id] = (
                    item.result,
                    str(item.transfer_syntax[0]) if accepted else "",
                )
            replies = {
                str(i.sop_class_uid): (bool(i.scu_role), bool(i.scp_role))
                for i in answer.user_information
                if isinstance(i, SCP_SCU_RoleSelectionNegotiation)
            }
            extended = [
                (str(i.sop_class_uid), bytes(i.service_class_application_information or b""))
                for i in answer.user_information
                if isinstance(i, SOPClassExtendedNegotiation)
            ]
            return DcmtkAnswer(contexts, replies, extended)
        finally:
            if assoc.is_established:
                assoc.release()


def _assert_same_answer(ours: NegotiationResult, theirs: DcmtkAnswer) -> None:
    assert {c.context_id: (c.result, c.transfer_syntax) for c in ours.contexts} == theirs.contexts
    assert {r.sop_class_uid: (r.scu, r.scp) for r in ours.roles} == theirs.roles
    assert [(e.sop_class_uid, e.data) for e in ours.extended_negotiation] == theirs.extended


@pytest.fixture
def installed_storescp_cfg() -> Path:
    path = Path("/etc/dcmtk/storescp.cfg")
    require_tool("dcmrecv")
    if not path.exists():
        message = f"{path} not found: install Debian's dcmtk package"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def dcmtk_default(installed_storescp_cfg: Path) -> Iterator[Dcmrecv]:
    receiver = Dcmrecv(installed_storescp_cfg, "Default")
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.mark.dcmtk
def test_same_answers_as_dcmtk_dcmrecv_with_its_default_profile(
    installed_storescp_cfg: Path, dcmtk_default: Dcmrecv
) -> None:
    proposed = _proposed(
        (VERIFICATION, [ILE]),
        (VERIFICATION, [DEFLATED]),
        (CT, [JPEG_BASELINE, ILE, ELE]),
        (CT, [ILE, ELE]),
        (CT, [ILE, EBE]),
        (MR, [RLE, JPEG_LS_LOSSLESS]),
        (MR, [JPEG_2000, "1.2.840.10008.1.2.4.90"]),
        (RT_PLAN, [JPEG_BASELINE]),
        (RT_PLAN, [ILE, DEFLATED, ELE]),
        (BASIC_TEXT_SR, [ELE, DEFLATED]),
        (PARAMETRIC_MAP, [ELE]),  # in DCMTK 3.6.7's "missing" list
        (PRIVATE_CLASS, [ELE, ILE]),
        (US, ["1.2.840.10008.1.2.4.100", ILE]),
    )
    ours = negotiate(proposed, load_profile(installed_storescp_cfg, "Default"))
    theirs = dcmtk_default.ask(proposed)
    _assert_same_answer(ours, theirs)
    assert ours.contexts[2].transfer_syntax == JPEG_BASELINE  # DCMTK's list prefers it
    assert {c.result for c in ours.contexts} == {0, 3, 4}


@pytest.mark.dcmtk
@pytest.mark.parametrize("proposal", [None, SCU_ONLY, SCP_ONLY, BOTH], ids=str)
def test_same_role_and_extended_negotiation_answers_as_dcmtk(
    proposal: tuple[bool, bool] | None,
) -> None:
    config = DATA / "good-roles.cfg"
    receiver = Dcmrecv(config, "Roles")
    try:
        proposed = _proposed(
            (VERIFICATION, [ILE]), (CT, [ILE, ELE]), (MR, [ELE]), (US, [ILE]), (SC, [ELE])
        )
        roles = {} if proposal is None else {uid: proposal for uid in (CT, MR, US, SC)}
        ours = negotiate(proposed, load_profile(config, "Roles"), roles)
        _assert_same_answer(ours, receiver.ask(proposed, roles))
    finally:
        receiver.stop()


@pytest.mark.dcmtk
def test_same_answers_as_dcmtk_for_the_quirks_file() -> None:
    config = DATA / "good-quirks.cfg"
    receiver = Dcmrecv(config, "My SCP")
    try:
        proposed = _proposed(
            (VERIFICATION, [ILE, EBE]),
            (CT, [RLE, ILE, ELE]),
            (MR, [RLE]),
            ("1.2.840.10008.5.1.4.1.1.88.70", [ILE]),
            ("1.2.840.10008.5.1.4.1.1.6", [ELE]),
        )
        roles = {CT: BOTH, MR: SCP_ONLY}
        ours = negotiate(proposed, load_profile(config, "my scp"), roles)
        _assert_same_answer(ours, receiver.ask(proposed, roles))
    finally:
        receiver.stop()


def test_promiscuous_accepts_only_unnamed_abstract_syntaxes() -> None:
    # storescp -pm: a private class is accepted with our preferred transfer syntax;
    # a class DCMTK knows (CT) but the profile lacks stays "abstract syntax not
    # supported"; a private class offered in no acceptable syntax gets result 4.
    from dcmrecv.negotiation.acceptor import (
        ABSTRACT_SYNTAX_NOT_SUPPORTED,
        ACCEPTANCE,
        TRANSFER_SYNTAXES_NOT_SUPPORTED,
        ProposedContext,
        accept_unknown,
        negotiate,
    )
    from dcmrecv.negotiation.asconfig import verification_only_profile

    implicit, explicit = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
    proposed = [
        ProposedContext(1, "1.2.826.0.1.3680043.9.9999.1", (implicit, explicit)),
        ProposedContext(3, "1.2.840.10008.5.1.4.1.1.2", (explicit,)),
        ProposedContext(5, "1.2.826.0.1.3680043.9.9999.2", ("1.2.840.10008.1.2.4.50",)),
    ]
    base = negotiate(proposed, verification_only_profile())
    result = accept_unknown(base, proposed, (explicit, implicit))
    outcomes = {cx.context_id: (cx.result, cx.transfer_syntax) for cx in result.contexts}
    assert outcomes[1] == (ACCEPTANCE, explicit)
    assert outcomes[3][0] == ABSTRACT_SYNTAX_NOT_SUPPORTED
    assert outcomes[5] == (TRANSFER_SYNTAXES_NOT_SUPPORTED, "")
