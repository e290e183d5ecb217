"""Association negotiation profiles in DCMTK's configuration file format.

The format is DCMTK's ``dcmnet/docs/asconfig.txt``: an INI-like text with
``[[Supersection]]``, ``[Section]`` and ``Key = Value`` lines, read by DCMTK's
OFConfigFile (``ofstd/libsrc/ofconfig.cc``) and interpreted by
DcmAssociationConfigurationFile (``dcmnet/libsrc/dcasccff.cc``).

What a file DCMTK accepts means here is what it means to DCMTK:

- ``#`` starts a comment only in the first column; a comment line, like a
  blank one, neither ends nor interrupts a value.
- Keys and section names ignore case and white space, and keep only the
  characters A-Z, 0-9, ``-`` and ``_`` (``[ Lossless Only ]`` is LOSSLESSONLY).
  Values are case-sensitive.
- A line starting with white space continues the previous value, so a key
  must start in the first column unless it directly follows a section header.
  Continued values only make sense where DCMTK removes white space: the list
  name after the backslash in ``PresentationContextN`` and the references in
  ``[[Profiles]]``.
- CR, LF and CR LF all end a line.
- ``TransferSyntaxN``, ``PresentationContextN``, ``RoleN``,
  ``ExtendedNegotiationN`` are read from 1 upwards in numeric order.
- Two sections of the same name in one supersection form one list (DCMTK
  appends the second to the first); two profiles of the same name are an error.
- A UID value is a numeric UID, a DCMTK name (current or older), or
  LocalEndianExplicit / OppositeEndianExplicit (machine byte order); DICOM
  keywords (PS3.6) are accepted too, which DCMTK 3.6.7 does not know.
- In an SCP profile each SOP class appears once
  (DcmAssociationConfiguration::isValidSCPProfile).
- Supersections other than the five of asconfig.txt are ignored.

Where DCMTK silently drops or garbles an entry, this module raises ConfigError
naming the line instead: a key or comment not in the first column, a line that
is neither header nor entry, numbering with gaps or leading zeros, a key that
appears twice in a section, a key DCMTK would never read, a second copy of a
supersection (DCMTK reads only the first), text after a section header.  White
space around a value, which DCMTK keeps and then fails to resolve, is ignored.
A transfer syntax name used as SOP class (or the other way round) is an error.
Lists longer than 128 presentation contexts are fine for a receiver, as in
DCMTK 3.6.8 and later (3.6.7 applied the requestor's limit to every file).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from dcmrecv.boundedread import FileTooLarge, read_bounded
from dcmrecv.negotiation.uids import (
    IMPLICIT_VR_LITTLE_ENDIAN,
    VERIFICATION_SOP_CLASS,
    known_names,
    resolve_uid,
    uid_kind,
    uid_name,
)

__all__ = [
    "AssociationProfiles",
    "ConfigError",
    "ExtendedNegotiationSpec",
    "PresentationContextSpec",
    "Profile",
    "RoleSpec",
    "decode_config",
    "load_profile",
    "normalize_name",
    "parse_asconfig",
    "read_asconfig",
    "render_asconfig",
    "verification_only_profile",
]


class ConfigError(Exception):
    """A configuration file problem: which file, which line (None if none), what to do."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        super().__init__(file, line, message)
        self.file = file
        self.line = line
        self.message = message

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True)
class PresentationContextSpec:
    """One ``PresentationContextN``: a SOP class and the transfer syntaxes in preference order."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class RoleSpec:
    """One ``RoleN``: the SCP/SCU role selection (PS3.7 D.3.3.4) for a SOP class.

    ``scu``/``scp`` are the sub-item's fields, i.e. the roles of the association
    requestor: ``SCU`` is (True, False), ``SCP`` (False, True), ``BOTH`` (True, True).
    """

    sop_class_uid: str
    scu: bool
    scp: bool


@dataclass(frozen=True)
class ExtendedNegotiationSpec:
    """One ``ExtendedNegotiationN``: service-class-application-information (PS3.7 D.3.3.5)."""

    sop_class_uid: str
    data: bytes


@dataclass(frozen=True)
class Profile:
    """One section of ``[[Profiles]]`` with everything it refers to, resolved to UIDs."""

    name: str  # as written in the file's section header
    contexts: tuple[PresentationContextSpec, ...]
    roles: tuple[RoleSpec, ...] = ()
    extended_negotiation: tuple[ExtendedNegotiationSpec, ...] = ()
    source: str = field(default="", compare=False)  # file it came from, for messages


@dataclass(frozen=True)
class _ProfileOrigin:
    line: int
    context_list: str
    context_lines: tuple[int, ...]


@dataclass(frozen=True)
class AssociationProfiles:
    """A whole parsed file: its profiles in file order."""

    profiles: tuple[Profile, ...]
    source: str = field(default="", compare=False)
    _origins: Mapping[str, _ProfileOrigin] = field(default_factory=dict, compare=False, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(profile.name for profile in self.profiles)

    def find(self, name: str) -> Profile | None:
        """The profile called ``name``, ignoring case and white space, as dcmrecv's -xf does."""
        wanted = normalize_name(name)
        for profile in self.profiles:
            if normalize_name(profile.name) == wanted:
                return profile
        return None

    def scp_profile(self, name: str) -> Profile:
        """The profile called ``name``, checked to be usable by an association acceptor."""
        profile = self.find(name)
        if profile is None:
            defined = ", ".join(self.names) or "none"
            raise ConfigError(
                self.source,
                None,
                f"no profile named '{name}'; profiles defined in [[Profiles]]: {defined}",
            )
        origin = self._origins.get(normalize_name(profile.name))
        first_seen: dict[str, int] = {}
        for index, context in enumerate(profile.contexts):
            uid = context.abstract_syntax
            if uid not in first_seen:
                first_seen[uid] = index
                continue
            line = origin.context_lines[index] if origin else None
            first = f" (first at line {origin.context_lines[first_seen[uid]]})" if origin else ""
            listed = f"presentation context list [{origin.context_list}]" if origin else "it"
            raise ConfigError(
                profile.source or self.source,
                line,
                f"SOP class {_describe(uid)} appears twice in {listed}{first} of "
                f"profile [{profile.name}]: a receiver (SCP) profile may list each SOP class "
                "once; this is a profile for a sender (such as storescu.cfg's), use one "
                "written for storescp/dcmrecv",
            )
        return profile


