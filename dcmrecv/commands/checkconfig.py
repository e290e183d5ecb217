"""``--check-config``: what a profile negotiates, and the mistakes it likely holds (pure).

``dcmrecv --check-config -xf FILE PROFILE`` loads the profile exactly as a start
would (a broken file exits 66 with DCMTK's message), then prints the negotiation
table: each SOP class with the transfer syntaxes it accepts in preference order,
by DCMTK name and UID.  The warnings are about what senders will meet:

* a SOP class without Implicit VR Little Endian: PS3.5 10.1 makes it the default
  every application supports, and many senders propose nothing else for some
  classes; a storage class without Explicit VR Little Endian too is refused by
  senders that propose only that one (storescu's default ``-x=`` proposes both);
* more than 128 presentation contexts: DCMTK 3.6.7 refuses such a list in any
  association configuration (3.6.8 allows it for receivers), and a sender that
  copies the list cannot propose it (PS3.8 9.3.2.2: at most 128 per association);
* retired SOP classes (PS3.6 Annex A "(Retired)"), which current senders do not
  propose (a retired transfer syntax such as Explicit VR Big Endian next to others
  does no harm, so it is not reported);
* a SOP class listed twice (only the first list counts for negotiation).

With ``--output-template`` the check also shows where a sample data set (pydicom's
``CT_small.dcm``) would be stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from dcmrecv.negotiation._uid_table import UID_ROWS
from dcmrecv.negotiation.asconfig import Profile
from dcmrecv.negotiation.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    modality_prefix,
    uid_name,
)
from dcmrecv.storage.template import Template, render

#: DCMTK 3.6.7 (dcasccff.cc) and PS3.8 9.3.2.2: presentation contexts per association.
MAX_CONTEXTS_DCMTK_367 = 128
_STATUS: Mapping[str, str] = {row[0]: row[4] for row in UID_ROWS}


def _named(uid: str) -> str:
    name = uid_name(uid)
    return uid if name == uid else f"{name} ({uid})"


def negotiation_table(profile: Profile) -> list[str]:
    """The lines of the table: a SOP class, then its transfer syntaxes, numbered."""
    lines = [
        f"profile [{profile.name}]"
        + (f" from {profile.source}" if profile.source else "")
        + f": {len(profile.contexts)} presentation context(s)"
    ]
    for context in profile.contexts:
        lines.append(_named(context.abstract_syntax))
        for rank, syntax in enumerate(context.transfer_syntaxes, 1):
            lines.append(f"    {rank}. {_named(syntax)}")
    return lines


def profile_warnings(profile: Profile) -> list[str]:
    """Likely mistakes, one sentence each (see the module docstring)."""
    warnings: list[str] = []
    if len(profile.contexts) > MAX_CONTEXTS_DCMTK_367:
        warnings.append(
            f"{len(profile.contexts)} presentation contexts: DCMTK 3.6.7 refuses more than "
            f"{MAX_CONTEXTS_DCMTK_367}, and no sender can propose more in one association "
            "(PS3.8 9.3.2.2)"
        )
    seen: set[str] = set()
    for context in profile.contexts:
        sop = context.abstract_syntax
        shown = _named(sop)
        if sop in seen:
            warnings.append(f"{shown} is listed more than once")
        seen.add(sop)
        if _STATUS.get(sop) == "retired":
            warnings.append(f"{shown} is retired (PS3.6): current senders do not propose it")
        syntaxes = set(context.transfer_syntaxes)
        if IMPLICIT_VR_LITTLE_ENDIAN not in syntaxes:
            if modality_prefix(sop) != "UNKNOWN" and EXPLICIT_VR_LITTLE_ENDIAN not in syntaxes:
                warnings.append(
                    f"{shown} accepts neither Implicit nor Explicit VR Little Endian: "
                    "most senders propose one of them for storage"
                )
            else:
                warnings.append(
                    f"{shown} lacks Implicit VR Little Endian, the default transfer "
                    "syntax every application supports (PS3.5 10.1)"
                )
    return warnings


def sample_values(dataset: object, template: Template) -> dict[str, str | None]:
    """A template's values from a pydicom data set (the sample for the check)."""
    values: dict[str, str | None] = {
        "CallingAETitle": "STORESCU",
        "CalledAETitle": "DCMRECV",
        "PeerAddress": "127.0.0.1",
        "ReceivedDate": datetime.now().strftime("%Y%m%d"),
        "ReceivedTime": datetime.now().strftime("%H%M%S"),
        "UniqueName": "2.25.0",
    }
    sop_class = str(getattr(dataset, "SOPClassUID", ""))
    values["Prefix"] = modality_prefix(sop_class)
    for component in template.components:
        for part in component:
            if isinstance(part, str) or part.tag is None:
                continue
            element = dataset.get(part.tag)  # type: ignore[attr-defined]
            values[part.name] = (
                None if element is None or element.value is None else (str(element.value))
            )
    return values


def sample_path(dataset: object, template: Template, fallback: str) -> str:
    return render(template, sample_values(dataset, template), fallback)
