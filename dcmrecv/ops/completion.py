"""dcmrecv's ``--eostudy-timeout`` across every association, worker and replica.

A study is complete when no instance of it has arrived for ``--eostudy-timeout``
seconds anywhere (DICOM has no "study complete" message for C-STORE).  The instances
are in the state store (ops/index.py records each before its Success), so one
process per receiver (the only one, or the parent of ``--workers``) looks for quiet
studies there, and the store's leases decide which process of which replica
announces each one: exactly one ``study_complete`` event and one run of
``--exec-on-eostudy`` per completion, however many replicas run.  A process that
dies while it announces a study loses its lease when its heartbeats stop
(``state.model.DEAD_AFTER``); another one announces the study then.

The manifest lists every instance of the study once, all that were acknowledged
before it was claimed.  Instances that arrive after a study completed open a
follow-up: after another quiet period a ``study_updated`` event and a run of the
command with the whole study's manifest again, never a second "complete" with a
partial list.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Final

from dcmrecv import events
from dcmrecv.events import EventBus
from dcmrecv.logs.printable import printable
from dcmrecv.ops.process import run_hook
from dcmrecv.state.model import (
    HEARTBEAT_INTERVAL,
    InstanceRecord,
    StateStore,
    StateUnavailable,
    StudyClaim,
    new_owner,
)

log = logging.getLogger("dcmrecv.ops.studies")

#: Output of the command kept for the log, per stream.
MAX_COMMAND_OUTPUT: Final = 4096
#: How often the store is asked for quiet studies, at most (a quarter of the quiet
#: period when that is shorter): a study completes within this of its due time.
POLL_INTERVAL: Final = 1.0
#: A lease outlasts the command's timeout by this much (the heartbeats keep an
#: owner alive; the lease's own end only bounds a process that hangs).
LEASE_MARGIN: Final = 60.0
#: Errors of an unreachable store are logged at most once per this many seconds.
ERROR_INTERVAL: Final = 30.0


def manifest(
    study_instance_uid: str, records: Sequence[InstanceRecord], state: str
) -> dict[str, object]:
    """The study's JSON manifest (pure): every file once, the callers, the arrivals."""
    received = [r.received for r in records]
    return {
        "study_instance_uid": study_instance_uid,
        "state": state,
        "first_arrival": min(received, default=None),
        "last_arrival": max(received, default=None),
        "calling_ae_titles": sorted({r.calling_ae_title for r in records}),
        "instances": len(records),
        "series": sorted({r.series_instance_uid or "" for r in records}),
        "files": [
            {
                "path": r.path,
                "sop_class_uid": r.sop_class_uid,
                "sop_instance_uid": r.sop_instance_uid,
                "series_instance_uid": r.series_instance_uid,
                "size": r.size,
                "received": r.received,
                "replica": r.replica,
            }
            for r in records
        ],
    }