def verification_only_profile() -> Profile:
    """What dcmrecv negotiates without -xf: Verification with Implicit VR Little Endian only.

    dcmrecv.man, "DICOM Conformance": without a profile only the Verification
    SOP class is supported, with the default transfer syntax (PS3.5 10.1).
    """
    return Profile(
        name="DEFAULT",
        contexts=(PresentationContextSpec(VERIFICATION_SOP_CLASS, (IMPLICIT_VR_LITTLE_ENDIAN,)),),
    )


# --------------------------------------------------------------------------
# Reading: bytes -> text -> lines -> supersections/sections/entries

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
# Control characters that never occur in a text file (tab, LF, VT, FF, CR do).
_CONTROL: Final = re.compile(r"[\x00-\x08\x0e-\x1f]")
_BLANK: Final = " \t"
_NAME_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_SUPERSECTION: Final = re.compile(r"\[[ \t]*\[([^\[\]]*)\][ \t]*\]")
_SECTION: Final = re.compile(r"\[([^\[\]]*)\]")

_TRANSFER_SYNTAXES: Final = "TRANSFERSYNTAXES"
_PRESENTATION_CONTEXTS: Final = "PRESENTATIONCONTEXTS"
_ROLES: Final = "SCPSCUROLESELECTION"
_EXTENDED: Final = "EXTENDEDNEGOTIATION"
_PROFILES: Final = "PROFILES"
_TITLES: Final = {
    _TRANSFER_SYNTAXES: "TransferSyntaxes",
    _PRESENTATION_CONTEXTS: "PresentationContexts",
    _ROLES: "SCPSCURoleSelection",
    _EXTENDED: "ExtendedNegotiation",
    _PROFILES: "Profiles",
}
_MANDATORY: Final = (_TRANSFER_SYNTAXES, _PRESENTATION_CONTEXTS, _PROFILES)
# dcasccff.cc reads at most this much extended negotiation data per entry.
_MAX_EXTENDED_NEGOTIATION: Final = 1023


