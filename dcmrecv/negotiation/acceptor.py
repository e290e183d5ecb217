"""Presentation context negotiation of an association acceptor, as DCMTK's dcmrecv does it.

A pure function from the proposed presentation contexts (A-ASSOCIATE-RQ,
PS3.8 9.3.2.2) and a profile (dcmrecv/negotiation/asconfig.py) to the results that go into
the A-ASSOCIATE-AC (PS3.8 9.3.3.2).  It follows DCMTK 3.6.7's
DcmAssociationConfiguration::evaluateAssociationParameters()
(dcmnet/libsrc/dcasccfg.cc), which DcmSCP (scp.cc) calls for every request,
together with ASC_acceptPresentationContext() (assoc.cc) and the role reply
of constructSCUSCPRoles() (dulconst.cc):

1. Each proposed context is looked up by its abstract syntax in the profile.
   Not there: result 3, abstract-syntax-not-supported.
2. The profile's transfer syntaxes are tried in the profile's order, the first
   one the requestor also proposed wins, whatever the requestor's own order.
   None in common: result 4, transfer-syntaxes-not-supported.
3. SCP/SCU role selection (PS3.7 D.3.3.4).  The requestor's proposal for the
   SOP class is "default" without a role selection item, SCU for (1, 0), SCP
   for (0, 1), both for (1, 1), and also both for (0, 0) (DCMTK's reading of
   that illegal item, dulfsm.cc).  The acceptor's setting is the profile's
   RoleN entry for the SOP class, "default" without one.  A context proposed
   with the default role but configured as SCP only is rejected, result 2
   (no-reason): DCMTK's one role rule that rejects.  A role item is returned
   only when both sides are not "default", for every accepted context of the
   class, with SCU = (setting allows SCU and the requestor did not propose SCP
   only), SCP = (setting allows SCP and the requestor did not propose SCU
   only); (0, 0) is possible and does not reject the context.  DCMTK sends one
   item per accepted context; this function returns one per SOP class, as
   PS3.7 D.3.3.4 has it, which carries the same answer.
4. Extended negotiation (PS3.7 D.3.3.5): the profile's ExtendedNegotiationN
   items are returned, in profile order, for every SOP class that has an
   accepted context.  DCMTK 3.6.7 does not look at what the requestor proposed
   (or whether it proposed anything); neither does this function, so
   ``proposed_extended`` is accepted for the caller's convenience and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

from dcmrecv.negotiation.asconfig import ExtendedNegotiationSpec, Profile
from dcmrecv.negotiation.uids import uid_kind

__all__ = [
    "ABSTRACT_SYNTAX_NOT_SUPPORTED",
    "ACCEPTANCE",
    "NO_REASON",
    "TRANSFER_SYNTAXES_NOT_SUPPORTED",
    "USER_REJECTION",
    "ContextResult",
    "NegotiationResult",
    "ProposedContext",
    "RoleReply",
    "negotiate",
]

# Result/Reason of the Presentation Context Item in A-ASSOCIATE-AC (PS3.8 9.3.3.2).
ACCEPTANCE: Final = 0
USER_REJECTION: Final = 1
NO_REASON: Final = 2
ABSTRACT_SYNTAX_NOT_SUPPORTED: Final = 3
TRANSFER_SYNTAXES_NOT_SUPPORTED: Final = 4


@dataclass(frozen=True)
class ProposedContext:
    """A Presentation Context Item of the A-ASSOCIATE-RQ (PS3.8 9.3.2.2)."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class ContextResult:
    """A Presentation Context Item of the A-ASSOCIATE-AC; ``transfer_syntax`` "" unless accepted."""

    context_id: int
    abstract_syntax: str
    result: int
    transfer_syntax: str


@dataclass(frozen=True)
class RoleReply:
    """An SCP/SCU Role Selection Sub-Item for the A-ASSOCIATE-AC (PS3.7 D.3.3.4)."""

    sop_class_uid: str
    scu: bool
    scp: bool


@dataclass(frozen=True)
class NegotiationResult:
    """Everything negotiated for the A-ASSOCIATE-AC, contexts in the order proposed."""

    contexts: tuple[ContextResult, ...]
    roles: tuple[RoleReply, ...]
    extended_negotiation: tuple[ExtendedNegotiationSpec, ...]

    @property
    def accepted(self) -> tuple[ContextResult, ...]:
        return tuple(c for c in self.contexts if c.result == ACCEPTANCE)


class _Role(Enum):
    """DCMTK's DUL_SC_ROLE: a proposal or a setting."""

    DEFAULT = "default"
    SCU = "SCU"
    SCP = "SCP"
    BOTH = "SCU/SCP"


