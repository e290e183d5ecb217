"""storescp's file naming, study sorting and events, as one object the engine calls.

:class:`StorescpSession` is the ``ReceiverConfig.output_policy`` (names and
conversions, dcmrecv.storage.writer.OutputPolicy) and ``ReceiverConfig.events``
(``instance_stored``/``association_ended``, dcmrecv.config.ReceiverEvents) of the
``storescp`` command.  It implements storescp.man's "event options" and "NOTES":

* ``--exec-on-reception c`` runs ``c`` after each stored object; ``--exec-on-eostudy
  c`` when a study is complete; ``--rename-on-eostudy`` renames the study's files to
  ``[2-letter kind][6-digit number]`` first; ``--eostudy-timeout t`` also ends a study
  after ``t`` seconds without an object of it; ``--exec-sync`` waits for the command.
* Placeholders ``#p`` (directory of the file / of the study), ``#f`` (file name),
  ``#a`` (calling AE title), ``#c`` (called AE title), ``#r`` (peer host).

Differences from DCMTK, on purpose:

* Commands run through ``/bin/sh -c`` as in DCMTK, but placeholders are not pasted
  into the shell's source: each becomes a quoted reference to a positional parameter
  and the values are passed beside the script (dcmrecv.ops.hook_command).  A value
  from the peer (AE title, host name, file name) is therefore always literal text;
  ``;``, ``|``, backquotes, ``$(...)``, quotes and newlines in it do nothing.  (DCMTK
  wraps AE titles in double quotes and pastes them; current DCMTK also replaces
  unusual characters.)
* ``-xcr`` also runs after a C-STORE that failed, as in DCMTK; ``#p``/``#f`` then name
  where the file would have gone (DCMTK names the file it deleted).  DCMTK's hook does
  not run when the data set cannot be read (the DIMSE layer fails); ours does not run
  when the data set could not be read or did not match the request, because the
  file's name is not known then.
* End of study works with concurrent associations.  DCMTK keeps one "last study"
  for the whole process and forbids ``--fork`` with these options; here each open
  study is tracked.  A study ends when an object of another study is stored and no
  association still in progress last stored an object of it (for one association at
  a time that is DCMTK's rule: the next object of another study ends it), or after
  ``--eostudy-timeout`` seconds without an object of it.
* A time-stamped study directory (``-ss``, ``-sp``) that exists already, because
  another study started in the same millisecond, moves to the next free millisecond;
  DCMTK puts both studies into one directory ("using existing subdirectory").
* ``--rename-on-eostudy`` never replaces a file: a name that exists is skipped for
  the next number (DCMTK renames over it).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import BinaryIO, Final

from dcmrecv.config import AssociationInfo
from dcmrecv.ops.hook_command import HookCommand, TemplateError, compile_template
from dcmrecv.ops.process import RUNNER
from dcmrecv.status import is_stored
from dcmrecv.storage import sorting
from dcmrecv.storage.convert import OutputEncoding, convert
from dcmrecv.storage.model import InstanceFacts, StoreResult
from dcmrecv.storage.naming import PathPlan, PlanError, sanitize_uid, uuid_uid
from dcmrecv.storage.sorting import SortMode

log = logging.getLogger(__name__)

#: dcmSOPClassUIDToModality()'s fallback in storescp's file names.
UNKNOWN_MODALITY: Final = "UNKNOWN"
#: How far --rename-on-eostudy looks for a free number before it gives up on a file.
_MAX_RENAME_SKIP: Final = 1000
#: How many later milliseconds a time-stamped study directory may move to.
_MAX_NAME_BUMPS: Final = 1000
_MILLISECOND: Final = timedelta(milliseconds=1)

Runner = Callable[[Sequence[str], bool], None]
Clock = Callable[[], datetime]


__all__ = ["HookCommand", "StorescpSession", "TemplateError", "compile_template"]


def run_command(argv: Sequence[str], sync: bool) -> None:
    """Start ``argv`` (HookCommand.argv); wait for it with ``sync`` (``--exec-sync``).

    Standard input is /dev/null; output goes where ours goes, as in DCMTK.  The one
    process runner (dcmrecv.ops.process) starts and reaps it, and at shut-down kills
    one that is waited for when ``--shutdown-timeout`` has passed.
    """
    try:
        if sync:
            RUNNER.run(argv)
        else:
            RUNNER.start(argv)
    except OSError as exc:
        log.error("cannot execute command '%s': %s", " ".join(argv[:3]), exc.strerror or exc)


@dataclass(frozen=True)
class EventSettings:
    """storescp's event options, already checked."""

    exec_on_reception: HookCommand | None = None
    exec_on_eostudy: HookCommand | None = None
    rename_on_eostudy: bool = False
    #: ``--eostudy-timeout`` in seconds; None waits for an object of another study.
    eostudy_timeout: float | None = None
    exec_sync: bool = False


