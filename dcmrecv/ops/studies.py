"""Study completion across associations (``--eostudy-timeout``, ``--exec-on-eostudy``).

DICOM has no "study complete" message for C-STORE, so receivers guess: DCMTK's
storescp ends a study when the next object belongs to another study, or after
``--eostudy-timeout`` seconds without one, and only within one association (it
forbids the option with ``--fork``).  Here a study is complete when no instance of
it has arrived for ``timeout`` seconds, counted across every association, so a
study sent over several concurrent associations completes once, with every file.

``StudyTracker`` is the pure part (no threads, no clock of its own): instances go
in, due studies come out.  ``StudyCompletion`` runs it in a thread, writes the
event log and runs the operator's command with the study's manifest (JSON) on its
standard input.  The command is the operator's text only, run by ``/bin/sh -c``;
nothing a peer sent is ever part of it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from dcmrecv.logs.printable import printable
from dcmrecv.ops.process import RUNNER, Finished

log = logging.getLogger(__name__)

#: Output of the command kept for the log, per stream.
MAX_COMMAND_OUTPUT = 4096


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
    """A study that has received instances and is not complete yet."""

    study_instance_uid: str
    first_arrival: str
    last_arrival: str
    #: Monotonic time of the last arrival: what the timeout counts from.
    last_seen: float
    files: dict[str, StudyFile] = field(default_factory=dict)
    calling_ae_titles: set[str] = field(default_factory=set)

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

    def summary(self) -> dict[str, object]:
        """The event-log fields of a completion (the files are in the instance events)."""
        manifest = self.manifest("")
        del manifest["files"], manifest["state"]
        return manifest


class StudyTracker:
    """Which studies are open and when each completes (pure, not thread-safe)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        #: Least recently seen first: the next study to complete is always the first.
        self._open: OrderedDict[str, OpenStudy] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def add(
        self, study_instance_uid: str, file: StudyFile, calling_ae_title: str, now: float
    ) -> None:
        study = self._open.get(study_instance_uid)
        if study is None:
            study = OpenStudy(study_instance_uid, file.received, file.received, now)
            self._open[study_instance_uid] = study
        else:
            self._open.move_to_end(study_instance_uid)
        # Keyed by SOP Instance UID: a re-sent instance is listed once, as last stored.
        study.files[file.sop_instance_uid] = file
        study.calling_ae_titles.add(calling_ae_title)
        study.last_seen = now
        study.last_arrival = file.received

    def next_due(self) -> float | None:
        """Monotonic time at which the next study completes, or None when none is open."""
        for study in self._open.values():
            return study.last_seen + self.timeout
        return None

    def pop_due(self, now: float) -> list[OpenStudy]:
        """The studies with no instance for ``timeout`` seconds, oldest first."""
        due: list[OpenStudy] = []
        while self._open:
            uid, study = next(iter(self._open.items()))
            if study.last_seen + self.timeout > now:
                break
            del self._open[uid]
            due.append(study)
        return due

    def pop_all(self) -> list[OpenStudy]:
        studies = list(self._open.values())
        self._open.clear()
        return studies


EventWriter = Callable[[str, dict[str, object]], None]


class StudyCompletion:
    """Runs a StudyTracker in a thread; announces each completed study."""

    def __init__(
        self,
        timeout: float,
        *,
        command: str | None,
        command_timeout: float,
        write_event: EventWriter | None,
    ) -> None:
        self._tracker = StudyTracker(timeout)
        self._command = command
        self._command_timeout = command_timeout
        self._write_event = write_event
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="study-completion", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def instance_stored(
        self, study_instance_uid: str, file: StudyFile, calling_ae_title: str
    ) -> None:
        with self._cond:
            first = len(self._tracker) == 0
            self._tracker.add(study_instance_uid, file, calling_ae_title, time.monotonic())
            if first:
                self._cond.notify()

    def stop(self) -> None:
        """Stop the thread; studies still open are written to the event log as open."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        with self._cond:
            still_open = self._tracker.pop_all()
        for study in still_open:
            log.info(
                "Study %s still open at shutdown (%d instances); recorded in the event log",
                printable(study.study_instance_uid),
                len(study.files),
            )
            self._event("study_open_at_shutdown", study.summary())

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
                self._complete(study)

    def _complete(self, study: OpenStudy) -> None:
        log.info(
            "Study %s complete: %d instances from %s",
            printable(study.study_instance_uid),
            len(study.files),
            ", ".join(printable(t) for t in sorted(study.calling_ae_titles)),
        )
        self._event("study_complete", study.summary())
        if self._command is not None:
            self._run_command(study)

    def _event(self, kind: str, fields: dict[str, object]) -> None:
        if self._write_event is None:
            return
        try:
            self._write_event(kind, fields)
        except OSError as exc:
            log.error("cannot write %s event to the event log: %s", kind, exc)

    def _run_command(self, study: OpenStudy) -> None:
        manifest = json.dumps(study.manifest("complete"), indent=1).encode()
        try:
            done = run_hook(self._command or "", manifest, self._command_timeout)
        except OSError as exc:
            log.error("--exec-on-eostudy could not run: %s", exc)
            return
        uid = printable(study.study_instance_uid)
        if done.returncode is None:
            if done.killed == "shutdown":
                log.error("--exec-on-eostudy for study %s killed at shut-down", uid)
            else:
                log.error(
                    "--exec-on-eostudy for study %s killed after %g s", uid, self._command_timeout
                )
            return
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
        level = logging.INFO if returncode == 0 else logging.WARNING
        log.log(level, "--exec-on-eostudy for study %s exited with %d", uid, returncode)
        if done.pipes_held:
            log.info(
                "--exec-on-eostudy for study %s: a process it started keeps its output open;"
                " not read further",
                uid,
            )
        for name, data in (("stdout", stdout), ("stderr", stderr)):
            if data:
                text = data[:MAX_COMMAND_OUTPUT].decode("utf-8", "replace")
                log.log(level, "--exec-on-eostudy %s: %s", name, printable(text.rstrip()))


def run_hook(command: str, stdin: bytes, timeout: float) -> Finished:
    """Run ``/bin/sh -c command`` with ``stdin``, its output captured, killed (with its
    process group) after ``timeout`` seconds or at shut-down: dcmrecv.ops.process."""
    return RUNNER.run(["/bin/sh", "-c", command], stdin=stdin, capture=True, timeout=timeout)