def normalize_name(text: str) -> str:
    """A key or section name as DCMTK compares it: A-Z, 0-9, '-', '_' only, upper case."""
    upper = "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in text)
    return "".join(c for c in upper if c in _NAME_CHARS)


def _split_lines(text: str) -> list[str]:
    return _LINE_BREAK.split(text)


def decode_config(data: bytes, filename: str) -> str:
    """The text of a configuration file, or ConfigError if it is not a text file.

    UTF-8 (ASCII) is expected.  DCMTK reads bytes and never looks inside
    comments, so other bytes (say Latin-1 umlauts) are accepted in comment lines.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = data.decode("latin-1")
    for number, line in enumerate(_split_lines(text), start=1):
        if not line.startswith("#") and any(ord(c) > 0x7F for c in line):
            raise ConfigError(
                filename,
                number,
                "not a text file in UTF-8 or ASCII (undecodable bytes); save it as UTF-8 text",
            )
    return text


def read_asconfig(path: str | os.PathLike[str]) -> AssociationProfiles:
    """Read and parse a whole configuration file."""
    filename = os.fspath(path)
    try:
        data = read_bounded(filename)
    except FileTooLarge as exc:
        raise ConfigError(filename, None, f"{exc}: not an association configuration file") from None
    except FileNotFoundError:
        raise ConfigError(
            filename,
            None,
            "no such file: give the path of an association configuration file such as storescp.cfg",
        ) from None
    except IsADirectoryError:
        raise ConfigError(filename, None, "is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(filename, None, f"cannot read the file: {exc.strerror}") from None
    return parse_asconfig(decode_config(data, filename), filename)


def load_profile(path: str | os.PathLike[str], profile_name: str) -> Profile:
    """Read, parse and select ``profile_name``, checked as an association acceptor's profile."""
    return read_asconfig(path).scp_profile(profile_name)


@dataclass
class _Entry:
    key: str
    key_text: str
    line: int
    lines: list[tuple[int, str]]  # (line number, text stripped of surrounding blanks)


@dataclass
class _Section:
    name: str
    title: str
    line: int
    entries: list[_Entry] = field(default_factory=list)
    by_key: dict[str, _Entry] = field(default_factory=dict)


@dataclass
class _Supersection:
    name: str
    title: str
    line: int
    sections: list[_Section] = field(default_factory=list)


