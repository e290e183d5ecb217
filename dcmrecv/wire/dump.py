"""The association parameter dump that ``+v`` (and ``-d``) prints, in DCMTK's layout.

Users compare these blocks with what DCMTK's ``dcmrecv +v`` printed for the same
sender, so the field names, spacing and result words follow DCMTK's
ASC_dumpParameters output.  Pure: values in, text out.  Every value the peer
chose (titles, UIDs, the implementation version name) goes through
``printable``, so a request cannot write lines of its own into the log.
"""

from __future__ import annotations

from dcmrecv.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dcmrecv.logs.printable import printable
from dcmrecv.negotiation.acceptor import NegotiationResult
from dcmrecv.negotiation.uids import uid_name
from dcmrecv.wire.pdu import AssociateRQ

_RESULT_WORDS = {
    0: "Accepted",
    1: "User Rejection",
    2: "No Reason",
    3: "Abstract Syntax Not Supported",
    4: "Transfer Syntaxes Not Supported",
}


def _named(uid: str) -> str:
    # DCMTK marks a UID it has a name for with "=" (dcmFindNameOfUID).
    name = uid_name(uid)
    return f"={name}" if name != uid else printable(uid)


def _role(role: tuple[bool, bool] | None) -> str:
    if role is None:
        return "Default"
    return {
        (True, False): "SCU",
        (False, True): "SCP",
        (True, True): "SCP/SCU",
        (False, False): "None",
    }[role]


def dump_parameters(
    direction: str,
    rq: AssociateRQ,
    our_max_pdu: int,
    result: NegotiationResult | None = None,
    responding_ae_title: str = "",
) -> str:
    """The A-ASSOCIATE-RQ/AC/RJ block; ``result`` is None for the request as received."""
    lines = [
        f"====================== BEGIN A-ASSOCIATE-{direction} =====================",
        f"Our Implementation Class UID:      {IMPLEMENTATION_CLASS_UID}",
        f"Our Implementation Version Name:   {IMPLEMENTATION_VERSION_NAME}",
        f"Their Implementation Class UID:    {printable(rq.implementation_class_uid)}",
        f"Their Implementation Version Name: {printable(rq.implementation_version_name)}",
        f"Application Context Name:    {printable(rq.application_context)}",
        f"Calling Application Name:    {printable(rq.calling_ae_title)}",
        f"Called Application Name:     {printable(rq.called_ae_title)}",
        f"Responding Application Name: {printable(responding_ae_title)}",
        f"Our Max PDU Receive Size:    {our_max_pdu}",
        f"Their Max PDU Receive Size:  {rq.max_length}",
        "Presentation Contexts:",
    ]
    accepted_roles = {r.sop_class_uid: (r.scu, r.scp) for r in result.roles} if result else {}
    outcomes = {cx.context_id: cx for cx in result.contexts} if result else {}
    for proposed in rq.contexts:
        abstract = proposed.abstract_syntax
        outcome = outcomes.get(proposed.context_id)
        state = "Proposed" if outcome is None else _RESULT_WORDS.get(outcome.result, "?")
        lines.append(f"  Context ID:        {proposed.context_id} ({state})")
        lines.append(f"    Abstract Syntax: {_named(abstract)}")
        lines.append(f"    Proposed SCP/SCU Role: {_role(rq.roles.get(abstract))}")
        if outcome is None:
            lines.append("    Proposed Transfer Syntax(es):")
            lines.extend(f"      {_named(ts)}" for ts in proposed.transfer_syntaxes)
            continue
        lines.append(f"    Accepted SCP/SCU Role: {_role(accepted_roles.get(abstract))}")
        if outcome.result == 0:
            lines.append(f"    Accepted Transfer Syntax: {_named(outcome.transfer_syntax)}")
    lines.append(_extended("Requested Extended Negotiation:", rq.extended_negotiation, " "))
    accepted_extended = (
        {e.sop_class_uid: e.data for e in result.extended_negotiation} if result else {}
    )
    lines.append(_extended("Accepted Extended Negotiation:", accepted_extended, "  "))
    lines.append("Requested User Identity Negotiation: none")
    lines.append("User Identity Negotiation Response:  none")
    lines.append(f"======================= END A-ASSOCIATE-{direction} ======================")
    return "\n".join(lines)


def _extended(title: str, items: dict[str, bytes], pad: str) -> str:
    if not items:
        return f"{title}{pad}none"
    body = [title]
    for uid, data in items.items():
        body.append(f"  Abstract Syntax: {_named(uid)}")
        body.append(f"  Application Information, length: {len(data)}")
        body.append("    " + " ".join(f"{byte:02x}" for byte in data))
    return "\n".join(body)
