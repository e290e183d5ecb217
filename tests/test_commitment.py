"""Storage commitment end to end (issue 24): our receiver as a process, real peers.

DCMTK's storescu stores the instances; pynetdicom is the requester (N-ACTION) and,
when the report comes on a new association, the requester's listener.  What a user
would check: the N-ACTION-RSP status, the report's committed and failed instances
with their reasons, which association carried it, and the log, event log and
/metrics lines.  Orthanc as the requester is in test_orthanc_commitment.py.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, StorageCommitmentPushModel

from dcmrecv.commitment import messages as m
from dcmrecv.wire import dimse
from dcmrecv.wire.calling import CallingAssociation
from dcmrecv.wire.requestor import ProposedContext
from tests.conftest import free_port, require_tool
from tests.helpers import (
    COMMANDS,
    PROFILE,
    action_information,
    ct_files,
    environment,
    metric,
    receiver,
    wait_until,
)

pytestmark = pytest.mark.dcmtk

REQUESTER = "MODALITY"
NO_SUCH_OBJECT = 0x0112
PROCESSING_FAILURE = 0x0110
DUPLICATE_TRANSACTION = 0x0131


@dataclass
class Report:
    event_type_id: int
    information: Dataset
    #: "same" (on the requesting association) or "new".
    association: str
    calling_ae_title: str = ""

    def committed(self) -> list[str]:
        items = self.information.get("ReferencedSOPSequence", [])
        return sorted(item.ReferencedSOPInstanceUID for item in items)

    def failed(self) -> dict[str, int]:
        items = self.information.get("FailedSOPSequence", [])
        return {item.ReferencedSOPInstanceUID: int(item.FailureReason) for item in items}


@dataclass
class Requester:
    """A Storage Commitment requester (pynetdicom) that also listens for reports."""

    ae_title: str = REQUESTER
    listen_port: int = field(default_factory=free_port)
    reports: list[Report] = field(default_factory=list)
    _server: Any = None

    def _on_report(self, event: Any, association: str) -> tuple[int, None]:
        calling = event.assoc.requestor.ae_title if association == "new" else ""
        self.reports.append(
            Report(event.request.EventTypeID, event.event_information, association, calling)
        )
        return 0x0000, None

    def listen(self) -> None:
        """Take reports on new associations (SCP role for us, PS3.4 J.3.3)."""
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        handlers = [(evt.EVT_N_EVENT_REPORT, lambda e: self._on_report(e, "new"))]
        self._server = ae.start_server(
            ("127.0.0.1", self.listen_port), block=False, evt_handlers=handlers
        )

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @property
    def peer_option(self) -> list[str]:
        return ["--commitment-peer", f"{self.ae_title}=127.0.0.1:{self.listen_port}"]

    def request(
        self,
        port: int,
        references: Sequence[tuple[str, str]],
        *,
        transaction_uid: str | None = None,
        wait_for_report: bool = True,
        action: Dataset | None = None,
        action_type_id: int = 1,
        instance_uid: str = m.SOP_INSTANCE_UID,
    ) -> int:
        """N-ACTION on a new association; with ``wait_for_report`` the association
        stays open until a report came on it (else it is released at once).  The
        N-ACTION-RSP status."""
        ae = AE(ae_title=self.ae_title)
        ae.add_requested_context(StorageCommitmentPushModel)
        ae.dimse_timeout = 60
        handlers = [(evt.EVT_N_EVENT_REPORT, lambda e: self._on_report(e, "same"))]
        association = ae.associate("127.0.0.1", port, ae_title="DCMRECV", evt_handlers=handlers)
        assert association.is_established
        before = len(self.reports)
        try:
            if action is None:
                action = action_information(transaction_uid or generate_uid(), references)
            status, _ = association.send_n_action(
                action, action_type_id, StorageCommitmentPushModel, instance_uid
            )
            if wait_for_report and status.Status == 0:
                wait_until(lambda: len(self.reports) > before, "the report")
        finally:
            association.release()
        return int(status.Status)


def store(port: int, files: Sequence[Path]) -> None:
    """DCMTK's storescu sends ``files`` (each must be stored)."""
    result = subprocess.run(
        [require_tool("storescu"), "-aec", "DCMRECV", "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def references(files: Sequence[Path]) -> list[tuple[str, str]]:
    found = []
    for path in files:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        found.append((str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)))
    return found


def stored_path(workdir: Path, sop_instance_uid: str) -> Path:
    (path,) = (workdir / "out").glob(f"*{sop_instance_uid}*")
    return path


def events(path: Path, kind: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line for line in lines if line["event"] == kind]


@pytest.fixture
def requester() -> Iterator[Requester]:
    peer = Requester()
    yield peer
    peer.stop_listening()


# --- the report ---------------------------------------------------------------------------


def test_the_report_on_the_requesting_association_names_what_is_safely_stored(
    tmp_path: Path, requester: Requester
) -> None:
    files = ct_files(tmp_path / "images", 4)
    http = free_port()
    options = [*requester.peer_option, "--storage-commitment", "--http-port", str(http)]
    options += ["--event-log", "events.jsonl"]
    with receiver(tmp_path, *options) as (port, _, log):
        store(port, files[:3])
        removed = stored_path(tmp_path, references(files)[2][1])
        removed.unlink()  # acknowledged, then lost: not committed

        status = requester.request(port, references(files))

        assert status == 0
        (report,) = requester.reports
        uids = [uid for _, uid in references(files)]
        assert report.association == "same"
        assert report.event_type_id == m.EVENT_FAILURES_EXIST
        assert report.committed() == sorted(uids[:2])
        # Never received, and received but its file gone: "no such object instance".
        assert report.failed() == {uids[2]: NO_SUCH_OBJECT, uids[3]: NO_SUCH_OBJECT}
        sent = 'dcmrecv_commitment_reports_total{outcome="sent"}'
        wait_until(lambda: metric(http, sent) == 1, "the report counted as sent")
        assert metric(http, 'dcmrecv_commitment_requests_total{result="accepted"}') == 1
        assert metric(http, 'dcmrecv_commitment_instances_total{result="committed"}') == 2
        assert metric(http, 'dcmrecv_commitment_instances_total{result="failed"}') == 2
    text = log.read_text()
    transaction = report.information.TransactionUID
    assert f"Storage commitment request from {REQUESTER}: transaction {transaction}" in text
    assert "sent to MODALITY on the requesting association: 2 committed, 2 failed" in text
    (requested,) = events(tmp_path / "events.jsonl", "commitment_requested")
    assert (requested["transaction_uid"], requested["instances"]) == (transaction, 4)
    (reported,) = events(tmp_path / "events.jsonl", "commitment_reported")
    assert (reported["committed"], reported["failed"]) == (2, 2)
    assert reported["via"] == "requesting association"


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "--workers 2"])
def test_a_requester_that_releases_gets_the_report_on_a_new_association_from_our_ae(
    tmp_path: Path, requester: Requester, workers: int
) -> None:
    files = ct_files(tmp_path / "images", 3)
    requester.listen()
    options = [*requester.peer_option, "--storage-commitment", "--workers", str(workers)]
    with receiver(tmp_path, *options) as (port, _, log):
        store(port, files)

        status = requester.request(port, references(files), wait_for_report=False)

        assert status == 0
        wait_until(lambda: len(requester.reports) == 1, "the report on a new association")
        (report,) = requester.reports
        assert (report.association, report.calling_ae_title) == ("new", "DCMRECV")
        assert report.event_type_id == m.EVENT_ALL_COMMITTED
        assert report.committed() == sorted(uid for _, uid in references(files))
        assert report.failed() == {}
        wait_until(lambda: "on the new association: 3 committed" in log.read_text(), "log")


