"""Whether to accept an association: (A-ASSOCIATE-RQ, config, peer) -> accept or reject.

Pure: values in, a decision out, nothing logged or sent.  The one outside fact it
needs, whether a slot under ``--max-associations`` is free, is asked last through
``admit`` and only when every other check passed, so a refused request never
holds a slot (and the reasons come in DCMTK's order: forced, protocol, host,
titles, capacity, contexts).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from dcmrecv.config import IPNetwork, ReceiverConfig
from dcmrecv.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dcmrecv.negotiation.acceptor import (
    NegotiationResult,
    ProposedContext,
    accept_unknown,
    negotiate,
)
from dcmrecv.wire import pdu
from dcmrecv.wire.pdu import (
    ACSERejectReason,
    PresentationRejectReason,
    RejectReason,
    RejectResult,
    RejectSource,
    UserRejectReason,
)


@dataclass(frozen=True)
class Rejection:
    """An A-ASSOCIATE-RJ to send (PS3.8 9.3.4) and the DCMTK-style reason for the log."""

    result: RejectResult
    source: RejectSource
    reason: RejectReason
    why: str


_PERMANENT = RejectResult.REJECTED_PERMANENT
_USER = RejectSource.SERVICE_USER

# DCMTK's choices of result/source/reason (scp.cc, DcmSCP::refuseAssociation).
REJECT_TOO_MANY = Rejection(
    RejectResult.REJECTED_TRANSIENT,
    RejectSource.SERVICE_PROVIDER_PRESENTATION,
    PresentationRejectReason.LOCAL_LIMIT_EXCEEDED,
    "too many associations",
)
#: ``--min-free-space``: the same answer as over ``--max-associations``, "local limit
#: exceeded" (PS3.8 9.3.4), transient: the sender may retry once space is back.
REJECT_NO_SPACE = Rejection(
    RejectResult.REJECTED_TRANSIENT,
    RejectSource.SERVICE_PROVIDER_PRESENTATION,
    PresentationRejectReason.LOCAL_LIMIT_EXCEEDED,
    "free space below --min-free-space",
)
REJECT_APPLICATION_CONTEXT = Rejection(
    RejectResult.REJECTED_TRANSIENT,
    _USER,
    UserRejectReason.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED,
    "bad application context",
)
REJECT_HOST = Rejection(
    _PERMANENT, _USER, UserRejectReason.NO_REASON_GIVEN, "connecting host not allowed"
)
REJECT_CALLED_AE = Rejection(
    _PERMANENT,
    _USER,
    UserRejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED,
    "called AE title not recognized",
)
REJECT_CALLING_AE = Rejection(
    _PERMANENT,
    _USER,
    UserRejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED,
    "calling AE title not recognized",
)
REJECT_NO_CONTEXTS = Rejection(
    _PERMANENT, _USER, UserRejectReason.NO_REASON_GIVEN, "no acceptable presentation contexts"
)
REJECT_PROTOCOL_VERSION = Rejection(
    _PERMANENT,
    RejectSource.SERVICE_PROVIDER_ACSE,
    ACSERejectReason.PROTOCOL_VERSION_NOT_SUPPORTED,
    "protocol version not supported",
)
REJECT_FORCED = Rejection(
    _PERMANENT, _USER, UserRejectReason.NO_REASON_GIVEN, "forced via command line"
)
REJECT_NO_IMPLEMENTATION_UID = Rejection(
    _PERMANENT, _USER, UserRejectReason.NO_REASON_GIVEN, "no implementation class UID provided"
)


@dataclass(frozen=True)
class Accept:
    """Accept: the A-ASSOCIATE-AC to send and what was agreed."""

    associate_ac: bytes
    #: Accepted presentation contexts: context ID -> (abstract syntax, transfer syntax).
    accepted: dict[int, tuple[str, str]]
    negotiation: NegotiationResult
    responding_ae_title: str


@dataclass(frozen=True)
class Reject:
    """Reject with ``rejection``; ``detail`` is the error line to log, if the reason has one."""

    rejection: Rejection
    detail: str | None = None
    #: The context negotiation, when it was the reason (for the +v dump).
    negotiation: NegotiationResult | None = None


Decision = Accept | Reject


def decide(
    rq: pdu.AssociateRQ,
    config: ReceiverConfig,
    peer_address: str,
    admit: Callable[[], bool] = lambda: True,
    shortage: Callable[[], str | None] = lambda: None,
) -> Decision:
    """Accept or reject ``rq`` from ``peer_address`` under ``config``.

    ``shortage`` says why storing is impossible now (``--min-free-space``), asked
    before ``admit`` so that a refused request holds no slot."""
    if config.refuse_associations:
        return Reject(REJECT_FORCED)
    # PS3.8 9.3.2: bit 0 of the protocol version is version 1, the one we speak.
    if not rq.protocol_version & 0x0001:
        return Reject(REJECT_PROTOCOL_VERSION)
    if rq.application_context != pdu.DICOM_APPLICATION_CONTEXT:
        return Reject(REJECT_APPLICATION_CONTEXT)
    if config.require_implementation_uid and not rq.implementation_class_uid:
        return Reject(REJECT_NO_IMPLEMENTATION_UID)
    if config.accept_from is not None and not address_allowed(peer_address, config.accept_from):
        return Reject(REJECT_HOST, f"Connecting host {peer_address} is not in --accept-from")
    if (
        config.aetitle_explicit
        and not config.use_called_aetitle
        and rq.called_ae_title != config.aetitle.strip()
    ):
        return Reject(
            REJECT_CALLED_AE,
            f"Called AE Title does not match configured AE Title: {config.aetitle}",
        )
    # AE titles compare without leading/trailing spaces (PS3.5 6.2, AE).
    if config.accept_calling is not None and rq.calling_ae_title not in config.accept_calling:
        return Reject(
            REJECT_CALLING_AE,
            f"Calling AE Title {rq.calling_ae_title!r} is not in --accept-calling",
        )
    if shortage() is not None:
        return Reject(REJECT_NO_SPACE)
    if not admit():
        return Reject(REJECT_TOO_MANY)
    result = _negotiate(rq, config)
    if not result.accepted and not config.acknowledge_without_contexts:
        return Reject(REJECT_NO_CONTEXTS, negotiation=result)
    responding = rq.called_ae_title if config.use_called_aetitle else config.aetitle
    contexts = tuple(
        pdu.PresentationContextAC(cx.context_id, cx.result, cx.transfer_syntax)
        for cx in result.contexts
    )
    associate_ac = pdu.encode_associate_ac(
        rq,
        responding,
        contexts,
        config.max_pdu,
        IMPLEMENTATION_CLASS_UID,
        IMPLEMENTATION_VERSION_NAME,
        tuple((r.sop_class_uid, r.scu, r.scp) for r in result.roles),
        tuple((e.sop_class_uid, e.data) for e in result.extended_negotiation),
    )
    accepted = {cx.context_id: (cx.abstract_syntax, cx.transfer_syntax) for cx in result.accepted}
    return Accept(associate_ac, accepted, result, responding)


def _negotiate(rq: pdu.AssociateRQ, config: ReceiverConfig) -> NegotiationResult:
    profile = config.profile
    if profile is None:
        from dcmrecv.negotiation.asconfig import verification_only_profile

        profile = verification_only_profile()
    proposed = [
        ProposedContext(cx.context_id, cx.abstract_syntax, cx.transfer_syntaxes)
        for cx in rq.contexts
    ]
    result = negotiate(proposed, profile, rq.roles or None, rq.extended_negotiation or None)
    if config.promiscuous_transfer_syntaxes:
        result = accept_unknown(result, proposed, config.promiscuous_transfer_syntaxes)
    return result


def address_allowed(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether ``address`` lies in one of ``networks`` (``--accept-from``)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
