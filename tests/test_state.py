"""The state store (issue 20): the same behaviour on SQLite and on a real PostgreSQL.

Every behaviour test runs twice, on a SQLite file in a temporary directory and on a
fresh database of a throwaway PostgreSQL cluster (``tests/pgcluster.py``; skipped
without PostgreSQL, failed under CI).  Races are between real processes, a crash is
a real ``kill -9``, an outage is the real server stopped and started again.  Times
passed to the store are chosen wall-clock values, so no test sleeps to let a lease
expire.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import postgres
from dcmrecv.state import schema
from dcmrecv.state.model import (
    DEAD_AFTER,
    CommitmentJob,
    InstanceRecord,
    SchemaTooNew,
    StateStore,
    StateUnavailable,
    new_owner,
    replica_name,
)
from dcmrecv.state.url import open_state, sqlite_path, url_description
from tests.pgcluster import fresh_database, postgresql_cluster

__all__ = ["postgresql_cluster"]  # the fixture, imported for the tests below

#: A wall-clock time for the tests' events (2023-11-14): leases and quiet periods are
#: counted from it, not waited for.
T = 1_700_000_000.0
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
#: Seconds a child process may take to start, or a store to come back.
DEADLINE = 60.0


def instance(study: str, sop: str, **changes: object) -> InstanceRecord:
    record = InstanceRecord(
        study_instance_uid=study,
        sop_instance_uid=sop,
        sop_class_uid=CT,
        series_instance_uid=f"{study}.1",
        transfer_syntax_uid=EXPLICIT_LE,
        path=f"/srv/incoming/CT.{sop}",
        size=1000,
        sha256="ab" * 32,
        received="2023-11-14T22:13:20.000000+00:00",
        calling_ae_title="STORESCU",
        replica="host-a:100",
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each kind."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/state.sqlite"
    cluster: postgres.Cluster = request.getfixturevalue("postgresql_cluster")
    return fresh_database(cluster)


@pytest.fixture
def store(url: str) -> Iterator[StateStore]:
    opened = open_state(url, durable=False)
    yield opened
    opened.close()


def sops(records: list[InstanceRecord]) -> list[str]:
    return [record.sop_instance_uid for record in records]


# --- instances ------------------------------------------------------------------------


def test_a_resent_instance_is_listed_once_with_its_latest_copy(store: StateStore) -> None:
    store.record_instance(instance("1.2.3", "1.2.3.1"), T)
    store.record_instance(instance("1.2.3", "1.2.3.2"), T + 1)
    store.record_instance(instance("1.2.3", "1.2.3.1", path="/srv/again", size=2000), T + 2)

    listed = store.study_instances("1.2.3")

    assert sops(listed) == ["1.2.3.2", "1.2.3.1"]  # in order of (latest) arrival
    assert (listed[1].path, listed[1].size) == ("/srv/again", 2000)
    assert store.study_instances("9.9.9") == []


def test_instances_are_found_by_their_sop_instance_uids_in_batches(store: StateStore) -> None:
    stored = instance("1.2.3", "1.2.3.1", series_instance_uid=None, sha256=None)
    store.record_instance(stored, T)
    # Over one lookup batch, and a UID that was never stored.
    many = [f"1.2.4.{n}" for n in range(schema.FIND_INSTANCES_BATCH + 5)]
    for n, uid in enumerate(many[-3:]):
        store.record_instance(instance("1.2.4", uid), T + n)

    found = store.find_instances(["1.2.3.1", "1.2.3.99", *many])

    assert found["1.2.3.1"] == stored
    assert sorted(found) == sorted(["1.2.3.1", *many[-3:]])


def test_an_instance_without_a_study_to_track_is_indexed_and_opens_no_study(
    store: StateStore,
) -> None:
    store.record_instance(instance("1.2.3", "1.2.3.1"), T, study=False)
    store.record_instance(instance("", "1.2.3.2"), T)  # no Study Instance UID (+B)

    assert sorted(store.find_instances(["1.2.3.1", "1.2.3.2"])) == ["1.2.3.1", "1.2.3.2"]
    assert store.claim_due("a", T + 100, quiet=1, lease=30) == []


# --- storage commitment transactions ---------------------------------------------------------


def commitment(job_id: str, transaction_uid: str = "2.25.1", **changes: object) -> CommitmentJob:
    job = CommitmentJob(
        job_id=job_id,
        transaction_uid=transaction_uid,
        duplicate=False,
        requester="MODALITY",
        responder="DCMRECV",
        references_json=json.dumps([[CT, "1.2.3.1"]]),
        report_json=None,
        requested=T,
        give_up=T + 3600,
        attempts=0,
    )
    return dataclasses.replace(job, **changes)  # type: ignore[arg-type]


def test_a_transaction_uid_requested_twice_is_kept_as_a_duplicate(store: StateStore) -> None:
    assert store.add_commitment(commitment("job-1"), "a", T, lease=30) is True
    assert store.add_commitment(commitment("job-2"), "b", T + 1, lease=30) is False
    assert store.add_commitment(commitment("job-3", "2.25.2"), "b", T + 1, lease=30) is True

    # Each is leased to the process that answered its N-ACTION; once due, both
    # requests of 2.25.1 are delivered, the second marked as the duplicate.
    claimed = store.claim_commitments("c", T + 31, lease=30)
    assert sorted((job.job_id, job.duplicate) for job in claimed) == [
        ("job-1", False),
        ("job-2", True),
        ("job-3", False),
    ]


def test_a_leased_transaction_is_not_claimed_until_released_or_expired(
    store: StateStore,
) -> None:
    store.add_commitment(commitment("job-1"), "a", T, lease=30)
    assert store.claim_commitments("b", T + 1, lease=30) == []

    assert store.save_report("job-1", "a", '{"committed": []}', until=T + 60)
    assert store.claim_commitments("b", T + 31, lease=30) == []  # renewed by the report
    assert store.retry_commitment("job-1", "a", T + 40, "refused", attempted=1)
    assert store.claim_commitments("b", T + 39, lease=30) == []  # not yet due

    (job,) = store.claim_commitments("b", T + 40, lease=30)
    assert (job.attempts, job.report_json) == (1, '{"committed": []}')
    # The old holder lost it: its late writes change nothing.
    assert not store.end_commitment("job-1", "a", "sent", None, attempted=1)
    assert store.end_commitment("job-1", "b", "sent", None, attempted=1)
    assert store.claim_commitments("c", T + 10_000, lease=30) == []


def test_finished_transactions_are_forgotten_after_a_week_pending_ones_never(url: str) -> None:
    store = open_state(url, durable=False)
    try:
        store.add_commitment(commitment("old", "2.25.1", requested=0), "a", 0.0, lease=1)
        store.end_commitment("old", "a", "sent", None, attempted=1)
        store.add_commitment(commitment("stuck", "2.25.2", requested=0), "a", 0.0, lease=1)
    finally:
        store.close()
    reopened = open_state(url, durable=False)  # forgets at start
    try:
        # The finished transaction's UID is free again; the pending one is kept.
        assert reopened.add_commitment(commitment("new", "2.25.1"), "a", T, lease=1)
        assert not reopened.add_commitment(commitment("again", "2.25.2"), "a", T, lease=1)
    finally:
        reopened.close()


def test_instances_recorded_by_many_threads_of_one_process_are_all_listed(
    store: StateStore,
) -> None:
    def send(thread: int) -> None:
        for number in range(25):
            store.record_instance(instance("1.2.3", f"1.2.3.{thread}.{number}"), T)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(sops(store.study_instances("1.2.3")))) == 8 * 25


# --- claims, leases, completion ---------------------------------------------------


def test_a_study_is_claimed_only_after_it_was_quiet(store: StateStore) -> None:
    store.record_instance(instance("1.2.3", "1.2.3.1"), T)
    store.record_instance(instance("1.2.3", "1.2.3.2"), T + 10)
    # A replica whose clock is behind does not make the study look quiet earlier.
    store.record_instance(instance("1.2.3", "1.2.3.3"), T + 5)

    assert store.claim_due("a", T + 12, quiet=5, lease=60) == []
    [claim] = store.claim_due("a", T + 15, quiet=5, lease=60)

    assert (claim.study_instance_uid, claim.generation, claim.followup) == ("1.2.3", 3, False)


def test_a_finished_study_is_complete_until_an_instance_opens_a_followup(
    store: StateStore,
) -> None:
    store.record_instance(instance("1.2.3", "1.2.3.1", replica="a:1"), T)
    [claim] = store.claim_due("a", T + 10, quiet=5, lease=60)
    assert store.open_studies("a:1") == ["1.2.3"]

    assert store.finish(claim, "a") is True

    assert store.claim_due("b", T + 100, quiet=5, lease=60) == []
    assert store.open_studies("a:1") == []
    store.record_instance(instance("1.2.3", "1.2.3.2", replica="b:2"), T + 200)
    [followup] = store.claim_due("b", T + 210, quiet=5, lease=60)
    assert followup.followup is True
    assert sops(store.study_instances("1.2.3")) == ["1.2.3.1", "1.2.3.2"]


def test_instances_arriving_during_a_completion_leave_the_study_open_for_a_followup(
    store: StateStore,
) -> None:
    store.record_instance(instance("1.2.3", "1.2.3.1"), T)
    [claim] = store.claim_due("a", T + 10, quiet=5, lease=60)
    store.record_instance(instance("1.2.3", "1.2.3.2"), T + 11)  # while announcing

    assert store.finish(claim, "a") is True

    assert store.open_studies("host-a:100") == ["1.2.3"]
    assert store.claim_due("a", T + 12, quiet=5, lease=60) == []  # quiet again first
    [followup] = store.claim_due("a", T + 16, quiet=5, lease=60)
    assert (followup.followup, followup.generation) == (True, claim.generation + 1)
    assert store.finish(followup, "a") is True
    assert store.claim_due("a", T + 100, quiet=5, lease=60) == []


def test_a_lease_of_an_owner_without_heartbeat_is_taken_over_after_dead_after(
    store: StateStore,
) -> None:
    store.record_instance(instance("1.2.3", "1.2.3.1"), T)
    [claim] = store.claim_due("a", T + 10, quiet=5, lease=600)  # a heartbeat too
    assert store.claim_due("b", T + 10 + DEAD_AFTER - 1, quiet=5, lease=600) == []
    store.heartbeat("a", T + 14)
    assert store.claim_due("b", T + 14 + DEAD_AFTER - 1, quiet=5, lease=600) == []

    # "a" is silent from T + 14 on (a kill -9): its lease goes to "b".
    [taken] = store.claim_due("b", T + 14 + DEAD_AFTER + 1, quiet=5, lease=600)

    assert (taken.study_instance_uid, taken.generation) == ("1.2.3", claim.generation)
    assert store.finish(claim, "a") is False  # "a" came back too late: nothing changes
    assert store.open_studies("host-a:100") == ["1.2.3"]
    assert store.finish(taken, "b") is True
    assert store.open_studies("host-a:100") == []


def test_an_expired_lease_is_taken_over_and_a_renewed_one_is_not(store: StateStore) -> None:
    store.record_instance(instance("1.2.3", "1.2.3.1"), T)
    [claim] = store.claim_due("a", T + 10, quiet=5, lease=10)
    assert store.renew(claim, "a", T + 18, lease=10) is True  # until T + 28
    store.heartbeat("a", T + 25)

    assert store.claim_due("b", T + 25, quiet=5, lease=10) == []
    assert store.renew(claim, "b", T + 25, lease=10) is False

    store.heartbeat("a", T + 29)
    [taken] = store.claim_due("b", T + 29, quiet=5, lease=10)  # "a" alive, lease over
    assert taken.study_instance_uid == "1.2.3"
    assert store.renew(claim, "a", T + 29, lease=10) is False


def test_a_released_study_is_claimed_by_another_owner_at_once(store: StateStore) -> None:
    store.record_instance(instance("1.2.3", "1.2.3.1"), T)
    [claim] = store.claim_due("a", T + 10, quiet=5, lease=600)

    store.release(claim, "a")

    [again] = store.claim_due("b", T + 10, quiet=5, lease=600)
    assert (again.generation, again.followup) == (claim.generation, False)
    assert store.finish(claim, "a") is False


def test_claims_take_the_oldest_quiet_studies_up_to_the_limit(store: StateStore) -> None:
    for number in range(5):
        store.record_instance(instance(f"1.2.{number}", f"1.2.{number}.1"), T + number)

    first = store.claim_due("a", T + 100, quiet=5, lease=60, limit=2)
    rest = store.claim_due("a", T + 100, quiet=5, lease=60, limit=16)

    assert [c.study_instance_uid for c in first] == ["1.2.0", "1.2.1"]
    assert sorted(c.study_instance_uid for c in rest) == ["1.2.2", "1.2.3", "1.2.4"]


CLAIMER = """
import json, sys, time
from dcmrecv.state.url import open_state
store = open_state(sys.argv[1], durable=False)
owner = sys.argv[2]
store.check()
print("ready", flush=True)
for line in sys.stdin:  # a round: claim until nothing is left
    claimed = []
    for attempt in range(100000):
        got = store.claim_due(owner, time.time(), 0.0, 600.0, limit=1 + attempt % 3)
        if not got:  # none now (the other may hold the rows' locks): once more, then done
            got = store.claim_due(owner, time.time(), 0.0, 600.0)
            if not got:
                break
        claimed += [claim.study_instance_uid for claim in got]
    print(json.dumps(claimed), flush=True)