class _Parser:
    def __init__(self, filename: str) -> None:
        self.filename = filename

    def error(self, line: int | None, message: str) -> ConfigError:
        return ConfigError(self.filename, line, message)

    # ---- lexical structure (ofconfig.cc) ----

    def read_structure(self, text: str) -> dict[str, _Supersection]:
        supersections: dict[str, _Supersection] = {}
        current: _Supersection | None = None
        section: _Section | None = None
        entry: _Entry | None = None
        for number, raw in enumerate(_split_lines(text), start=1):
            bad = _CONTROL.search(raw)
            if bad:
                what = (
                    "NUL byte"
                    if bad.group() == "\0"
                    else f"control character {ord(bad.group()):#04x}"
                )
                raise self.error(number, f"not a text file: {what}")
            stripped = raw.strip(_BLANK)
            if not stripped or raw.startswith("#"):
                continue
            if raw[0] in _BLANK and entry is not None:
                entry.lines.append((number, stripped))
                continue
            if stripped.startswith("#"):
                raise self.error(number, "'#' starts a comment only in the first column")
            if stripped.startswith("["):
                entry = None
                super_match = _SUPERSECTION.fullmatch(stripped)
                section_match = _SECTION.fullmatch(stripped)
                if super_match:
                    title = super_match.group(1).strip(_BLANK)
                    name = self._header_name(number, title, "[[", "]]")
                    if name in supersections:
                        raise self.error(
                            number,
                            f"[[{title}]] appears a second time (first at line "
                            f"{supersections[name].line}); DCMTK reads only the first: "
                            "merge the two",
                        )
                    current = supersections[name] = _Supersection(name, title, number)
                    section = None
                elif section_match:
                    title = section_match.group(1).strip(_BLANK)
                    name = self._header_name(number, title, "[", "]")
                    if current is None:
                        raise self.error(
                            number,
                            f"section [{title}] comes before any [[Supersection]] header "
                            "such as [[TransferSyntaxes]]",
                        )
                    section = _Section(name, title, number)
                    current.sections.append(section)
                else:
                    raise self.error(
                        number,
                        f"malformed header '{stripped}': write [Section] or [[Supersection]] "
                        "alone on its line",
                    )
                continue
            key_text, equals, value = stripped.partition("=")
            if not equals:
                raise self.error(
                    number,
                    f"'{_shorten(stripped)}' is neither 'Key = Value' nor a [Section] header",
                )
            key_text = key_text.strip(_BLANK)
            key = normalize_name(key_text)
            if not key:
                raise self.error(number, "missing key before '='")
            if section is None:
                where = "[[Supersection]] and [Section]" if current is None else "[Section]"
                raise self.error(number, f"entry {key_text} comes before any {where} header")
            if key in section.by_key:
                raise self.error(
                    number,
                    f"{key_text} appears a second time in [{section.title}] (first at line "
                    f"{section.by_key[key].line}); DCMTK uses only the first: remove one",
                )
            entry = _Entry(key, key_text, number, [(number, value.strip(_BLANK))])
            section.by_key[key] = entry
            section.entries.append(entry)
        return supersections

    def _header_name(self, number: int, title: str, left: str, right: str) -> str:
        name = normalize_name(title)
        if not name:
            raise self.error(number, f"empty name in {left}{title}{right}")
        return name

    # ---- values ----

    def single_value(self, entry: _Entry, where: str) -> str:
        parts = [(number, text) for number, text in entry.lines if text]
        if not parts:
            raise self.error(entry.line, f"{entry.key_text} has no value {where}")
        if len(parts) > 1:
            raise self.error(
                parts[1][0],
                f"this line starts with white space, so it continues the value of "
                f"{entry.key_text} (line {entry.line}) {where}; start keys in the first column",
            )
        value = parts[0][1]
        if any(c in value for c in _BLANK):
            raise self.error(
                entry.line,
                f"value '{value}' of {entry.key_text} {where} contains white space; "
                "'#' starts a comment only in the first column",
            )
        return value

    def joined_value(self, entry: _Entry) -> str:
        return "\n".join(text for _, text in entry.lines if text)

    def uid(self, entry: _Entry, token: str, what: str, where: str) -> str:
        if any(c.isspace() for c in token):
            raise self.error(entry.line, f"{what} '{_shorten(token)}' {where} contains white space")
        if not token:
            raise self.error(entry.line, f"{entry.key_text} names no {what} {where}")
        # DcmUIDHandler skips one leading '=' before a name ("=CTImageStorage").
        lookup = token[1:] if token.startswith("=") and not token[1:2].isdigit() else token
        uid = resolve_uid(lookup)
        if uid is None:
            if "0" <= token[:1] <= "9":
                raise self.error(
                    entry.line,
                    f"'{token}' {where} is not a valid UID (PS3.5 9.1: digits and dots, "
                    "no leading zeros in a component, at most 64 characters)",
                )
            hint = difflib.get_close_matches(lookup, known_names(), n=1, cutoff=0.75)
            suggestion = (
                f"; did you mean '{hint[0]}'?"
                if hint
                else ("; use a DCMTK name, a DICOM keyword or a numeric UID")
            )
            raise self.error(entry.line, f"unknown {what} name '{token}' {where}{suggestion}")
        kind = uid_kind(uid)
        if what == "transfer syntax" and kind not in ("", "transfer_syntax", "unknown"):
            raise self.error(
                entry.line,
                f"'{token}' {where} is a {kind.replace('_', ' ').replace('sop', 'SOP')}, "
                "not a transfer syntax",
            )
        if what == "SOP class" and kind == "transfer_syntax":
            raise self.error(entry.line, f"'{token}' {where} is a transfer syntax, not a SOP class")
        return uid

    def split_pair(self, entry: _Entry, where: str, second: str) -> tuple[str, str]:
        value = self.joined_value(entry)
        first, backslash, rest = value.partition("\\")
        if not backslash:
            raise self.error(
                entry.line,
                f"{entry.key_text} {where} lacks '\\': write SOPClass\\{second}",
            )
        return first.strip(), rest

    def numbered(self, section: _Section, prefix: str, spelling: str, where: str) -> list[_Entry]:
        by_number: dict[int, _Entry] = {}
        pattern = re.compile(re.escape(prefix) + "([0-9]+)")
        for entry in section.entries:
            match = pattern.fullmatch(entry.key)
            if match is None:
                raise self.error(
                    entry.line,
                    f"unknown key {entry.key_text} {where}: expected {spelling}1, {spelling}2, ...",
                )
            digits = match.group(1)
            if digits.startswith("0"):
                raise self.error(
                    entry.line,
                    f"{entry.key_text} {where}: numbers start at 1 and have no leading zeros "
                    f"(DCMTK looks for {spelling}{int(digits) or 1} and ignores this entry)",
                )
            by_number[int(digits)] = entry
        for expected in range(1, len(by_number) + 1):
            if expected not in by_number:
                after = by_number[min(n for n in by_number if n > expected)]
                raise self.error(
                    after.line,
                    f"{after.key_text} {where} but no {spelling}{expected}: number the entries "
                    f"1, 2, 3, ... without gaps (DCMTK stops reading at the first missing number)",
                )
        return [by_number[n] for n in sorted(by_number)]


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(uid: str) -> str:
    name = uid_name(uid)
    return uid if name == uid else f"{name} ({uid})"


