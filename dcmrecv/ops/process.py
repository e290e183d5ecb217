"""One process runner for every hook the receiver runs.

dcmrecv's ``--exec-on-eostudy`` (``/bin/sh -c`` with the manifest on standard input,
output kept for the log, killed with everything it started at ``--exec-timeout``)
and storescp's ``-xcr``/``-xcs`` (DCMTK's command line, standard input from
``/dev/null``, output where ours goes, waited for only with ``--exec-sync``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Sequence

log = logging.getLogger(__name__)


def run_hook(command: str, stdin: bytes, timeout: float) -> tuple[int, bytes, bytes] | None:
    """Run ``/bin/sh -c command`` with ``stdin``; (status, stdout, stderr), None on timeout.

    The command runs in a session of its own, so at the timeout the whole process
    group is killed: a hook that started ``sleep 1000 &`` or a pipeline cannot
    outlive it and keep its output pipes (and us) waiting.
    """
    process = subprocess.Popen(
        ["/bin/sh", "-c", command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None
    return process.returncode, stdout, stderr


def run_command(argv: Sequence[str], sync: bool) -> None:
    """Start ``argv`` (storescp's hooks); wait for it with ``sync`` (``--exec-sync``).

    Without ``sync`` a thread reaps the process, so no zombie is left behind.
    Standard input is /dev/null; output goes where ours goes, as in DCMTK.
    """
    try:
        process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, close_fds=True)
    except OSError as exc:
        log.error("cannot execute command '%s': %s", " ".join(argv[:3]), exc.strerror or exc)
        return
    if sync:
        process.wait()
    else:
        threading.Thread(target=process.wait, name="storescp-exec", daemon=True).start()
