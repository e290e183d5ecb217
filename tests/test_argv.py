"""DCMTK-style argv parsing (dcmrecv.commands.argv): what a DCMTK user types must mean the same."""

from __future__ import annotations

import re
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcmrecv.boundedread import MAX_CONFIG_FILE_SIZE, FileTooLarge
from dcmrecv.commands.argv import (
    ArgvError,
    expand_command_files,
    is_option,
    option_unsigned,
    param_unsigned,
    split_command_file,
)
from dcmrecv.commands.dcmrecv import parse
from dcmrecv.commands.options import DCMRECV_TABLE
from tests.conftest import require_tool

find_option = DCMRECV_TABLE.find

# --- @file command files ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("-v  -od out\n104\n", ["-v", "-od", "out", "104"]),
        ("a\tb\r\nc", ["a", "b", "c"]),
        ('-od "dir with spaces" 104', ["-od", "dir with spaces", "104"]),
        ("-aet 'MY AE' 104", ["-aet", "MY AE", "104"]),
        ('-fe "it\'s"', ["-fe", "it's"]),
        ("-fe 'say \"hi\"'", ["-fe", 'say "hi"']),
        ('-aet ""', ["-aet", ""]),
        ('"a"b', ["a", "b"]),
        ('"line\nbreak"', ["line\nbreak"]),
        ('"unclosed to the end', ["unclosed to the end"]),
        ("", []),
        ("   \n\t ", []),
    ],
)
def test_command_file_words(text: str, words: list[str]) -> None:
    assert split_command_file(text) == words


def test_command_files_expand_in_place() -> None:
    files = {"opts.txt": "-v +fu", "more.txt": "'-od' 'a b'"}
    args = ["-d", "@opts.txt", "104", "@more.txt", "@"]
    assert expand_command_files(args, files.__getitem__) == [
        "-d",
        "-v",
        "+fu",
        "104",
        "-od",
        "a b",
        "@",
    ]


def test_command_file_that_cannot_be_read() -> None:
    def missing(name: str) -> str:
        raise FileNotFoundError(name)

    with pytest.raises(ArgvError, match=r"^Cannot open command file 'nofile'$"):
        expand_command_files(["@nofile"], missing)


def test_command_file_too_large() -> None:
    def huge(name: str) -> str:
        raise FileTooLarge(name, MAX_CONFIG_FILE_SIZE)

    with pytest.raises(ArgvError, match=r"^Command file 'big' is larger than 4 MiB$"):
        expand_command_files(["@big"], huge)


def _words_one_char_at_a_time(text: str) -> list[str]:
    """The reader as DCMTK's manual describes it, character by character: the oracle."""
    words: list[str] = []
    value = ""
    quote = ""
    for char in text:
        if quote:
            if char == quote:
                words.append(value)
                value, quote = "", ""
            else:
                value += char
        elif char in "\"'":
            quote = char
        elif char in " \t\n\r":
            if value:
                words.append(value)
                value = ""
        else:
            value += char
    if value:
        words.append(value)
    return words


@given(st.text(alphabet=st.sampled_from(list("ab \t\n\r\"'\f\u00e9")), max_size=60))
def test_command_file_words_match_a_character_reader(text: str) -> None:
    assert split_command_file(text) == _words_one_char_at_a_time(text)


def test_two_million_words() -> None:
    """A command file as large as the bound allows is read whole, every word kept."""
    words = split_command_file("a 'b c' " * 500_000)
    assert len(words) == 1_000_000
    assert words[:2] == ["a", "b c"] and words[-1] == "b c"
    words = split_command_file("a " * 2_000_000)
    assert len(words) == 2_000_000 and set(words) == {"a"}


def test_long_command_line_keeps_the_rightmost() -> None:
    cmdline = parse(["-aet", "FIRST"] + ["-v"] * 200_000 + ["-aet", "LAST", "104"])
    found = cmdline.last("--aetitle")
    assert found is not None and found.values == ("LAST",)
    assert [o.values[0] for o in cmdline.all("--aetitle")] == ["FIRST", "LAST"]
    assert cmdline.has("--verbose") and not cmdline.has("--debug")