_T = TypeVar("_T")


@dataclass
class _NamedList(Generic[_T]):
    """The entries of one or more same-named sections of a supersection: DCMTK appends them."""

    title: str
    line: int
    items: list[tuple[_T, int]] = field(default_factory=list)  # (item, its line)


def _group(supersection: _Supersection | None) -> dict[str, list[_Section]]:
    groups: dict[str, list[_Section]] = {}
    if supersection is not None:
        for section in supersection.sections:
            groups.setdefault(section.name, []).append(section)
    return groups


def _lookup(
    parser: _Parser,
    lists: Mapping[str, _NamedList[_T]],
    reference: str,
    entry: _Entry,
    what: str,
    where: str,
) -> _NamedList[_T]:
    """The list a reference names; dcasccff.cc drops all white space of a reference."""
    reference = "".join(reference.split())
    found = lists.get(normalize_name(reference)) if normalize_name(reference) else None
    supersection = {
        "transfer syntax": "TransferSyntaxes",
        "presentation context": "PresentationContexts",
        "SCP/SCU role selection": "SCPSCURoleSelection",
        "extended negotiation": "ExtendedNegotiation",
    }[what]
    if found is None:
        defined = ", ".join(named.title for named in lists.values()) or "none"
        raise parser.error(
            entry.line,
            f"undefined {what} list '{reference}' {where}; "
            f"lists defined in [[{supersection}]]: {defined}",
        )
    if not found.items:
        raise parser.error(
            entry.line, f"{what} list [{found.title}] (line {found.line}) used {where} is empty"
        )
    return found


def _transfer_syntax_lists(
    parser: _Parser, supersection: _Supersection
) -> dict[str, _NamedList[str]]:
    lists: dict[str, _NamedList[str]] = {}
    for name, sections in _group(supersection).items():
        named = lists[name] = _NamedList(sections[0].title, sections[0].line)
        for section in sections:
            where = f"in [[TransferSyntaxes]] [{section.title}]"
            for entry in parser.numbered(section, "TRANSFERSYNTAX", "TransferSyntax", where):
                token = parser.single_value(entry, where)
                uid = parser.uid(entry, token, "transfer syntax", where)
                if all(uid != earlier for earlier, _ in named.items):  # a repeat is never chosen
                    named.items.append((uid, entry.line))
    return lists