@dataclass(frozen=True)
class NamingSettings:
    """storescp's file naming and sorting options, already checked."""

    sort_mode: SortMode = SortMode.NONE
    sort_prefix: str = ""
    unique_filenames: bool = False
    time_names: bool = False
    extension: str = ""


@dataclass
class _Study:
    """One open study: its subdirectory and the files stored in it so far."""

    uid: str
    directory: str
    files: list[str] = field(default_factory=list)
    last_activity: float = 0.0
    last_association: AssociationInfo | None = None


class StorescpSession:
    """Names, conversions and events of one ``storescp`` run (thread-safe)."""

    def __init__(
        self,
        output_directory: str,
        naming: NamingSettings,
        events: EventSettings,
        encoding: OutputEncoding | None = None,
        *,
        runner: Runner = run_command,
        clock: Clock = datetime.now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        #: The output directory as DCMTK prints it ("." or the -od value, no trailing /).
        self.root = output_directory
        self.naming = naming
        self.events = events
        self.encoding = encoding
        self._run = runner
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._studies: dict[str, _Study] = {}
        #: Association serial -> Study Instance UID of the last object it stored.
        self._current: dict[int, str] = {}
        self._last_name: str | None = None
        self._time_counter = -1
        self._wakeup = threading.Condition(self._lock)
        self._closed = False
        self._timer: threading.Thread | None = None
        #: Per association thread: the facts of the instance being committed.
        self._facts = threading.local()
        if events.eostudy_timeout is not None and naming.sort_mode is not SortMode.NONE:
            self._timer = threading.Thread(
                target=self._watch_timeouts, name="storescp-eostudy", daemon=True
            )
            self._timer.start()

    def close(self) -> None:
        """Stop the end-of-study timer (open studies stay open, as when DCMTK stops)."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify_all()
        if self._timer is not None:
            self._timer.join(5)

    # --- OutputPolicy: names and conversions ------------------------------------------

    def announce(self, sop_class_uid: str) -> None:
        """A C-STORE request arrived; the command line's log dialect overrides this."""

    def plan(self, facts: InstanceFacts, taken: PathPlan | None) -> PathPlan:
        naming = self.naming
        now = self._clock()
        modality = facts.modality or UNKNOWN_MODALITY
        directory: tuple[str, ...] = ()
        if naming.sort_mode is not SortMode.NONE:
            directory = (self._study_directory(facts, now),)
        if naming.unique_filenames:
            name = f"{modality}.X.{uuid_uid(uuid.uuid4().int)}{naming.extension}"
            return PathPlan(directory, name, replace_existing=False)
        if naming.time_names:
            with self._lock:
                last = taken.filename if taken is not None else self._last_name
                chosen = sorting.time_name(
                    now, modality, naming.extension, last, self._time_counter
                )
                self._time_counter = chosen.counter
                self._last_name = chosen.name
            return PathPlan(directory, chosen.name, replace_existing=False)
        uid = sanitize_uid(facts.sop_instance_uid)
        if not uid:
            raise PlanError("SOP Instance UID is empty")
        name = f"{modality}.{uid}{naming.extension}"
        if len(name.encode("utf-8", "surrogateescape")) > 255:
            raise PlanError("file name would be longer than 255 bytes")
        return PathPlan(directory, name, replace_existing=True)

    def _study_directory(self, facts: InstanceFacts, now: datetime) -> str:
        summary = facts.summary
        study_uid = sorting.first_value(summary.study_instance_uid if summary else None)
        if not study_uid:
            log.error("element StudyInstanceUID (0020,000d) absent or empty in data set")
            raise PlanError("Study Instance UID absent or empty")
        with self._lock:
            study = self._studies.get(study_uid)
            if study is None:
                study = self._new_study(study_uid, facts, now)
                self._studies[study_uid] = study
            study.last_activity = self._monotonic()
            return study.directory

    def _new_study(self, study_uid: str, facts: InstanceFacts, now: datetime) -> _Study:
        naming = self.naming
        raw_name: bytes | None = None
        summary = facts.summary
        if naming.sort_mode is SortMode.PATIENT_NAME:
            text = sorting.first_value(summary.patient_name if summary else None)
            raw_name = text.encode("latin-1", "replace")
            if not raw_name:
                log.warning(
                    "element PatientName (0010,0010) absent or empty in data set, using '%s'"
                    " instead",
                    sorting.ANONYMOUS,
                )
            elif sorting.needs_charset_warning(
                raw_name, summary.specific_character_set if summary else None
            ):
                charset = summary.specific_character_set if summary else ""
                log.warning(
                    "Patient name not in Latin-1 (charset: %s), ASCII dir name may be broken",
                    charset,
                )
        in_use = {study.directory for study in self._studies.values()}
        for _attempt in range(_MAX_NAME_BUMPS):
            try:
                name = sorting.study_directory(
                    naming.sort_mode,
                    naming.sort_prefix,
                    study_instance_uid=study_uid,
                    patient_name=raw_name,
                    now=now,
                )
            except sorting.SortError as exc:
                log.error("%s", exc)
                raise PlanError(str(exc)) from None
            shown = os.path.join(self.root, name)
            if naming.sort_mode is SortMode.STUDY_UID or not (
                name in in_use or os.path.lexists(shown)
            ):
                break
            # Two studies starting in the same millisecond: DCMTK puts both into one
            # directory; the next millisecond keeps them apart.
            now += _MILLISECOND
        if os.path.isdir(shown):
            log.info("using existing subdirectory for study: %s", shown)
        else:
            log.info("created new subdirectory for study: %s", shown)
        # A new directory cannot hold a name of the last one: DCMTK restarts the
        # --timenames serial numbers here.
        self._time_counter = -1
        return _Study(study_uid, name)

    def converts(self, facts: InstanceFacts) -> bool:
        # The writer asks this of every instance it has read, in the association's
        # thread, before it converts and names it: remember the facts in case the
        # store fails, so that -xcr can name where the file would have gone.
        self._facts.current = facts
        return self.encoding is not None and self.encoding.changes(facts.transfer_syntax_uid)

    def convert(
        self, source: BinaryIO, source_path: str, facts: InstanceFacts, target: BinaryIO
    ) -> None:
        assert self.encoding is not None
        convert(source, source_path, facts.transfer_syntax_uid, self.encoding, target)

    # --- ReceiverEvents ---------------------------------------------------------------

    def instance_stored(self, association: AssociationInfo, result: StoreResult) -> None:
        """After every C-STORE whose data set arrived, stored or not (``result.status``)."""
        facts: InstanceFacts | None = getattr(self._facts, "current", None)
        self._facts.current = None
        stored = is_stored(result.status)
        values = self._association_values(association)
        if result.log_path is not None:
            values["#p"], values["#f"] = os.path.split(result.log_path)
        elif not stored:
            if facts is None:
                # Unreadable or not the announced instance: no name to give (DCMTK does
                # not run the hook for an unreadable data set either).
                return
            values["#p"], values["#f"] = self._unstored_location(facts)
        ended: list[_Study] = []
        if stored and self.naming.sort_mode is not SortMode.NONE and result.study_instance_uid:
            ended = self._record(association, result)
        if self.events.exec_on_reception is not None:
            self._run(self.events.exec_on_reception.argv(values), self.events.exec_sync)
        for study in ended:
            self._end_of_study(study, association)

    def association_ended(self, association: AssociationInfo) -> None:
        self._facts.current = None
        with self._lock:
            self._current.pop(association.serial, None)

    def _unstored_location(self, facts: InstanceFacts) -> tuple[str, str]:
        """Directory and name a failed instance would have had, decided without effects.

        DCMTK names the file before it writes it and gives that name to -xcr even when
        writing failed (storescp.cc, storeSCPCallback()).  We convert before naming, so
        the name is worked out here the same way, without taking a --timenames serial
        number or opening a study directory.
        """
        naming = self.naming
        directory = self.root
        if naming.sort_mode is not SortMode.NONE and facts.summary is not None:
            uid = sorting.first_value(facts.summary.study_instance_uid)
            with self._lock:
                study = self._studies.get(uid)
                if study is not None:
                    directory = os.path.join(self.root, study.directory)
        modality = facts.modality or UNKNOWN_MODALITY
        if naming.unique_filenames:
            name = f"{modality}.X.{uuid_uid(uuid.uuid4().int)}{naming.extension}"
        elif naming.time_names:
            with self._lock:
                chosen = sorting.time_name(
                    self._clock(), modality, naming.extension, self._last_name, self._time_counter
                )
            name = chosen.name
        else:
            name = f"{modality}.{sanitize_uid(facts.sop_instance_uid)}{naming.extension}"
        return directory, name

    def _record(self, association: AssociationInfo, result: StoreResult) -> list[_Study]:
        assert result.log_path is not None and result.study_instance_uid is not None
        uid = sorting.first_value(result.study_instance_uid)
        directory, filename = os.path.split(result.log_path)
        with self._wakeup:
            study = self._studies.get(uid)
            if study is None:  # ended by the timeout while this object was written
                study = _Study(uid, os.path.basename(directory))
                self._studies[uid] = study
            study.files.append(filename)
            study.last_activity = self._monotonic()
            study.last_association = association
            self._current[association.serial] = uid
            busy = set(self._current.values())
            ended = [s for s in self._studies.values() if s.uid != uid and s.uid not in busy]
            for study in ended:
                del self._studies[study.uid]
            self._wakeup.notify_all()
        return ended

    def _watch_timeouts(self) -> None:
        timeout = self.events.eostudy_timeout
        assert timeout is not None
        while True:
            with self._wakeup:
                if self._closed:
                    return
                now = self._monotonic()
                expired = [
                    s
                    for s in self._studies.values()
                    if s.files and s.last_activity + timeout <= now
                ]
                for study in expired:
                    del self._studies[study.uid]
                    for serial in [k for k, v in self._current.items() if v == study.uid]:
                        del self._current[serial]
                if not expired:
                    pending = [s.last_activity + timeout for s in self._studies.values() if s.files]
                    wait = max(min(pending) - now, 0.01) if pending else None
                    self._wakeup.wait(wait)
                    continue
            for study in expired:
                self._end_of_study(study, study.last_association)

    def _end_of_study(self, study: _Study, association: AssociationInfo | None) -> None:
        """storescp's executeEndOfStudyEvents(): rename first, then run the command."""
        if self.events.rename_on_eostudy:
            self._rename(study)
        if self.events.exec_on_eostudy is not None:
            values = self._association_values(association) if association else {}
            values["#p"] = os.path.join(self.root, study.directory)
            self._run(self.events.exec_on_eostudy.argv(values), self.events.exec_sync)

    def _rename(self, study: _Study) -> None:
        directory = os.path.join(self.root, study.directory)
        number = 1
        for filename in study.files:
            prefix = sorting.renamed_prefix(filename, self.naming.time_names)
            old = os.path.join(directory, filename)
            for _skip in range(_MAX_RENAME_SKIP):
                new = os.path.join(directory, sorting.renamed_name(prefix, number))
                number += 1
                try:
                    # link() fails if the name exists: never replace another file.
                    os.link(old, new, follow_symlinks=False)
                except FileExistsError:
                    continue
                except OSError:
                    log.warning("cannot rename file '%s' to '%s'", old, new)
                    break
                os.unlink(old)
                break

    @staticmethod
    def _association_values(association: AssociationInfo) -> dict[str, str]:
        return {
            "#a": association.calling_ae_title,
            "#c": association.called_ae_title,
            "#r": association.peer_host,
        }
