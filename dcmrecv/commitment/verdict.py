"""What counts as committed (issue 24, README "Storage commitment"): pure.

An instance is committed when this receiver (any worker or replica: the shared
state store's instance index) acknowledged an instance with that SOP Instance UID
and that SOP Class UID, and its file is still there with the size recorded when it
was stored; with ``--commitment-verify`` its content's SHA-256 must also equal the
one recorded then.  Otherwise it fails with the reason a requester can act on
(PS3.3 C.14.1.1, Failure Reason):

* 0112H No such object instance: never acknowledged here, or its file is gone;
* 0119H Class/Instance conflict: acknowledged with another SOP Class UID;
* 0110H Processing failure: the file changed (size or digest differs), or it
  cannot be verified (no digest was recorded, the file cannot be read);
* 0131H Duplicate transaction UID: the request reused a Transaction UID (PS3.4
  J.3.2), every instance of it fails so.

The I/O (reading the index, ``stat`` and hashing the files) is the caller's
(``ops/commitment.py``); this decides from what it found.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dcmrecv.commitment.messages import Failure, FailureReason, Reference, Report
from dcmrecv.state.model import InstanceRecord


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the file of an indexed instance is now."""

    size: int
    #: Its content's SHA-256 (hex), when it was read (``--commitment-verify``);
    #: None when not read or unreadable.
    sha256: str | None = None


def failure_reason(
    reference: Reference,
    record: InstanceRecord | None,
    facts: FileFacts | None,
    *,
    verify: bool,
) -> int | None:
    """None when ``reference`` is committed, else its Failure Reason (module docstring).

    ``facts`` is None when the file does not exist (or cannot be examined)."""
    if record is None:
        return FailureReason.NO_SUCH_OBJECT_INSTANCE
    if record.sop_class_uid != reference.sop_class_uid:
        return FailureReason.CLASS_INSTANCE_CONFLICT
    if facts is None:
        return FailureReason.NO_SUCH_OBJECT_INSTANCE
    if facts.size != record.size:
        return FailureReason.PROCESSING_FAILURE
    if verify and (record.sha256 is None or facts.sha256 != record.sha256):
        return FailureReason.PROCESSING_FAILURE
    return None


def evaluate(
    transaction_uid: str,
    references: Sequence[Reference],
    records: Mapping[str, InstanceRecord],
    facts_of: Callable[[InstanceRecord], FileFacts | None],
    *,
    verify: bool,
    duplicate: bool = False,
) -> Report:
    """The report on ``references``, in the order requested (``records``: the index's
    entries by SOP Instance UID; ``facts_of``: what a record's file is now)."""
    if duplicate:
        duplicated = FailureReason.DUPLICATE_TRANSACTION_UID
        return Report(transaction_uid, (), tuple(Failure(r, duplicated) for r in references))
    committed: list[Reference] = []
    failed: list[Failure] = []
    for reference in references:
        record = records.get(reference.sop_instance_uid)
        facts = facts_of(record) if record is not None else None
        reason = failure_reason(reference, record, facts, verify=verify)
        if reason is None:
            committed.append(reference)
        else:
            failed.append(Failure(reference, reason))
    return Report(transaction_uid, tuple(committed), tuple(failed))
