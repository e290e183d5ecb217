"""Option rows (dcmrecv.commands.option, table, checks): what one row gives a command.

A row alone must make an option parse, show in ``--help`` in DCMTK's layout, reach
its configuration field (after the checks a command's plan orders), and be checked
against the options it requires or conflicts with, with DCMTK's messages.  Tested
on small tables of made-up options, so that the machinery, not today's table, is
what is checked; the real tables are checked against DCMTK in test_argv.py,
test_storescp_options.py and test_tls.py.
"""

from __future__ import annotations

import pytest

from dcmrecv.commands import checks, values
from dcmrecv.commands.argv import ArgvError, CommandLine, parse
from dcmrecv.commands.option import DCMRECV, DCMRECV_ONLY, STORESCP, Option, Section, Variant
from dcmrecv.commands.table import Table
from dcmrecv.config import ReceiverConfig
from dcmrecv.tlsconfig import TLSOptions

NETWORK = Section("network options:", "other network options:")
OUTPUT = Section("output options:", "general:")

ROWS = (
    Option("--verbose", "-v", "verbose mode", section=NETWORK),
    Option(
        "--acse-timeout",
        "-ta",
        "timeout for ACSE messages",
        values="[s]econds: integer (default: 30)",
        section=NETWORK,
        field="acse_timeout",
        parse=values.seconds(1),
    ),
    # A new option of ours: long name only, a field, a reader.
    Option(
        "--http-address",
        None,
        "listen for HTTP on address a",
        values="[a]ddress: IP address",
        section=OUTPUT,
        field="http_address",
        parse=values.http_address,
    ),
    Option("--no-fsync", None, "do not flush", section=OUTPUT, field="fsync", const=False),
    Option("--fsync", None, "flush (default)", section=OUTPUT, field="fsync", const=True),
    Option(
        "--enable-tls",
        "+tls",
        "use TLS",
        values="[p]rivate key file, [c]ertificate file: string",
        section=NETWORK,
        field="tls",
        parse=values.tls_files,
    ),
    Option(
        "--use-passwd",
        "+pw",
        "use specified password",
        values="[p]assword: string",
        section=NETWORK,
        field="tls.password",
        requires=("--enable-tls",),
    ),
    Option(
        "--refuse",
        None,
        "refuse association",
        section=NETWORK,
        field="refuse_associations",
        conflicts=("--fsync",),
        commands=DCMRECV_ONLY,
    ),
    Option(
        "--aetitle",
        "-aet",
        "set my AE title",
        values="[a]etitle: string",
        section=NETWORK,
        field="aetitle",
        storescp=Variant(short="-ae", help="set my AE title (default: STORESCP)"),
    ),
)


def table(command: str = DCMRECV) -> Table:
    return Table(command, ROWS, (NETWORK, OUTPUT), {"-x": "--verbose"})


def config(*args: str, plan: tuple[checks.Step, ...] = ()) -> ReceiverConfig:
    rows = table()
    cmdline: CommandLine = parse([*args, "104"], rows.find)
    return checks.evaluate(rows, plan, cmdline, ReceiverConfig(port=104), verbose=False)


def test_a_row_alone_parses_shows_in_help_and_sets_its_field() -> None:
    rows = table()
    assert rows.find("--http-address") is rows.option("--http-address")
    assert config("--http-address", "::1").http_address == "::1"
    help_text = rows.format_help("usage: x [options] port", [("port", "the port")])
    assert "          --http-address         [a]ddress: IP address\n" in help_text
    assert " " * 33 + "listen for HTTP on address a\n" in help_text


def test_the_value_count_is_read_from_the_values_text() -> None:
    rows = table()
    assert [
        rows.option(long).nargs for long in ("--verbose", "--acse-timeout", "--enable-tls")
    ] == [
        0,
        1,
        2,
    ]


def test_help_lists_sections_in_the_commands_order() -> None:
    rows = Table(DCMRECV, ROWS, (OUTPUT, NETWORK))
    text = rows.format_help("usage: x", [])
    assert text.index("output options:") < text.index("network options:")
    assert text.index("--no-fsync") < text.index("--fsync ")


def test_rightmost_of_the_options_sharing_a_field_wins() -> None:
    assert config("--no-fsync", "--fsync").fsync is True
    assert config("--fsync", "--no-fsync").fsync is False
    assert config("-ta", "5", "-ta", "9").acse_timeout == 9.0


def test_a_bad_value_has_dcmtks_message() -> None:
    with pytest.raises(
        ArgvError, match=r"^Invalid value for option --acse-timeout \(underflow: 0\)$"
    ):
        config("-ta", "0")


def test_requires_and_conflicts_have_dcmtks_messages() -> None:
    with pytest.raises(ArgvError, match=r"^--use-passwd only allowed with --enable-tls$"):
        config("+pw", "secret")
    tls_config = config("+tls", "k", "c", "+pw", "secret").tls
    assert tls_config == TLSOptions("k", "c", password="secret")
    with pytest.raises(ArgvError, match=r"^--refuse not allowed with --fsync$"):
        config("--refuse", "--fsync")
    assert config("--fsync", "--no-fsync", "--refuse").refuse_associations


def test_plan_orders_the_checks_and_the_rest_follow_in_table_order() -> None:
    # Without a plan the table order decides which bad value is reported first...
    with pytest.raises(ArgvError, match="--acse-timeout"):
        config("--http-address", "nowhere", "-ta", "0")
    # ...a plan puts its fields first.
    with pytest.raises(ArgvError, match="--http-address"):
        config("--http-address", "nowhere", "-ta", "0", plan=("http_address",))


def test_a_field_of_absent_settings_is_checked_and_not_set() -> None:
    rows = Table(
        DCMRECV,
        (
            *ROWS,
            Option(
                "--sni", None, "s", values="[s]: string", section=NETWORK, field="tls.expected_sni"
            ),
        ),
        (NETWORK, OUTPUT),
    )
    cmdline = parse(["--sni", "pacs", "104"], rows.find)
    assert checks.evaluate(rows, (), cmdline, ReceiverConfig(port=104), False).tls is None


def test_a_command_sees_its_own_rows_and_wording() -> None:
    dcmrecv, storescp = table(DCMRECV), table(STORESCP)
    assert dcmrecv.find("--refuse") is not None and storescp.find("--refuse") is None
    assert dcmrecv.option("--aetitle").short == "-aet"
    aetitle = storescp.option("--aetitle")
    assert (aetitle.short, aetitle.help) == ("-ae", "set my AE title (default: STORESCP)")
    assert storescp.find("-ae") is aetitle and storescp.find("-aet") is None
    # an old spelling is an alias of the current option
    found = storescp.find("-x")
    assert found is not None and found.long == "--verbose"
    assert "  -x      same as --verbose" in storescp.old_spellings_help()