class EndOfStudy:
    """Announces complete studies from the state store (one per receiver process)."""

    def __init__(
        self,
        store: StateStore,
        timeout: float,
        *,
        replica: str,
        command: str | None,
        command_timeout: float,
        bus: EventBus,
    ) -> None:
        self.store = store
        self.timeout = timeout
        self.replica = replica
        self._command = command
        self._command_timeout = command_timeout
        self._bus = bus
        self._owner = new_owner()
        self._lease = command_timeout + LEASE_MARGIN
        self._poll = min(POLL_INTERVAL, max(timeout / 4, 0.05))
        self._stopping = threading.Event()
        #: Claims being announced: the heartbeat thread keeps their leases.
        self._holding = 0
        self._holding_lock = threading.Lock()
        self._last_error = -ERROR_INTERVAL
        self._thread = threading.Thread(target=self._run, name="end-of-study", daemon=True)
        self._heartbeat = threading.Thread(
            target=self._beat, name="end-of-study-heartbeat", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        self._heartbeat.start()

    def stop(self) -> None:
        """Stop looking; studies this receiver stored into and that are still open are
        announced as open (the event log records them; another replica, or this one
        when it is back, completes them)."""
        self._stopping.set()
        for thread in (self._thread, self._heartbeat):
            if thread.ident is not None:
                thread.join()
        try:
            still_open = self.store.open_studies(self.replica)
            for uid in still_open:
                records = self.store.study_instances(uid)
                log.info(
                    "Study %s still open at shutdown (%d instances); recorded in the event log",
                    printable(uid),
                    len(records),
                )
                self._bus.publish(events.StudyOpenAtShutdown(uid, manifest(uid, records, "open")))
        except StateUnavailable as exc:
            log.error("cannot list the studies still open: %s", exc)

    def _run(self) -> None:
        while not self._stopping.wait(self._poll):
            try:
                claims = self.store.claim_due(self._owner, time.time(), self.timeout, self._lease)
            except StateUnavailable as exc:
                self._error(exc)
                continue
            for claim in claims:
                if self._stopping.is_set():
                    self._release(claim)
                    continue
                with self._holding_lock:
                    self._holding += 1
                try:
                    self._complete(claim)
                except StateUnavailable as exc:
                    self._error(exc)
                except Exception:  # one study's announcement must not end the others'
                    log.exception("end of study %s failed", printable(claim.study_instance_uid))
                finally:
                    with self._holding_lock:
                        self._holding -= 1

    def _beat(self) -> None:
        """While claims are being announced (a command may run for a minute), tell the
        store this owner is alive, so its leases are not taken over."""
        while not self._stopping.wait(HEARTBEAT_INTERVAL):
            with self._holding_lock:
                holding = self._holding
            if holding:
                try:
                    self.store.heartbeat(self._owner, time.time())
                except StateUnavailable as exc:
                    self._error(exc)

    def _complete(self, claim: StudyClaim) -> None:
        uid = claim.study_instance_uid
        records = self.store.study_instances(uid)
        state = "updated" if claim.followup else "complete"
        log.info(
            "Study %s %s: %d instances from %s",
            printable(uid),
            state,
            len(records),
            ", ".join(printable(t) for t in sorted({r.calling_ae_title for r in records})),
        )
        study = manifest(uid, records, state)
        self._bus.publish(events.StudyCompleted(uid, study, followup=claim.followup))
        if self._command is not None:
            self._run_command(uid, study)
        if not self.store.finish(claim, self._owner):
            log.warning(
                "end of study %s: another process took it over while its command ran",
                printable(uid),
            )

    def _release(self, claim: StudyClaim) -> None:
        try:
            self.store.release(claim, self._owner)
        except StateUnavailable as exc:
            self._error(exc)

    def _error(self, exc: StateUnavailable) -> None:
        now = time.monotonic()
        if now - self._last_error >= ERROR_INTERVAL:
            self._last_error = now
            log.error("study completion waits for the %s", exc)

    def _run_command(self, uid: str, study: dict[str, object]) -> None:
        what = f"--exec-on-eostudy for study {printable(uid)}"
        data = json.dumps(study, indent=1).encode()
        try:
            done = run_hook(self._command or "", data, self._command_timeout)
        except OSError as exc:
            log.error("--exec-on-eostudy could not run: %s", exc)
            return
        if done.returncode is None:
            if done.killed == "shutdown":
                log.error("%s killed at shut-down", what)
            else:
                log.error("%s killed after %g s", what, self._command_timeout)
            return
        level = logging.INFO if done.returncode == 0 else logging.WARNING
        log.log(level, "%s exited with %d", what, done.returncode)
        if done.pipes_held:
            # A daemon it started (issue 22): not waited for (ops/process.py).
            log.info("%s: a process it started keeps its output open; not read further", what)
        for name, output in (("stdout", done.stdout), ("stderr", done.stderr)):
            if output:
                text = output[:MAX_COMMAND_OUTPUT].decode("utf-8", "replace")
                log.log(level, "--exec-on-eostudy %s: %s", name, printable(text.rstrip()))