def test_the_report_of_a_reused_transaction_uid_fails_every_instance_with_0131(
    tmp_path: Path, requester: Requester
) -> None:
    files = ct_files(tmp_path / "images", 1)
    with receiver(tmp_path, *requester.peer_option, "--storage-commitment") as (port, _, log):
        store(port, files)
        transaction = generate_uid()
        requester.request(port, references(files), transaction_uid=transaction)
        status = requester.request(port, references(files), transaction_uid=transaction)

    assert status == 0
    first, second = requester.reports
    assert first.committed() == [references(files)[0][1]]
    assert second.committed() == []
    assert second.failed() == {references(files)[0][1]: DUPLICATE_TRANSACTION}
    assert "Transaction UID used before" in log.read_text()


def test_with_verify_a_file_changed_after_its_success_is_not_committed(
    tmp_path: Path, requester: Requester
) -> None:
    files = ct_files(tmp_path / "images", 2)
    options = [*requester.peer_option, "--storage-commitment", "--commitment-verify"]
    with receiver(tmp_path, *options) as (port, _, _):
        store(port, files)
        changed = stored_path(tmp_path, references(files)[1][1])
        data = bytearray(changed.read_bytes())
        data[-1] ^= 0xFF  # same size, other content
        changed.write_bytes(data)

        requester.request(port, references(files))

    (report,) = requester.reports
    assert report.committed() == [references(files)[0][1]]
    assert report.failed() == {references(files)[1][1]: PROCESSING_FAILURE}


