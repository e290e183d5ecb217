"""The embedded state store: one SQLite file in WAL mode, shared by every process on
a host.

Issue 20's default: state on the local disk that every worker shares and that
survives ``kill -9``.  SQLite in WAL mode gives that with the standard library:
every change is a transaction, a writer appends to the write-ahead log and readers
go on meanwhile, and a process killed at any instruction leaves either its whole
transaction or none of it (the next opener recovers the log).  Writers of all
processes take turns on the file's write lock (``BEGIN IMMEDIATE``, tried again
every millisecond or sooner for up to :data:`BUSY_TIMEOUT`); the threads of one
process take turns on one connection.  A background thread copies the log into the
database (:class:`Checkpointer`), so no C-STORE waits for that.

Durability follows the receiver's fsync setting: ``synchronous=FULL`` flushes the
log at every commit (a commit survives a power cut, like the files the receiver
acknowledged), ``NORMAL`` leaves that to checkpoints (a commit survives the death of
the process, not of the machine).  WAL needs shared memory, so the file must be on a
local file system of one host: replicas on several hosts use PostgreSQL.

Never carried across ``fork``: a child that inherits the object opens its own
connection (SQLite forbids using the parent's) and leaves the parent's alone.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeVar

from dcmrecv.state import schema
from dcmrecv.state.model import (
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

#: Seconds a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT: Final = 10.0
#: First and longest pause (seconds) between two tries for the write lock.  SQLite's
#: own busy handler sleeps 1, 2, 5, ... up to 100 ms between tries: measured with
#: four processes recording at full speed, single calls then waited up to 340 ms
#: for a lock held 30 microseconds at a time.  These pauses keep a wait within a
#: millisecond of the lock's release.
BUSY_PAUSE_FIRST: Final = 0.0001
BUSY_PAUSE_MAX: Final = 0.001
#: Seconds between checkpoints, which copy the log into the database file off the
#: C-STORE's path (see :class:`Checkpointer`).
CHECKPOINT_INTERVAL: Final = 0.5
#: Log pages after which a commit checkpoints by itself: a backstop, reached only
#: when the checkpointer falls behind (SQLite's default is 1000: about every 180th
#: instance, each time a pause of milliseconds in a C-STORE).
AUTOCHECKPOINT_PAGES: Final = 10000

_T = TypeVar("_T")


def _sql(statement: str) -> str:
    return schema.render(statement, schema.SQLITE)


_UPSERT_INSTANCE: Final = _sql(schema.UPSERT_INSTANCE)
_TOUCH_STUDY: Final = _sql(schema.TOUCH_STUDY)


class SqliteStore(SingleStatementUpdates):
    """The :class:`~dcmrecv.state.model.StateStore` on a SQLite file."""

    def __init__(
        self,
        path: str,
        *,
        durable: bool,
        migrations: dict[int, tuple[str, ...]] = schema.MIGRATIONS,
    ) -> None:
        self.path = os.path.abspath(path)
        self.durable = durable
        self.description = f"sqlite://{self.path}"
        self._migrations = migrations
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._checkpointer: Checkpointer | None = None
        self._pid = 0
        self._version = 0

    # --- the interface ----------------------------------------------------------

    def record_instance(self, record: InstanceRecord, now: float, *, study: bool = True) -> None:
        parameters = instance_parameters(record, now)
        touch = study and bool(record.study_instance_uid)

        def work(connection: sqlite3.Connection) -> None:
            connection.execute(_UPSERT_INSTANCE, parameters)
            if touch:
                connection.execute(_TOUCH_STUDY, parameters)

        self._write(work)

    def claim_due(
        self, owner: str, now: float, quiet: float, lease: float, limit: int = 16
    ) -> list[StudyClaim]:
        parameters = due_parameters(owner, now, quiet, lease, limit)

        def work(connection: sqlite3.Connection) -> list[StudyClaim]:
            # The write lock is held: what this sees is what the lease changes.
            rows = connection.execute(_sql(schema.SELECT_DUE), parameters).fetchall()
            if not rows:
                return []  # nothing written: an idle receiver's claims cost no flush
            connection.execute(_sql(schema.HEARTBEAT), parameters)
            connection.executemany(
                _sql(schema.LEASE),
                [{**parameters, "study_instance_uid": row[0]} for row in rows],
            )
            return [
                StudyClaim(uid, generation, completions > 0)
                for uid, generation, completions in rows
            ]

        return self._write(work)

    def study_instances(self, study_instance_uid: str) -> list[InstanceRecord]:
        rows = self._read(_sql(schema.STUDY_INSTANCES), {"study_instance_uid": study_instance_uid})
        return [instance_from_row(row) for row in rows]

    def open_studies(self, replica: str) -> list[str]:
        rows = self._read(_sql(schema.OPEN_STUDIES), {"replica": replica})
        return [str(row[0]) for row in rows]

    def find_instances(self, sop_instance_uids: Sequence[str]) -> dict[str, InstanceRecord]:
        found: dict[str, InstanceRecord] = {}
        batch = schema.FIND_INSTANCES_BATCH
        for start in range(0, len(sop_instance_uids), batch):
            uids = json.dumps(list(sop_instance_uids[start : start + batch]))
            for row in self._read(_sql(schema.FIND_INSTANCES_SQLITE), {"uids": uids}):
                record = instance_from_row(row)
                found[record.sop_instance_uid] = record
        return found

    # --- storage commitment -------------------------------------------------------

    def add_commitment(self, job: CommitmentJob, owner: str, now: float, lease: float) -> bool:
        parameters = commitment_parameters(job, owner, now, lease)

        def work(connection: sqlite3.Connection) -> bool:
            if connection.execute(_sql(schema.ADD_COMMITMENT), parameters).rowcount:
                return True
            connection.execute(_sql(schema.ADD_COMMITMENT), {**parameters, "duplicate": 1})
            return False

        return self._write(work)

    def claim_commitments(
        self, owner: str, now: float, lease: float, limit: int = 8
    ) -> list[CommitmentJob]:
        parameters = {"owner": owner, "now": now, "until": now + lease, "limit": limit}

        def work(connection: sqlite3.Connection) -> list[CommitmentJob]:
            rows = connection.execute(_sql(schema.SELECT_DUE_COMMITMENTS), parameters).fetchall()
            connection.executemany(
                _sql(schema.LEASE_COMMITMENT),
                [{**parameters, "job_id": row[0]} for row in rows],
            )
            return [commitment_from_row(row) for row in rows]

        # Read first, without the write lock: an idle receiver's poll writes nothing.
        if not self._read(_sql(schema.SELECT_DUE_COMMITMENTS), parameters):
            return []
        return self._write(work)

    def check(self) -> str:
        with self._lock:
            self._connect()
        synchronous = "FULL" if self.durable else "NORMAL"
        return (
            f"{self.description}: SQLite {sqlite3.sqlite_version}, WAL,"
            f" synchronous={synchronous}, schema version {self._version}"
        )

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                if self._checkpointer is not None:
                    self._checkpointer.stop()
                if self._connection is not None:
                    self._connection.close()
            self._connection = None
            self._checkpointer = None

    # --- connection and transactions -------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """The connection of this process, opened (and the schema migrated) if needed."""
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        if self._pid != os.getpid():
            # A connection inherited across fork is the parent's: left alone, not
            # closed; the parent's checkpointer thread did not come along.
            self._checkpointer = None
        self._connection = None
        try:
            connection = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        try:
            (mode,) = _retry(lambda: connection.execute("PRAGMA journal_mode = WAL").fetchone())
            if str(mode).lower() != "wal":
                raise StateUnavailable(self.description, f"cannot use WAL mode (journal {mode})")
            connection.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            connection.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
            self._version = self._migrate(connection)
        except sqlite3.Error as exc:
            connection.close()
            raise self._unavailable(exc) from None
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._pid = os.getpid()
        if self._checkpointer is None:
            self._checkpointer = Checkpointer(self.path, self.durable)
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> int:
        """Bring the schema to the newest version, once however many processes start;
        the version now."""
        migrations = self._migrations
        _retry(lambda: connection.execute("BEGIN IMMEDIATE"))
        try:
            connection.execute(schema.VERSION_TABLE_DDL)
            (current,) = connection.execute(schema.READ_VERSION).fetchone()
            try:
                pending = schema.pending_versions(current, migrations)
            except schema.NewerSchema as exc:
                raise SchemaTooNew(self.description, str(exc)) from None
            for version in pending:
                for statement in migrations[version]:
                    connection.execute(_sql(statement))
                connection.execute(schema.WRITE_VERSION, {"version": version, "now": _wall_clock()})
            connection.execute(
                schema.FORGET_OWNERS, {"before": _wall_clock() - schema.FORGET_OWNERS_AFTER}
            )
            version = max(migrations) if pending else int(current)
            if version >= 2:
                connection.execute(
                    schema.FORGET_COMMITMENTS,
                    {"before": _wall_clock() - schema.FORGET_COMMITMENTS_AFTER},
                )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return version

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work`` in one write transaction, committed when this returns."""
        with self._lock:
            connection = self._connect()
            try:
                _retry(lambda: connection.execute("BEGIN IMMEDIATE"))
                try:
                    result = work(connection)
                    connection.execute("COMMIT")
                    if self._checkpointer is not None:
                        self._checkpointer.dirty = True
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                self._forget(connection)
                raise self._unavailable(exc) from None
            return result

    def _change(self, statement: str, parameters: Mapping[str, object]) -> bool:
        """One statement in autocommit; True if it changed a row."""
        with self._lock:
            connection = self._connect()
            try:
                text = _sql(statement)
                changed = _retry(lambda: connection.execute(text, parameters).rowcount > 0)
            except sqlite3.Error as exc:
                self._forget(connection)
                raise self._unavailable(exc) from None
            if changed and self._checkpointer is not None:
                self._checkpointer.dirty = True
            return changed

    def _read(self, statement: str, parameters: Mapping[str, object]) -> list[tuple[object, ...]]:
        with self._lock:
            connection = self._connect()
            try:
                return _retry(lambda: connection.execute(statement, parameters).fetchall())
            except sqlite3.Error as exc:
                self._forget(connection)
                raise self._unavailable(exc) from None

    def _forget(self, connection: sqlite3.Connection) -> None:
        """After an error the next call starts on a new connection (a replaced or
        repaired file, a full disk that has room again)."""
        self._connection = None
        connection.close()

    def _unavailable(self, exc: sqlite3.Error) -> StateUnavailable:
        return StateUnavailable(self.description, one_line(exc))


