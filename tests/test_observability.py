"""The operations options end to end: ``--http-port``, ``--event-log``,
``--eostudy-timeout``/``--exec-on-eostudy`` and ``--log-format json``.

The receiver runs as a process (``python -m dcmrecv``), the senders are DCMTK's
storescu processes (several at once) and pynetdicom; /metrics is read over HTTP and
checked with promtool, as a Prometheus server would read it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.data import get_testdata_file
from pynetdicom import AE

from benchmarks.study_memory import measure
from tests.conftest import free_port, rejection_seen, require_tool
from tests.helpers import wait_until
from tests.interop import DCMTK_STORESCP_CFG, our_command, receiver_process
from tests.test_ops import promtool

STUDY_UID = "1.2.826.0.1.3680043.10.999.1"
SERIES_UIDS = ("1.2.826.0.1.3680043.10.999.1.1", "1.2.826.0.1.3680043.10.999.1.2")
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def make_study(directory: Path, count: int, study_uid: str = STUDY_UID) -> list[Path]:
    """``count`` CT files of one study in two series, each with its own SOP Instance UID."""
    directory.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    files = []
    for n in range(1, count + 1):
        template.StudyInstanceUID = study_uid
        template.SeriesInstanceUID = SERIES_UIDS[n % 2]
        template.SOPInstanceUID = f"{study_uid}.{n}"
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        path = directory / f"ct{n}.dcm"
        template.save_as(str(path), enforce_file_format=True)
        files.append(path)
    return files


def data_set_length(path: Path) -> int:
    """Bytes of the data set in a Part 10 file: what a sender puts in its C-STORE-RQ.

    128-byte preamble, "DICM", then (0002,0000) UL (12 bytes, explicit VR) giving
    the length of the rest of the meta information (PS3.10 7.1).
    """
    raw = path.read_bytes()
    group_length = int.from_bytes(raw[140:144], "little")
    return len(raw) - 144 - group_length


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric_values(text: str) -> dict[str, float]:
    """Every sample as ``name{label="value"}`` -> value (labels in sorted order)."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def storescu(port: int, files: list[Path]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [require_tool("storescu"), "-aec", "ANY-SCP", "127.0.0.1", str(port), *map(str, files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TCP_NODELAY": "1"},
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "out").mkdir()
    yield tmp_path


def receiver_arguments(*extra: str) -> list[str]:
    return ["-v", "-xf", str(DCMTK_STORESCP_CFG), "Default", "-od", "out", *extra]


# --- a study over several associations --------------------------------------------------