def test_thousands_of_instances_get_a_report_with_each_of_them(
    tmp_path: Path, requester: Requester
) -> None:
    files = ct_files(tmp_path / "images", 1)
    many = [(CTImageStorage, f"2.25.{n}") for n in range(10_000)]
    with receiver(tmp_path, *requester.peer_option, "--storage-commitment") as (port, _, _):
        store(port, files)
        status = requester.request(port, [*references(files), *many])

    assert status == 0
    (report,) = requester.reports
    assert report.committed() == [references(files)[0][1]]
    failed = report.failed()
    assert len(failed) == 10_000 and set(failed.values()) == {NO_SUCH_OBJECT}


# --- who may ask, and bad requests -------------------------------------------------------


def test_a_requester_missing_from_the_peer_table_is_refused_and_gets_no_report(
    tmp_path: Path, requester: Requester
) -> None:
    files = ct_files(tmp_path / "images", 1)
    stranger = Requester(ae_title="STRANGER")
    stranger.listen()
    requester.listen()
    try:
        with receiver(tmp_path, *requester.peer_option, "--storage-commitment") as (
            port,
            _,
            log,
        ):
            store(port, files)
            status = stranger.request(port, references(files), wait_for_report=False)
            # A listed requester's report is delivered: the stranger's would have been by now.
            requester.request(port, references(files), wait_for_report=False)
            wait_until(lambda: len(requester.reports) == 1, "the listed requester's report")
    finally:
        stranger.stop_listening()

    assert status == 0x0124  # Refused: Not authorized
    assert stranger.reports == []
    assert "Storage commitment request from STRANGER refused (0x0124)" in log.read_text()
    assert "not in --commitment-peer or --commitment-peers" in log.read_text()


def malformed() -> dict[str, tuple[Dataset, int, int]]:
    """Requests pynetdicom sends as given: (Action Information, Action Type ID, the
    status we answer)."""
    return {
        "no Transaction UID": (action_information(None, [(CTImageStorage, "1.2.3")]), 1, 0x0120),
        "an empty Transaction UID": (
            action_information("", [(CTImageStorage, "1.2.3")]),
            1,
            0x0121,
        ),
        "a Transaction UID that is no UID": (
            action_information("1.2.abc", [(CTImageStorage, "1.2.3")]),
            1,
            0x0115,
        ),
        "no Referenced SOP Sequence": (action_information("1.2.3", None), 1, 0x0120),
        "an empty Referenced SOP Sequence": (action_information("1.2.3", []), 1, 0x0121),
        "an item without its instance": (
            action_information("1.2.3", [(CTImageStorage, None)]),
            1,
            0x0120,
        ),
        "an action type that does not exist": (
            action_information("1.2.3", [(CTImageStorage, "1.2.3")]),
            2,
            0x0123,
        ),
    }


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_malformed_requests_get_their_failure_status_and_the_receiver_goes_on(
    tmp_path: Path, requester: Requester
) -> None:
    cases = malformed()
    with receiver(tmp_path, *requester.peer_option, "--storage-commitment") as (port, _, log):
        statuses = {
            name: requester.request(
                port, [], action=action, action_type_id=action_type, wait_for_report=False
            )
            for name, (action, action_type, _) in cases.items()
        }
        wrong_instance = requester.request(
            port, [(CTImageStorage, "1.2.3")], instance_uid="1.2.3.4", wait_for_report=False
        )
        # Bytes pynetdicom would not send: a data set cut short, one over 4 MiB.
        cut = _raw_action(port, m.encode_request(_request(3), m.EXPLICIT_VR_LITTLE_ENDIAN)[:-7])
        huge = _raw_action(port, m.encode_request(_request(50_000), m.EXPLICIT_VR_LITTLE_ENDIAN))
        # Still serving: a good request is answered and reported.
        status = requester.request(port, [(CTImageStorage, "1.2.3")])

    assert statuses == {name: expected for name, (_, _, expected) in cases.items()}
    assert wrong_instance == NO_SUCH_OBJECT
    assert (cut, huge) == (0x0110, 0x0213)
    assert status == 0 and requester.reports[0].failed() == {"1.2.3": NO_SUCH_OBJECT}
    text = log.read_text()
    assert text.count("Storage commitment request from MODALITY refused") == len(cases) + 3
    assert "no Transaction UID (0008,1195)" in text