def _proposed_role(proposal: tuple[bool | None, bool | None] | None) -> _Role:
    if proposal is None:
        return _Role.DEFAULT
    scu, scp = bool(proposal[0]), bool(proposal[1])
    if scu == scp:
        return _Role.BOTH
    return _Role.SCU if scu else _Role.SCP


def _role_setting(profile: Profile, sop_class_uid: str) -> _Role:
    for role in profile.roles:
        if role.sop_class_uid == sop_class_uid:
            if role.scu and role.scp:
                return _Role.BOTH
            return _Role.SCU if role.scu else _Role.SCP
    return _Role.DEFAULT


def _role_reply(proposed: _Role, setting: _Role) -> tuple[bool, bool]:
    # dulconst.cc constructSCUSCPRoles(): only grant what the requestor proposed.
    scu = setting in (_Role.SCU, _Role.BOTH) and proposed is not _Role.SCP
    scp = setting in (_Role.SCP, _Role.BOTH) and proposed is not _Role.SCU
    return scu, scp


def negotiate(
    proposed: Sequence[ProposedContext],
    profile: Profile,
    proposed_roles: Mapping[str, tuple[bool | None, bool | None]] | None = None,
    proposed_extended: Mapping[str, bytes] | None = None,
) -> NegotiationResult:
    """Answer each proposed context as DCMTK's dcmrecv does with ``profile`` (module docstring).

    ``proposed_roles`` maps a SOP class UID to the (SCU, SCP) fields of the
    requestor's role selection item for it; None in a field counts as 0.
    ``proposed_extended`` is ignored, as by DCMTK.
    """
    del proposed_extended  # DCMTK answers from the profile alone (module docstring, 4.)
    roles_in = proposed_roles or {}
    by_abstract_syntax: dict[str, tuple[str, ...]] = {}
    for spec in profile.contexts:
        # An SCU profile may list a class twice; DCMTK's search stops at the first.
        by_abstract_syntax.setdefault(spec.abstract_syntax, spec.transfer_syntaxes)

    results: list[ContextResult] = []
    replies: dict[str, RoleReply] = {}
    for context in proposed:
        preferred = by_abstract_syntax.get(context.abstract_syntax)
        if preferred is None:
            results.append(_rejected(context, ABSTRACT_SYNTAX_NOT_SUPPORTED))
            continue
        chosen = next((ts for ts in preferred if ts in context.transfer_syntaxes), None)
        if chosen is None:
            results.append(_rejected(context, TRANSFER_SYNTAXES_NOT_SUPPORTED))
            continue
        proposal = _proposed_role(roles_in.get(context.abstract_syntax))
        setting = _role_setting(profile, context.abstract_syntax)
        if proposal is _Role.DEFAULT and setting is _Role.SCP:
            results.append(_rejected(context, NO_REASON))
            continue
        results.append(
            ContextResult(context.context_id, context.abstract_syntax, ACCEPTANCE, chosen)
        )
        if _Role.DEFAULT not in (proposal, setting) and context.abstract_syntax not in replies:
            scu, scp = _role_reply(proposal, setting)
            replies[context.abstract_syntax] = RoleReply(context.abstract_syntax, scu, scp)

    accepted_classes = {r.abstract_syntax for r in results if r.result == ACCEPTANCE}
    extended = tuple(
        item for item in profile.extended_negotiation if item.sop_class_uid in accepted_classes
    )
    return NegotiationResult(tuple(results), tuple(replies.values()), extended)


def _rejected(context: ProposedContext, reason: int) -> ContextResult:
    return ContextResult(context.context_id, context.abstract_syntax, reason, "")


def accept_unknown(
    result: NegotiationResult,
    proposed: Sequence[ProposedContext],
    transfer_syntaxes: Sequence[str],
) -> NegotiationResult:
    """storescp --promiscuous: also accept abstract syntaxes unknown to DCMTK.

    As DCMTK's storescp, only UIDs without a name (private or newer SOP classes) are
    taken; a known class the profile leaves out stays refused.  The first of
    ``transfer_syntaxes`` that the peer offers wins, as for known ones.
    """
    offered = {cx.context_id: cx.transfer_syntaxes for cx in proposed}
    contexts = []
    for cx in result.contexts:
        if cx.result == ABSTRACT_SYNTAX_NOT_SUPPORTED and not uid_kind(cx.abstract_syntax):
            chosen = next((ts for ts in transfer_syntaxes if ts in offered[cx.context_id]), "")
            outcome = ACCEPTANCE if chosen else TRANSFER_SYNTAXES_NOT_SUPPORTED
            cx = ContextResult(cx.context_id, cx.abstract_syntax, outcome, chosen)
        contexts.append(cx)
    return NegotiationResult(tuple(contexts), result.roles, result.extended_negotiation)