def test_study_over_concurrent_associations_completes_once_with_every_file(
    workdir: Path,
) -> None:
    files = make_study(workdir / "send", 12)
    http_port = free_port()
    arguments = receiver_arguments(
        "--http-port",
        str(http_port),
        "--event-log",
        "events.jsonl",
        "--eostudy-timeout",
        "2",
        "--exec-on-eostudy",
        'cat > "manifest.$$.json"',
    )
    event_log = workdir / "events.jsonl"
    with receiver_process(our_command(), arguments, workdir) as (port, _process):
        assert http_get(http_port, "/readyz") == (200, "ready\n")
        senders = [storescu(port, files[i::3]) for i in range(3)]
        for sender in senders:
            output, _ = sender.communicate(timeout=120)
            assert sender.returncode == 0, output
        wait_until(
            lambda: any(e["event"] == "study_complete" for e in events(event_log)),
            "the study_complete event",
        )
        wait_until(lambda: len(list(workdir.glob("manifest.*.json"))) == 1, "the manifest")

        def ended() -> bool:
            return (
                metric_values(http_get(http_port, "/metrics")[1])["dcmrecv_associations_active"]
                == 0
            )

        wait_until(ended, "the associations to end")
        status, text = http_get(http_port, "/metrics")
        assert status == 200
        assert http_get(http_port, "/healthz") == (200, "ok\n")
    values = metric_values(text)
    assert values['dcmrecv_associations_total{result="accepted"}'] == 3
    assert values['dcmrecv_associations_total{result="rejected"}'] == 0
    assert values['dcmrecv_associations_total{result="aborted"}'] == 0
    assert values['dcmrecv_instances_total{status="success"}'] == 12
    assert values['dcmrecv_instances_total{status="failure"}'] == 0
    # Each stored file waited for one flush (one name per file on this file system);
    # three senders at once shared some of them.
    assert values["dcmrecv_flush_waits_total"] == 12
    assert 1 <= values["dcmrecv_flushes_total"] <= 12
    # storescu re-encodes the data sets (it drops group lengths), so the bytes that
    # arrived are those of the stored files' data sets (stored as received).
    # (The output directory also holds the study state, a dot file readers skip.)
    stored_files = [p for p in (workdir / "out").iterdir() if not p.name.startswith(".")]
    assert values["dcmrecv_received_bytes_total"] == sum(map(data_set_length, stored_files))
    assert values["dcmrecv_store_duration_seconds_count"] == 12
    assert values["dcmrecv_output_free_bytes"] > 0
    check = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr

    stored = sorted(str(p.resolve()) for p in stored_files)
    log = events(event_log)
    completions = [e for e in log if e["event"] == "study_complete"]
    assert len(completions) == 1
    assert completions[0]["study_instance_uid"] == STUDY_UID
    assert completions[0]["instances"] == 12
    assert completions[0]["series"] == sorted(SERIES_UIDS)
    instances = [e for e in log if e["event"] == "instance_stored"]
    assert sorted(str(e["path"]) for e in instances) == stored
    assert {e["association"] for e in instances} == {1, 2, 3}
    assert all(e["study_instance_uid"] == STUDY_UID for e in instances)
    ends = [e for e in log if e["event"] == "association_ended"]
    assert sorted(int(str(e["instances"])) for e in ends) == [4, 4, 4]
    assert {e["end"] for e in ends} == {"released"}
    # The study was complete before the shut-down: nothing is left open.
    assert not [e for e in log if e["event"] == "study_open_at_shutdown"]

    (manifest_path,) = workdir.glob("manifest.*.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["state"] == "complete"
    assert manifest["study_instance_uid"] == STUDY_UID
    assert sorted(f["path"] for f in manifest["files"]) == stored
    assert sorted(f["sop_instance_uid"] for f in manifest["files"]) == sorted(
        f"{STUDY_UID}.{n}" for n in range(1, 13)
    )
    assert {f["series_instance_uid"] for f in manifest["files"]} == set(SERIES_UIDS)


def test_a_study_still_open_at_shutdown_is_recorded_as_open(workdir: Path) -> None:
    files = make_study(workdir / "send", 2)
    arguments = receiver_arguments("--event-log", "events.jsonl", "--eostudy-timeout", "3600")
    with receiver_process(our_command(), arguments, workdir) as (port, _process):
        sender = storescu(port, files)
        output, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, output
    log = events(workdir / "events.jsonl")
    assert [e["event"] for e in log if "study" in str(e["event"])] == ["study_open_at_shutdown"]
    (open_study,) = [e for e in log if e["event"] == "study_open_at_shutdown"]
    assert open_study["study_instance_uid"] == STUDY_UID
    assert open_study["instances"] == 2


def test_a_hanging_study_command_is_killed_at_its_timeout(workdir: Path) -> None:
    files = make_study(workdir / "send", 1)
    arguments = receiver_arguments(
        "--eostudy-timeout", "0.2", "--exec-on-eostudy", "sleep 600", "--exec-timeout", "0.5"
    )
    log_path = workdir / "receiver.log"
    with receiver_process(our_command(), arguments, workdir) as (port, _process):
        sender = storescu(port, files)
        sender.communicate(timeout=120)
        wait_until(lambda: "killed after 0.5 s" in log_path.read_text(), "the command to be killed")
    assert f"E: --exec-on-eostudy for study {STUDY_UID} killed after 0.5 s" in log_path.read_text()


def test_metrics_count_rejected_and_aborted_associations(workdir: Path) -> None:
    http_port = free_port()
    arguments = receiver_arguments("--http-port", str(http_port), "--accept-calling", "GOOD")
    with receiver_process(our_command(), arguments, workdir) as (port, _process):
        refused = AE(ae_title="OTHER")
        refused.add_requested_context(CT_IMAGE_STORAGE)
        assert rejection_seen(refused, port, ae_title="ANY-SCP") == (1, 1, 3)
        caller = AE(ae_title="GOOD")
        caller.add_requested_context(CT_IMAGE_STORAGE)
        assoc = caller.associate("127.0.0.1", port, ae_title="ANY-SCP")
        assert assoc.is_established
        assoc.abort()

        def counted() -> dict[str, float]:
            return metric_values(http_get(http_port, "/metrics")[1])

        wait_until(
            lambda: counted()['dcmrecv_associations_total{result="aborted"}'] == 1,
            "the aborted association to be counted",
        )
        values = counted()
    assert values['dcmrecv_associations_total{result="accepted"}'] == 1
    assert values['dcmrecv_associations_total{result="rejected"}'] == 1
    assert values["dcmrecv_associations_active"] == 0
    assert values['dcmrecv_instances_total{status="success"}'] == 0


# --- readiness ------------------------------------------------------------------------------


def test_readyz_says_why_when_the_output_directory_is_gone(workdir: Path) -> None:
    http_port = free_port()
    arguments = receiver_arguments("--http-port", str(http_port))
    with receiver_process(our_command(), arguments, workdir):
        assert http_get(http_port, "/readyz") == (200, "ready\n")
        (workdir / "out").rename(workdir / "moved")
        status, body = http_get(http_port, "/readyz")
        assert http_get(http_port, "/healthz") == (200, "ok\n")
        assert http_get(http_port, "/nothing")[0] == 404
    assert status == 503
    assert body == "not ready: output directory out is not writable\n"


def test_readyz_is_503_below_min_free_space(workdir: Path) -> None:
    # No test file system has 99.99 % of its blocks free.
    http_port = free_port()
    arguments = receiver_arguments("--http-port", str(http_port), "--min-free-space", "99.99%")
    with receiver_process(our_command(), arguments, workdir):
        status, body = http_get(http_port, "/readyz")
        values = metric_values(http_get(http_port, "/metrics")[1])
    assert status == 503
    assert body.startswith("not ready: free space ")
    assert " is below --min-free-space 99.99% (" in body
    statvfs = os.statvfs(workdir / "out")
    assert 0 < values["dcmrecv_output_free_bytes"] < 0.9999 * statvfs.f_blocks * statvfs.f_frsize


# --- a full event-log disk --------------------------------------------------------------------


def test_a_full_event_log_fails_the_store_with_0xA700(workdir: Path) -> None:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) not found")
    # A file size limit (RLIMIT_FSIZE) for the receiver and an event log that has
    # reached it: the next event line cannot be appended, as on a full disk, while
    # the DICOM file (far smaller) can be written.
    limit = 256 * 1024
    event_log = workdir / "events.jsonl"
    event_log.write_bytes(b"#" * (limit - 10) + b"\n")
    (file,) = make_study(workdir / "send", 1)
    http_port = free_port()
    command = [prlimit, f"--fsize={limit}:{limit}", *our_command()]
    arguments = receiver_arguments("--event-log", str(event_log), "--http-port", str(http_port))
    with receiver_process(command, arguments, workdir) as (port, _process):
        ae = AE(ae_title="FULLTEST")
        ae.add_requested_context(CT_IMAGE_STORAGE, "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", port, ae_title="ANY-SCP")
        assert assoc.is_established
        status = assoc.send_c_store(pydicom.dcmread(str(file)))
        assoc.release()
        values = metric_values(http_get(http_port, "/metrics")[1])
    assert status.Status == 0xA700
    assert values['dcmrecv_instances_total{status="failure"}'] == 1
    assert values['dcmrecv_instances_total{status="success"}'] == 0
    log = (workdir / "receiver.log").read_text()
    assert f"E: C-STORE of SOP instance {STUDY_UID}.1: cannot write the event log" in log
    assert event_log.stat().st_size == limit - 9


