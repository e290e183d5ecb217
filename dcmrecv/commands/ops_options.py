"""The operations options (README, "Operations"; not in DCMTK) as option rows.

dcmrecv takes all of them; storescp takes the HTTP endpoint and the event log
(its ``--eostudy-timeout`` and ``--exec-on-eostudy`` keep DCMTK's meaning there).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from dcmrecv.commands import rules
from dcmrecv.commands.argv import ArgvError, CommandLine, Occurrence, option_number, option_unsigned


def http_address(occurrence: Occurrence) -> str:
    """``--http-address``: an IPv4 or IPv6 address (no name: nothing to resolve at start)."""
    text = occurrence.values[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ArgvError(f"Invalid value for option --http-address ({text})") from None


def _study_completion(cmdline: CommandLine) -> rules.Fields:
    # DCMTK's storescp needs --eostudy-timeout for its end-of-study actions in
    # dcmrecv's sense too: without it no study is ever complete.
    timeout = cmdline.last("--eostudy-timeout")
    for dependent in ("--exec-on-eostudy", "--exec-timeout"):
        if cmdline.has(dependent) and timeout is None:
            raise ArgvError(f"{dependent} only with --eostudy-timeout")
    if timeout is None:
        return {}
    command = cmdline.last("--exec-on-eostudy")
    limit = cmdline.last("--exec-timeout")
    fields: dict[str, object] = {"study_timeout": option_number(timeout, 0.0)}
    if command is not None:
        if not command.values[0].strip():
            raise ArgvError("Invalid value for option --exec-on-eostudy (empty command)")
        fields["study_command"] = command.values[0]
    if limit is not None:
        fields["study_command_timeout"] = option_number(limit, 0.001)
    return fields


#: The rows storescp shares with dcmrecv.
HTTP_AND_EVENT_LOG_OPTIONS: tuple[rules.Rule, ...] = (
    rules.value("--http-port", "http_port", lambda o: option_unsigned(o, 0, 65535)),
    rules.value("--http-address", "http_address", http_address),
    rules.value("--event-log", "event_log", lambda o: Path(o.values[0])),
)
#: dcmrecv's rows.
OPERATIONS_OPTIONS: tuple[rules.Rule, ...] = (
    *HTTP_AND_EVENT_LOG_OPTIONS,
    _study_completion,
    # Connection limits (README, "Limits under load"): with the rows after the port.
    rules.value(
        "--max-associations-per-peer",
        "max_associations_per_peer",
        lambda o: option_unsigned(o, 1, 1024),
    ),
)
