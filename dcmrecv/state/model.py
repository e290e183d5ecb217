"""The state store's interface: what the receiver keeps beyond one association.

Issue 20: with several worker processes, or replicas on several hosts behind one
balancer, study completion must count every instance of a study wherever it
arrived, exactly one process must announce each completion, and a ``kill -9`` of any
process must lose nothing acknowledged.  So the facts live in a store every process
shares and that commits before a C-STORE is answered:

* each stored instance (upserted by SOP Instance UID: a re-sent instance is listed
  once), with its study, series, SOP class, path, size, digest, arrival and replica;
* each study: ``open`` or ``complete``, ``last_seen`` (wall clock of its newest
  instance), a change counter ``generation`` and how many completions were announced;
* leases: the process that announces a study's completion holds a lease on it; a
  lease ends when released, when it expires, or when its owner has not sent a
  heartbeat for :data:`DEAD_AFTER` seconds (a ``kill -9``, a lost host).

Times are wall-clock seconds (``time.time()``) passed in by the caller, never read
here, so that several hosts compare them and tests choose them.  A study claimed at
generation *g* becomes complete only if no instance arrived since (its generation is
still *g*); otherwise it stays open and its next claim is a follow-up
(``study_updated``, never a second "complete" with a partial list).

``url.open_state`` picks the implementation (``sqlite.py``, ``postgresql.py``) from
the ``--state`` URL; the SQL both run is in ``schema.py``.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from dcmrecv.state import schema

#: Seconds without a heartbeat after which an owner counts as dead and its leases
#: may be taken over (several heartbeat intervals: one late heartbeat on a busy
#: machine must not cost a lease).
DEAD_AFTER: Final = 5.0
#: Seconds between an owner's heartbeats (``StateStore.heartbeat``).
HEARTBEAT_INTERVAL: Final = 1.0
#: Seconds between two attempts to reach a store that is down: a receiver under load
#: must not hammer a database that is starting up (the issue's "no retry storm").
RECONNECT_INTERVAL: Final = 1.0

#: Study states.
OPEN: Final = "open"
COMPLETE: Final = "complete"
#: Storage commitment transaction states (pending until delivered or given up).
COMMITMENT_PENDING: Final = "pending"
COMMITMENT_SENT: Final = "sent"
COMMITMENT_FAILED: Final = "failed"


class StateUnavailable(Exception):
    """The store cannot be reached or refused a write.

    ``str()`` names the store (its URL without a password) and the reason, ready for
    an ``E:`` line; raised by every method of a store.
    """

    def __init__(self, store: str, reason: str) -> None:
        super().__init__(f"state store {store}: {reason}")
        self.store = store
        self.reason = reason


class SchemaTooNew(StateUnavailable):
    """The store's schema was made by a newer dcmrecv than this one: refused, never
    written to (an older receiver could corrupt what it does not know)."""


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One stored instance, as acknowledged to its sender."""

    study_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str | None
    transfer_syntax_uid: str
    #: Absolute path of the stored file.
    path: str
    #: Bytes of the file.
    size: int
    #: Hex SHA-256 recorded at store time (None: not computed).
    sha256: str | None
    #: ISO 8601 wall-clock time of arrival, with UTC offset.
    received: str
    calling_ae_title: str
    #: Who stored it: ``"<hostname>:<pid>"`` (:func:`replica_name`).
    replica: str


@dataclass(frozen=True, slots=True)
class CommitmentJob:
    """A Storage Commitment transaction as the store keeps it (ops/commitment.py
    reads the JSON)."""

    job_id: str
    transaction_uid: str
    #: Its Transaction UID had been requested before (reported as failure 0131H).
    duplicate: bool
    #: The calling AE title of the N-ACTION: where the report goes.
    requester: str
    #: The called AE title of the N-ACTION: the report's calling AE title.
    responder: str
    #: The requested SOP Class/Instance UID pairs, a JSON array of pairs.
    references_json: str
    #: The evaluated report (JSON), None until evaluated.
    report_json: str | None
    #: Wall-clock time of the request, and until when delivery is tried.
    requested: float
    give_up: float
    attempts: int


@dataclass(frozen=True, slots=True)
class StudyClaim:
    """A study leased for announcing its completion."""

    study_instance_uid: str
    #: The study's change counter when claimed.
    generation: int
    #: The study had completed before: this completion is a ``study_updated``.
    followup: bool


