"""Study completion from the state store (ops/completion.py): one announcement per study.

The store is a real one (SQLite in a temporary directory; the PostgreSQL side of the
store is in test_state.py, the whole receiver with workers and replicas in
test_scaleout.py).  Instances are recorded as the instance index records them; the
test waits for what a user would see: the events, and the manifest the command got.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dcmrecv.events import EventBus, StudyCompleted, StudyOpenAtShutdown
from dcmrecv.ops.completion import EndOfStudy
from dcmrecv.state.model import InstanceRecord, StateStore
from dcmrecv.state.url import open_state
from tests.helpers import ROOT, wait_until

TIMEOUT = 30.0


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}", durable=False)
    state.check()
    return state


def record(n: int, study: str = "1.1", calling: str = "SCU", replica: str = "r1") -> InstanceRecord:
    return InstanceRecord(
        study_instance_uid=study,
        sop_instance_uid=f"{study}.{n}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        series_instance_uid=f"{study}.9",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        path=f"/data/CT.{study}.{n}",
        size=100 + n,
        sha256=None,
        received=f"2026-12-04T10:00:{n:02d}.000000+00:00",
        calling_ae_title=calling,
        replica=replica,
    )


def heard() -> tuple[list[Any], EventBus]:
    heard: list[Any] = []
    bus = EventBus()
    bus.subscribe(StudyCompleted, heard.append)
    bus.subscribe(StudyOpenAtShutdown, heard.append)
    return heard, bus


def test_a_quiet_study_completes_once_with_every_instance(
    store: StateStore, tmp_path: Path
) -> None:
    out = tmp_path / "manifest.json"
    events, bus = heard()
    completion = EndOfStudy(
        store, 1.0, replica="r1", command=f"cat > {out}", command_timeout=10, bus=bus
    )
    for n in range(5):
        store.record_instance(record(n, calling="SCU1" if n % 2 else "SCU2"), time.time())
    # A re-sent instance is listed once.
    store.record_instance(record(3, calling="SCU1"), time.time())
    completion.start()
    try:
        wait_until(lambda: out.exists() and out.stat().st_size > 0, "the command's manifest")
        time.sleep(1.5)  # a second announcement would come within this
    finally:
        completion.stop()
    assert [type(event).__name__ for event in events] == ["StudyCompleted"]
    manifest = json.loads(out.read_text())
    assert manifest["study_instance_uid"] == "1.1" and manifest["state"] == "complete"
    assert manifest["instances"] == 5
    assert manifest["calling_ae_titles"] == ["SCU1", "SCU2"]
    assert sorted(f["sop_instance_uid"] for f in manifest["files"]) == [
        f"1.1.{n}" for n in range(5)
    ]


def test_two_receivers_on_one_store_announce_a_study_once(store: StateStore) -> None:
    events, bus = heard()
    first = EndOfStudy(store, 0.5, replica="r1", command=None, command_timeout=1, bus=bus)
    second = EndOfStudy(store, 0.5, replica="r2", command=None, command_timeout=1, bus=bus)
    for n in range(20):
        store.record_instance(record(n, study=f"2.{n % 4}", replica=f"r{1 + n % 2}"), time.time())
    first.start()
    second.start()
    try:
        wait_until(lambda: len(events) >= 4, "four studies")
        time.sleep(1.5)
    finally:
        first.stop()
        second.stop()
    completed = sorted(event.study_instance_uid for event in events)
    assert completed == ["2.0", "2.1", "2.2", "2.3"]
    assert all(len(event.manifest["files"]) == 5 for event in events)


def test_an_instance_after_completion_makes_a_follow_up_with_the_whole_study(
    store: StateStore,
) -> None:
    events, bus = heard()
    completion = EndOfStudy(store, 0.5, replica="r1", command=None, command_timeout=1, bus=bus)
    store.record_instance(record(1), time.time())
    completion.start()
    try:
        wait_until(lambda: len(events) == 1, "the completion")
        store.record_instance(record(2), time.time())
        wait_until(lambda: len(events) == 2, "the follow-up")
    finally:
        completion.stop()
    complete, updated = events
    assert not complete.followup and complete.manifest["instances"] == 1
    assert updated.followup and updated.manifest["state"] == "updated"
    assert updated.manifest["instances"] == 2


def test_studies_still_open_at_shutdown_are_announced_as_open(store: StateStore) -> None:
    events, bus = heard()
    completion = EndOfStudy(store, 3600, replica="r1", command=None, command_timeout=1, bus=bus)
    store.record_instance(record(1, study="9.9"), time.time())
    store.record_instance(record(1, study="8.8", replica="elsewhere"), time.time())
    completion.start()
    completion.stop()
    assert [(type(e).__name__, e.study_instance_uid) for e in events] == [
        ("StudyOpenAtShutdown", "9.9")
    ]


# --- --check-config and the store being down, with the real receiver -----------------


def dcmrecv(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dcmrecv", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_check_config_creates_and_names_the_embedded_store(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    result = dcmrecv("--check-config", "--eostudy-timeout", "5", "-od", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    state = tmp_path / "out" / ".dcmrecv-state.sqlite"
    assert f"--state: sqlite:///{state}: SQLite" in result.stdout
    assert "schema version" in result.stdout and state.exists()


def test_check_config_says_why_a_store_cannot_be_used(tmp_path: Path) -> None:
    unreachable = "postgresql://someone:secret@127.0.0.1:1/nothing"
    result = dcmrecv("--check-config", "--state", unreachable, cwd=tmp_path)
    assert result.returncode == 1
    assert "E: state store postgresql://someone@127.0.0.1:1/nothing" in result.stderr
    assert "secret" not in result.stderr