store.close()
"""
#: Rounds of the race, and the studies each round.
RACE_ROUNDS = 6
RACE_STUDIES = 600


def children(code: str, *argument_lists: list[str]) -> list[subprocess.Popen[str]]:
    """Python processes running ``code``, each ready (it printed "ready") on return."""
    started = [
        subprocess.Popen(
            [sys.executable, "-c", code, *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arguments in argument_lists
    ]
    for child in started:
        assert child.stdout is not None
        line = child.stdout.readline()
        if line.strip() != "ready":
            child.kill()
            _, errors = child.communicate(timeout=DEADLINE)
            pytest.fail(f"a child process did not start: {line}{errors}")
    return started


def read_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    return child.stdout.readline()


def go(started: list[subprocess.Popen[str]]) -> list[str]:
    """Let every child go at once; their standard output when they are done."""
    for child in started:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = []
    for child in started:
        output, errors = child.communicate(timeout=DEADLINE * 2)
        assert child.returncode == 0, errors
        outputs.append(output)
    return outputs


def test_two_processes_racing_for_due_studies_never_claim_the_same_one(
    url: str, store: StateStore
) -> None:
    racers = children(CLAIMER, [url, "racer-1"], [url, "racer-2"])
    raced = 0
    try:
        for round_ in range(RACE_ROUNDS):
            studies = {f"1.2.{round_}.{number}" for number in range(RACE_STUDIES)}
            for study in studies:
                store.record_instance(instance(study, f"{study}.1"), time.time() - 100)
            for racer in racers:
                assert racer.stdin is not None
                racer.stdin.write("go\n")
                racer.stdin.flush()
            first, second = (set(json.loads(read_line(racer))) for racer in racers)

            assert first & second == set()
            assert first | second == studies
            raced += bool(first and second)
    finally:
        for racer in racers:
            racer.kill()
            racer.communicate(timeout=DEADLINE)
    print(f"rounds in which both processes claimed studies: {raced} of {RACE_ROUNDS}")
    assert raced, "one process claimed everything in every round: no race took place"


# --- failures -------------------------------------------------------------------------


WRITER = """
import sys
from dcmrecv.state.model import InstanceRecord
from dcmrecv.state.url import open_state
store = open_state(sys.argv[1], durable=False)
store.check()
print("ready", flush=True)
sys.stdin.readline()
for number in range(1000000):
    uid = f"{sys.argv[2]}.{number}"
    store.record_instance(
        InstanceRecord("1.2.3", uid, "1.2.840.10008.5.1.4.1.1.2", None,
                       "1.2.840.10008.1.2.1", "/srv/" + uid, 10, None,
                       "2023-11-14T22:13:20+00:00", "STORESCU", "w:1"), 1.7e9 + number)
    print(uid, flush=True)
