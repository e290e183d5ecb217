"""The instance index: every acknowledged instance, in the state store, before its Success.

Study completion across workers and replicas (ops/completion.py) and storage
commitment (issue 24) both need to know what this receiver acknowledged, wherever
it arrived.  The index is a subscriber of the event bus at its veto point: the
record is committed in the state store (dcmrecv/state) before the C-STORE response
is sent, so after a ``kill -9`` of any process every acknowledged instance is in the
store.  When the store cannot take it (PostgreSQL down, a full disk) the instance
is answered 0xA700 (Out of Resources, PS3.4 B.2.3) with a line naming the store and
saying where the received file stays; the sender keeps its copy and sends it again,
and the receiver goes on as soon as the store is back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

from dcmrecv import events
from dcmrecv.events import EventBus, Veto
from dcmrecv.ops.eventlog import file_size, now_iso
from dcmrecv.state.model import InstanceRecord, StateStore, StateUnavailable
from dcmrecv.status import Status, is_stored

log = logging.getLogger(__name__)

#: Read size of the digest (``sha256`` recorded for storage commitment).
_CHUNK = 1 << 20


class InstanceIndex:
    """Records each stored instance of a study in the state store (a veto subscriber)."""

    def __init__(
        self, store: StateStore, replica: str, *, digests: bool = False, studies: bool = True
    ) -> None:
        """``replica``: who stores (``host:pid`` of the receiver); ``digests``: record
        each file's SHA-256 (storage commitment checks it); ``studies``: track each
        instance's study for completion (else only the instance is indexed)."""
        self.store = store
        self.replica = replica
        self.digests = digests
        self.studies = studies

    def subscribe(self, bus: EventBus) -> None:
        # Before the event log's veto: a Success the index cannot record must not be
        # written to the event log as stored.
        bus.subscribe_veto(events.InstanceAnswered, self.instance_answered)

    def instance_answered(self, event: events.InstanceAnswered) -> Veto | None:
        study_uid = event.study_instance_uid or ""
        if event.path is None or not is_stored(event.status):
            return None
        if not study_uid and not self.digests:
            return None  # only study completion needs it, and it has no study
        path = os.path.abspath(event.path)
        size = file_size(path)
        record = InstanceRecord(
            study_instance_uid=study_uid,
            sop_instance_uid=event.sop_instance_uid,
            sop_class_uid=event.sop_class_uid,
            series_instance_uid=event.series_instance_uid,
            transfer_syntax_uid=event.transfer_syntax_uid,
            path=path,
            size=size if size is not None else event.received_bytes,
            sha256=sha256_of(path) if self.digests else None,
            received=now_iso(),
            calling_ae_title=event.association.calling_ae_title,
            replica=self.replica,
        )
        try:
            self.store.record_instance(record, time.time(), study=self.studies)
        except StateUnavailable as exc:
            why = f"cannot record the instance in the {exc}; the received file stays as {path}"
            return Veto(Status.OUT_OF_RESOURCES, "State store not available", why)
        return None


def sha256_of(path: str) -> str | None:
    """The file's SHA-256 in hex; None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()
