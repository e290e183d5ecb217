"""``--output-template``: where a file goes, from a template over the instance's values (pure).

A template is a relative path in Python's format syntax, for example::

    {PatientID}/{StudyDate}_{AccessionNumber}/{SeriesNumber:04d}_{Modality}/{SOPInstanceUID}.dcm

Placeholders name a top-level data set attribute by DICOM keyword (PS3.6, through
pydicom's dictionary) or by tag (``{00100020}``); the association
(``{CallingAETitle}``, ``{CalledAETitle}``, ``{PeerAddress}``); the arrival time
(``{ReceivedDate}`` YYYYMMDD, ``{ReceivedTime}`` HHMMSS); and DCMTK's names
(``{Prefix}``, the modality prefix ``+fd`` uses, and ``{UniqueName}``, a new UID as
``+fu`` makes it).  A format spec applies to the value as a number when the spec
asks for one (``{SeriesNumber:04d}`` on IS "7" gives ``0007``).

:func:`parse_template` checks a template once, at start-up: only known names, no
conversions or indexing, a relative path whose literal components are never empty,
``.`` or ``..``.  :func:`render` fills it for one instance.  Every value is made
safe before it joins the path: path separators, NUL, control characters and bytes
that are not text in the character set become ``_``, DICOM padding is stripped, a
component that would be empty, ``.``, ``..`` or hidden (leading ``.``, the writer's
temporary files are hidden) is repaired, each component is at most 255 bytes and the
whole path at most 4096, and a missing or empty value becomes the fallback word
(``--template-fallback``, default UNKNOWN).  So no value a peer sends can move a file
outside the output directory.

Distinct values stay distinct, as in the default naming (``naming.sanitize_uid``): a
value that had to be changed is followed by ``_`` and 16 hex digits of the SHA-256 of
the value, so ``A/B``, ``A\\B`` and ``A_B`` give three names (``A_B_<hash>``,
``A_B_<other hash>``, ``A_B``); a value that ends like that already gets a hash too,
so no value can pose as another's changed form.  (Two fields in one component can
still join alike, ``{A}_{B}`` for ``x``/``y_z`` and ``x_y``/``z``: that is the
template's choice of separators.)
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

#: Placeholders that are not data set attributes.
ASSOCIATION_FIELDS = frozenset({"CallingAETitle", "CalledAETitle", "PeerAddress"})
TIME_FIELDS = frozenset({"ReceivedDate", "ReceivedTime"})
DCMTK_FIELDS = frozenset({"Prefix", "UniqueName"})
NON_DATASET_FIELDS = ASSOCIATION_FIELDS | TIME_FIELDS | DCMTK_FIELDS

DEFAULT_FALLBACK = "UNKNOWN"
#: Bytes: a file name (NAME_MAX on Linux file systems) and a whole path (PATH_MAX).
MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096

_TAG_FIELD = re.compile(r"[0-9A-Fa-f]{8}")
#: Separators, controls, and the bytes a character set could not decode
#: (surrogateescape's U+DC80..U+DCFF, see placement.attribute_text).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\\udc80-\udcff]")
#: Hex digits of SHA-256 that tell changed values apart (naming.DISAMBIGUATOR_DIGITS).
DISAMBIGUATOR_DIGITS = 16
_LOOKS_CHANGED = re.compile(rf"_[0-9a-f]{{{DISAMBIGUATOR_DIGITS}}}$")


class TemplateError(ValueError):
    """The template is unusable (the message says where and why)."""


@dataclass(frozen=True)
class Field:
    """One placeholder: its name as written, the tag it reads, its format spec."""

    name: str
    #: The data set attribute's tag, or None for the association/time/DCMTK names.
    tag: int | None
    spec: str


@dataclass(frozen=True)
class Template:
    """A checked template: per path component, literal text and fields in order."""

    text: str
    components: tuple[tuple[str | Field, ...], ...]

    @property
    def tags(self) -> frozenset[int]:
        """The data set attributes the template reads (for the one-pass data set scan)."""
        return frozenset(
            part.tag
            for component in self.components
            for part in component
            if isinstance(part, Field) and part.tag is not None
        )

    def uses(self, name: str) -> bool:
        return any(
            isinstance(part, Field) and part.name == name
            for component in self.components
            for part in component
        )


def _field(name: str, spec: str, conversion: str | None) -> Field:
    if conversion:
        raise TemplateError(f"{{{name}!{conversion}}}: conversions are not supported")
    if not name:
        raise TemplateError("{}: every placeholder needs a name")
    if any(c in name for c in ".[]"):
        raise TemplateError(f"{{{name}}}: attribute and index access are not supported")
    if "{" in spec:
        raise TemplateError(f"{{{name}:{spec}}}: nested placeholders are not supported")
    if name in NON_DATASET_FIELDS:
        return Field(name, None, spec)
    if _TAG_FIELD.fullmatch(name):
        return Field(name, int(name, 16), spec)
    # pydicom's dictionary only when a template names a keyword: importing it costs
    # about 0.1 s, which every start of the commands would otherwise pay.
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(name)
    if tag is None:
        raise TemplateError(
            f"{{{name}}}: not a DICOM keyword, a tag (8 hex digits) or one of "
            + ", ".join(sorted(NON_DATASET_FIELDS))
        )
    if tag > 0xFFFFFFFF or (tag >> 16) in (0x0000, 0x0002):
        raise TemplateError(f"{{{name}}}: only data set attributes can be used")
    return Field(name, tag, spec)


def parse_template(text: str) -> Template:
    """Check ``text`` and split it into path components (raises TemplateError)."""
    if not text.strip():
        raise TemplateError("the template is empty")
    if text.startswith("/"):
        raise TemplateError("the template must be a path relative to the output directory")
    components: list[tuple[str | Field, ...]] = [()]
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"{text!r}: {exc}") from None
    for literal, name, spec, conversion in parsed:
        pieces = literal.split("/")
        for index, piece in enumerate(pieces):
            if index:
                components.append(())
            if _UNSAFE.search(piece.replace("/", "")):
                raise TemplateError(f"{text!r}: control characters or backslashes in the text")
            if piece:
                components[-1] += (piece,)
        if name is not None:
            components[-1] += (_field(name, spec or "", conversion),)
    for component in components:
        if not component:
            raise TemplateError(f"{text!r}: empty path component (// or a trailing /)")
        if all(isinstance(part, str) for part in component) and "".join(
            str(part) for part in component
        ) in (".", ".."):
            raise TemplateError(f"{text!r}: '.' and '..' components could leave the directory")
    return Template(text, tuple(components))


def _formatted(value: str, spec: str) -> str | None:
    """``value`` under ``spec``; numbers for numeric specs; None when it cannot be."""
    if not spec:
        return value
    try:
        return format(value, spec)
    except ValueError:
        pass
    for convert in (int, float):
        try:
            return format(convert(value), spec)
        except ValueError:
            continue
    return None


def safe_text(value: str) -> str:
    """A value with separators and control characters replaced by ``_``, padding stripped."""
    return _UNSAFE.sub("_", value.strip(" \x00"))


def _bounded(component: str, limit: int = MAX_COMPONENT_BYTES) -> str:
    encoded = component.encode("utf-8", "surrogateescape")
    if len(encoded) <= limit:
        return component
    # Cut, and keep names distinct: a short digest of the whole value at the end.
    digest = hashlib.sha256(encoded).hexdigest()[:12]
    head = encoded[: limit - 13].decode("utf-8", "ignore")
    return f"{head}~{digest}"


def _disambiguator(value: str) -> str:
    """``_`` and 16 hex digits of the value's SHA-256: what naming.sanitize_uid adds."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    return "_" + digest[:DISAMBIGUATOR_DIGITS]