"""


def test_recorded_instances_survive_kill_9_of_a_process_in_the_middle_of_writing(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path}/state.sqlite"
    acknowledged: list[str] = []
    for round_ in range(3):
        [writer] = children(WRITER, [url, f"1.2.3.{round_}"])
        assert writer.stdin is not None and writer.stdout is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
        for _ in range(150 + 50 * round_):
            acknowledged.append(writer.stdout.readline().strip())
        writer.send_signal(signal.SIGKILL)  # while it goes on recording
        writer.communicate(timeout=DEADLINE)

    store = open_state(url, durable=False)
    try:
        listed = set(sops(store.study_instances("1.2.3")))
        assert set(acknowledged) <= listed
        store.record_instance(instance("1.2.3", "1.2.3.after"), T)
        assert "1.2.3.after" in sops(store.study_instances("1.2.3"))
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "state.sqlite") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_postgresql_down_raises_state_unavailable_and_the_same_store_works_when_it_returns(
    postgresql_cluster: postgres.Cluster,
) -> None:
    database = fresh_database(postgresql_cluster)
    with_password = database.replace("dcmrecv@", "dcmrecv:s3cret@")
    store = open_state(with_password, durable=False)
    try:
        store.record_instance(instance("1.2.3", "1.2.3.1"), T)
        postgresql_cluster.stop()
        try:
            with pytest.raises(StateUnavailable) as down:
                store.record_instance(instance("1.2.3", "1.2.3.2"), T + 1)
            with pytest.raises(StateUnavailable) as still_down:  # no new attempt yet
                store.study_instances("1.2.3")
        finally:
            postgresql_cluster.start()
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                store.record_instance(instance("1.2.3", "1.2.3.2"), T + 2)
                break
            except StateUnavailable:
                assert time.monotonic() < deadline, "the store did not come back"
                time.sleep(0.2)
        listed = sops(store.study_instances("1.2.3"))
    finally:
        store.close()

    message = str(down.value)
    assert message.startswith(f"state store {database}: ")
    assert "s3cret" not in message and "s3cret" not in str(still_down.value)
    assert "127.0.0.1" in message
    assert listed == ["1.2.3.1", "1.2.3.2"]


def test_a_sqlite_store_that_cannot_be_opened_says_so_and_works_once_it_can(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "not-yet"
    store = open_state(f"sqlite:{folder}/state.sqlite", durable=True)
    try:
        with pytest.raises(StateUnavailable) as missing:
            store.record_instance(instance("1.2.3", "1.2.3.1"), T)
        folder.mkdir()
        store.record_instance(instance("1.2.3", "1.2.3.1"), T)
        assert sops(store.study_instances("1.2.3")) == ["1.2.3.1"]
    finally:
        store.close()
    assert str(missing.value).startswith(f"state store sqlite://{folder}/state.sqlite: ")
    assert "unable to open" in str(missing.value)


# --- schema -----------------------------------------------------------------------


STARTER = """
import sys
from dcmrecv.state.model import InstanceRecord
from dcmrecv.state.url import open_state
store = open_state(sys.argv[1], durable=True)
print("ready", flush=True)
sys.stdin.readline()
line = store.check()
store.record_instance(
    InstanceRecord("1.2.3", "1.2.3." + sys.argv[2], "1.2.840.10008.5.1.4.1.1.2", None,
                   "1.2.840.10008.1.2.1", "/srv/x", 10, None,
                   "2023-11-14T22:13:20+00:00", "STORESCU", "w:1"), 1.7e9)
