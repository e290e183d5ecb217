"""DCMTK data dictionaries (``DCMDICTPATH``): the ``.dic`` format, read and installed.

Both DCMTK manuals (dcmrecv.man, storescp.man, "ENVIRONMENT") document
``DCMDICTPATH``: a list of dictionary files, separated like the shell's ``PATH``
(``:`` here), each loaded in turn.  A site that names its private attributes in
such a file expects them known to the receiver too: a private sequence in an
Implicit VR data set is then parsed as a sequence, and the attribute can be named
in ``--output-template``.

The format (DCMTK's ``dcmdata/data/dicom.dic`` and ``private.dic`` describe it,
``DcmDataDictionary::loadDictionary`` reads it): one entry per line, fields separated
by one tab - tag, VR, name, then optionally VM and version; ``#`` starts a comment
line.  The tag is ``(gggg,eeee)``, a private tag ``(gggg,"CREATOR",ee)``, and a part
may be a range ``gggg-o-gggg`` (odd), ``-e-`` (even), ``-u-`` (any) or ``gggg-gggg``
(even).  DCMTK reports a bad line and goes on; we refuse the whole file with the
file and line, since a half-loaded dictionary silently changes how data sets parse.

DCMTK keeps a range as one entry; our tables of private attributes (pydicom's, and
the data set check's private sequences) need one key per group and element byte, so
a private range is expanded.  The file size is bounded (4 MiB) and so is the
expansion: the private entries of all dictionaries together may stand for at most
:data:`MAX_EXPANDED_TAGS` keys, so that a line such as ``(0009-o-FFFF,"X",00-FF) SQ``
(8.4 million keys: 15.7 s and 547 MB before this bound) is refused at once with its
file and line.  DCMTK's own private.dic needs 6,265.

:func:`parse_dictionary` is pure; :func:`install` hands the entries to pydicom's
dictionaries (single tags; ranges other than the private-block form are kept for
the SQ check only, as pydicom has no range entries of its own).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: The environment variable DCMTK reads, and its separator on POSIX systems.
DCMDICTPATH = "DCMDICTPATH"
PATH_SEPARATOR = ":"

#: VRs of PS3.5 Table 6.2-1, and DCMTK's internal ones with pydicom's equivalent.
_VRS = frozenset(
    {
        "AE",
        "AS",
        "AT",
        "CS",
        "DA",
        "DS",
        "DT",
        "FD",
        "FL",
        "IS",
        "LO",
        "LT",
        "OB",
        "OD",
        "OF",
        "OL",
        "OV",
        "OW",
        "PN",
        "SH",
        "SL",
        "SQ",
        "SS",
        "ST",
        "SV",
        "TM",
        "UC",
        "UI",
        "UL",
        "UN",
        "UR",
        "US",
        "UT",
        "UV",
    }
)
_DCMTK_VRS = {"ox": "OB or OW", "xs": "US or SS", "lt": "US or SS or OW", "up": "UL", "px": "OB"}
_DCMTK_SKIP = frozenset({"na", "pixelSQ", "fdSQ", "xsSQ"})

_PART = re.compile(r"([0-9A-Fa-f]{1,4})(?:-(?:([oOeEuU])-)?([0-9A-Fa-f]{1,4}))?")
_TAG = re.compile(r'\(\s*([^,"]+?)\s*,\s*(?:"([^"]*)"\s*,\s*)?([^)]+?)\s*\)')
_VM = re.compile(r"[0-9]+(-([0-9]+|n|[0-9]+n))?")


#: Keys the private entries of all dictionaries together may expand to (module notes).
MAX_EXPANDED_TAGS = 65536


class DictionaryError(ValueError):
    """A dictionary file that cannot be used: ``FILE:LINE: what``."""


@dataclass(frozen=True)
class Range:
    low: int
    high: int
    #: "odd", "even" or "any": which numbers in low..high the entry covers.
    parity: str

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int) or not self.low <= value <= self.high:
            return False
        return self.parity == "any" or (value % 2 == 1) == (self.parity == "odd")

    def __len__(self) -> int:
        """How many numbers the range covers (counted, not enumerated)."""
        if self.parity == "any":
            return self.high - self.low + 1
        first = self.low if (self.low % 2 == 1) == (self.parity == "odd") else self.low + 1
        return 0 if first > self.high else (self.high - first) // 2 + 1

    def low_bytes(self) -> list[int]:
        """The distinct low bytes (element & 0xFF) of the numbers covered, in order:
        at most 256, found among the first 512 numbers whatever the range's size."""
        seen = dict.fromkeys(
            value & 0xFF
            for value in range(self.low, min(self.high, self.low + 511) + 1)
            if value in self
        )
        return list(seen)


@dataclass(frozen=True)
class DictEntry:
    group: Range
    element: Range
    vr: str
    keyword: str
    vm: str
    version: str
    private_creator: str | None = None

    @property
    def expansion(self) -> int:
        """Keys a private entry becomes in our tables: one per (group, element byte).
        Public entries are not expanded (a range is not installed at all)."""
        if self.private_creator is not None:
            return len(self.group) * len(self.element.low_bytes())
        return 0

    @property
    def single_tag(self) -> int | None:
        if self.group.low == self.group.high and self.element.low == self.element.high:
            return (self.group.low << 16) | self.element.low
        return None


