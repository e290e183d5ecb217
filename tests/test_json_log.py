"""--log-format json: one JSON object per record, with the association's serial."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from dcmrecv.logs.context import association_serial
from dcmrecv.logs.logger_config import configure_logging

pytestmark = pytest.mark.usefixtures("fresh_logging")


def test_records_are_json_lines_with_level_logger_and_serial(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", None, json_lines=True)
    log = logging.getLogger("dcmrecv.wire.association")

    def association() -> None:
        association_serial.set(7)
        log.info("Association Received %s", "host\nI: forged")

    thread = threading.Thread(target=association)
    thread.start()
    thread.join()
    log.warning("outside any association")
    log.debug("not shown at info")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["logger"] == "dcmrecv.wire.association"
    assert first["message"] == "Association Received host\nI: forged"
    assert first["association"] == 7
    assert second["level"] == "WARN" and "association" not in second
    assert first["time"][:4].isdigit() and "T" in first["time"]


def test_default_layout_is_dcmtks(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", None)
    logging.getLogger("dcmrecv.x").info("plain")
    assert capsys.readouterr().err == "I: plain\n"
