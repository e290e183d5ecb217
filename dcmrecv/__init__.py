"""A DICOM storage receiver that stands in for DCMTK's ``dcmrecv``.

The public entry point is :func:`serve`: both commands (``dcmrecv``, ``storescp``)
build a :class:`dcmrecv.config.ReceiverConfig` and hand it here.  Importing the
package stays cheap (the container's health probe imports it every few seconds):
the engine is imported only when :func:`serve` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcmrecv.implementation import IMPLEMENTATION_CLASS_UID as IMPLEMENTATION_CLASS_UID
from dcmrecv.implementation import IMPLEMENTATION_VERSION_NAME as IMPLEMENTATION_VERSION_NAME

if TYPE_CHECKING:
    from dcmrecv.config import ReceiverConfig

__version__ = "0.1.0"


def serve(config: ReceiverConfig) -> int:
    """Receive as ``config`` says until SIGTERM or SIGINT; the process exit code.

    Returns :data:`dcmrecv.exitcodes.EXITCODE_NO_ERROR` after a clean stop and
    :data:`~dcmrecv.exitcodes.EXITCODE_CANNOT_START_SCP_AND_LISTEN` when the port
    cannot be opened (logged as DCMTK's dcmrecv does).  Runs in the main thread: it
    installs the signal handlers that stop it.
    """
    from dcmrecv.wire import server

    return server.serve(config)