def _range(text: str, line: str) -> Range:
    match = _PART.fullmatch(text.replace(" ", ""))
    if match is None:
        raise DictionaryError(f"{line}: bad tag part {text!r}")
    low = int(match.group(1), 16)
    if match.group(3) is None:
        return Range(low, low, "any")
    restrictor = (match.group(2) or "e").lower()
    parity = {"o": "odd", "e": "even", "u": "any"}[restrictor]
    high = int(match.group(3), 16)
    if high < low:
        raise DictionaryError(f"{line}: range {text!r} ends before it starts")
    return Range(low, high, parity)


def parse_dictionary(text: str, filename: str, expanded: int = 0) -> list[DictEntry]:
    """The entries of one ``.dic`` file (pure); DictionaryError names file and line.

    ``expanded`` is how many keys the dictionaries read before this one expand to:
    the entries of all of them together may expand to at most MAX_EXPANDED_TAGS.
    """
    entries: list[DictEntry] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        where = f"{filename}:{number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            raise DictionaryError(f"{where}: too few fields (fields are separated by one tab)")
        if len(fields) > 5:
            raise DictionaryError(f"{where}: too many fields")
        tag = _TAG.fullmatch(fields[0].strip())
        if tag is None:
            raise DictionaryError(f"{where}: bad Tag field {fields[0].strip()!r}")
        group = _range(tag.group(1), where)
        element = _range(tag.group(3), where)
        creator = tag.group(2)
        if group.high > 0xFFFF or element.high > 0xFFFF:
            raise DictionaryError(f"{where}: tag out of range")
        vr = fields[1].strip()
        if vr not in _VRS and vr not in _DCMTK_VRS and vr not in _DCMTK_SKIP:
            raise DictionaryError(f"{where}: bad VR field {vr!r}")
        keyword = fields[2].strip()
        if not keyword:
            raise DictionaryError(f"{where}: empty name")
        vm = fields[3].strip() if len(fields) > 3 else "1"
        if not _VM.fullmatch(vm):
            raise DictionaryError(f"{where}: bad VM field {vm!r}")
        version = fields[4].strip() if len(fields) > 4 else "DICOM"
        if creator is not None and element.high > 0xFF and element.low < 0x1000:
            raise DictionaryError(f"{where}: a private element is ee or eeee >= 1000")
        entry = DictEntry(group, element, vr, keyword, vm, version, creator)
        expanded += entry.expansion
        if expanded > MAX_EXPANDED_TAGS:
            raise DictionaryError(
                f"{where}: the entry stands for {entry.expansion} tags, more than the"
                f" {MAX_EXPANDED_TAGS} all dictionaries together may expand to"
            )
        entries.append(entry)
    return entries


def dictionary_paths(value: str) -> list[str]:
    """The files named by a ``DCMDICTPATH`` value, in order; empty entries skipped."""
    return [path for path in value.split(PATH_SEPARATOR) if path]


@dataclass(frozen=True)
class SequenceTags:
    """What the data set check needs: which tags hold sequences beyond PS3.6's."""

    #: Public (or fixed) tags whose VR is SQ.
    public: frozenset[int]
    #: Private sequences: (group, private creator, element byte within the block).
    private: frozenset[tuple[int, str, int]]


def sequence_tags(entries: Iterable[DictEntry]) -> SequenceTags:
    public: set[int] = set()
    private: set[tuple[int, str, int]] = set()
    for entry in entries:
        if entry.vr != "SQ":
            continue
        if entry.private_creator is not None:
            low_bytes = entry.element.low_bytes()
            for group in range(entry.group.low, entry.group.high + 1):
                if group in entry.group:
                    for element in low_bytes:
                        private.add((group, entry.private_creator, element))
        elif entry.single_tag is not None:
            public.add(entry.single_tag)
    return SequenceTags(frozenset(public), frozenset(private))


def install(entries: Iterable[DictEntry]) -> int:
    """Add the single-tag entries to pydicom's dictionaries; returns how many."""
    from pydicom.datadict import add_dict_entries, add_private_dict_entries

    public: dict[int, tuple[str, str, str, str, str]] = {}
    private: dict[str, dict[int, tuple[str, str, str, str]]] = {}
    for entry in entries:
        if entry.vr in _DCMTK_SKIP:
            continue
        vr = _DCMTK_VRS.get(entry.vr, entry.vr)
        if entry.private_creator is not None:
            if entry.group.low != entry.group.high:
                continue
            # pydicom keys private entries by group and the element's low byte,
            # with "xx" standing for the block: (gggg,xxee).
            for element in entry.element.low_bytes():
                tag = (entry.group.low << 16) | element
                private.setdefault(entry.private_creator, {})[tag] = (
                    vr,
                    entry.vm,
                    entry.keyword,
                    "",
                )
        elif entry.single_tag is not None and not entry.group.low % 2:
            # An odd group without a creator is a private tag pydicom cannot key.
            public[entry.single_tag] = (vr, entry.vm, entry.keyword, "", entry.keyword)
    if public:
        add_dict_entries(public)
    for creator, items in private.items():
        add_private_dict_entries(creator, items)
    return len(public) + sum(len(items) for items in private.values())