store.close()
print(line, flush=True)
"""


def version_rows(url: str) -> list[int]:
    """The versions the store's version table lists, read without the store."""
    query = f"SELECT version FROM {schema.VERSION_TABLE} ORDER BY version"
    if url.startswith("sqlite"):
        with sqlite3.connect(sqlite_path(url)) as connection:
            return [row[0] for row in connection.execute(query)]
    import psycopg

    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute(query)]


def write_version(url: str, version: int) -> None:
    statement = f"INSERT INTO {schema.VERSION_TABLE} (version, applied) VALUES ({version}, 0)"
    if url.startswith("sqlite"):
        with sqlite3.connect(sqlite_path(url)) as connection:
            connection.execute(statement)
        return
    import psycopg

    with psycopg.connect(url) as connection:
        connection.execute(statement)


def test_processes_starting_at_once_create_the_schema_once(url: str) -> None:
    starters = children(STARTER, *([url, str(number)] for number in range(4)))

    lines = go(starters)

    assert all(f"schema version {schema.SCHEMA_VERSION}" in line for line in lines), lines
    assert version_rows(url) == list(range(1, schema.SCHEMA_VERSION + 1))
    store = open_state(url, durable=False)
    try:
        assert len(store.study_instances("1.2.3")) == 4
    finally:
        store.close()


