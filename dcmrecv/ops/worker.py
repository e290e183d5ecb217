"""One worker process of ``--workers`` (``python -m dcmrecv.ops.worker``).

The parent (ops/runtime.py, wire/workers.py) starts each worker as a fresh
interpreter, gives it its end of the control channel as an inherited descriptor and
the receiver's configuration (pickled) on standard input.  The worker sets up
logging as the command did, builds what the configuration asks for (storage, the
log dialect, metrics in prometheus-client's multiprocess mode, the event log, the
state store) and serves the connections the parent hands it until it is stopped:
SIGTERM (or SIGINT, from a terminal) drains its associations as a single receiver
drains them; the parent going away stops it too.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType

from dcmrecv.config import ReceiverConfig
from dcmrecv.exitcodes import EXITCODE_NO_ERROR

log = logging.getLogger("dcmrecv.wire.server")

#: Exit code of a worker that could not start (the parent logs and replaces it).
EXITCODE_WORKER_START = 70


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dcmrecv-worker")
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    args = parser.parse_args(argv)
    config = pickle.load(sys.stdin.buffer)
    if not isinstance(config, ReceiverConfig):
        return EXITCODE_WORKER_START
    options = config.logging
    from dcmrecv.logs.logger_config import configure_logging

    configure_logging(
        options.level, options.config_file, options.appname, json_lines=options.json_lines
    )
    from dcmrecv.storage.dictionary_files import load_dictionaries

    load_dictionaries(os.environ)
    from dcmrecv.ops.runtime import Role, Runtime, StartError
    from dcmrecv.wire.server import Server

    try:
        runtime = Runtime.load(config, Role.WORKER)
    except StartError as exc:
        return exc.code
    runtime.start()
    try:
        server = Server(
            config,
            services=runtime.services,
            store=runtime.store,
            link=socket.socket(fileno=args.control),
        )
        # Its hook processes end by the shut-down's deadline too (ops/process.py).
        from dcmrecv.ops.process import RUNNER

        server.on_stop(RUNNER.shutdown)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            server.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        server.serve_forever()
    finally:
        runtime.stop()
    return EXITCODE_NO_ERROR


if __name__ == "__main__":
    sys.exit(main())