# --- --log-format json -------------------------------------------------------------------------


def test_json_log_lines_name_the_association(workdir: Path) -> None:
    files = make_study(workdir / "send", 2)
    arguments = ["--log-format", "json", *receiver_arguments()]
    with receiver_process(our_command(), arguments, workdir) as (port, _process):
        sender = storescu(port, files)
        output, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, output
    lines = (workdir / "receiver.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    stored = [r for r in records if r["message"].startswith("Stored received object to file")]
    assert len(stored) == 2
    assert all(r["association"] == 1 and r["level"] == "INFO" for r in stored)


# --- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--exec-on-eostudy", "true"], "--exec-on-eostudy only with --eostudy-timeout"),
        (["--http-address", "localhost"], "Invalid value for option --http-address (localhost)"),
        (["--http-port", "70000"], "Invalid value for option --http-port (overflow: 70000)"),
        (["--log-format", "xml"], "Invalid value for option --log-format (xml)"),
    ],
)
def test_bad_operations_options_are_refused(options: list[str], message: str) -> None:
    result = subprocess.run(
        [*our_command(), *options, "11112"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert message in result.stderr


# --- storescp ----------------------------------------------------------------------------------


def test_storescp_serves_metrics_and_writes_the_event_log(workdir: Path) -> None:
    files = make_study(workdir / "send", 3)
    http_port = free_port()
    command = [sys.executable, "-c", "from dcmrecv.commands.storescp import main; main()"]
    arguments = ["-od", "out", "--http-port", str(http_port), "--event-log", "events.jsonl"]
    with receiver_process(command, arguments, workdir) as (port, _process):
        sender = storescu(port, files)
        output, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, output
        values = metric_values(http_get(http_port, "/metrics")[1])
    assert values['dcmrecv_instances_total{status="success"}'] == 3
    stored = [e for e in events(workdir / "events.jsonl") if e["event"] == "instance_stored"]
    assert sorted(str(e["sop_instance_uid"]) for e in stored) == [
        f"{STUDY_UID}.{n}" for n in range(1, 4)
    ]


# --- memory of open studies --------------------------------------------------------------------


def test_open_studies_cost_about_a_kilobyte_each_and_half_per_file() -> None:
    # storescp's studies (-ss/-su/-sp with -xcs/-rns) are tracked in memory
    # (benchmarks.study_memory, README "storescp"): thousands of open studies stay in
    # the megabytes.  Generous bounds: they catch a file's data set or a
    # per-study thread sneaking in, not a few bytes.
    result = measure(studies=500, files_per_study=10)
    assert result.per_study < 2048
    assert result.per_file < 1024