def _context_lists(
    parser: _Parser, supersection: _Supersection, ts_lists: Mapping[str, _NamedList[str]]
) -> dict[str, _NamedList[PresentationContextSpec]]:
    lists: dict[str, _NamedList[PresentationContextSpec]] = {}
    for name, sections in _group(supersection).items():
        named = lists[name] = _NamedList(sections[0].title, sections[0].line)
        for section in sections:
            where = f"in [[PresentationContexts]] [{section.title}]"
            entries = parser.numbered(section, "PRESENTATIONCONTEXT", "PresentationContext", where)
            for entry in entries:
                sop_class, reference = parser.split_pair(entry, where, "TransferSyntaxList")
                uid = parser.uid(entry, sop_class, "SOP class", where)
                syntaxes = _lookup(parser, ts_lists, reference, entry, "transfer syntax", where)
                spec = PresentationContextSpec(uid, tuple(ts for ts, _ in syntaxes.items))
                named.items.append((spec, entry.line))
    return lists


def _role(parser: _Parser, entry: _Entry, uid: str, text: str, where: str) -> RoleSpec:
    role = text.strip().upper()  # dcasccff.cc: SCU, SCP or BOTH in any case
    if role not in ("SCU", "SCP", "BOTH"):
        raise parser.error(
            entry.line, f"unknown role '{text.strip()}' {where}: write SCU, SCP or BOTH"
        )
    return RoleSpec(uid, scu=role != "SCP", scp=role != "SCU")


def _extended(
    parser: _Parser, entry: _Entry, uid: str, text: str, where: str
) -> ExtendedNegotiationSpec:
    text = text.strip()
    if not text:
        raise parser.error(entry.line, f"{entry.key_text} {where} has no data after '\\'")
    if len(text) % 2 or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise parser.error(
            entry.line,
            f"extended negotiation data of {entry.key_text} {where} must be pairs of "
            "hexadecimal digits without spaces, e.g. 020003000000",
        )
    data = bytes.fromhex(text)
    if len(data) > _MAX_EXTENDED_NEGOTIATION:
        raise parser.error(
            entry.line,
            f"extended negotiation data of {entry.key_text} {where} is {len(data)} bytes; "
            f"DCMTK handles at most {_MAX_EXTENDED_NEGOTIATION}",
        )
    return ExtendedNegotiationSpec(uid, data)


def _per_sop_class_lists(
    parser: _Parser,
    supersection: _Supersection | None,
    what: str,
    spelling: str,
    second: str,
    make: Callable[[_Parser, _Entry, str, str, str], _T],
) -> dict[str, _NamedList[_T]]:
    """Role selection or extended negotiation lists: at most one item per SOP class."""
    title = "SCPSCURoleSelection" if spelling == "Role" else "ExtendedNegotiation"
    lists: dict[str, _NamedList[_T]] = {}
    for name, sections in _group(supersection).items():
        named = lists[name] = _NamedList(sections[0].title, sections[0].line)
        first: dict[str, int] = {}
        for section in sections:
            where = f"in [[{title}]] [{section.title}]"
            for entry in parser.numbered(section, spelling.upper(), spelling, where):
                sop_class, rest = parser.split_pair(entry, where, second)
                uid = parser.uid(entry, sop_class, "SOP class", where)
                if uid in first:
                    raise parser.error(
                        entry.line,
                        f"second {what} item for SOP class {_describe(uid)} {where} "
                        f"(first at line {first[uid]})",
                    )
                first[uid] = entry.line
                named.items.append((make(parser, entry, uid, rest, where), entry.line))
    return lists


def _check_listed(
    parser: _Parser,
    named: _NamedList[_T],
    uid_of: Callable[[_T], str],
    listed: set[str],
    what: str,
    where: str,
    contexts_title: str,
) -> tuple[_T, ...]:
    """dcasccfg.cc addProfile(): every role/extended negotiation SOP class is a context's."""
    for item, line in named.items:
        if uid_of(item) not in listed:
            raise parser.error(
                line,
                f"{what} item for SOP class {_describe(uid_of(item))} in [{named.title}], used "
                f"{where}, but presentation context list [{contexts_title}] does not list "
                "that class",
            )
    return tuple(item for item, _ in named.items)