def _request(count: int) -> m.CommitmentRequest:
    references = tuple(m.Reference(CTImageStorage, f"2.25.{n:039d}") for n in range(count))
    return m.CommitmentRequest(generate_uid(), references)


def _raw_action(port: int, data_set: bytes) -> int:
    """An N-ACTION-RQ whose data set is ``data_set`` as it is; the response's status."""
    contexts = [ProposedContext(1, m.SOP_CLASS_UID, (m.EXPLICIT_VR_LITTLE_ENDIAN,))]
    with CallingAssociation("127.0.0.1", port, REQUESTER, "DCMRECV", contexts) as association:
        command = dimse.encode_request(
            dimse.N_ACTION_RQ,
            7,
            m.SOP_CLASS_UID,
            m.SOP_INSTANCE_UID,
            has_data_set=True,
            requested=True,
            action_type_id=1,
        )
        reply = association.request(1, command, data_set)
    assert reply.command.command_field == dimse.N_ACTION_RSP
    return reply.command.status


# --- delivery that has to wait -------------------------------------------------------------


def test_a_report_waits_for_a_requester_that_is_down_and_a_restart_finishes_it(
    tmp_path: Path, requester: Requester
) -> None:
    files = ct_files(tmp_path / "images", 2)
    options = [*requester.peer_option, "--storage-commitment", "--event-log", "events.jsonl"]
    with receiver(tmp_path, *options) as (port, process, log):
        store(port, files)
        requester.request(port, references(files), wait_for_report=False)
        wait_until(lambda: "not delivered (cannot connect" in log.read_text(), "a failed attempt")
        process.send_signal(signal.SIGKILL)  # pending in the state store, not lost
    with receiver(tmp_path, *options, port=port) as (_, _, log):
        requester.listen()
        wait_until(lambda: len(requester.reports) == 1, "the report after the restart")
        wait_until(lambda: events(tmp_path / "events.jsonl", "commitment_reported"), "event")

    (report,) = requester.reports
    assert report.committed() == sorted(uid for _, uid in references(files))
    (reported,) = events(tmp_path / "events.jsonl", "commitment_reported")
    assert reported["via"] == "new association" and reported["attempts"] >= 2


def test_a_report_nobody_takes_is_given_up_after_commitment_retry(
    tmp_path: Path, requester: Requester
) -> None:
    files = ct_files(tmp_path / "images", 1)
    http = free_port()
    options = [*requester.peer_option, "--storage-commitment", "--commitment-retry", "3"]
    options += ["--http-port", str(http), "--event-log", "events.jsonl"]
    with receiver(tmp_path, *options) as (port, _, log):
        store(port, files)
        requester.request(port, references(files), wait_for_report=False)  # nobody listens
        wait_until(lambda: "given up after" in log.read_text(), "the report given up")
        assert metric(http, 'dcmrecv_commitment_reports_total{outcome="failed"}') == 1
        assert metric(http, 'dcmrecv_commitment_reports_total{outcome="sent"}') == 0

    (failed,) = events(tmp_path / "events.jsonl", "commitment_failed")
    assert failed["requester"] == REQUESTER and "cannot connect" in failed["reason"]


# --- storescp, and the command line ----------------------------------------------------------


