"""``--log-format json``: one JSON object per log record, for container log pipelines.

The default stays DCMTK's layout (``I: ...``), which site scripts grep.  A JSON
line has the level (log4cplus names: ``INFO``, ``WARN``...), the time (ISO 8601 with
the UTC offset), the logger, the message and, inside an association, its serial
(``association``), so a log collector can group an association's lines.  A
multi-line message (the ``+v`` dumps) stays one record; ``json.dumps`` escapes
its newlines and any control character a peer smuggled in.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from dcmrecv.logs import layout
from dcmrecv.logs.context import association_serial


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created)
            .astimezone()
            .isoformat(timespec="milliseconds"),
            "level": layout.level_name(record.levelno),
            "logger": record.name,
            "message": message,
        }
        serial = association_serial.get()
        if serial is not None:
            entry["association"] = serial
        # ConsoleHandler writes what the formatter returns: the line break is ours.
        return json.dumps(entry, ensure_ascii=False) + "\n"