# --- tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "option"),
    [
        *[("-v", True), ("+v", True), ("--x", True), ("-a5", True)],
        *[("-", False), ("+", False), ("-5", False), ("+5", False), ("104", False)],
        *[("", False), ("@x", False)],
    ],
)
def test_what_counts_as_an_option(arg: str, option: bool) -> None:
    assert is_option(arg) is option


def test_short_and_long_spellings_give_long_names() -> None:
    cmdline = parse(["-v", "+fu", "-od", "out", "104", "+ssd"])
    assert cmdline.arguments == (
        "--verbose",
        "--unique-filenames",
        "--output-directory",
        "out",
        "104",
        "--series-date-subdir",
    )
    assert cmdline.params == ("104",)
    assert [o.given for o in cmdline.occurrences] == ["-v", "+fu", "-od", "+ssd"]


@pytest.mark.parametrize(
    "args",
    [["104", "-v", "-od", "x"], ["-v", "104", "-od", "x"], ["-v", "-od", "x", "104"]],
)
def test_port_may_stand_anywhere(args: list[str]) -> None:
    cmdline = parse(args)
    assert cmdline.params == ("104",)
    assert cmdline.last("--output-directory") is not None


@pytest.mark.parametrize(
    ("args", "option", "values"),
    [
        (["-aet", "-v", "104"], "--aetitle", ("-v",)),
        (["-fe", "+t=", "104"], "--filename-extension", ("+t=",)),
        (["-fe", "--", "104"], "--filename-extension", ("--",)),
        (["-od", "@", "104"], "--output-directory", ("@",)),
        (["-xf", "-a", "+b", "104"], "--config-file", ("-a", "+b")),
        (["--aetitle", "A=B", "104"], "--aetitle", ("A=B",)),
    ],
)
def test_values_are_taken_verbatim(args: list[str], option: str, values: tuple[str, ...]) -> None:
    occurrence = parse(args).last(option)
    assert occurrence is not None
    assert occurrence.values == values


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-ssd", "104"], "Unknown option -ssd"),
        (["104", "-ssd"], "Unknown option -ssd"),
        (["-s-s", "104"], "Unknown option -s-s"),
        (["+fu=", "104"], "Unknown option +fu="),
        (["--aetitle=X", "104"], "Unknown option --aetitle=X"),
        (["-vd", "104"], "Unknown option -vd"),
        (["--", "-v"], "Unknown option --"),
        (["--foo", "104"], "Unknown option --foo"),
        (["-h", "-foo"], "Unknown option -foo"),
        (["-aet"], "Missing value for option --aetitle"),
        (["104", "-xf", "a"], "Missing value for option --config-file"),
        (["+tls", "key"], "Missing value for option --enable-tls"),
        (["-v"], "Missing parameter port"),
        (["104", "105"], "Too many parameters"),
    ],
)
def test_bad_command_lines(args: list[str], message: str) -> None:
    with pytest.raises(ArgvError) as excinfo:
        parse(args)
    assert str(excinfo.value) == message


def test_empty_and_exclusive_command_lines_skip_the_port_check() -> None:
    assert parse([]).empty
    assert parse(["-h"]).exclusive
    assert parse(["--version", "104", "105"]).exclusive


def test_rightmost_of_a_block_wins() -> None:
    cmdline = parse(["+fu", "+fsu", "104", "+fd", "-aet", "X"])
    names = cmdline.last(
        "--default-filenames", "--unique-filenames", "--short-unique-names", "--system-time-names"
    )
    assert names is not None and names.given == "+fd"
    assert cmdline.last("--no-subdir", "--series-date-subdir") is None


# --- numbers, read as DCMTK reads them ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"), [("30", 30), ("5s", 5), (" 7", 7), ("+8", 8), ("0012", 12)]
)
def test_unsigned_option_values(text: str, value: int) -> None:
    occurrence = parse(["-ta", text, "104"]).last("--acse-timeout")
    assert occurrence is not None
    assert option_unsigned(occurrence, 1) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10", "Invalid value for option --max-pdu (underflow: 10)"),
        ("200000", "Invalid value for option --max-pdu (overflow: 200000)"),
        ("-5", "Invalid value for option --max-pdu (-5)"),
        ("abc", "Invalid value for option --max-pdu (abc)"),
        ("", "Invalid value for option --max-pdu ()"),
    ],
)
def test_bad_unsigned_option_values(text: str, message: str) -> None:
    occurrence = parse(["-pdu", text, "104"]).last("--max-pdu")
    assert occurrence is not None
    with pytest.raises(ArgvError) as excinfo:
        option_unsigned(occurrence, 4096, 131072)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("104", 104),
        ("104abc", 104),
        ("abc", "Invalid parameter value abc"),
        ("0", "Invalid parameter value 0 (underflow)"),
        ("70000", "Invalid parameter value 70000 (overflow)"),
        ("-5", "Invalid parameter value -5 (overflow)"),
    ],
)
def test_port_parameter(text: str, result: int | str) -> None:
    cmdline = parse([text])
    if isinstance(result, int):
        assert param_unsigned(cmdline, 1, 1, 65535) == result
    else:
        with pytest.raises(ArgvError) as excinfo:
            param_unsigned(cmdline, 1, 1, 65535)
        assert str(excinfo.value) == result