def test_check_names_the_store_its_durability_and_its_schema_version(url: str) -> None:
    lines = {}
    for durable in (True, False):
        store = open_state(url, durable=durable)
        try:
            lines[durable] = store.check()
        finally:
            store.close()

    for line in lines.values():
        assert line.startswith(f"{url_description(url)}: ")
        assert line.endswith(f"schema version {schema.SCHEMA_VERSION}")
    if url.startswith("sqlite"):
        assert "synchronous=FULL" in lines[True] and "synchronous=NORMAL" in lines[False]
    else:  # the test cluster keeps PostgreSQL's default, on
        assert "synchronous_commit=on" in lines[True] and "synchronous_commit=off" in lines[False]


def test_a_schema_newer_than_this_dcmrecv_is_refused_with_a_clear_message(url: str) -> None:
    open_state(url, durable=False).check()
    write_version(url, schema.SCHEMA_VERSION + 1)

    store = open_state(url, durable=False)
    with pytest.raises(SchemaTooNew) as refused:
        store.check()
    with pytest.raises(StateUnavailable):
        store.record_instance(instance("1.2.3", "1.2.3.1"), T)
    store.close()

    assert str(refused.value) == (
        f"state store {url_description(url)}: its schema is version"
        f" {schema.SCHEMA_VERSION + 1}, newer than this dcmrecv knows ({schema.SCHEMA_VERSION}):"
        " upgrade dcmrecv, or give it a store of its own"
    )


