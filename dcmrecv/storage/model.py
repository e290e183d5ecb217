"""The storage layer's vocabulary: modes, results and the policy interface, pure types.

Both the configuration (``dcmrecv.config``) and the writer use these, so they live
below both: the configuration names the modes, the writer returns the results.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from dcmrecv.storage.dataset import DatasetSummary

if TYPE_CHECKING:
    from dcmrecv.storage.freespace import Watermark
    from dcmrecv.storage.template import Template


class PlanError(ValueError):
    """No file name can be made for this instance (the message says why)."""


@dataclass(frozen=True)
class PathPlan:
    """Where one instance goes, relative to the output directory."""

    #: Subdirectories below the output directory, outermost first; () for none.
    directory: tuple[str, ...]
    filename: str
    #: True for ``+fd``: a file of this name is the same SOP instance and is replaced.
    #: False for the other schemes: an existing file is someone else's; pick another name.
    replace_existing: bool

    @property
    def relative(self) -> PurePosixPath:
        return PurePosixPath(*self.directory, self.filename)


class SubdirectoryMode(enum.Enum):
    """``-s`` / ``+ssd`` (dcmrecv.man, "subdirectory generation")."""

    NONE = "none"  # -s  --no-subdir (default)
    SERIES_DATE = "series-date"  # +ssd --series-date-subdir: data/YYYY/MM/DD or undef/YYYYMMDD


class FilenameMode(enum.Enum):
    """``+fd`` / ``+fu`` / ``+fsu`` / ``+fst`` (dcmrecv.man, "filename generation")."""

    DEFAULT = "default"  # +fd  <prefix>.<SOP Instance UID>
    UNIQUE = "unique"  # +fu  <prefix>.X.<new UID>
    SHORT_UNIQUE = "short-unique"  # +fsu <prefix>_<16 hex digits>
    SYSTEM_TIME = "system-time"  # +fst <YYYYMMDDHHMMSS>.<microseconds>.<prefix>


class StorageMode(enum.Enum):
    """``-B`` / ``+B`` / ``--ignore`` (dcmrecv.man, "storage mode")."""

    NORMAL = "normal"  # -B: the data set is parsed before it is accepted
    BIT_PRESERVING = "bit-preserving"  # +B: the received bytes behind a file meta header
    IGNORE = "ignore"  # --ignore: receive, answer Success, store nothing


class DuplicatePolicy(enum.Enum):
    """``--on-duplicate``: what a second, different copy of a stored instance does.

    A duplicate is a name that identifies the instance (``+fd``, or an
    ``--output-template`` path) and is already taken.  A copy with the same bytes
    is always a no-op Success, whichever the policy.
    """

    OVERWRITE = "overwrite"  # DCMTK's behaviour: replace, warn
    KEEP = "keep"  # keep the first copy, answer Success
    RENAME = "rename"  # store the new copy as <name>~<n>
    REJECT = "reject"  # answer a failure (writer.STATUS_DUPLICATE)


@dataclass(frozen=True)
class StoreResult:
    """What to answer for one C-STORE, and where the instance went."""

    #: DIMSE status: 0x0000 success, 0xA700 out of resources, 0xA900 data set does not
    #: match SOP class, 0xC000..0xCFFF cannot understand.
    status: int
    #: The final file: the output directory joined with the relative path, not resolved.
    path: Path | None
    #: For the C-STORE-RSP Error Comment (0000,0902), at most 64 characters.
    error_comment: str | None
    #: An existing file of the same name was replaced (log OVERWRITE_WARNING).
    overwritten: bool = False
    #: ``path`` exactly as DCMTK prints it in "Stored received object to file: <path>":
    #: pathlib drops a leading "./", DCMTK keeps it (default output directory ".").
    log_path: str | None = None
    #: Study Instance UID (0020,000D) of a stored data set that was parsed, for
    #: storescp's end-of-study events; None when absent or not read (+B, --ignore).
    #: Not compared: it describes the data set, not the outcome.
    study_instance_uid: str | None = field(default=None, compare=False)
    #: Series Instance UID (0020,000E) of the same data set, for the study manifest.
    series_instance_uid: str | None = field(default=None, compare=False)
    #: Why a failure failed, or what a Success had to do unlike the others (an invalid
    #: UID named safely, a repair), for the log line the association writes: E: for a
    #: failure, W: otherwise.  Unlike error_comment, not cut to 64 characters.
    reason: str | None = field(default=None, compare=False)
    #: Where a refused instance would have gone (storescp names it before writing, and
    #: gives that name to ``-xcr``); None for the other namers and before naming.
    intended_path: str | None = field(default=None, compare=False)


class ConversionError(ValueError):
    """An output conversion is impossible for this instance (storescp's +t?, -F, ...)."""


@dataclass(frozen=True)
class InstanceFacts:
    """What the namer and the converter learn about one complete received instance."""

    sop_class_uid: str
    sop_instance_uid: str
    #: The transfer syntax the data set arrived in (the presentation context's).
    transfer_syntax_uid: str
    #: DCMTK's short code for the SOP class, None when it has none.
    modality: str | None
    #: The parsed top-level attributes; None in bit-preserving mode.
    summary: DatasetSummary | None
    calling_aetitle: str
    called_aetitle: str = ""
    peer_address: str = ""
    #: Local time the C-STORE request arrived ({ReceivedDate}, {ReceivedTime}); read
    #: only where a template asks for it.
    received: datetime | None = None


class StorageOptions(Protocol):
    """What the writer reads of the configuration (``ReceiverConfig`` provides it)."""

    @property
    def output_directory(self) -> Path: ...
    @property
    def subdirectory(self) -> SubdirectoryMode: ...
    @property
    def filename_mode(self) -> FilenameMode: ...
    @property
    def filename_extension(self) -> str: ...
    @property
    def storage_mode(self) -> StorageMode: ...
    @property
    def fsync(self) -> bool: ...
    @property
    def output_template(self) -> Template | None: ...
    @property
    def template_fallback(self) -> str: ...
    @property
    def on_duplicate(self) -> DuplicatePolicy: ...
    @property
    def min_free_space(self) -> Watermark | None: ...
    @property
    def free_space_interval(self) -> float: ...
    @property
    def quarantine_directory(self) -> Path | None: ...
    @property
    def quarantine_limit(self) -> Watermark | None: ...