def parse_asconfig(text: str, filename: str) -> AssociationProfiles:
    """Parse a whole file; every problem raises ConfigError(filename, line, message)."""
    parser = _Parser(filename)
    if text.startswith("\ufeff"):
        text = text[1:]
    supersections = parser.read_structure(text)
    missing = [f"[[{_TITLES[name]}]]" for name in _MANDATORY if name not in supersections]
    if missing:
        raise parser.error(
            None,
            f"missing mandatory supersection{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}: an association configuration file needs "
            "[[TransferSyntaxes]], [[PresentationContexts]] and [[Profiles]]",
        )
    # The order in which dcasccff.cc reads them, so the first error is the same one.
    ts_lists = _transfer_syntax_lists(parser, supersections[_TRANSFER_SYNTAXES])
    pc_lists = _context_lists(parser, supersections[_PRESENTATION_CONTEXTS], ts_lists)
    role_lists = _per_sop_class_lists(
        parser,
        supersections.get(_ROLES),
        "SCP/SCU role selection",
        "Role",
        "SCU, SCP or BOTH",
        _role,
    )
    ext_lists = _per_sop_class_lists(
        parser,
        supersections.get(_EXTENDED),
        "extended negotiation",
        "ExtendedNegotiation",
        "hexadecimal data",
        _extended,
    )

    profiles: list[Profile] = []
    origins: dict[str, _ProfileOrigin] = {}
    for section in supersections[_PROFILES].sections:
        where = f"in [[Profiles]] [{section.title}]"
        if section.name in origins:
            raise parser.error(
                section.line,
                f"a second profile [{section.title}] (first at line "
                f"{origins[section.name].line}): profile names must differ",
            )
        for entry in section.entries:
            if entry.key not in (_PRESENTATION_CONTEXTS, _ROLES, _EXTENDED):
                raise parser.error(
                    entry.line,
                    f"unknown key {entry.key_text} {where}: expected PresentationContexts, "
                    "SCPSCURoleSelection or ExtendedNegotiation",
                )
        pc_entry = section.by_key.get(_PRESENTATION_CONTEXTS)
        if pc_entry is None:
            raise parser.error(
                section.line, f"profile [{section.title}] has no PresentationContexts entry"
            )
        contexts = _lookup(
            parser,
            pc_lists,
            parser.joined_value(pc_entry),
            pc_entry,
            "presentation context",
            where,
        )
        listed = {context.abstract_syntax for context, _ in contexts.items}
        roles: tuple[RoleSpec, ...] = ()
        role_entry = section.by_key.get(_ROLES)
        if role_entry is not None:
            role_list = _lookup(
                parser,
                role_lists,
                parser.joined_value(role_entry),
                role_entry,
                "SCP/SCU role selection",
                where,
            )
            roles = _check_listed(
                parser,
                role_list,
                lambda r: r.sop_class_uid,
                listed,
                "SCP/SCU role selection",
                where,
                contexts.title,
            )
        extended: tuple[ExtendedNegotiationSpec, ...] = ()
        ext_entry = section.by_key.get(_EXTENDED)
        if ext_entry is not None:
            ext_list = _lookup(
                parser,
                ext_lists,
                parser.joined_value(ext_entry),
                ext_entry,
                "extended negotiation",
                where,
            )
            extended = _check_listed(
                parser,
                ext_list,
                lambda e: e.sop_class_uid,
                listed,
                "extended negotiation",
                where,
                contexts.title,
            )
        profiles.append(
            Profile(
                name=section.title,
                contexts=tuple(context for context, _ in contexts.items),
                roles=roles,
                extended_negotiation=extended,
                source=filename,
            )
        )
        origins[section.name] = _ProfileOrigin(
            section.line, contexts.title, tuple(line for _, line in contexts.items)
        )
    return AssociationProfiles(tuple(profiles), source=filename, _origins=origins)


# --------------------------------------------------------------------------
# Writing


_ROLE_WORDS: Final = {(True, False): "SCU", (False, True): "SCP", (True, True): "BOTH"}


