"""The operations parts on their own: metrics, the HTTP endpoint, the event log, studies.

The end-to-end tests (a real sender, a real receiver) are in test_observability.py;
these pin each part's own promises: the exposition passes Prometheus' own linter,
the endpoint answers while silent clients hang on, event lines never interleave,
a study completes once with every file, a hanging hook is killed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dcmrecv.logs.printable import printable
from dcmrecv.ops.eventlog import EventLog, encode_event
from dcmrecv.ops.http import CLIENT_TIMEOUT, OpsEndpoint
from dcmrecv.ops.metrics import ReceiverMetrics
from dcmrecv.ops.process import run_hook
from dcmrecv.ops.studies import StudyFile, StudyTracker

CI = os.environ.get("CI") == "true"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if CI:
            pytest.fail("promtool (Debian package prometheus) is required under CI=true")
        pytest.skip("promtool (Debian package prometheus) is not installed")
    return path


def study_file(n: int, series: str = "1.2.3.1") -> StudyFile:
    return StudyFile(
        f"CT.1.2.3.{n}", "1.2.840.10008.5.1.4.1.1.2", f"1.2.3.{n}", series, 100 + n, "t"
    )


# --- printable -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("STORESCU", "STORESCU"),
        ("A\nI: Stored received object to file: x", "A\\nI: Stored received object to file: x"),
        ("\x1b[2J", "\\x1b[2J"),
        ("tab\there\r", "tab\\there\\r"),
        ("\x7f\x9b", "\\x7f\\x9b"),
        ("Müller^Hans", "Müller^Hans"),
    ],
)
def test_printable_escapes_controls_and_keeps_text(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert "\n" not in printable(text) and "\x1b" not in printable(text)


# --- metrics ---------------------------------------------------------------------------


def test_metrics_count_and_pass_promtool(tmp_path: Path) -> None:
    metrics = ReceiverMetrics(free_bytes=lambda: 12345.0, flush_counts=lambda: (3, 7))
    metrics.association_accepted()
    metrics.association_accepted()
    metrics.association_rejected()
    metrics.association_ended(aborted=True)
    metrics.instance_answered(0x0000, 1000, 0.002)
    metrics.instance_answered(0xB000, 10, 0.001)
    metrics.instance_answered(0xA700, 5, None)
    text = metrics.exposition().decode()
    assert 'dcmrecv_associations_total{result="accepted"} 2.0' in text
    assert 'dcmrecv_associations_total{result="rejected"} 1.0' in text
    assert 'dcmrecv_associations_total{result="aborted"} 1.0' in text
    assert "dcmrecv_associations_active 1.0" in text
    assert 'dcmrecv_instances_total{status="success"} 1.0' in text
    assert 'dcmrecv_instances_total{status="warning"} 1.0' in text
    assert 'dcmrecv_instances_total{status="failure"} 1.0' in text
    assert "dcmrecv_received_bytes_total 1015.0" in text
    assert "dcmrecv_store_duration_seconds_count 2.0" in text
    assert "dcmrecv_output_free_bytes 12345.0" in text
    assert "dcmrecv_flushes_total 3.0" in text and "dcmrecv_flush_waits_total 7.0" in text
    check = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_two_receivers_do_not_share_counts() -> None:
    first, second = ReceiverMetrics(), ReceiverMetrics()
    first.association_rejected()
    assert 'result="rejected"} 1.0' in first.exposition().decode()
    assert 'result="rejected"} 0.0' in second.exposition().decode()


# --- HTTP endpoint ---------------------------------------------------------------------


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def endpoint() -> tuple[OpsEndpoint, list[str | None]]:
    ready: list[str | None] = [None]
    served = OpsEndpoint("127.0.0.1", 0, ReceiverMetrics(), lambda: ready[0])
    served.start()
    yield served, ready  # type: ignore[misc]
    served.stop()


def test_endpoint_serves_health_readiness_and_metrics(
    endpoint: tuple[OpsEndpoint, list[str | None]],
) -> None:
    served, ready = endpoint
    assert get(served.port, "/healthz") == (200, "ok\n")
    assert get(served.port, "/readyz") == (200, "ready\n")
    ready[0] = "free space 1.0 GB is below --min-free-space 5.0 GB"
    assert get(served.port, "/readyz") == (
        503,
        "not ready: free space 1.0 GB is below --min-free-space 5.0 GB\n",
    )
    status, text = get(served.port, "/metrics")
    assert status == 200 and "dcmrecv_associations_active 0.0" in text
    assert get(served.port, "/nothing")[0] == 404


def test_silent_clients_do_not_hold_the_endpoint(
    endpoint: tuple[OpsEndpoint, list[str | None]],
) -> None:
    served, _ = endpoint
    silent = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(5)]
    try:
        started = time.monotonic()
        assert get(served.port, "/healthz") == (200, "ok\n")
        # Answered while five clients hold connections and say nothing (each has a
        # thread until CLIENT_TIMEOUT): before any of them times out, which a
        # server taking one client at a time would have to wait for.
        assert time.monotonic() - started < CLIENT_TIMEOUT
    finally:
        for sock in silent:
            sock.close()


def test_a_failing_readiness_check_is_not_ready() -> None:
    def broken() -> str | None:
        raise PermissionError("no access to /data")

    served = OpsEndpoint("127.0.0.1", 0, ReceiverMetrics(), broken)
    served.start()
    try:
        status, text = get(served.port, "/readyz")
        assert status == 503 and "no access to /data" in text
    finally:
        served.stop()


# --- event log -------------------------------------------------------------------------


def test_event_lines_are_json_and_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = EventLog(str(path), durable=False)
    hostile = 'A"\n{"event":"forged"}\x1b'

    def writer(n: int) -> None:
        for i in range(200):
            events.write("instance_stored", {"n": n, "i": i, "calling_ae_title": hostile})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 800
    records = [json.loads(line) for line in lines]
    assert {r["event"] for r in records} == {"instance_stored"}
    assert all(r["calling_ae_title"] == hostile for r in records)
    assert sorted((r["n"], r["i"]) for r in records) == [
        (n, i) for n in range(4) for i in range(200)
    ]


def test_event_log_write_on_a_full_disk_raises() -> None:
    events = EventLog("/dev/full", durable=False)
    with pytest.raises(OSError):
        events.write("instance_stored", {"path": "x"})
    events.close()


def test_encode_event_has_kind_and_time_first() -> None:
    record = json.loads(encode_event("study_complete", {"instances": 3}, time="T"))
    assert list(record) == ["event", "time", "instances"]
    assert record == {"event": "study_complete", "time": "T", "instances": 3}


# --- studies ---------------------------------------------------------------------------


def test_tracker_completes_after_the_timeout_counted_from_the_last_arrival() -> None:
    tracker = StudyTracker(timeout=10)
    tracker.add("1.1", study_file(1), "A", now=0)
    tracker.add("2.2", study_file(2), "B", now=5)
    tracker.add("1.1", study_file(3), "C", now=8)  # study 1.1 is seen again
    assert tracker.next_due() == 15
    assert [s.study_instance_uid for s in tracker.pop_due(now=17)] == ["2.2"]
    due = tracker.pop_due(now=18)
    assert [s.study_instance_uid for s in due] == ["1.1"]
    assert sorted(due[0].files) == ["1.2.3.1", "1.2.3.3"]
    assert due[0].calling_ae_titles == {"A", "C"}
    assert tracker.next_due() is None and len(tracker) == 0


def test_a_resent_instance_is_listed_once() -> None:
    tracker = StudyTracker(timeout=1)
    tracker.add("1.1", study_file(1), "A", now=0)
    tracker.add("1.1", study_file(1), "A", now=0.5)
    (study,) = tracker.pop_due(now=2)
    assert len(study.files) == 1 and study.manifest("complete")["instances"] == 1


def test_a_hanging_hook_and_its_children_are_killed(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_hook("sleep 60 & sleep 60; echo never", b"", timeout=0.5)
    assert result.returncode is None and result.killed == "timeout"
    assert time.monotonic() - started < 10


def test_hook_gets_stdin_and_reports_status() -> None:
    result = run_hook("cat; echo oops >&2; exit 3", b"manifest", timeout=10)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"manifest", b"oops\n")
    assert result.killed is None and not result.pipes_held


def test_a_line_cut_off_on_a_stream_is_ended_by_the_next(tmp_path: Path) -> None:
    """A stream's reader that stalls mid-line: the write fails after its timeout, and
    the next line starts on a line of its own, so a reader loses one line, not two."""
    import fcntl
    import os

    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    events = EventLog(str(fifo), durable=True, write_timeout=0.2)
    assert not events.durable  # nothing to flush to a disk
    fcntl.fcntl(reader, 1031, 4096)  # F_SETPIPE_SZ
    with pytest.raises(OSError, match=r"its reader took nothing for 0\.2 s"):
        events.write("instance_stored", {"reason": "x" * 10000})
    received = b""
    while chunk := os.read(reader, 65536):
        received += chunk
        if len(received) >= 4096:
            break
    events.write("association_ended", {"n": 1})
    received += os.read(reader, 65536)
    events.close()
    os.close(reader)
    broken, whole, rest = received.split(b"\n")
    assert len(broken) == 4096 and rest == b""
    assert json.loads(whole)["event"] == "association_ended"
