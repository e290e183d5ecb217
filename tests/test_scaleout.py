"""Scaling out with real parts: replicas behind haproxy on PostgreSQL, and ``--workers``.

Issue 20's acceptance test, as a site would run it: three receivers behind Debian's
``haproxy`` (TCP mode) writing into one output directory and sharing one PostgreSQL
(a throwaway cluster, tests/pgcluster.py); three studies of 30 instances sent by six
concurrent DCMTK ``storescu`` processes, each study split across senders and so
across replicas, some instances sent twice; one replica killed (SIGKILL) in the
middle and started again; what its senders lost sent again, as a sender would.
Then every file must be identical to its source, no temporary file may be left,
and each study must have exactly one complete manifest (the ``--exec-on-eostudy``
command's standard input) listing every acknowledged instance once.  The same with
``--workers 3`` on one host and the embedded state store, a worker killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conftest import free_port, require_program, require_tool, wait_for_port
from tests.helpers import PROFILE, ROOT, environment, storescu_senders, wait_until
from tests.pgcluster import fresh_database, postgresql_cluster  # noqa: F401 (fixture)

TIMEOUT = 90.0
#: A study is complete after this many seconds without an instance.  Longer than the
#: pause between the two rounds of sending (the kill and the restart), so that each
#: study completes once, with both rounds.
QUIET = 8.0
STUDIES = 3
PER_STUDY = 30
SENDERS = 6
#: The manifest the command writes: one file per run.
HOOK = 'cat > "$MANIFESTS/manifest-$$-$(date +%s%N).json"'


@dataclass(frozen=True)
class Instance:
    study: str
    uid: str
    path: Path


def make_studies(directory: Path) -> list[Instance]:
    """STUDIES studies of PER_STUDY CT images (pydicom's CT_small, new UIDs)."""
    source = get_testdata_file("CT_small.dcm")
    assert source is not None
    directory.mkdir()
    instances = []
    for s in range(STUDIES):
        study = generate_uid()
        for n in range(PER_STUDY):
            dataset = pydicom.dcmread(source)
            uid = generate_uid()
            dataset.StudyInstanceUID = study
            dataset.SOPInstanceUID = uid
            dataset.file_meta.MediaStorageSOPInstanceUID = uid
            path = directory / f"s{s}-{n:02d}.dcm"
            dataset.save_as(path)
            instances.append(Instance(study, uid, path))
    return instances


def rounds(instances: Sequence[Instance]) -> tuple[list[list[Path]], list[list[Path]]]:
    """Two rounds of SENDERS batches.  Every sender gets instances of every study (a
    study is split across senders, and senders land on different replicas); the
    second round also sends again a few instances of the first."""
    first = [
        [i.path for i in instances[n::SENDERS] if i.path.name[-6:-4] < "20"] for n in range(SENDERS)
    ]
    second = [
        [i.path for i in instances[n::SENDERS] if i.path.name[-6:-4] >= "20"]
        for n in range(SENDERS)
    ]
    for n, batch in enumerate(second):
        batch.extend(first[(n + 1) % SENDERS][:2])  # sent twice
    return first, second


def send_until_stored(port: int, batches: Sequence[Sequence[Path]]) -> None:
    """Send; a batch whose sender failed (its receiver was killed) is sent again."""
    pending = [list(batch) for batch in batches if batch]
    for _ in range(5):
        senders = storescu_senders(port, pending)
        codes = [sender.wait(TIMEOUT) for sender in senders]
        pending = [batch for batch, code in zip(pending, codes, strict=True) if code != 0]
        if not pending:
            return
        time.sleep(1)
    raise AssertionError(f"{len(pending)} batches could not be sent")


class Receiver:
    """One of our receivers, as a process, restartable on the same port."""

    def __init__(self, workdir: Path, name: str, options: Sequence[str], manifests: Path) -> None:
        self.workdir = workdir
        self.name = name
        self.options = list(options)
        self.manifests = manifests
        self.port = free_port()
        self.http = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / f"{self.name}.log").open("ab")
        command = [sys.executable, "-m", "dcmrecv", "-v", *PROFILE, "-od", "out"]
        command += [*self.options, "--eostudy-timeout", str(QUIET), "--exec-on-eostudy", HOOK]
        command += ["--http-port", str(self.http)]
        self.process = subprocess.Popen(
            [*command, str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=environment(MANIFESTS=str(self.manifests)),
        )
        log.close()
        wait_for_port(self.port, self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(TIMEOUT)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return 0 if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(TIMEOUT)

    def log(self) -> str:
        return (self.workdir / f"{self.name}.log").read_text(errors="replace")


#: The haproxy configuration the README's compose file ships.
HAPROXY_CFG = ROOT / "deploy" / "scale-out" / "haproxy.cfg"


def local_haproxy_config(port: int, backends: Sequence[tuple[int, int]]) -> str:
    """The shipped haproxy.cfg with its addresses on loopback (pure): the frontend on
    ``port``, the servers at (DICOM port, HTTP port) each; everything else as shipped
    (TCP mode, leastconn, the /readyz check)."""
    lines = []
    for line in HAPROXY_CFG.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("bind "):
            line = f"    bind 127.0.0.1:{port}"
        elif stripped.startswith("default-server "):
            line = line.replace("check port 11180 ", "")
        elif stripped.startswith("server "):
            continue
        lines.append(line)
    lines += [
        f"    server r{n} 127.0.0.1:{dicom} check port {http} inter 500ms"
        for n, (dicom, http) in enumerate(backends)
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def haproxy(workdir: Path, backends: Sequence[tuple[int, int]]) -> Iterator[int]:
    """Debian's haproxy with the shipped configuration, on a free port."""
    program = require_program("haproxy", "for the replicas test (Debian package haproxy)")
    port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(local_haproxy_config(port, backends))
    checked = subprocess.run([program, "-c", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    process = subprocess.Popen(
        [program, "-db", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(TIMEOUT)


def stored_somewhere(receivers: Sequence[Receiver], count: int) -> bool:
    return sum(r.log().count("I: Stored received object to file: ") for r in receivers) >= count


def without_group_lengths(dataset: pydicom.Dataset) -> dict[int, object]:
    """The data set's elements by tag, as storescu sends them: it leaves out group
    lengths (gggg,0000) and the trailing padding (FFFC,FFFC)."""
    return {int(e.tag): e.value for e in dataset if e.tag.element != 0 and e.tag != 0xFFFCFFFC}


def check_outcome(workdir: Path, instances: Sequence[Instance]) -> None:
    out = workdir / "out"
    files = {p.name: p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert not [p for p in out.rglob(".dcmrecv-*.part")], "temporary files left"
    assert len(files) == len(instances)
    for instance in instances:
        stored = without_group_lengths(pydicom.dcmread(files[f"CT.{instance.uid}"]))
        source = without_group_lengths(pydicom.dcmread(instance.path))
        assert stored == source, instance.path.name  # the data set, element by element
    manifests = [json.loads(p.read_text()) for p in sorted((workdir / "manifests").iterdir())]
    complete = [m for m in manifests if m["state"] == "complete"]
    by_study: dict[str, list[dict[str, object]]] = {}
    for manifest in complete:
        by_study.setdefault(str(manifest["study_instance_uid"]), []).append(manifest)
    studies = {i.study for i in instances}
    assert set(by_study) == studies, [m["study_instance_uid"] for m in manifests]
    for study, found in by_study.items():
        assert len(found) == 1, f"study {study}: {len(found)} complete manifests"
        (manifest,) = found
        listed = [f["sop_instance_uid"] for f in manifest["files"]]  # type: ignore[attr-defined]
        assert len(listed) == len(set(listed)), "an instance listed twice"
        assert sorted(listed) == sorted(i.uid for i in instances if i.study == study)


@pytest.mark.dcmtk
def test_three_replicas_behind_haproxy_on_postgresql(
    tmp_path: Path,
    postgresql_cluster: object,  # noqa: F811
) -> None:
    instances = make_studies(tmp_path / "files")
    (tmp_path / "out").mkdir()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    state = fresh_database(postgresql_cluster)  # type: ignore[arg-type]
    receivers = [Receiver(tmp_path, f"replica{n}", ["--state", state], manifests) for n in range(3)]
    for receiver in receivers:
        receiver.start()
    first, second = rounds(instances)
    try:
        with haproxy(tmp_path, [(r.port, r.http) for r in receivers]) as port:
            senders = storescu_senders(port, first)
            # Kill one replica while the first round is under way; its senders fail
            # and send their batches again (haproxy takes them elsewhere).
            wait_until(lambda: stored_somewhere([receivers[1]], 3), "replica 1 storing", TIMEOUT)
            receivers[1].kill()
            failed = [
                batch
                for batch, sender in zip([b for b in first if b], senders, strict=True)
                if sender.wait(TIMEOUT) != 0
            ]
            receivers[1].start()
            send_until_stored(port, failed)
            send_until_stored(port, second)
            wait_until(
                lambda: len(list(manifests.iterdir())) >= STUDIES,
                "the studies to complete",
                TIMEOUT,
            )
            time.sleep(QUIET / 2)  # a second manifest would come now
    finally:
        codes = [receiver.stop() for receiver in receivers]
    assert codes == [0, 0, 0]
    check_outcome(tmp_path, instances)
    logs = "".join(r.log() for r in receivers)
    assert logs.count(" complete: ") == STUDIES


@pytest.mark.dcmtk
def test_three_workers_on_the_embedded_state_with_a_worker_killed(tmp_path: Path) -> None:
    instances = make_studies(tmp_path / "files")
    (tmp_path / "out").mkdir()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    receiver = Receiver(tmp_path, "receiver", ["--workers", "3"], manifests)
    receiver.start()
    first, second = rounds(instances)
    try:
        assert receiver.process is not None
        senders = storescu_senders(receiver.port, first)
        wait_until(lambda: stored_somewhere([receiver], 5), "the workers storing", TIMEOUT)
        children = Path(f"/proc/{receiver.process.pid}/task/{receiver.process.pid}/children")
        worker = int(children.read_text().split()[0])
        os.kill(worker, signal.SIGKILL)
        failed = [
            batch
            for batch, sender in zip([b for b in first if b], senders, strict=True)
            if sender.wait(TIMEOUT) != 0
        ]
        send_until_stored(receiver.port, failed)
        send_until_stored(receiver.port, second)
        wait_until(
            lambda: len(list(manifests.iterdir())) >= STUDIES, "the studies to complete", TIMEOUT
        )
        time.sleep(QUIET / 2)
    finally:
        code = receiver.stop()
    assert code == 0
    check_outcome(tmp_path, instances)
    assert f"(process {worker}) ended (signal 9)" in receiver.log()


@pytest.mark.dcmtk
def test_the_state_store_down_fails_stores_with_a700_and_the_receiver_recovers(
    tmp_path: Path,
    postgresql_cluster: object,  # noqa: F811
) -> None:
    """PostgreSQL stops: C-STOREs that need it get 0xA700 with a line naming the store
    and the file; it starts again: the same receiver stores again, without a restart."""
    storescu = require_tool("storescu")
    instances = make_studies(tmp_path / "files")[:2]
    (tmp_path / "out").mkdir()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    cluster: Any = postgresql_cluster
    state = fresh_database(cluster)
    receiver = Receiver(tmp_path, "receiver", ["--state", state], manifests)
    receiver.start()

    def store(instance: Instance) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [storescu, "-v", "-aec", "X", "127.0.0.1", str(receiver.port), str(instance.path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={**os.environ, "TCP_NODELAY": "1"},
        )

    try:
        cluster.stop()
        try:
            refused = store(instances[0])
        finally:
            cluster.start()
        # A sender tries again; the receiver reconnects at most once a second.
        deadline = time.monotonic() + TIMEOUT
        while (again := store(instances[1])).returncode != 0:
            assert time.monotonic() < deadline, again.stderr
            time.sleep(0.5)
    finally:
        assert receiver.stop() == 0
    assert "Received Store Response (Refused: OutOfResources)" in refused.stderr
    log = receiver.log()
    line = next(line for line in log.splitlines() if "cannot record the instance" in line)
    assert line.startswith(f"E: C-STORE of SOP instance {instances[0].uid}: ")
    assert "state store postgresql://dcmrecv@127.0.0.1" in line
    assert "the received file stays as" in line and line.endswith("(status 0xA700)")
    assert again.returncode == 0, again.stderr
    assert "Sending C-STORE Response (Success)" in log