def _value_text(raw: str | None, spec: str, fallback: str, *, first: bool) -> str:
    """One placeholder's text: safe, formatted, and distinct from every other value's."""
    value = raw.strip(" \x00") if raw is not None else ""
    if not value:
        return fallback
    safe = _UNSAFE.sub("_", value)
    changed = safe != value
    if first and safe.startswith("."):
        # At the start of a component a leading dot would hide the file ("." and ".."
        # would not be files at all).
        safe = "_" + safe[1:]
        changed = True
    formatted = _formatted(safe, spec)
    # A format spec's fill character is text too.
    shown = safe_text(formatted) if formatted is not None else ""
    if not shown:
        return fallback
    if changed or _LOOKS_CHANGED.search(shown):
        shown += _disambiguator(value)
    return shown


def render(template: Template, values: Mapping[str, str | None], fallback: str) -> str:
    """The relative path for one instance (pure).

    ``values`` maps placeholder names (as written in the template) to text, None
    or missing for an absent value.  The result never contains ``..`` or an empty
    component, never starts with ``/`` and stays within the byte limits; distinct
    values of one placeholder give distinct paths (see the module notes).
    """
    parts: list[str] = []
    for component in template.components:
        text = []
        for index, part in enumerate(component):
            if isinstance(part, str):
                text.append(part)
                continue
            text.append(_value_text(values.get(part.name), part.spec, fallback, first=index == 0))
        name = "".join(text)
        if name in ("", ".", ".."):
            name = fallback
        elif name.startswith("."):
            # The template's own text (values were repaired above): the same for
            # every instance, so no two values can meet here.
            name = "_" + name[1:]
        parts.append(_bounded(name))
    path = "/".join(parts)
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise TemplateError(f"the path for this instance is longer than {MAX_PATH_BYTES} bytes")
    return path


def check_fallback(word: str) -> str:
    """The fallback word must itself be a safe, visible file name component."""
    if not word or safe_text(word) != word or word in (".", "..") or word.startswith("."):
        raise TemplateError(f"--template-fallback {word!r}: must be a plain file name")
    return word