class StateStore(Protocol):
    """What the receiver needs from a state store (see the module docstring).

    Thread-safe: the association threads and the completion thread of a process
    share one store object.  Every method raises :class:`StateUnavailable` when the
    store cannot be reached; a store that comes back is used again by the next call.
    """

    #: The store for messages: ``sqlite:///path`` or the PostgreSQL URL without password.
    description: str

    def record_instance(self, record: InstanceRecord, now: float, *, study: bool = True) -> None:
        """Committed when it returns: upsert by SOP Instance UID (a re-sent instance
        replaces its row); with ``study`` (and a Study Instance UID) also mark its
        study open, last_seen = now, generation += 1.  Without, the instance is only
        indexed (storage commitment without study completion)."""
        ...

    def claim_due(
        self, owner: str, now: float, quiet: float, lease: float, limit: int = 16
    ) -> list[StudyClaim]:
        """Atomically lease up to ``limit`` open studies quiet since ``now - quiet``
        whose lease is free, expired, or held by an owner silent for DEAD_AFTER.
        Records a heartbeat of ``owner`` with the leases it grants (none written when
        nothing is due).  Two owners never get the same study."""
        ...

    def study_instances(self, study_instance_uid: str) -> list[InstanceRecord]:
        """Every instance of the study, each once, in order of (latest) arrival."""
        ...

    def finish(self, claim: StudyClaim, owner: str) -> bool:
        """The completion of ``claim`` was announced: completions += 1; the study is
        complete if its generation is still the claim's, else stays open (a follow-up
        comes).  Releases the lease.  False, and nothing changed, when ``owner`` no
        longer holds the lease."""
        ...

    def renew(self, claim: StudyClaim, owner: str, now: float, lease: float) -> bool:
        """Extend ``owner``'s lease to ``now + lease`` (a long ``--exec-on-eostudy``);
        False when ``owner`` no longer holds it."""
        ...

    def release(self, claim: StudyClaim, owner: str) -> None:
        """Give the lease back without completing (another process may claim it)."""
        ...

    def heartbeat(self, owner: str, now: float) -> None:
        """``owner`` is alive at ``now``; owners silent for DEAD_AFTER lose their leases
        (so an owner holding leases calls this every HEARTBEAT_INTERVAL; one holding
        none need not)."""
        ...

    def open_studies(self, replica: str) -> list[str]:
        """Study UIDs still open that have an instance stored by ``replica``."""
        ...

    def find_instances(self, sop_instance_uids: Sequence[str]) -> dict[str, InstanceRecord]:
        """The stored instances among ``sop_instance_uids``, by SOP Instance UID."""
        ...

    # --- storage commitment (issue 24) ------------------------------------------

    def add_commitment(self, job: CommitmentJob, owner: str, now: float, lease: float) -> bool:
        """Keep a new transaction, leased to ``owner`` until ``now + lease``; False
        when its Transaction UID was requested before (it is then kept as a duplicate,
        ``job.duplicate`` set, and its report says so)."""
        ...

    def claim_commitments(
        self, owner: str, now: float, lease: float, limit: int = 8
    ) -> list[CommitmentJob]:
        """Lease up to ``limit`` pending transactions that are due and not leased."""
        ...

    def save_report(self, job_id: str, owner: str, report_json: str, until: float) -> bool:
        """Keep the evaluated report (and extend the lease to ``until``); False when
        ``owner`` no longer holds the lease."""
        ...

    def end_commitment(
        self, job_id: str, owner: str, state: str, error: str | None, attempted: int
    ) -> bool:
        """The transaction is over: ``state`` is COMMITMENT_SENT or COMMITMENT_FAILED."""
        ...

    def retry_commitment(
        self, job_id: str, owner: str, next_attempt: float, error: str | None, attempted: int
    ) -> bool:
        """Not delivered now: release the lease, try again at ``next_attempt``."""
        ...

    def check(self) -> str:
        """Connect, create or migrate the schema; one line for ``--check-config``."""
        ...

    def close(self) -> None:
        """Close the connection; the object is not used again."""
        ...


def replica_name() -> str:
    """This process as ``InstanceRecord.replica`` names it: ``"<hostname>:<pid>"``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def new_owner() -> str:
    """A lease owner name unique to this process's lifetime: ``"<hostname>:<pid>:<hex>"``.

    The random part matters: a restarted container runs as pid 1 again on a host
    of the same name, and must not pass for the owner whose leases it replaces.
    """
    return f"{replica_name()}:{secrets.token_hex(4)}"


def due_parameters(
    owner: str, now: float, quiet: float, lease: float, limit: int
) -> dict[str, object]:
    """The parameters of the claim statements (``schema.SELECT_DUE`` and its kin)."""
    return {
        "owner": owner,
        "now": now,
        "cutoff": now - quiet,
        "dead_before": now - DEAD_AFTER,
        "until": now + lease,
        "limit": limit,
    }


def instance_parameters(record: InstanceRecord, now: float) -> dict[str, object]:
    """The parameters of ``schema.UPSERT_INSTANCE`` and ``schema.TOUCH_STUDY``."""
    parameters: dict[str, object] = {
        name: getattr(record, name) for name in schema.INSTANCE_COLUMNS
    }
    parameters["now"] = now
    return parameters


def instance_from_row(row: Sequence[object]) -> InstanceRecord:
    """An instance from a row of ``schema.INSTANCE_COLUMNS``."""
    values = dict(zip(schema.INSTANCE_COLUMNS, row, strict=True))
    return InstanceRecord(**values)  # type: ignore[arg-type]


def one_line(exc: BaseException) -> str:
    """A driver's message on one line (libpq's span several), for an ``E:`` line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def commitment_parameters(
    job: CommitmentJob, owner: str, now: float, lease: float
) -> dict[str, object]:
    """The parameters of ``schema.ADD_COMMITMENT``."""
    parameters: dict[str, object] = {name: getattr(job, name) for name in schema.COMMITMENT_COLUMNS}
    parameters.update(duplicate=int(job.duplicate), owner=owner, now=now, until=now + lease)
    return parameters


def commitment_from_row(row: Sequence[object]) -> CommitmentJob:
    """A transaction from a row of ``schema.COMMITMENT_COLUMNS``."""
    values = dict(zip(schema.COMMITMENT_COLUMNS, row, strict=True))
    values["duplicate"] = bool(values["duplicate"])
    return CommitmentJob(**values)  # type: ignore[arg-type]