def _retry(attempt: Callable[[], _T]) -> _T:
    """``attempt()``, tried again while another process holds the lock it needs
    (SQLITE_BUSY), for up to BUSY_TIMEOUT seconds."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = BUSY_PAUSE_FIRST
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, BUSY_PAUSE_MAX)


def _wall_clock() -> float:
    return time.time()


class Checkpointer:
    """Copies the write-ahead log into the database file every CHECKPOINT_INTERVAL
    after this process wrote, in a thread of its own, on a connection of its own.

    A checkpoint writes the changed pages and flushes the file (milliseconds); in
    the commit that happens to cross SQLite's threshold it would stall a C-STORE.
    Here it runs beside them (the sqlite3 module releases the GIL while SQLite
    works), and ``PASSIVE`` waits for no reader or writer: commits go on meanwhile.
    An idle receiver wakes twice a second and does nothing.
    """

    def __init__(self, path: str, durable: bool) -> None:
        self.path = path
        self.durable = durable
        #: Set by the store after a commit (a plain attribute: one store thread sets
        #: it, this thread clears it before it checkpoints, so no commit is missed).
        self.dirty = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        while not self._stopping.wait(CHECKPOINT_INTERVAL):
            if not self.dirty:
                continue
            self.dirty = False
            try:
                if connection is None:
                    connection = sqlite3.connect(self.path, isolation_level=None)
                    connection.execute(
                        f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}"
                    )
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:
                # The writers see and report the store's errors; a commit would
                # checkpoint by itself if this one stays behind.
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()
