"""A real Orthanc (Debian's ``orthanc`` package) as a test peer, in a temporary directory.

Orthanc is the Storage Commitment requester (PS3.4 Annex J, Push Model) and C-STORE SCU
our receiver is tested against.  ``Orthanc`` writes its own configuration file (storage
and index in the temporary directory, free ports, no plugins, no authentication, only
the modalities the test names), starts the server, waits until its REST API answers and
stops it (SIGTERM, then SIGKILL) at the end.  What the server logged is in
``Orthanc.log_path``; the ``orthanc`` fixture prints its tail when a test's teardown runs,
so a failing test shows it.

Loopback only, as far as Orthanc allows: Orthanc 1.10 (and the later releases read
for this) has no option to choose the address it listens on: its DICOM and HTTP ports
listen on every interface.  So the configuration narrows who may use them instead:
``RemoteAccessAllowed: false`` makes the REST API answer only clients on the same host,
and ``DicomAlwaysAllowEcho``/``DicomAlwaysAllowStore: false`` with
``DicomCheckModalityHost: true`` make the DICOM port accept associations and requests
only from the configured modalities, at their configured (loopback) address.

The REST helpers use only the standard library (urllib).  Orthanc's storage commitment
REST calls (Orthanc 1.6 and later):

- ``POST /modalities/{name}/storage-commitment`` with ``{"DicomInstances":
  [{"SOPClassUID": ..., "SOPInstanceUID": ...}, ...]}`` (or ``"Resources"``: Orthanc
  identifiers of instances it stores) sends the N-ACTION and answers
  ``{"ID": transaction UID, "Path": "/storage-commitment/{ID}"}`` once the N-ACTION-RSP
  came back;
- ``GET /storage-commitment/{ID}`` answers ``{"RemoteAET", "Status": "Pending"}`` until
  an N-EVENT-REPORT for that Transaction UID arrived, then ``"Status"`` is ``"Success"``
  or ``"Failure"`` with ``"Success"`` and ``"Failures"`` lists.

What Orthanc does as the requester, seen on the wire with Orthanc 1.10.1 (Debian 12) and
1.12.7 (Debian 13), the same in both:

- the N-ACTION goes on an association of its own (calling AE ``DicomAet``, called AE the
  modality's): one presentation context, the Storage Commitment Push Model SOP Class with
  Implicit and Explicit VR Little Endian, no SCP/SCU role selection item;
- it needs an N-ACTION-RSP with status 0000 that carries Affected SOP Class UID and
  Affected SOP Instance UID, else the REST call fails (HTTP 500) and nothing waits;
- right after that response it sends A-RELEASE-RQ: an N-EVENT-REPORT sent on that same
  association is dropped (the connection is reset, the report stays Pending);
- the N-EVENT-REPORT must come on a new association to Orthanc's DICOM port, calling with
  an AE title listed in ``DicomModalities`` (compared case-insensitively; here also from
  that modality's host, ``DicomCheckModalityHost``, and calling ``DicomAet``,
  ``DicomCheckCalledAet``).  Role selection is optional: none, or any proposed roles, are
  accepted.  Explicit VR Little/Big Endian and Implicit VR Little Endian are accepted.
  Every Failure Reason is kept (0112 shows as ``"FailureReason": 274``).

Under CI (``CI=true``) a missing Orthanc fails the tests that need it; elsewhere they skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, free_port
from tests.helpers import stop

#: Where Debian's orthanc package installs the server (/usr/sbin: not on a user's PATH).
DEBIAN_ORTHANC = "/usr/sbin/Orthanc"

#: (AE title, host, port) of a DICOM modality Orthanc knows.
Modality = tuple[str, str, int]

STORAGE_COMMITMENT_PENDING = "Pending"


def find_orthanc() -> str | None:
    """The Orthanc server program: on PATH, else where Debian's package puts it."""
    found = shutil.which("Orthanc")
    if found is not None:
        return found
    return DEBIAN_ORTHANC if os.access(DEBIAN_ORTHANC, os.X_OK) else None