def _store_knowing(url: str, migrations: dict[int, tuple[str, ...]]) -> StateStore:
    """A store of ``url`` whose code knows ``migrations`` (a later dcmrecv's)."""
    if url.startswith("sqlite"):
        from dcmrecv.state.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url), durable=False, migrations=migrations)
    from dcmrecv.state.postgresql import PostgresStore

    return PostgresStore(url, url_description(url), durable=False, migrations=migrations)


def test_an_older_schema_is_migrated_keeping_its_data_and_then_refused_by_older_code(
    url: str,
) -> None:
    older = open_state(url, durable=False)
    older.record_instance(instance("1.2.3", "1.2.3.1"), T)
    older.close()
    later = {
        **schema.MIGRATIONS,
        schema.SCHEMA_VERSION + 1: ("ALTER TABLE dcmrecv_instances ADD COLUMN note TEXT",),
    }

    newer = _store_knowing(url, later)
    line = newer.check()
    listed = sops(newer.study_instances("1.2.3"))
    newer.close()

    assert line.endswith(f"schema version {schema.SCHEMA_VERSION + 1}")
    assert listed == ["1.2.3.1"]
    assert version_rows(url) == list(range(1, schema.SCHEMA_VERSION + 2))
    with pytest.raises(SchemaTooNew):
        open_state(url, durable=False).check()


# --- URLs and the optional driver ---------------------------------------------------


def test_state_urls_name_a_file_or_a_server_and_never_show_a_password() -> None:
    assert sqlite_path("sqlite:///var/lib/dcmrecv/state.sqlite") == "/var/lib/dcmrecv/state.sqlite"
    assert sqlite_path("sqlite:state.sqlite") == "state.sqlite"
    assert sqlite_path("sqlite:sub/state.sqlite") == "sub/state.sqlite"
    for bad in ("sqlite://db-host/state.sqlite", "sqlite:", "sqlite:///"):
        with pytest.raises(ValueError):
            sqlite_path(bad)
    assert (
        url_description("postgresql://recv:pw@db:5432/pacs?sslmode=require&password=pw")
        == "postgresql://recv@db:5432/pacs"
    )
    assert url_description("postgres://a:b@h1:5432,h2:5433/x") == "postgres://a@h1:5432,h2:5433/x"
    with pytest.raises(ValueError, match="unknown state store URL 'mysql://u@h/d'"):
        open_state("mysql://u:pw@h/d", durable=False)


def test_the_receiver_without_psycopg_starts_and_a_postgresql_url_says_what_to_install(
    tmp_path: Path,
) -> None:
    script = f"""
import sys
import dcmrecv.commands.dcmrecv
from dcmrecv.state.url import open_state
store = open_state("sqlite://{tmp_path}/state.sqlite", durable=False)
store.check()
store.close()
print("psycopg" in sys.modules)
sys.modules["psycopg"] = None  # as if the extra were not installed
try:
    open_state("postgresql://u:pw@127.0.0.1/d", durable=False)
except ValueError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=DEADLINE
    )

    assert done.returncode == 0, done.stderr
    loaded, message = done.stdout.splitlines()
    assert loaded == "False"
    assert message.startswith("the state store postgresql://u@127.0.0.1/d needs psycopg 3")
    assert message.endswith("install dcmrecv[postgresql]")


def test_lease_owners_are_unique_to_a_process_lifetime() -> None:
    first, second = new_owner(), new_owner()

    assert first != second
    assert first.startswith(f"{replica_name()}:") and second.startswith(f"{replica_name()}:")
    assert replica_name().endswith(f":{os.getpid()}")
