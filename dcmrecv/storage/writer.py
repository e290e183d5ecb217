"""Putting received instances on disk: temporary file, fsync, rename, directory fsync.

The association engine calls ``InstanceStore.begin()`` for each C-STORE request,
``IncomingInstance.write()`` for each data set fragment and ``commit()`` when the last
one has arrived (or ``discard()`` when the association goes away first).  Nothing here
raises for I/O or data problems: every outcome is a ``StoreResult`` with the DIMSE
status to answer (PS3.4 Table B.2-1) and, for a failure or a Success with a remark
(an invalid SOP Instance UID, a repair), the reason the association logs.

What a reader of the output directory sees:

* Only complete files under final names.  Data goes to a hidden temporary file
  ``.dcmrecv-<16 hex>.part`` directly in the output directory (readers skip dot files;
  it is on the same file system as every subdirectory we create), which is flushed,
  then linked or renamed to its final name, and the directory is flushed before
  Success is answered (``fsync=False`` skips both flushes).  Associations that wait
  for a flush at the same moment share one (storage/durability.py).  A failure (disk full, EIO,
  file size limit) answers 0xA700 and leaves no file under a final name; an earlier file
  of the same SOP instance stays as it was until a complete new one replaces it.
* A duplicate SOP instance (``+fd``) replaces the earlier file, as DCMTK does (it logs
  ``OVERWRITE_WARNING``); ``StoreResult.overwritten`` says so.  Whether a file was
  there is decided by ``link()``, which fails atomically if it exists, so two
  associations storing the same instance at once end with one intact file and exactly
  one of them reports the overwrite.  The other schemes never replace a file: on a
  collision they draw another name (``link()`` again, up to DCMTK's 1024 tries).
* Nothing outside the output directory: subdirectories are opened one component at a
  time relative to their parent with ``O_NOFOLLOW``, so a symbolic link placed inside
  the output tree is never followed (the instance is refused with 0xA700 instead), and
  names come from ``dcmrecv.storage.naming.plan_path``, which sanitises peer values.
* Each temporary file is ``flock``'ed while in use, so ``cleanup_leftovers()`` of a
  second receiver on the same directory never deletes a file that is being written.
* With ``fsync=False`` (``--no-fsync``) the file has no name at all until it is
  complete: it is made with ``O_TMPFILE`` and linked to its final name through
  ``/proc/self/fd`` (linkat(2)), so there is no temporary name to draw, lock and
  remove: three system calls less per instance (issue 21), and nothing a crash could
  leave behind.  A duplicate that replaces a file, a conversion and a quarantine give
  it a temporary name first, and go on as above.  Where the output file system or
  /proc cannot do this (tried once, at start), temporary names are used as with fsync.

Storage modes (dcmrecv.man, "storage mode"):

* normal (``-B``): the data set is checked before it is accepted: ``scan_dataset``
  walks every element header, length and sequence (nesting at most 64 deep; a deflated
  data set is inflated with a size limit) without loading values; pixel data is
  seeked over.  One that does not parse gets 0xC000 and no file; one whose SOP Class or
  Instance UID differs from the request gets 0xA900 and no file, and one that lacks them
  0xC000 (DCMTK's storescp rules).  So does one that contradicts its transfer syntax:
  odd length, native Pixel Data in an encapsulated syntax or the reverse (DCMTK refuses
  these as well), so that every Success reads back in dcmdump and pydicom.  The file
  then holds the received bytes unchanged but for one repair DCMTK makes too:
  encapsulated Pixel Data received with VR OW is written as OB (PS3.5 A.4).
  DCMTK instead re-encodes the data set in this mode (verified with its dcmrecv: every
  sequence and item gets undefined length, Data Set Trailing Padding (FFFC,FFFC) is
  dropped, and (0002,0016) is not written); we keep the bytes the sender sent, which is
  faster and loses nothing, and a reader sees the same attributes.
* bit-preserving (``+B``): the received bytes, unchanged, once the same walk has
  found that they read (a truncated data set gets 0xC000, where DCMTK aborts); the
  UIDs, the length and the Pixel Data's encoding are not checked against the request
  and the transfer syntax.  Unlike DCMTK, ``+ssd`` works here: the Series Date is
  read in that walk.
* ignore: nothing is written; Success with ``path`` None.

Deflated transfer syntaxes are stored as received (deflated) behind the file meta
information, as DCMTK's bit-preserving mode stores them.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import errno
import fcntl
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final, Protocol

from dcmrecv.logs.printable import printable_value
from dcmrecv.status import Status
from dcmrecv.storage.dataset import (
    DatasetError,
    DatasetSummary,
    scan_buffer,
    scan_dataset,
    wanted_tags,
)
from dcmrecv.storage.durability import GroupCommit
from dcmrecv.storage.filemeta import build_file_meta
from dcmrecv.storage.freespace import FreeSpace
from dcmrecv.storage.model import (
    ConversionError as ConversionError,
)
from dcmrecv.storage.model import (
    DuplicatePolicy,
    StorageMode,
    StorageOptions,
)
from dcmrecv.storage.model import (
    InstanceFacts as InstanceFacts,
)
from dcmrecv.storage.model import (
    StoreResult as StoreResult,
)
from dcmrecv.storage.namer import Namer, namer_for
from dcmrecv.storage.naming import (
    UNKNOWN_MODALITY,
    PathPlan,
    PlanError,
    check_extension,
    is_valid_uid,
)
from dcmrecv.storage.quarantine import Quarantine
from dcmrecv.storage.recovery import new_temp_name, recover, sized_temp_name

log = logging.getLogger(__name__)

#: DIMSE status codes of a C-STORE-RSP (PS3.4 Table B.2-1), named as in dimse.py.
STATUS_SUCCESS: Final = Status.SUCCESS
STATUS_OUT_OF_RESOURCES: Final = Status.OUT_OF_RESOURCES
STATUS_DATA_SET_DOES_NOT_MATCH_SOP_CLASS: Final = Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
STATUS_CANNOT_UNDERSTAND: Final = Status.CANNOT_UNDERSTAND
#: ``--on-duplicate reject`` (see Status.DUPLICATE_REJECTED for why this code).
STATUS_DUPLICATE: Final = Status.DUPLICATE_REJECTED

#: DCMTK's warning when an instance replaces a file (dstorscp.cc, logged at WARN).
OVERWRITE_WARNING: Final = "file already exists, overwriting: {path}"
#: Offset of the VR within an explicit VR element header (PS3.5 7.1.2).
_VR_OFFSET: Final = 4

#: Small fragments are gathered up to this size before one write(); larger ones go
#: straight from the caller's buffer to the file.
BUFFER_SIZE: Final = 256 * 1024
#: Read size of the data set check on a file.  The walk reads element headers and
#: seeks over values, so what it reads is mostly the few KB before Pixel Data: a 64 KB
#: buffer copied 60 KB per instance that nobody read (issue 21).
_SCAN_BUFFER: Final = 8192
#: DCMTK's OFFilenameCreator gives up after this many names that already exist.
MAX_NAME_TRIES: Final = 1024
#: Error Comment (0000,0902) is LO: at most 64 characters (PS3.5 Table 6.2-1).
MAX_ERROR_COMMENT: Final = 64

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: A file with no name in the directory it is opened on (Linux 3.11; ext4, XFS,
#: btrfs, tmpfs...); 0 where the platform has none.
_O_TMPFILE: Final = getattr(os, "O_TMPFILE", 0)
_NAMELESS_FLAGS: Final = _O_TMPFILE | os.O_RDWR | os.O_CLOEXEC
#: link() is not offered by every file system (vfat, some network file systems).
_NO_LINK_ERRNOS: Final = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})

ModalityLookup = Callable[[str], "str | None"]
Clock = Callable[[], datetime]


class Converter(Protocol):
    """Rewrites a complete received file in another encoding (storescp's output options).

    ``convert`` reads the received file (preamble, file meta information and data
    set, positioned at 0) from ``source`` and writes the new one to ``target``;
    ConversionError refuses the instance with 0xA700, as DCMTK does when it cannot
    write the file.
    """

    def changes(self, facts: InstanceFacts) -> bool: ...

    def convert(
        self, source: BinaryIO, source_path: str, facts: InstanceFacts, target: BinaryIO
    ) -> None: ...


def _comment(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")[:MAX_ERROR_COMMENT]


def _failure(status: int, text: str) -> StoreResult:
    return StoreResult(status=status, path=None, error_comment=_comment(text), reason=text)


def _out_of_resources(exc: OSError) -> StoreResult:
    reason = exc.strerror or type(exc).__name__
    code = errno.errorcode.get(exc.errno or 0)
    detail = f"{reason} ({code})" if code else reason
    # DCMTK: "E: cannot store received object: <path>: <why>".
    return StoreResult(
        status=STATUS_OUT_OF_RESOURCES,
        path=None,
        error_comment=_comment(f"cannot store: {reason}"),
        reason=f"cannot store received object: {detail}",
    )


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write until all is written; a short write (file size limit) then raises."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


#: The most buffers one writev takes (POSIX IOV_MAX is at least 16; Linux: 1024).
_IOV_MAX: Final = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16, 1024)


def _writev_all(fd: int, views: list[memoryview]) -> None:
    """os.writev until everything is written; a short write (file size limit) raises."""
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        if written == 0:
            raise OSError(errno.EIO, "write returned 0 bytes")
        while views and written >= views[0].nbytes:
            written -= views[0].nbytes
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _uid(value: str) -> str:
    return value.rstrip("\0 ")


def _fd_path(fd: int) -> str:
    """The name linkat(2) gives a nameless file by.  Only with a ``dst_dir_fd`` does
    os.link call linkat with AT_SYMLINK_FOLLOW (else link(2), which would link the
    /proc symbolic link itself)."""
    return f"/proc/self/fd/{fd}"


def nameless_files_work(root: str) -> bool:
    """Whether ``root`` takes files made without a name and named later (``O_TMPFILE``,
    then linkat(2) through ``/proc/self/fd``).  Tried with an empty file, given a
    temporary file's name (which recovery removes, should we die right here) and
    removed again."""
    if not _O_TMPFILE:
        return False
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return False
    try:
        fd = os.open(".", _NAMELESS_FLAGS, 0o600, dir_fd=root_fd)
        try:
            name = new_temp_name()
            os.link(_fd_path(fd), name, dst_dir_fd=root_fd)
            os.unlink(name, dir_fd=root_fd)
        finally:
            os.close(fd)
    except OSError:
        return False
    finally:
        os.close(root_fd)
    return True


def _default_modality_lookup() -> ModalityLookup:
    from dcmrecv.negotiation.uids import modality_prefix

    lookup: ModalityLookup = modality_prefix
    return lookup


class IncomingInstance(abc.ABC):
    """One C-STORE data set on its way to disk."""

    @abc.abstractmethod
    def write(self, fragment: bytes | bytearray | memoryview) -> None:
        """Take one data set fragment (in order); the buffer may be reused afterwards.

        Never raises for I/O errors: the first one is recorded, later data dropped, and
        ``commit()`` answers 0xA700.
        """

    def write_many(self, fragments: Sequence[memoryview]) -> None:
        """Take several consecutive fragments at once (one receive's worth).

        The engine hands over the fragments of all PDUs one receive brought in, so
        that a file can take them in one ``writev`` without copying them first.
        """
        for fragment in fragments:
            self.write(fragment)

    @abc.abstractmethod
    def commit(self) -> StoreResult:
        """The last fragment has arrived: check, name, rename and fsync the file."""

    @abc.abstractmethod
    def discard(self) -> None:
        """The association ended mid data set: remove what was written.  Idempotent."""


class _IgnoredInstance(IncomingInstance):
    """``--ignore``: receive, answer Success, store nothing (dcmrecv.man)."""

    def write(self, fragment: bytes | bytearray | memoryview) -> None:
        return None

    def commit(self) -> StoreResult:
        return StoreResult(status=STATUS_SUCCESS, path=None, error_comment=None)

    def discard(self) -> None:
        return None


class _RefusedInstance(IncomingInstance):
    """A C-STORE refused before its data set (``--min-free-space``): drains it."""

    def __init__(self, result: StoreResult) -> None:
        self._result = result

    def write(self, fragment: bytes | bytearray | memoryview) -> None:
        return None

    def commit(self) -> StoreResult:
        return self._result

    def discard(self) -> None:
        return None


class _Placed(enum.Enum):
    """How ``_place`` ended (for the result and its log line)."""

    NEW = "new"
    OVERWRITTEN = "overwritten"
    #: The same bytes were already stored under the name: nothing to do.
    IDENTICAL = "identical"
    KEPT = "kept"
    RENAMED = "renamed"
    REJECTED = "rejected"


class InstanceStore:
    """Stores received instances under ``config.output_directory``."""

    def __init__(
        self,
        config: StorageOptions,
        *,
        modality_prefix: ModalityLookup | None = None,
        clock: Clock = datetime.now,
        namer: Namer | None = None,
        converter: Converter | None = None,
    ) -> None:
        """``modality_prefix`` maps a SOP Class UID to DCMTK's short modality code
        (default ``dcmrecv.negotiation.uids.modality_prefix``); ``clock`` gives local time (for
        ``undef/YYYYMMDD`` and ``+fst`` names).  ``namer`` names the files (default:
        dcmrecv's naming or the template of ``config``); ``converter`` rewrites them
        (storescp's output options; default: the bytes as received).  Raises ValueError
        (PlanError) when the ``-fe`` extension contains a path separator."""
        self.config = config
        check_extension(config.filename_extension)
        self.root = os.fspath(config.output_directory)
        #: ``root`` as a Path, the base of every result's ``path`` (built once).
        self.root_path = Path(self.root)
        self.clock = clock
        self.namer = namer if namer is not None else namer_for(config, clock)
        self.converter = converter
        self._modality: ModalityLookup | None = modality_prefix
        if modality_prefix is None and config.storage_mode is not StorageMode.IGNORE:
            self._modality = _default_modality_lookup()
        template = config.output_template
        #: What the data set check collects: with a template, its attributes too.
        self.wanted = wanted_tags(template.tags if template is not None else None)
        #: ``--min-free-space``: None when not set.
        self.free_space = (
            FreeSpace(self.root, config.min_free_space, config.free_space_interval)
            if config.min_free_space is not None
            else None
        )
        self._short = False
        #: The output file system's shared flushes; None with ``--no-fsync``.
        self.durability = GroupCommit.for_directory(self.root) if config.fsync else None
        #: One flush covers a file and its names: files are named first, flushed after
        #: (see _FileInstance._commit).
        self.one_flush = self.durability is not None and self.durability.covers_names
        #: Without flushes, files are made without a name (see the module docstring).
        self.nameless = (
            not config.fsync
            and config.storage_mode is not StorageMode.IGNORE
            and nameless_files_work(self.root)
        )
        #: ``--quarantine-dir``: None when not set.
        self.quarantine = (
            Quarantine(config.quarantine_directory, config.quarantine_limit, config.min_free_space)
            if config.quarantine_directory is not None
            else None
        )

    def shortage(self) -> str | None:
        """Why storing is refused now (``--min-free-space``), or None.  The first
        refusal logs a W: line, and so does the recovery, so a full disk is visible
        without a line per C-STORE."""
        if self.free_space is None:
            return None
        try:
            reason = self.free_space.shortage()
        except OSError as exc:
            reason = f"cannot measure free space in {self.root}: {exc.strerror or exc}"
        if reason is not None and not self._short:
            log.warning("%s: refusing C-STORE requests and new associations", reason)
        elif reason is None and self._short:
            log.warning("free space in %s is back above --min-free-space: storing again", self.root)
        self._short = reason is not None
        return reason

    def modality(self, sop_class_uid: str) -> str | None:
        """The short modality code, or None when the SOP class has none.

        ``dcmrecv.negotiation.uids.modality_prefix`` answers "UNKNOWN" for those; plan_path then
        picks DCMTK's fallback per naming scheme ("XX" for ``+fsu``).
        """
        if self._modality is None:
            return None
        code = self._modality(sop_class_uid)
        return None if not code or code == UNKNOWN_MODALITY else code

    def cleanup_leftovers(self, *, top_only: bool = False) -> int:
        """Put right what a crash left under the output directory (storage/recovery.py);
        ``top_only``: in the output directory itself, where temporary files are made.

        Returns how many temporary files were removed.
        """
        return recover(self.root, top_only=top_only).removed

    def begin(
        self,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        calling_aetitle: str,
        called_aetitle: str = "",
        peer_address: str = "",
        association_serial: int | None = None,
    ) -> IncomingInstance:
        """``called_aetitle`` and ``peer_address`` serve ``--output-template``, they
        and ``association_serial`` the quarantine's sidecar."""
        if self.config.storage_mode is StorageMode.IGNORE:
            return _IgnoredInstance()
        shortage = self.shortage()
        if shortage is not None:
            # Refused before a byte is written; the data set is received and dropped.
            return _RefusedInstance(_failure(STATUS_OUT_OF_RESOURCES, shortage))
        request = StoreRequest(
            sop_class_uid=_uid(sop_class_uid),
            sop_instance_uid=_uid(sop_instance_uid),
            transfer_syntax_uid=_uid(transfer_syntax_uid),
            calling_aetitle=calling_aetitle,
            called_aetitle=called_aetitle,
            peer_address=peer_address,
            association_serial=association_serial,
        )
        return _FileInstance(self, request)


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """What a C-STORE request says about the instance, and who sent it (PS3.7 9.1.1)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    calling_aetitle: str
    called_aetitle: str
    peer_address: str
    association_serial: int | None


class _FileInstance(IncomingInstance):
    def __init__(self, store: InstanceStore, request: StoreRequest) -> None:
        self._store = store
        self._request = request
        #: When the C-STORE request arrived ({ReceivedDate}, {ReceivedTime}).
        self._arrived = store.clock() if store.config.output_template is not None else None
        self._refusal: StoreResult | None = None
        self._error: OSError | None = None
        self._finished = False
        self._root_fd: int | None = None
        self._fd: int | None = None
        self._temp_name: str | None = None
        #: ``_fd`` is a file with no name yet (InstanceStore.nameless).
        self._nameless = False
        #: ``_temp_name`` records the file's complete size already (_record_size).
        self._sized = False
        self._received = 0
        meta = b""
        if not request.sop_class_uid or not request.sop_instance_uid:
            self._refusal = _failure(STATUS_CANNOT_UNDERSTAND, "SOP Class/Instance UID missing")
        else:
            try:
                meta = build_file_meta(
                    sop_class_uid=request.sop_class_uid,
                    sop_instance_uid=request.sop_instance_uid,
                    transfer_syntax_uid=request.transfer_syntax_uid,
                    source_ae_title=request.calling_aetitle,
                )
            except ValueError as exc:
                self._refusal = _failure(STATUS_CANNOT_UNDERSTAND, str(exc))
        self._meta_length = len(meta)
        self._pending = bytearray(meta)

    # --- receiving -------------------------------------------------------------

    def write(self, fragment: bytes | bytearray | memoryview) -> None:
        view = memoryview(fragment)
        self.write_many([view if view.format == "B" and view.ndim == 1 else view.cast("B")])

    def write_many(self, fragments: Sequence[memoryview]) -> None:
        if self._finished or self._error is not None:
            return
        if self._refusal is not None and self._store.quarantine is None:
            return  # refused already; kept only for a quarantine
        size = sum(fragment.nbytes for fragment in fragments)
        self._received += size
        pending = self._pending
        if len(pending) + size <= BUFFER_SIZE:
            # Small instances stay in memory until commit: one write in all.
            for fragment in fragments:
                pending += fragment
            return
        try:
            fd = self._fd if self._fd is not None else self._create_temp()
            # Straight from the receive buffer to the file: no copy in Python.
            _writev_all(fd, [memoryview(pending), *fragments] if pending else list(fragments))
            del pending[:]
        except OSError as exc:
            self._error = exc
            self._remove_temp()

    def _create_temp(self, size: int | None = None) -> int:
        """A new file in the output directory (same file system as every subdirectory
        we create, so the final link or rename never copies): nameless where the store
        makes them so, else hidden and locked; ``size``, the size it will have once
        written, goes into its name at once (see _commit)."""
        if self._root_fd is None:
            self._root_fd = os.open(self._store.root, _DIR_FLAGS)
        self._sized = False
        if self._store.nameless:
            try:
                fd = os.open(".", _NAMELESS_FLAGS, 0o666, dir_fd=self._root_fd)
            except OSError:
                pass  # a named one then; an error that is not O_TMPFILE's recurs there
            else:
                self._fd = fd
                self._nameless = True
                return fd
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        while True:
            name = new_temp_name()
            if size is not None:
                name = sized_temp_name(name, size)
            try:
                fd = os.open(name, flags, 0o666, dir_fd=self._root_fd)
                break
            except FileExistsError:
                continue
        self._temp_name = name
        self._fd = fd
        self._sized = size is not None
        # Marks the file as in use for cleanup_leftovers(); a file system without
        # flock (some network mounts) only loses that protection.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd

    def _name_temp(self) -> None:
        """Give a nameless file a temporary name (locked, as _create_temp's): what a
        rename, a conversion and the quarantine work on."""
        if not self._nameless:
            return
        assert self._fd is not None and self._root_fd is not None
        while True:
            name = new_temp_name()
            try:
                os.link(_fd_path(self._fd), name, dst_dir_fd=self._root_fd)
                break
            except FileExistsError:
                continue
        self._temp_name = name
        self._nameless = False
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _convert(self, converter: Converter, facts: InstanceFacts) -> None:
        """Re-encode the complete temporary file into a second one, which replaces it.

        The policy reads the received file (it may keep large values on disk and read
        them while writing), so memory grows with the largest value it must hold,
        not with the instance; the received bytes stay on disk until the new file
        is complete.
        """
        self._name_temp()  # the converter reads the received file by its path
        assert self._fd is not None and self._root_fd is not None and self._temp_name
        old_fd, old_name, old_sized = self._fd, self._temp_name, self._sized
        source_path = os.path.join(self._store.root, old_name)
        self._fd = None
        self._temp_name = None
        try:
            new_fd = self._create_temp()
        except OSError:
            self._fd, self._temp_name, self._nameless = old_fd, old_name, False
            self._sized = old_sized
            raise
        try:
            os.lseek(old_fd, 0, os.SEEK_SET)
            with (
                open(old_fd, "rb", buffering=65536, closefd=False) as source,
                open(new_fd, "wb", buffering=65536, closefd=False) as target,
            ):
                converter.convert(source, source_path, facts, target)
        except BaseException:
            # Keep the received file as the one to clean up; drop the half-written one
            # (a nameless one goes with its descriptor).
            if self._temp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._temp_name, dir_fd=self._root_fd)
            with contextlib.suppress(OSError):
                os.close(new_fd)
            self._fd, self._temp_name, self._nameless = old_fd, old_name, False
            self._sized = old_sized
            raise
        with contextlib.suppress(OSError):
            os.unlink(old_name, dir_fd=self._root_fd)
        with contextlib.suppress(OSError):
            os.close(old_fd)

    def _remove_temp(self) -> None:
        """Close and unlink the temporary file (if any; a nameless one goes with its
        descriptor); keep going on errors."""
        if self._temp_name is not None and self._root_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp_name, dir_fd=self._root_fd)
        self._temp_name = None
        self._nameless = False
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self._fd, self._root_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = None
        self._root_fd = None
        self._pending = bytearray()

    def discard(self) -> None:
        self._finished = True
        self._remove_temp()

    # --- finishing -------------------------------------------------------------

    def commit(self) -> StoreResult:
        if self._finished:
            return _failure(STATUS_CANNOT_UNDERSTAND, "instance already finished")
        self._finished = True
        if self._error is not None:
            self._remove_temp()
            return _out_of_resources(self._error)
        durability = self._store.durability
        if self._refusal is not None:
            result = self._refusal
        else:
            if durability is not None:
                durability.committing()
            try:
                result = self._commit()
            except OSError as exc:
                result = _out_of_resources(exc)
            finally:
                if durability is not None:
                    durability.committed()
        if result.status != STATUS_SUCCESS:
            if result.status != STATUS_OUT_OF_RESOURCES and self._store.quarantine is not None:
                result = self._quarantine(result)
            self._remove_temp()
        else:
            self._close_fds()
        return result

    def _quarantine(self, result: StoreResult) -> StoreResult:
        """Move what arrived to the quarantine with a sidecar saying why; the result's
        reason then says where it went (or why it could not)."""
        quarantine = self._store.quarantine
        assert quarantine is not None
        record = {
            "association": {
                "calling_ae_title": printable_value(self._request.calling_aetitle),
                "called_ae_title": printable_value(self._request.called_aetitle),
                "peer": printable_value(self._request.peer_address),
                "serial": self._request.association_serial,
            },
            "status": f"0x{result.status:04X}",
            "reason": result.reason or result.error_comment,
            "time": datetime.now(UTC).isoformat(),
            "sop_class_uid": printable_value(self._request.sop_class_uid, 128),
            "sop_instance_uid": printable_value(self._request.sop_instance_uid, 128),
            "content": "part10" if self._meta_length else "data set",
        }
        try:
            fd = self._fd if self._fd is not None else self._create_temp()
            if self._pending:
                _write_all(fd, self._pending)
                del self._pending[:]
            self._name_temp()
            assert self._root_fd is not None and self._temp_name is not None
            kept = quarantine.keep(self._root_fd, self._temp_name, fd, record)
        except OSError as exc:  # quarantine.NotKept says why it may not be kept
            note = f"not quarantined: {exc.strerror or exc}"
        else:
            self._temp_name = None
            note = f"quarantined as {quarantine.directory / kept}"
        return replace(result, reason=f"{result.reason or result.error_comment}; {note}")

    def _commit(self) -> StoreResult:
        """Check, name, place and flush the complete instance: the write/link/flush
        sequence (the names are the namer's, the checks the data set walker's)."""
        store = self._store
        notes: list[str] = []  # what this Success did unlike others, for a W: line
        checked = self._check(notes)
        if isinstance(checked, StoreResult):
            return checked
        facts = self._facts(checked)
        if self._fd is not None:
            fd = self._fd
        else:
            # A small instance is complete in memory: where the temporary name must
            # record the size (one flush, below), the file is created under that
            # name, which saves the rename (and fstat) of _record_size.
            fd = self._create_temp(len(self._pending) if store.one_flush else None)
        if self._pending:
            _write_all(fd, self._pending)
            del self._pending[:]
        converter = store.converter
        if converter is not None and converter.changes(facts):
            try:
                self._convert(converter, facts)
            except ConversionError as exc:
                return self._refused(
                    facts, STATUS_OUT_OF_RESOURCES, f"cannot write DICOM file: {exc}"
                )
            assert self._fd is not None
            fd = self._fd
        # Where one flush makes a file and its names durable, the file is named
        # first and flushed once; the temporary name, which records the size the
        # file must have, stays until then, so that recovery after a power cut can
        # tell a file whose data never reached the disk (storage/recovery.py).
        # Elsewhere the bytes are flushed before the file is named, and the name
        # after: a final name never points at data a power cut could take away.
        durability = store.durability
        if store.one_flush:
            self._record_size(fd)
        elif durability is not None:
            durability.flush(fd)
        try:
            plan = store.namer.plan(facts)
        except PlanError as exc:
            return self._refused(facts, STATUS_CANNOT_UNDERSTAND, str(exc))
        placed = self._place_durably(fd, facts, plan)
        if isinstance(placed, StoreResult):
            return placed
        how, plan = placed
        # One parse of the relative path, joined as parts (not as text) below.
        relative_path = plan.relative
        relative = str(relative_path)
        if how is _Placed.REJECTED:
            return _failure(
                STATUS_DUPLICATE, f"duplicate SOP instance, already stored as {relative}"
            )
        if how is _Placed.IDENTICAL:
            notes.append(f"identical to the stored file {relative}, nothing written")
        elif how is _Placed.KEPT:
            notes.append(f"duplicate SOP instance, kept the stored file {relative}")
        elif how is _Placed.RENAMED:
            notes.append(f"duplicate SOP instance, stored as {relative}")
        if not is_valid_uid(self._request.sop_instance_uid):
            # DCMTK stores these too (verified with 3.6.7's dcmrecv); the name is made
            # safe and distinct by naming.sanitize_uid.
            notes.append(f"SOP Instance UID is not a valid UID (PS3.5 9.1), stored as {relative}")
        summary = facts.summary
        return StoreResult(
            status=STATUS_SUCCESS,
            path=store.root_path / relative_path,
            error_comment=None,
            overwritten=how is _Placed.OVERWRITTEN,
            log_path=os.path.join(store.root, relative),
            study_instance_uid=summary.study_instance_uid if summary is not None else None,
            series_instance_uid=summary.series_instance_uid if summary is not None else None,
            reason="; ".join(notes) or None,
        )

    def _check(self, notes: list[str]) -> DatasetSummary | StoreResult | None:
        """What the storage mode reads of the data set: its summary, or a refusal.

        Normal mode (``-B``) walks the whole data set and checks it against the
        request; ``+B`` keeps the bytes of any data set that reads (the same walk,
        structure only), and takes its naming's values from it.
        """
        store = self._store
        config = store.config
        if config.storage_mode is StorageMode.NORMAL:
            try:
                summary = self._scan(stop_after=None, wanted=store.wanted)
            except DatasetError as exc:
                return _failure(STATUS_CANNOT_UNDERSTAND, f"bad data set: {exc}")
            if summary.sop_class_uid is None or summary.sop_instance_uid is None:
                return _failure(STATUS_CANNOT_UNDERSTAND, "data set lacks SOP Class/Instance UID")
            if (
                summary.sop_class_uid != self._request.sop_class_uid
                or summary.sop_instance_uid != self._request.sop_instance_uid
            ):
                return _failure(
                    STATUS_DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                    "SOP Class/Instance UID differ from the C-STORE request",
                )
            if summary.encapsulated_ow_offset is not None:
                self._store_as_ob(summary.encapsulated_ow_offset)
                notes.append(
                    "encapsulated Pixel Data received with VR OW, stored as OB (PS3.5 A.4)"
                )
            return summary
        # +B stores the received bytes unchanged, but only a data set that reads
        # (issue 22; DCMTK's +B aborts on a truncated one).  The same walk gives the
        # template's values and the Series Date.
        try:
            return self._scan(stop_after=None, wanted=store.wanted, structure_only=True)
        except DatasetError as exc:
            return _failure(STATUS_CANNOT_UNDERSTAND, f"bad data set: {exc}")

    def _facts(self, summary: DatasetSummary | None) -> InstanceFacts:
        request = self._request
        return InstanceFacts(
            sop_class_uid=request.sop_class_uid,
            sop_instance_uid=request.sop_instance_uid,
            transfer_syntax_uid=request.transfer_syntax_uid,
            modality=self._store.modality(request.sop_class_uid),
            summary=summary,
            calling_aetitle=request.calling_aetitle,
            called_aetitle=request.called_aetitle,
            peer_address=request.peer_address,
            received=self._arrived,
        )

    def _refused(self, facts: InstanceFacts, status: int, reason: str) -> StoreResult:
        """A failure once the instance is known: storescp's ``-xcr`` still gets the
        name it would have had (DCMTK names the file before writing it)."""
        return replace(_failure(status, reason), intended_path=self._store.namer.intended(facts))

    def _place_durably(
        self, fd: int, facts: InstanceFacts, plan: PathPlan
    ) -> tuple[_Placed, PathPlan] | StoreResult:
        """Give the file its final name (drawing another while taken), then flush."""
        store = self._store
        assert self._root_fd is not None
        durability = store.durability
        dir_fd = _open_subdirectory(
            self._root_fd, plan.directory, fsync=durability is not None and not store.one_flush
        )
        try:
            for _attempt in range(MAX_NAME_TRIES):
                outcome = self._place(dir_fd, plan)
                if outcome is not None:
                    placed, plan = outcome
                    break
                try:
                    plan = store.namer.plan(facts, plan)
                except PlanError as exc:
                    return self._refused(facts, STATUS_CANNOT_UNDERSTAND, str(exc))
            else:
                return self._refused(facts, STATUS_OUT_OF_RESOURCES, "no free file name found")
            if durability is not None and placed in (
                _Placed.NEW,
                _Placed.OVERWRITTEN,
                _Placed.RENAMED,
            ):
                try:
                    durability.flush(fd if store.one_flush else dir_fd)
                except OSError:
                    # No Success, so no new file under a final name either (one that
                    # replaced an earlier file cannot bring that one back).
                    if placed is not _Placed.OVERWRITTEN:
                        with contextlib.suppress(OSError):
                            os.unlink(plan.filename, dir_fd=dir_fd)
                    raise
            if self._temp_name is not None and placed is not _Placed.REJECTED:
                # Durable under its final name: the temporary one has done its job.
                with contextlib.suppress(OSError):
                    self._unlink_temp()
        finally:
            if dir_fd != self._root_fd:
                os.close(dir_fd)
        return placed, plan

    def _store_as_ob(self, offset: int) -> None:
        """Rewrite the VR of the element at ``offset`` in the data set to OB (same size,
        so nothing else moves): the repair DCMTK makes when it writes the file."""
        position = self._meta_length + offset + _VR_OFFSET
        if self._fd is None:
            self._pending[position : position + 2] = b"OB"
        else:
            os.pwrite(self._fd, b"OB", position)

    def _scan(
        self,
        *,
        stop_after: int | None,
        wanted: frozenset[int] | None = None,
        structure_only: bool = False,
    ) -> DatasetSummary:
        size = self._received
        ts = self._request.transfer_syntax_uid
        if self._fd is None:
            data = memoryview(self._pending)[self._meta_length :]
            try:
                return scan_buffer(
                    data,
                    ts,
                    stop_after=stop_after,
                    wanted=wanted or self._store.wanted,
                    structure_only=structure_only,
                )
            finally:
                data.release()
        if self._pending:
            _write_all(self._fd, self._pending)
            del self._pending[:]
        os.lseek(self._fd, self._meta_length, os.SEEK_SET)
        try:
            stream: BinaryIO = open(self._fd, "rb", buffering=_SCAN_BUFFER, closefd=False)  # noqa: SIM115
            with stream:
                return scan_dataset(
                    stream,
                    size,
                    ts,
                    stop_after=stop_after,
                    wanted=wanted or self._store.wanted,
                    structure_only=structure_only,
                )
        finally:
            os.lseek(self._fd, 0, os.SEEK_END)

    def _place(self, dir_fd: int, plan: PathPlan) -> tuple[_Placed, PathPlan] | None:
        """Give the temporary file its final name.

        Returns how it ended and the plan that holds (``rename`` changes the name),
        or None when the name is taken and the plan does not identify the instance
        (draw another name).  ``link()`` creates a name only if it does not exist:
        the atomic test that decides "new file" versus "duplicate" even when two
        associations store the same instance at the same moment; the loser then
        follows ``--on-duplicate``.
        """
        assert self._root_fd is not None and (self._temp_name is not None or self._nameless)
        name = plan.filename
        created = self._link(dir_fd, name)
        if created:
            return _Placed.NEW, plan
        if not plan.replace_existing:
            return None
        if self._same_content(dir_fd, name):
            self._unlink_temp()
            return _Placed.IDENTICAL, plan
        policy = self._store.config.on_duplicate
        if policy is DuplicatePolicy.OVERWRITE:
            self._name_temp()  # rename(2) replaces the old file in one step
            assert self._temp_name is not None
            self._flush_before_rename()
            os.rename(self._temp_name, name, src_dir_fd=self._root_fd, dst_dir_fd=dir_fd)
            self._temp_name = None
            return _Placed.OVERWRITTEN, plan
        if policy is DuplicatePolicy.KEEP:
            self._unlink_temp()
            return _Placed.KEPT, plan
        if policy is DuplicatePolicy.REJECT:
            return _Placed.REJECTED, plan
        for copy in range(1, MAX_NAME_TRIES):
            other = self._store.namer.copy(plan, copy)
            if self._link(dir_fd, other.filename):
                return _Placed.RENAMED, other
        raise OSError(errno.EEXIST, "no free name for another copy")

    def _link(self, dir_fd: int, name: str) -> bool:
        """Give the temporary file ``name`` if that is free; False if taken."""
        if self._nameless:
            assert self._fd is not None
            try:
                os.link(_fd_path(self._fd), name, dst_dir_fd=dir_fd)
            except FileExistsError:
                return False
            self._nameless = False
            return True
        assert self._root_fd is not None and self._temp_name is not None
        try:
            os.link(
                self._temp_name,
                name,
                src_dir_fd=self._root_fd,
                dst_dir_fd=dir_fd,
                follow_symlinks=False,
            )
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise
            # No hard links here: check, then rename (the check is not atomic).
            if _exists(name, dir_fd):
                return False
            self._flush_before_rename()
            os.rename(self._temp_name, name, src_dir_fd=self._root_fd, dst_dir_fd=dir_fd)
            self._temp_name = None
            return True
        if not self._store.one_flush:
            self._unlink_temp()
        return True

    def _flush_before_rename(self) -> None:
        """A rename leaves no temporary name for recovery to check the size by: in
        one-flush mode the bytes are made durable before it."""
        durability = self._store.durability
        if self._store.one_flush and durability is not None:
            assert self._fd is not None
            durability.flush(self._fd)

    def _record_size(self, fd: int) -> None:
        """Rename the temporary file to a name that records its complete size."""
        if self._sized:
            return  # created under such a name
        assert self._root_fd is not None and self._temp_name is not None
        name = sized_temp_name(self._temp_name, os.fstat(fd).st_size)
        os.rename(self._temp_name, name, src_dir_fd=self._root_fd, dst_dir_fd=self._root_fd)
        self._temp_name = name

    def _unlink_temp(self) -> None:
        """Remove the temporary name (a nameless file has none: it goes when closed)."""
        if self._nameless:
            return
        assert self._root_fd is not None and self._temp_name is not None
        os.unlink(self._temp_name, dir_fd=self._root_fd)
        self._temp_name = None

    def _same_content(self, dir_fd: int, name: str) -> bool:
        """Whether the stored file ``name`` holds exactly the bytes just received."""
        assert self._fd is not None
        try:
            other = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return False
        try:
            size = os.fstat(self._fd).st_size
            if os.fstat(other).st_size != size:
                return False
            offset = 0
            while offset < size:
                chunk = min(BUFFER_SIZE, size - offset)
                if os.pread(self._fd, chunk, offset) != os.pread(other, chunk, offset):
                    return False
                offset += chunk
            return True
        finally:
            os.close(other)


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _open_subdirectory(root_fd: int, components: tuple[str, ...], *, fsync: bool) -> int:
    """Open (creating as needed) root/components without following symbolic links.

    Each component is opened relative to its parent with O_NOFOLLOW, so a symlink
    planted in the output tree makes this fail (ELOOP/ENOTDIR) instead of leading out
    of it.  A directory we create is made durable by fsync'ing its parent.
    """
    current = root_fd
    try:
        for component in components:
            try:
                child = os.open(component, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=current)
            except FileNotFoundError:
                try:
                    os.mkdir(component, 0o777, dir_fd=current)
                except FileExistsError:
                    pass  # another association made it just now
                else:
                    if fsync:
                        os.fsync(current)
                child = os.open(component, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=current)
            if current != root_fd:
                os.close(current)
            current = child
    except OSError:
        if current != root_fd:
            os.close(current)
        raise
    return current
