"""The state store on PostgreSQL, for replicas on several hosts (psycopg 3).

Issue 20: replicas behind a balancer share one PostgreSQL database, as Orthanc's
scale-out shares its index.  This module is imported only for a ``postgresql://``
URL (``url.open_state``): psycopg is the optional extra ``dcmrecv[postgresql]``.

Cost: the issue allows 1.3 times the no-state time for tiny instances, about 0.6 ms
each, so ``record_instance`` is one statement (a data-modifying CTE: the instance's
upsert and its study's) in autocommit, one round trip, prepared by psycopg after a
few uses.  With ``durable`` false the session sets ``synchronous_commit = off``: a
commit survives the death of the receiver but not a crash of the database host
(the same promise as SQLite's ``synchronous=NORMAL``); otherwise the server's
setting holds.

Exclusive claims: the due rows are locked (``FOR UPDATE SKIP LOCKED``) and then
leased by a second statement of the same transaction, whose snapshot is taken after
the locks: it sees every lease and heartbeat committed before, so two claimers
never lease one study.  (A single statement would recheck a row another claimer
just leased against a snapshot taken earlier, which may not hold that claimer's
heartbeat yet.)

Outages: every method raises StateUnavailable while the server cannot be reached;
the next call reconnects, at most once per :data:`~dcmrecv.state.model.RECONNECT_INTERVAL`,
so a receiver under load does not hammer a database that is starting up.  A
connection found dead by a call (the server restarted while it was idle) is
replaced at once and the call tried once more: every statement here may run twice
(upserts and conditional updates).  Schema migration holds an advisory lock, so
replicas starting together migrate once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import psycopg
from psycopg import conninfo

from dcmrecv.state import schema
from dcmrecv.state.model import (
    RECONNECT_INTERVAL,
    CommitmentJob,
    InstanceRecord,
    SchemaTooNew,
    StateUnavailable,
    StudyClaim,
    commitment_from_row,
    commitment_parameters,
    due_parameters,
    instance_from_row,
    instance_parameters,
    one_line,
)
from dcmrecv.state.updates import SingleStatementUpdates

#: pg_advisory_xact_lock key held while the schema is created or migrated ("dcmrecv"
#: in ASCII); any other user of the database is unlikely to pick it.
MIGRATION_LOCK: Final = 0x64636D72656376
#: Connection settings used unless the URL gives its own: a dead server or network
#: is noticed in seconds rather than the kernel's minutes, and a statement stuck
#: behind a lock fails instead of holding a C-STORE forever.
CONNECTION_DEFAULTS: Final = {
    "connect_timeout": "5",
    "application_name": "dcmrecv",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
#: Milliseconds a statement may run (statement_timeout).
STATEMENT_TIMEOUT_MS: Final = 30000

_T = TypeVar("_T")
Connection = psycopg.Connection[Any]


def _sql(statement: str) -> str:
    return schema.render(statement, schema.POSTGRESQL)


#: One round trip: the instance and its study in one statement.
RECORD_INSTANCE: Final = (
    f"WITH instance AS ({_sql(schema.UPSERT_INSTANCE)}) {_sql(schema.TOUCH_STUDY)}"
)
#: An instance without a study to track (storage commitment's index alone).
UPSERT_INSTANCE: Final = _sql(schema.UPSERT_INSTANCE)


class PostgresStore(SingleStatementUpdates):
    """The :class:`~dcmrecv.state.model.StateStore` on a PostgreSQL database."""

    def __init__(
        self,
        url: str,
        description: str,
        *,
        durable: bool,
        migrations: dict[int, tuple[str, ...]] = schema.MIGRATIONS,
    ) -> None:
        self.url = url
        self.description = description
        self.durable = durable
        self._migrations = migrations
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._pid = 0
        self._version = 0
        self._last_attempt = -RECONNECT_INTERVAL
        self._last_failure = ""

    # --- the interface ----------------------------------------------------------

    def record_instance(self, record: InstanceRecord, now: float, *, study: bool = True) -> None:
        parameters = instance_parameters(record, now)
        statement = RECORD_INSTANCE if study and record.study_instance_uid else UPSERT_INSTANCE
        self._run(lambda connection: connection.execute(statement, parameters))

    def claim_due(
        self, owner: str, now: float, quiet: float, lease: float, limit: int = 16
    ) -> list[StudyClaim]:
        parameters = due_parameters(owner, now, quiet, lease, limit)

        def work(connection: Connection) -> list[StudyClaim]:
            with connection.transaction():
                locked = connection.execute(_sql(schema.LOCK_DUE), parameters).fetchall()
                if not locked:
                    return []  # nothing written
                connection.execute(_sql(schema.HEARTBEAT), parameters)
                rows = connection.execute(
                    _sql(schema.LEASE_LOCKED), {**parameters, "uids": [row[0] for row in locked]}
                ).fetchall()
            return [
                StudyClaim(uid, generation, completions > 0)
                for uid, generation, completions in rows
            ]

        return self._run(work)

    def study_instances(self, study_instance_uid: str) -> list[InstanceRecord]:
        rows = self._rows(schema.STUDY_INSTANCES, {"study_instance_uid": study_instance_uid})
        return [instance_from_row(row) for row in rows]

    def open_studies(self, replica: str) -> list[str]:
        return [str(row[0]) for row in self._rows(schema.OPEN_STUDIES, {"replica": replica})]

    def find_instances(self, sop_instance_uids: Sequence[str]) -> dict[str, InstanceRecord]:
        found: dict[str, InstanceRecord] = {}
        batch = schema.FIND_INSTANCES_BATCH
        for start in range(0, len(sop_instance_uids), batch):
            uids = list(sop_instance_uids[start : start + batch])
            for row in self._rows(schema.FIND_INSTANCES_POSTGRESQL, {"uids": uids}):
                record = instance_from_row(row)
                found[record.sop_instance_uid] = record
        return found

    # --- storage commitment -------------------------------------------------------

    def add_commitment(self, job: CommitmentJob, owner: str, now: float, lease: float) -> bool:
        parameters = commitment_parameters(job, owner, now, lease)
        statement = _sql(schema.ADD_COMMITMENT)

        def work(connection: Connection) -> bool:
            with connection.transaction():
                if connection.execute(statement, parameters).rowcount:
                    return True
                connection.execute(statement, {**parameters, "duplicate": 1})
                return False

        return self._run(work)

    def claim_commitments(
        self, owner: str, now: float, lease: float, limit: int = 8
    ) -> list[CommitmentJob]:
        parameters: dict[str, object] = {
            "owner": owner,
            "now": now,
            "until": now + lease,
            "limit": limit,
        }

        def work(connection: Connection) -> list[CommitmentJob]:
            with connection.transaction():
                locked = connection.execute(
                    _sql(schema.LOCK_DUE_COMMITMENTS), parameters
                ).fetchall()
                if not locked:
                    return []
                rows = connection.execute(
                    _sql(schema.LEASE_LOCKED_COMMITMENTS),
                    {**parameters, "job_ids": [row[0] for row in locked]},
                ).fetchall()
            return [commitment_from_row(row) for row in rows]

        return self._run(work)

    def check(self) -> str:
        def facts(connection: Connection) -> tuple[int, str]:
            row = connection.execute("SHOW synchronous_commit").fetchone()
            return connection.info.server_version, str(row[0]) if row else "?"

        version, synchronous_commit = self._run(facts)
        major, minor = divmod(version, 10000)
        return (
            f"{self.description}: PostgreSQL {major}.{minor},"
            f" synchronous_commit={synchronous_commit}, schema version {self._version}"
        )

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    # --- connection ---------------------------------------------------------------

    def _run(self, work: Callable[[Connection], _T]) -> _T:
        """``work`` on this process's connection, under the lock; StateUnavailable
        when the server cannot be reached or refuses."""
        with self._lock:
            fresh = not self._usable()
            connection = self._connect()
            try:
                return work(connection)
            except psycopg.Error as exc:
                if not (connection.broken or connection.closed):
                    raise self._unavailable(one_line(exc)) from None
                self._connection = None
                if fresh:
                    self._failed(one_line(exc))
                    raise self._unavailable(one_line(exc)) from None
            # The connection had died while idle: once more on a new one.
            connection = self._connect()
            try:
                return work(connection)
            except psycopg.Error as exc:
                if connection.broken or connection.closed:
                    self._connection = None
                    self._failed(one_line(exc))
                raise self._unavailable(one_line(exc)) from None

    def _change(self, statement: str, parameters: Mapping[str, object]) -> bool:
        """One statement in autocommit; True if it changed a row."""
        text = _sql(statement)
        return self._run(lambda connection: connection.execute(text, parameters).rowcount > 0)

    def _rows(self, statement: str, parameters: dict[str, object]) -> list[tuple[Any, ...]]:
        text = _sql(statement)
        return self._run(lambda connection: connection.execute(text, parameters).fetchall())

    def _usable(self) -> bool:
        connection = self._connection
        return (
            connection is not None
            and self._pid == os.getpid()
            and not connection.closed
            and not connection.broken
        )

    def _connect(self) -> Connection:
        """This process's connection, opened (and the schema migrated) if needed; at
        most one attempt per RECONNECT_INTERVAL."""
        if self._usable():
            assert self._connection is not None
            return self._connection
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()  # broken: only its resources are freed
        # A connection inherited across fork is the parent's: closing it here would
        # end the parent's session, so it is only dropped.
        self._connection = None
        since = time.monotonic() - self._last_attempt
        if self._last_failure and since < RECONNECT_INTERVAL:
            raise self._unavailable(self._last_failure)
        self._last_attempt = time.monotonic()
        try:
            connection = psycopg.connect(self._conninfo(), autocommit=True)
        except psycopg.Error as exc:
            self._failed(one_line(exc))
            raise self._unavailable(self._last_failure) from None
        try:
            connection.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            if not self.durable:
                connection.execute("SET synchronous_commit = off")
            self._version = self._migrate(connection)
        except psycopg.Error as exc:
            connection.close()
            self._failed(one_line(exc))
            raise self._unavailable(self._last_failure) from None
        except BaseException:
            connection.close()
            raise
        self._last_failure = ""
        self._connection = connection
        self._pid = os.getpid()
        return connection

    def _conninfo(self) -> str:
        given = conninfo.conninfo_to_dict(self.url)
        extra = {key: value for key, value in CONNECTION_DEFAULTS.items() if key not in given}
        return conninfo.make_conninfo(self.url, **extra)

    def _migrate(self, connection: Connection) -> int:
        """Bring the schema to the newest version, once however many replicas start;
        the version now."""
        migrations = self._migrations
        current = self._read_version(connection)
        if current is None or current < max(migrations):
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                connection.execute(schema.VERSION_TABLE_DDL)
                current = self._read_version(connection)
                for version in self._refuse_newer(current, migrations):
                    for statement in migrations[version]:
                        connection.execute(_sql(statement))
                    connection.execute(
                        _sql(schema.WRITE_VERSION), {"version": version, "now": time.time()}
                    )
                    current = version
        self._refuse_newer(current, migrations)
        connection.execute(
            _sql(schema.FORGET_OWNERS), {"before": time.time() - schema.FORGET_OWNERS_AFTER}
        )
        if (current or 0) >= 2:
            connection.execute(
                _sql(schema.FORGET_COMMITMENTS),
                {"before": time.time() - schema.FORGET_COMMITMENTS_AFTER},
            )
        return current or 0

    def _refuse_newer(
        self, current: int | None, migrations: dict[int, tuple[str, ...]]
    ) -> list[int]:
        try:
            return schema.pending_versions(current, migrations)
        except schema.NewerSchema as exc:
            raise SchemaTooNew(self.description, str(exc)) from None

    @staticmethod
    def _read_version(connection: Connection) -> int | None:
        """The schema version, or None before the version table exists (no lock)."""
        exists = connection.execute("SELECT to_regclass(%s)", (schema.VERSION_TABLE,)).fetchone()
        if not exists or exists[0] is None:
            return None
        row = connection.execute(_sql(schema.READ_VERSION)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def _failed(self, reason: str) -> None:
        self._last_failure = reason
        self._last_attempt = time.monotonic()

    def _unavailable(self, reason: str) -> StateUnavailable:
        return StateUnavailable(self.description, reason)
