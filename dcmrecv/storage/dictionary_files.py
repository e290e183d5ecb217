"""``DCMDICTPATH``: read the data dictionaries at start-up, the thin I/O layer.

dcmrecv.man and storescp.man ("ENVIRONMENT") name the variable; the files are
DCMTK's ``.dic`` format (``dcmrecv.storage.dictionary`` parses it).  Each file is
read with a size bound (it is configuration: DCMTK's whole dicom.dic is 250 KB),
its entries join pydicom's dictionaries, and its sequences join the data set
check.  This runs before the command line's values are evaluated, because
``--output-template`` may use the dictionary's names.

Only attributes pydicom does not know are added: DCMTK's own names for standard
attributes differ from PS3.6's keywords in places, and the templates and the rest
of the receiver use the keywords.  DCMTK logs a bad line and goes on; we refuse to
start (exit 1, with FILE:LINE), since a half-read dictionary silently changes how
implicit VR data sets parse.
"""

from __future__ import annotations

from collections.abc import Mapping

from dcmrecv.boundedread import MAX_CONFIG_FILE_SIZE, FileTooLarge, read_bounded
from dcmrecv.storage.dataset import register_sequences
from dcmrecv.storage.dictionary import (
    DCMDICTPATH,
    DictEntry,
    DictionaryError,
    dictionary_paths,
    install,
    parse_dictionary,
    sequence_tags,
)


def read_dictionaries(value: str) -> list[DictEntry]:
    """The entries of every file ``value`` names, in order; DictionaryError otherwise."""
    entries: list[DictEntry] = []
    for path in dictionary_paths(value):
        try:
            data = read_bounded(path, MAX_CONFIG_FILE_SIZE)
        except FileTooLarge as exc:
            raise DictionaryError(f"{path}: {exc}") from None
        except OSError as exc:
            raise DictionaryError(f"{path}: cannot read: {exc.strerror or exc}") from None
        # DCMTK's files are ASCII; Latin-1 reads any byte, so names stay as written.
        expanded = sum(entry.expansion for entry in entries)
        entries.extend(parse_dictionary(data.decode("latin-1"), path, expanded))
    return entries


def load_dictionaries(environ: Mapping[str, str]) -> int:
    """Read ``DCMDICTPATH`` (if set), install what pydicom lacks, register the
    sequences; returns how many entries were added to pydicom's dictionaries."""
    value = environ.get(DCMDICTPATH, "")
    if not value:
        return 0
    entries = read_dictionaries(value)
    from pydicom.datadict import dictionary_has_tag

    new = [
        entry
        for entry in entries
        if entry.private_creator is not None
        or entry.single_tag is None
        or not dictionary_has_tag(entry.single_tag)
    ]
    added = install(new)
    tags = sequence_tags(entries)
    register_sequences(tags.public, tags.private)
    return added