def _section_title(text: str) -> str:
    return text.replace("[", "(").replace("]", ")").strip()


def render_asconfig(
    profiles: AssociationProfiles,
    *,
    header: str = "",
    uid_text: Callable[[str], str] = uid_name,
    list_names: Mapping[tuple[str, ...], str] | None = None,
    comments: Mapping[str, str] | None = None,
) -> str:
    """Write profiles in DCMTK's format; parse_asconfig() reads back equal profiles.

    ``header`` becomes comment lines at the top.  ``uid_text`` writes a UID (a
    DCMTK name by default); where it writes a number for a UID DCMTK has a name
    for, a comment line names it.  ``list_names`` names transfer syntax lists
    (otherwise TransferSyntaxes1, 2, ...).  ``comments`` maps a profile name to
    comment lines written above its section in [[Profiles]].  Every profile
    needs at least one context, every context at least one transfer syntax.
    """
    names = dict(list_names or {})
    taken = {normalize_name(title) for title in names.values()}
    counter = 0
    for profile in profiles.profiles:
        for context in profile.contexts:
            if context.transfer_syntaxes not in names:
                counter += 1
                while normalize_name(f"TransferSyntaxes{counter}") in taken:
                    counter += 1
                names[context.transfer_syntaxes] = f"TransferSyntaxes{counter}"
    used = dict.fromkeys(c.transfer_syntaxes for p in profiles.profiles for c in p.contexts)

    out: list[str] = []

    def comment(text: str) -> None:
        out.extend(f"# {line}".rstrip() + "\n" for line in text.splitlines())

    def value(key: str, uid: str, rest: str = "") -> None:
        written = uid_text(uid)
        if written == uid and uid_name(uid) != uid:
            out.append(f"# {uid_name(uid)}\n")
        out.append(f"{key} = {written}{rest}\n")

    def supersection(title: str) -> None:
        out.append("\n# " + "=" * 76 + f"\n[[{title}]]\n# " + "=" * 76 + "\n")

    if header:
        comment(header)
    supersection("TransferSyntaxes")
    for syntaxes in used:
        out.append(f"\n[{names[syntaxes]}]\n")
        for number, uid in enumerate(syntaxes, start=1):
            value(f"TransferSyntax{number}", uid)

    supersection("PresentationContexts")
    for profile in profiles.profiles:
        out.append(f"\n[{_section_title(profile.name)} Contexts]\n")
        for number, context in enumerate(profile.contexts, start=1):
            value(
                f"PresentationContext{number}",
                context.abstract_syntax,
                "\\" + names[context.transfer_syntaxes],
            )

    if any(profile.roles for profile in profiles.profiles):
        supersection("SCPSCURoleSelection")
        for profile in profiles.profiles:
            if profile.roles:
                out.append(f"\n[{_section_title(profile.name)} Roles]\n")
                for number, role in enumerate(profile.roles, start=1):
                    word = _ROLE_WORDS.get((role.scu, role.scp))
                    if word is None:
                        raise ValueError(
                            f"role for {role.sop_class_uid} allows neither SCU nor SCP"
                        )
                    value(f"Role{number}", role.sop_class_uid, "\\" + word)

    if any(profile.extended_negotiation for profile in profiles.profiles):
        supersection("ExtendedNegotiation")
        for profile in profiles.profiles:
            if profile.extended_negotiation:
                out.append(f"\n[{_section_title(profile.name)} Extended Negotiation]\n")
                for number, item in enumerate(profile.extended_negotiation, start=1):
                    value(
                        f"ExtendedNegotiation{number}",
                        item.sop_class_uid,
                        "\\" + item.data.hex().upper(),
                    )

    supersection("Profiles")
    for profile in profiles.profiles:
        title = _section_title(profile.name)
        out.append("\n")
        if comments and profile.name in comments:
            comment(comments[profile.name])
        out.append(f"[{title}]\nPresentationContexts = {title} Contexts\n")
        if profile.roles:
            out.append(f"SCPSCURoleSelection = {title} Roles\n")
        if profile.extended_negotiation:
            out.append(f"ExtendedNegotiation = {title} Extended Negotiation\n")
    return "".join(out)
