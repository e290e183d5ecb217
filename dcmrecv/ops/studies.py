"""When does a study end, within one process?  storescp's rule, as a pure tracker.

DICOM has no "study complete" message for C-STORE, so receivers guess.  DCMTK's
storescp (``--sort-*`` with ``-xcs``/``-rns``/``-tos``) ends a study when an object
of another study is stored, or after ``--eostudy-timeout`` seconds without one;
DCMTK keeps one "last study" per process and forbids ``--fork``.  Here the rule holds
with concurrent associations: the next object of another study ends the studies
that no association still in progress last stored an object of
(:data:`EndRule.NEXT_STUDY`; for one association at a time that is DCMTK's rule).

dcmrecv's own ``--eostudy-timeout`` (quiet for that long across every association,
worker and replica) is decided in the state store instead (ops/completion.py): the
same question asked of shared, durable state.  :class:`StudyTracker` keeps that
rule too (:data:`EndRule.QUIET`) for a tracker in memory.

:class:`StudyTracker` is the pure part (no threads, no clock of its own): instances
go in, ended studies come out.  :class:`StudyCompletion` runs one in a thread for
the timeouts.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from dcmrecv.events import AssociationInfo
from dcmrecv.logs.printable import printable

log = logging.getLogger(__name__)


class EndRule(enum.Enum):
    """How a study ends (see the module docstring)."""

    QUIET = "no instance for the timeout, across associations"
    NEXT_STUDY = "an instance of another study, or the timeout"


@dataclass(frozen=True)
class StudyFile:
    """One stored instance of a study, as the manifest lists it."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str | None
    size: int
    received: str  # ISO 8601 time of arrival


@dataclass
class OpenStudy:
    """A study that has received instances and has not ended yet."""

    study_instance_uid: str
    first_arrival: str
    last_arrival: str
    #: Monotonic time of the last arrival: what the timeout counts from.
    last_seen: float
    #: By SOP Instance UID, in order of first arrival: a re-sent instance is listed
    #: once, as last stored.
    files: dict[str, StudyFile] = field(default_factory=dict)
    calling_ae_titles: set[str] = field(default_factory=set)
    #: The association that stored the latest instance (storescp's hook values).
    last_association: AssociationInfo | None = None

    def manifest(self, state: str) -> dict[str, object]:
        """The JSON manifest: every file, the callers, first and last arrival."""
        return {
            "study_instance_uid": self.study_instance_uid,
            "state": state,
            "first_arrival": self.first_arrival,
            "last_arrival": self.last_arrival,
            "calling_ae_titles": sorted(self.calling_ae_titles),
            "instances": len(self.files),
            "series": sorted({f.series_instance_uid or "" for f in self.files.values()}),
            "files": [
                {
                    "path": f.path,
                    "sop_class_uid": f.sop_class_uid,
                    "sop_instance_uid": f.sop_instance_uid,
                    "series_instance_uid": f.series_instance_uid,
                    "size": f.size,
                    "received": f.received,
                }
                for f in self.files.values()
            ],
        }


class StudyTracker:
    """Which studies are open and when each ends (pure, not thread-safe).

    ``timeout`` None (storescp without ``-tos``): studies end only by the next study.
    """

    def __init__(self, timeout: float | None, rule: EndRule = EndRule.QUIET) -> None:
        self.timeout = timeout
        self.rule = rule
        #: Least recently seen first: the next study to time out is always the first.
        self._open: OrderedDict[str, OpenStudy] = OrderedDict()
        #: NEXT_STUDY: association serial -> the study it stored an instance of last.
        self._current: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._open)

    def add(
        self,
        study_instance_uid: str,
        file: StudyFile,
        association: AssociationInfo | str,
        now: float,
    ) -> list[OpenStudy]:
        """Record a stored instance; returns the studies it ended (NEXT_STUDY only)."""
        calling = association if isinstance(association, str) else association.calling_ae_title
        study = self._open.get(study_instance_uid)
        if study is None:
            study = OpenStudy(study_instance_uid, file.received, file.received, now)
            self._open[study_instance_uid] = study
        else:
            self._open.move_to_end(study_instance_uid)
        study.files[file.sop_instance_uid] = file
        study.calling_ae_titles.add(calling)
        study.last_seen = now
        study.last_arrival = file.received
        if isinstance(association, str):
            return []
        study.last_association = association
        if self.rule is not EndRule.NEXT_STUDY:
            return []
        self._current[association.serial] = study_instance_uid
        busy = set(self._current.values())
        ended = [s for uid, s in self._open.items() if uid not in busy]
        for done in ended:
            del self._open[done.study_instance_uid]
        return ended

    def association_ended(self, serial: int) -> None:
        """An association is over: it no longer holds its last study open (NEXT_STUDY)."""
        self._current.pop(serial, None)

    def next_due(self) -> float | None:
        """Monotonic time at which the next study times out, or None."""
        if self.timeout is None:
            return None
        for study in self._open.values():
            return study.last_seen + self.timeout
        return None

    def pop_due(self, now: float) -> list[OpenStudy]:
        """The studies with no instance for ``timeout`` seconds, oldest first."""
        due: list[OpenStudy] = []
        if self.timeout is None:
            return due
        while self._open:
            uid, study = next(iter(self._open.items()))
            if study.last_seen + self.timeout > now:
                break
            del self._open[uid]
            due.append(study)
        if due and self._current:
            gone = {study.study_instance_uid for study in due}
            self._current = {k: v for k, v in self._current.items() if v not in gone}
        return due

    def pop_all(self) -> list[OpenStudy]:
        studies = list(self._open.values())
        self._open.clear()
        self._current.clear()
        return studies


Ended = Callable[[OpenStudy], None]


class StudyCompletion:
    """A StudyTracker shared by the association threads, with a thread for its timeouts.

    ``on_timeout`` is called (in that thread) for each study that timed out;
    ``add`` returns the studies an instance ended (the caller acts on them in its
    own thread, after what it does for the instance itself).
    """

    def __init__(self, tracker: StudyTracker, on_timeout: Ended) -> None:
        self._tracker = tracker
        self._on_timeout = on_timeout
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="study-completion", daemon=True)

    def start(self) -> None:
        if self._tracker.timeout is not None:
            self._thread.start()

    def add(
        self, study_instance_uid: str, file: StudyFile, association: AssociationInfo | str
    ) -> list[OpenStudy]:
        with self._cond:
            first = len(self._tracker) == 0
            ended = self._tracker.add(study_instance_uid, file, association, time.monotonic())
            if first:
                self._cond.notify()
        return ended

    def association_ended(self, serial: int) -> None:
        with self._cond:
            self._tracker.association_ended(serial)

    def stop(self) -> list[OpenStudy]:
        """Stop the thread; returns the studies still open."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.ident is not None:  # started
            self._thread.join()
        with self._cond:
            return self._tracker.pop_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    due_at = self._tracker.next_due()
                    now = time.monotonic()
                    if due_at is not None and due_at <= now:
                        break
                    self._cond.wait(None if due_at is None else due_at - now)
                if self._stopping:
                    return
                due = self._tracker.pop_due(time.monotonic())
            for study in due:
                try:
                    self._on_timeout(study)
                except Exception:  # one study's hook must not end the others'
                    log.exception("end of study %s failed", printable(study.study_instance_uid))
