"""A throwaway PostgreSQL cluster on a loopback port, for the ``--state postgresql://`` row.

Issue 20 measures the shared state store on PostgreSQL against no state at all.
The cluster lives in a temporary directory of its own (``initdb`` with trust
authentication for one user, ``pg_ctl start`` listening on 127.0.0.1 and a Unix
socket in that directory only), never the system's, and is stopped and deleted
afterwards.  Debian keeps the server programs in ``/usr/lib/postgresql/VERSION/bin``,
off PATH; either place is looked at.  PostgreSQL refuses to run as root: as root,
the cluster belongs to the ``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from benchmarks.procs import BenchmarkError, free_port

#: The cluster's one user (a superuser, trusted on loopback) and the database used.
USER = "dcmrecv"
DATABASE = "postgres"
#: The account a root run hands the cluster to (Debian's postgresql package makes it).
SERVICE_ACCOUNT = "postgres"
#: Seconds pg_ctl waits for the server to start or stop.
WAIT_SECONDS = 60
PORT_ATTEMPTS = 3


def find_bin_dir(search_path: str | None = None) -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None when not installed."""
    on_path = shutil.which("pg_ctl", path=search_path)
    candidates = [Path(os.path.realpath(on_path)).parent] if on_path else []
    # Debian: /usr/lib/postgresql/15/bin; the newest version first.
    found = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(found, key=_version, reverse=True)]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def _version(bin_dir: str) -> tuple[int, ...]:
    name = Path(bin_dir).parent.name
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def missing_reason(bin_dir: Path | None) -> str | None:
    """Why no cluster can be started here, or None when one can."""
    if bin_dir is None:
        return "PostgreSQL's initdb and pg_ctl not found (Debian package postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_ACCOUNT)
        except KeyError:
            return f"running as root and no {SERVICE_ACCOUNT} user to run PostgreSQL as"
    return None


class Cluster:
    """A PostgreSQL cluster started in a temporary directory, stopped and removed on exit."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="dcmrecv-bench-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVICE_ACCOUNT)
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as_owner = ["runuser", "-u", SERVICE_ACCOUNT, "--"]

    @property
    def url(self) -> str:
        """What ``--state`` is given: the cluster's user and database on loopback."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def __enter__(self) -> Cluster:
        try:
            self._run(
                "initdb",
                *("-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"),
            )
            self._start()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
        finally:
            self._remove()

    def _start(self) -> None:
        # free_port() releases the port before the server binds it; another process
        # may take it meanwhile, so a failed start is tried again on a new port.
        for attempt in range(PORT_ATTEMPTS):
            self.port = free_port()
            # pg_ctl hands -o to a shell: the directory is quoted.
            options = f"-p {self.port} -k {shlex.quote(str(self.root))}"
            options += " -c listen_addresses=127.0.0.1"
            started = self._run(
                "pg_ctl",
                *("-D", str(self.data), "-l", str(self.log), "-o", options),
                *("-w", "-t", str(WAIT_SECONDS), "start"),
                check=False,
            )
            if started.returncode == 0:
                return
            if attempt == PORT_ATTEMPTS - 1:
                raise BenchmarkError(f"PostgreSQL did not start: {self._log_tail()}")

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self._as_owner, str(self.bin_dir / program), *args]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=WAIT_SECONDS + 30, check=False
        )
        if check and result.returncode != 0:
            raise BenchmarkError(f"{program} failed: {result.stdout}{result.stderr}")
        return result

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-10:])
        except OSError:
            return "(no server log)"

    def _remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