# --- the option table against DCMTK ----------------------------------------------------------

#: Argument counts of DCMTK's TLS options (dcmtls/libsrc/tlsopt.cc, acceptor side).
TLS_OPTIONS = {
    "-tls": 0, "+tls": 2, "+ps": 0, "+pw": 1, "-pw": 0, "-pem": 0, "-der": 0, "+cf": 1,
    "+cd": 1, "+crl": 1, "+crv": 0, "+cra": 0, "+ph": 0, "+pg": 0, "+pm": 0, "+py": 0,
    "+px": 0, "+pz": 0, "+pb": 0, "+pa": 0, "+pn": 0, "+cc": 0, "+cs": 1, "+dp": 1,
    "--no-sni": 0, "--expect-sni": 1, "+rs": 1, "+ws": 0, "+wf": 1, "-rc": 0, "-vc": 0,
    "-ic": 0,
}  # fmt: skip


@pytest.mark.parametrize(("spelling", "nargs"), sorted(TLS_OPTIONS.items()))
def test_tls_options_are_recognised_with_their_value_counts(spelling: str, nargs: int) -> None:
    spec = find_option(spelling)
    assert spec is not None
    assert spec.nargs == nargs
    assert spec.unsupported is None  # all implemented (dcmrecv/wire/tls.py)


def _dcmtk_help_options(help_text: str) -> dict[str, tuple[str | None, int]]:
    """long name -> (short name, value count) from DCMTK's --help text."""
    found: dict[str, tuple[str | None, int]] = {}
    for line in help_text.splitlines():
        match = re.match(r"^\s+(?:([-+]\S+)\s+)?(--\S+)\s*(.*)$", line)
        if not match:
            continue
        short, long, text = match.groups()
        if short is not None and not short.startswith(("-", "+")):
            continue
        # An option with values has a value description ("[f]ilename, [p]rofile: ...").
        nargs = len(re.findall(r"\[\w\]", text.split(":")[0])) if text.startswith("[") else 0
        found[long] = (short, nargs)
    return found


@pytest.mark.dcmtk
def test_every_dcmtk_option_is_known_with_the_same_spellings_and_counts() -> None:
    dcmrecv = require_tool("dcmrecv")
    help_text = subprocess.run(
        [dcmrecv, "--help"], capture_output=True, text=True, check=True
    ).stdout
    dcmtk = _dcmtk_help_options(help_text)
    assert len(dcmtk) > 50  # the parser found the option lines
    for long, (short, nargs) in dcmtk.items():
        spec = find_option(long)
        assert spec is not None, long
        assert spec.short == short, long
        assert spec.nargs == nargs, long


@pytest.mark.dcmtk
def test_our_own_options_do_not_collide_with_dcmtk() -> None:
    dcmrecv = require_tool("dcmrecv")
    help_text = subprocess.run(
        [dcmrecv, "--help"], capture_output=True, text=True, check=True
    ).stdout
    dcmtk = _dcmtk_help_options(help_text)
    dcmtk_spellings = set(dcmtk) | {short for short, _ in dcmtk.values() if short}
    for ours in ("--max-associations", "--no-fsync", "--shutdown-timeout"):
        assert ours not in dcmtk_spellings
        spec = find_option(ours)
        assert spec is not None and spec.short is None


def test_no_spelling_is_used_twice() -> None:
    spellings = [s for spec in DCMRECV_TABLE.options for s in (spec.long, spec.short) if s]
    assert len(spellings) == len(set(spellings))
