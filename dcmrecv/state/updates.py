"""The store methods that are one conditional statement each, the same on SQLite
and PostgreSQL: each store supplies ``_change`` (one statement in autocommit, True
if it changed a row) and inherits these."""

from __future__ import annotations

from collections.abc import Mapping

from dcmrecv.state import schema
from dcmrecv.state.model import StudyClaim


class SingleStatementUpdates:
    """Leases of studies and commitment transactions, heartbeats (see
    :class:`~dcmrecv.state.model.StateStore` for what each promises)."""

    def _change(self, statement: str, parameters: Mapping[str, object]) -> bool:
        raise NotImplementedError

    def finish(self, claim: StudyClaim, owner: str) -> bool:
        return self._change(
            schema.FINISH,
            {
                "study_instance_uid": claim.study_instance_uid,
                "generation": claim.generation,
                "owner": owner,
            },
        )

    def renew(self, claim: StudyClaim, owner: str, now: float, lease: float) -> bool:
        return self._change(
            schema.RENEW,
            {"study_instance_uid": claim.study_instance_uid, "owner": owner, "until": now + lease},
        )

    def release(self, claim: StudyClaim, owner: str) -> None:
        self._change(
            schema.RELEASE, {"study_instance_uid": claim.study_instance_uid, "owner": owner}
        )

    def heartbeat(self, owner: str, now: float) -> None:
        self._change(schema.HEARTBEAT, {"owner": owner, "now": now})

    def save_report(self, job_id: str, owner: str, report_json: str, until: float) -> bool:
        parameters = {"job_id": job_id, "owner": owner, "report_json": report_json}
        return self._change(schema.SAVE_REPORT, {**parameters, "until": until})

    def end_commitment(
        self, job_id: str, owner: str, state: str, error: str | None, attempted: int
    ) -> bool:
        parameters = {"job_id": job_id, "owner": owner, "error": error, "attempted": attempted}
        return self._change(schema.END_COMMITMENT, {**parameters, "state": state})

    def retry_commitment(
        self, job_id: str, owner: str, next_attempt: float, error: str | None, attempted: int
    ) -> bool:
        parameters = {"job_id": job_id, "owner": owner, "error": error, "attempted": attempted}
        return self._change(schema.RETRY_COMMITMENT, {**parameters, "next_attempt": next_attempt})