def require_orthanc() -> str:
    """Path of Orthanc; skip outside CI, fail under CI when it is missing."""
    program = find_orthanc()
    if program is None:
        message = (
            "Orthanc is needed as the storage commitment peer: install Debian's orthanc "
            "package (apt-get install orthanc; scripts/dev-setup.sh does)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return program


class OrthancError(RuntimeError):
    """A REST call that Orthanc answered with an HTTP error (its JSON error in the text)."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"Orthanc {method} {path}: HTTP {status}: {body}")
        self.status = status
        self.body = body


def modality_config(modality: Modality) -> dict[str, Any]:
    """One ``DicomModalities`` entry: every DICOM command allowed, the host checked
    (``DicomCheckModalityHost``)."""
    aet, host, port = modality
    return {"AET": aet, "Host": host, "Port": port}


def configuration(
    directory: Path,
    *,
    aet: str,
    dicom_port: int,
    http_port: int,
    modalities: Mapping[str, Modality],
    overrides: Mapping[str, Any],
) -> dict[str, Any]:
    """Orthanc's configuration for a throwaway server in ``directory`` (pure)."""
    config: dict[str, Any] = {
        "Name": "dcmrecv-test",
        "StorageDirectory": str(directory / "storage"),
        "IndexDirectory": str(directory / "index"),
        # Debian's /etc/orthanc/orthanc.json loads /usr/share/orthanc/plugins; only this
        # file is read, and it loads none.
        "Plugins": [],
        "LuaScripts": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "RegisteredUsers": {},
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": {name: modality_config(m) for name, m in modalities.items()},
        "DicomModalitiesInDatabase": False,
        "OrthancPeers": {},
        "DicomScuTimeout": 30,
        # Orthanc keeps its C-STORE SCU association open this long after the last
        # instance (default 5 s); 0 releases it when the job ends.
        "DicomAssociationCloseDelay": 0,
        # Jobs are not kept across restarts: each server is used once.
        "SaveJobs": False,
        "ConcurrentJobs": 2,
        "StorageCompression": False,
    }
    config.update(overrides)
    return config


@dataclass
class Orthanc:
    """A running Orthanc; use as a context manager (``with Orthanc(...) as server``).

    ``modalities`` maps Orthanc's symbolic names to ``(aet, host, port)``; more can be
    added once it runs with ``set_modality``.  ``config`` overrides or adds
    configuration options.  ``verbose`` adds Orthanc's ``--verbose`` (INFO) log lines,
    which include every association and DIMSE command.
    """

    directory: Path
    aet: str = "ORTHANC"
    modalities: Mapping[str, Modality] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    verbose: bool = True
    program: str = DEBIAN_ORTHANC
    start_timeout: float = 60.0
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "orthanc.log"

    @property
    def config_path(self) -> Path:
        return self.directory / "orthanc.json"

    def log(self) -> str:
        """Everything Orthanc wrote so far (standard output and error)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- life cycle ------------------------------------------------------------

    def start(self) -> Orthanc:
        self.directory.mkdir(parents=True, exist_ok=True)
        settings = configuration(
            self.directory,
            aet=self.aet,
            dicom_port=self.dicom_port,
            http_port=self.http_port,
            modalities=self.modalities,
            overrides=self.config,
        )
        self.config_path.write_text(json.dumps(settings, indent=2))
        argv = [self.program, *(["--verbose"] if self.verbose else []), str(self.config_path)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        """Until GET /system answers and the DICOM port accepts (or the deadline)."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited with {self.process.returncode} while starting:\n"
                    + self.log()[-4000:]
                )
            with contextlib.suppress(OSError, OrthancError):
                system = self.get("/system")
                if system.get("DicomAet") == self.aet:
                    return
            time.sleep(0.2)
        raise TimeoutError(
            f"Orthanc's REST API did not answer within {self.start_timeout} s:\n"
            + self.log()[-4000:]
        )

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; Orthanc's exit code."""
        if self.process is None:
            return None
        return stop(self.process, timeout)

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- REST ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 120.0,
    ) -> Any:
        """One REST call; its JSON answer (None when empty).  HTTP errors raise
        OrthancError with Orthanc's own description."""
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                data = answer.read()
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", "replace")
            raise OrthancError(method, path, error.code, text) from None
        return json.loads(data) if data.strip() else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, document: Any, timeout: float = 120.0) -> Any:
        return self.request("POST", path, json.dumps(document).encode(), timeout=timeout)

    def upload(self, path: str | os.PathLike[str]) -> str:
        """Store a DICOM file in Orthanc (POST /instances); its Orthanc identifier."""
        answer = self.request("POST", "/instances", Path(path).read_bytes(), "application/dicom")
        return str(answer["ID"])

    def set_modality(self, name: str, modality: Modality) -> None:
        """Add or replace a modality while Orthanc runs (PUT /modalities/{name})."""
        document = json.dumps(modality_config(modality)).encode()
        self.request("PUT", f"/modalities/{_quote(name)}", document)

    def echo(self, modality: str, timeout: int = 30) -> None:
        """C-ECHO to a modality (POST /modalities/{name}/echo); OrthancError if it fails."""
        self.post(f"/modalities/{_quote(modality)}/echo", {"Timeout": timeout})

    def store(
        self,
        modality: str,
        resources: Sequence[str],
        timeout: int = 60,
        storage_commitment: bool = False,
    ) -> Any:
        """C-STORE the given Orthanc resources to a modality, synchronously
        (POST /modalities/{name}/store); the finished job's summary
        (``InstancesCount``, ``FailedInstancesCount``, ...).

        With ``storage_commitment`` Orthanc releases the C-STORE association after the
        last instance and sends the N-ACTION for all of them on a new one; the summary
        then has ``StorageCommitmentTransactionUID``."""
        document = {
            "Resources": list(resources),
            "Synchronous": True,
            "Timeout": timeout,
            "StorageCommitment": storage_commitment,
        }
        return self.post(f"/modalities/{_quote(modality)}/store", document, timeout + 60)

    def request_storage_commitment(
        self,
        modality: str,
        instances: Sequence[tuple[str, str]] = (),
        resources: Sequence[str] = (),
        timeout: int = 30,
    ) -> str:
        """Send the N-ACTION (POST /modalities/{name}/storage-commitment) for
        ``instances`` (SOP Class UID, SOP Instance UID pairs, stored in Orthanc or not)
        and ``resources`` (Orthanc identifiers); the Transaction UID Orthanc chose.
        Orthanc answers once the N-ACTION-RSP arrived (OrthancError if it was not a
        success); the result comes later, in an N-EVENT-REPORT."""
        document: dict[str, Any] = {"Timeout": timeout}
        if instances:
            document["DicomInstances"] = [
                {"SOPClassUID": sop_class, "SOPInstanceUID": sop_instance}
                for sop_class, sop_instance in instances
            ]
        if resources or not instances:
            document["Resources"] = list(resources)
        answer = self.post(f"/modalities/{_quote(modality)}/storage-commitment", document)
        return str(answer["ID"])

    def storage_commitment(self, transaction_uid: str) -> Any:
        """The report as Orthanc has it now (GET /storage-commitment/{uid})."""
        return self.get(f"/storage-commitment/{_quote(transaction_uid)}")

    def wait_for_storage_commitment(self, transaction_uid: str, timeout: float = 60.0) -> Any:
        """Poll the report until its Status is no longer Pending; TimeoutError (with
        Orthanc's log) when it still is after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.storage_commitment(transaction_uid)
            if report.get("Status") != STORAGE_COMMITMENT_PENDING:
                return report
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"storage commitment {transaction_uid} still pending after {timeout} s: "
                    f"{report}\n" + self.log()[-4000:]
                )
            time.sleep(0.2)


def _quote(component: str) -> str:
    return urllib.parse.quote(component, safe="")


#: What the ``orthanc`` fixture returns: start one more Orthanc with these settings.
OrthancFactory = Callable[..., Orthanc]


@pytest.fixture
def orthanc() -> Iterator[OrthancFactory]:
    """Factory of running Orthanc servers, each in its own temporary directory:
    ``orthanc(modalities={"DCMRECV": ("DCMRECV", "127.0.0.1", port)}, aet="ORTHANC",
    config={...}, verbose=True) -> Orthanc``.  All are stopped and removed after the
    test; the tail of each one's log is printed then (shown for a failing test)."""
    program = require_orthanc()
    started: list[Orthanc] = []
    with tempfile.TemporaryDirectory(prefix="dcmrecv-test-orthanc-") as parent:

        def start(**settings: Any) -> Orthanc:
            directory = Path(parent) / f"orthanc-{len(started) + 1}"
            server = Orthanc(directory=directory, program=program, **settings)
            started.append(server)
            return server.start()

        try:
            yield start
        finally:
            for server in started:
                code = server.stop()
                print(f"--- Orthanc {server.aet} (exit {code}), {server.log_path}:")
                print(server.log()[-6000:])
