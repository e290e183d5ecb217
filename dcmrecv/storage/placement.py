"""``--output-template`` and ``--on-duplicate``: the template's values and the
disambiguated names, pure.

:func:`template_values` turns what the data set check collected (the template's
top-level attributes, read in the same walk that checks the data set, see
``dataset.wanted_tags``) plus the association and the arrival time into the text
``template.render`` fills in.  :func:`template_plan` makes the writer's
:class:`PathPlan` from it.  :func:`renamed` is ``--on-duplicate rename``'s name for
the n-th copy.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from dcmrecv.storage.dataset import DatasetSummary
from dcmrecv.storage.model import PathPlan, PlanError
from dcmrecv.storage.template import Template, TemplateError, render

#: Binary VRs (PS3.5 Table 6.2-1) whose first value a template shows as a number.
_NUMBERS: dict[str, str] = {
    "US": "H",
    "SS": "h",
    "UL": "I",
    "SL": "i",
    "FL": "f",
    "FD": "d",
    "UV": "Q",
    "SV": "q",
}
#: Values that are not text at all: a template shows nothing (the fallback).
_OPAQUE = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ", "AT"})


@dataclass(frozen=True)
class Arrival:
    """What a template knows besides the data set: the association and the time."""

    calling_aetitle: str
    called_aetitle: str
    peer_address: str
    received: datetime
    #: DCMTK's modality prefix for the SOP class (``UNKNOWN`` when it has none).
    prefix: str
    #: A new UID (``+fu``'s), drawn only when the template uses ``{UniqueName}``.
    unique_name: str


def _dictionary_vr(tag: int) -> str:
    """The VR of an attribute received in implicit VR, from the data dictionary
    (pydicom's, plus DCMDICTPATH's entries once installed)."""
    from pydicom.datadict import dictionary_VR

    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return vr.split(" ")[0]


def _charset_codec(specific_character_set: str | None) -> str:
    # PS3.5 6.1.2.3: ISO_IR 192 is UTF-8; anything else is shown byte for byte (the
    # single-byte sets are Latin-1-like for the characters a file name can use, and
    # render() replaces control characters).
    if specific_character_set and "ISO_IR 192" in specific_character_set:
        return "utf-8"
    return "latin-1"


def attribute_text(
    vr: str, raw: bytes, *, little_endian: bool, specific_character_set: str | None
) -> str | None:
    """One attribute's value as template text: numbers for binary VRs, text otherwise,
    None for values that have no text form (bulk data, sequences)."""
    if vr in _NUMBERS:
        code = _NUMBERS[vr]
        size = struct.calcsize(code)
        if len(raw) < size:
            return None
        (number,) = struct.unpack(("<" if little_endian else ">") + code, raw[:size])
        return f"{number:g}" if isinstance(number, float) else str(number)
    if vr in _OPAQUE:
        return None
    # surrogateescape, not "replace": bytes that are not text stay distinct (two
    # values must not both become U+FFFD); render() makes them "_" and adds a hash.
    text = raw.decode(_charset_codec(specific_character_set), "surrogateescape")
    return text.rstrip("\0 ").lstrip(" ")


def template_values(
    template: Template,
    summary: DatasetSummary | None,
    arrival: Arrival,
    *,
    little_endian: bool = True,
) -> dict[str, str | None]:
    """The text of every placeholder ``template`` uses (None: absent)."""
    values: dict[str, str | None] = {
        "CallingAETitle": arrival.calling_aetitle.strip(),
        "CalledAETitle": arrival.called_aetitle.strip(),
        "PeerAddress": arrival.peer_address,
        "ReceivedDate": arrival.received.strftime("%Y%m%d"),
        "ReceivedTime": arrival.received.strftime("%H%M%S"),
        "Prefix": arrival.prefix,
        "UniqueName": arrival.unique_name,
    }
    found = summary.values if summary is not None else {}
    charset = summary.specific_character_set if summary is not None else None
    for component in template.components:
        for part in component:
            if isinstance(part, str) or part.tag is None:
                continue
            entry = found.get(part.tag)
            if entry is None:
                values[part.name] = None
                continue
            vr_bytes, raw = entry
            vr = vr_bytes.decode("ascii") if vr_bytes else _dictionary_vr(part.tag)
            values[part.name] = attribute_text(
                vr, raw, little_endian=little_endian, specific_character_set=charset
            )
    return values


def template_plan(template: Template, values: Mapping[str, str | None], fallback: str) -> PathPlan:
    """The writer's plan for a rendered template: the same path is the same instance
    (``replace_existing``), so ``--on-duplicate`` decides what a second copy does."""
    try:
        path = render(template, values, fallback)
    except TemplateError as exc:
        raise PlanError(str(exc)) from None
    *directory, filename = path.split("/")
    return PathPlan(directory=tuple(directory), filename=filename, replace_existing=True)


#: A file name extension that ``rename`` keeps last (``.dcm``, ``.DCM``, ``.dicom``);
#: the last part of a UID (digits) is no extension.
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")


def renamed(filename: str, copy: int) -> str:
    """``--on-duplicate rename``: the name of the ``copy``-th other copy
    (``CT.1.2.3`` -> ``CT.1.2.3~1``, ``x.dcm`` -> ``x~1.dcm``).  ``~`` appears in no
    ``+fd`` name; a name that is taken anyway is skipped by the writer (link fails)."""
    match = _EXTENSION.search(filename)
    stem, extension = (filename[: match.start()], match.group()) if match else (filename, "")
    suffix = f"~{copy}{extension}"
    encoded = stem.encode("utf-8", "surrogateescape")
    limit = 255 - len(suffix.encode("utf-8", "surrogateescape"))
    if len(encoded) > limit:
        stem = encoded[:limit].decode("utf-8", "ignore")
    return stem + suffix
