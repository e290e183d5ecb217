"""storescp's log lines (storescp.cc), for scripts that grep them.

The engine logs dcmrecv's lines ("Association Received <host>: A -> B", "Stored
received object to file: ..."); the ``storescp`` command prints DCMTK storescp's
instead ("Association Received", "Received Store Request (MsgID 1, CT)", "storing
DICOM file: ...", "Association Release").  :class:`StorescpLogDialect` rewrites the
engine's records into those.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from dcmrecv.negotiation.uids import modality_prefix

_pending = threading.local()

#: Engine message templates -> storescp's text (None: storescp prints nothing there).
_REWRITES: Final[dict[str, str | None]] = {
    "Association Received %s: %s -> %s": "Association Received",
    "Received C-ECHO Request (MsgID %d)": "Received Echo Request (MsgID %d)",
    "Sending C-ECHO Response (Success)": None,
    "Sending C-STORE Response (%s)": None,
    "Stored received object to file: %s": "storing DICOM file: %s",
    "file already exists, overwriting: %s": "DICOM file already exists, overwriting: %s",
    "Received Association Release Request": "Association Release",
    "Received Association Abort Request": "Association Aborted",
    "Refusing Association (%s)": "Refusing Association (%s)",
    "starting service class provider and listening ...": None,
}
_STORE_REQUEST: Final = "Received C-STORE Request (MsgID %d)"
_CANNOT_LISTEN: Final = "cannot start SCP and listen on port %d: %s"


class StorescpLogDialect(logging.Filter):
    """Turn the engine's dcmrecv-style records into storescp's lines.

    storescp names the SOP class in "Received Store Request (MsgID 1, CT)"; the
    engine's record has only the message ID, so it is held back (per thread) until
    the session hears of the request's SOP class (:meth:`store_request`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        template = record.msg
        if template == _STORE_REQUEST:
            _pending.message_id = record.args[0] if isinstance(record.args, tuple) else 0
            return False
        if template == "Refusing Association (%s)" and record.args == (
            "no implementation class UID provided",
        ):
            record.msg, record.args = (
                "Association Rejected: No Implementation Class UID provided",
                (),
            )
            return True
        if template == _CANNOT_LISTEN and isinstance(record.args, tuple):
            # storescp: "E: cannot create network: <DCMTK condition>" (exit code 1).
            record.msg = "cannot create network: 0006:031c TCP Initialization Error: %s"
            record.args = (record.args[-1],)
            record.levelno, record.levelname = logging.ERROR, "ERROR"
            return True
        if not isinstance(template, str) or template not in _REWRITES:
            return True
        replacement = _REWRITES[template]
        if replacement is None:
            return False
        if replacement != template:
            record.msg = replacement
            if "%" not in replacement:
                record.args = ()
        return True


def store_request(sop_class_uid: str) -> None:
    """Log storescp's "Received Store Request (MsgID n, XX)" held back by the filter."""
    message_id = getattr(_pending, "message_id", None)
    _pending.message_id = None
    if message_id is None:
        return
    code = modality_prefix(sop_class_uid)
    logging.getLogger("dcmrecv.wire.association").info(
        "Received Store Request (MsgID %d, %s)", message_id, "OT" if code == "UNKNOWN" else code
    )


def install_log_dialect() -> None:
    dialect = StorescpLogDialect()
    for name in ("dcmrecv.wire.association", "dcmrecv.wire.server"):
        logger = logging.getLogger(name)
        for existing in list(logger.filters):
            if isinstance(existing, StorescpLogDialect):
                logger.removeFilter(existing)
        logger.addFilter(dialect)