def test_storescp_takes_storage_commitment_too(tmp_path: Path, requester: Requester) -> None:
    files = ct_files(tmp_path / "images", 1)
    options = [*requester.peer_option, "--storage-commitment"]
    with receiver(tmp_path, *options, command="storescp") as (port, _, _):
        store(port, files)
        requester.request(port, references(files))

    assert requester.reports[0].committed() == [references(files)[0][1]]


def test_storescp_inetd_delivers_the_report_before_it_exits(
    tmp_path: Path, requester: Requester
) -> None:
    """One process per connection (inetd): a requester that released gets its report
    on a new association before the process ends, not from the next connection's."""
    requester.listen()
    (tmp_path / "out").mkdir()
    # With --inetd the log goes only to a -lc file.
    (tmp_path / "logger.cfg").write_text(
        "log4cplus.rootLogger = INFO, file\n"
        "log4cplus.appender.file = log4cplus::FileAppender\n"
        f"log4cplus.appender.file.File = {tmp_path / 'storescp.log'}\n"
        "log4cplus.appender.file.layout = log4cplus::PatternLayout\n"
        "log4cplus.appender.file.layout.ConversionPattern = %p: %m%n\n"
    )
    statuses: list[int] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        asking = threading.Thread(
            target=lambda: statuses.append(
                requester.request(port, [(CTImageStorage, "1.2.3")], wait_for_report=False)
            )
        )
        asking.start()
        connection, _ = listener.accept()
    with connection:
        storescp = subprocess.run(
            [
                *COMMANDS["storescp"],
                *("--inetd", "-lc", "logger.cfg", *PROFILE, "-od", "out"),
                *("--storage-commitment", *requester.peer_option),
            ],
            stdin=connection.fileno(),
            cwd=tmp_path,
            env=environment(),
            timeout=120,
            check=False,
        )
    asking.join(60)

    log = (tmp_path / "storescp.log").read_text()
    assert (storescp.returncode, statuses) == (0, [0]), log
    # Delivered by the time the process exited: nothing waits for another connection.
    assert [report.failed() for report in requester.reports] == [{"1.2.3": NO_SUCH_OBJECT}], log
    assert "sent to MODALITY on the new association: 0 committed, 1 failed" in log


def _run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMANDS["dcmrecv"], *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env=environment(),
    )


def test_check_config_shows_the_class_and_the_peers_of_a_dcmqrscp_host_table(
    tmp_path: Path,
) -> None:
    (tmp_path / "dcmqrscp.cfg").write_text(
        "NetworkTCPPort = 11112\n"
        "HostTable BEGIN\n"
        "modality1 = (CT_SCANNER, 10.0.0.7, 104)\n"
        "both = (MR1, mr.example, 11113), (MR2, ::1, 11114)\n"
        "group = modality1, both\n"
        "HostTable END\n"
        "AETable BEGIN\nARCHIVE /srv/archive RW (100, 1024mb) ANY\nAETable END\n"
    )
    result = _run(
        *PROFILE,
        "--storage-commitment",
        "--commitment-peers",
        "dcmqrscp.cfg",
        "--commitment-peer",
        "MR1=10.0.0.8:104",  # the command line wins over the file
        "--check-config",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert "1.2.840.10008.1.20.1" in result.stdout
    assert (
        "--storage-commitment: reports to CT_SCANNER=10.0.0.7:104, MR1=10.0.0.8:104, "
        "MR2=[::1]:11114"
    ) in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--commitment-verify"], "--commitment-verify only allowed with --storage-commitment"),
        (
            ["--storage-commitment", "--commitment-peer", "MODALITY"],
            "Invalid value for option --commitment-peer ('MODALITY' is not AET=HOST:PORT)",
        ),
        (
            ["--storage-commitment", "--commitment-peer", "MODALITY=host:99999"],
            "'99999' is not a port number (1-65535)",
        ),
        (
            ["--storage-commitment", "--commitment-peers", "missing.cfg"],
            "Cannot open --commitment-peers 'missing.cfg'",
        ),
    ],
)
def test_commitment_options_are_checked_with_a_clear_message(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    result = _run(*PROFILE, *arguments, "11112", cwd=tmp_path)

    assert result.returncode != 0
    assert message in result.stderr + result.stdout
