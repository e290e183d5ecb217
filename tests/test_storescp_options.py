"""storescp's command line: old and current spellings, checks and messages.

Error messages and exit codes are compared with DCMTK's own storescp for the same
arguments; the parsing results are checked against storescp.man.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcmrecv.commands.argv import ArgvError
from dcmrecv.commands.options import OLD_SPELLINGS, STORESCP_TABLE
from dcmrecv.commands.storescp import evaluate, main, parse
from dcmrecv.config import ReceiverConfig, StorageMode
from dcmrecv.storage.convert import GroupLength, OutputEncoding
from dcmrecv.storage.sorting import SortMode
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
LE, BE, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2"


def settings(*args: str, verbose: bool = False) -> ReceiverConfig:
    return evaluate(parse(list(args)), verbose)


def syntaxes(config: ReceiverConfig) -> tuple[str, ...]:
    """The transfer syntaxes storescp accepts (the same for every SOP class)."""
    assert config.profile is not None
    return config.profile.contexts[0].transfer_syntaxes


def encoding(config: ReceiverConfig) -> OutputEncoding:
    """How files are written; they are converted only when an option asks for it."""
    assert config.storescp is not None and config.storescp.encoding is not None
    return config.storescp.encoding


def test_defaults_follow_storescp_man() -> None:
    s = settings("104")
    assert s.port == 104
    assert s.aetitle == "STORESCP"
    # "DICOM Conformance": explicit VR little endian first on this machine, then big, implicit
    assert syntaxes(s) == (LE, BE, IMPLICIT)
    assert s.storescp is not None
    assert s.storescp.naming.sort_mode is SortMode.NONE
    assert s.storescp.encoding is None  # the received bytes are kept
    assert s.storage_mode is StorageMode.NORMAL


def test_old_spellings_mean_the_current_options() -> None:
    old = settings("-r", "+R", "-s", "3", "+s", "2", "-b", "8192", "-ti", "-i", "104")
    new = settings(
        "--refuse",
        "--reject",
        "--sleep-after",
        "3",
        "--sleep-during",
        "2",
        "-pdu",
        "8192",
        "+xi",
        "--ignore",
        "104",
    )
    assert old == new
    assert old.refuse_associations and old.require_implementation_uid and old.max_pdu == 8192
    assert old.sleep_after_store == 3.0 and old.sleep_during_store == 2.0
    assert syntaxes(old) == (IMPLICIT,)
    assert old.storage_mode is StorageMode.IGNORE


@pytest.mark.parametrize(
    ("old", "expected"),
    [("-t=", (LE, BE, IMPLICIT)), ("-te", (LE, BE, IMPLICIT)), ("-tb", (BE, LE, IMPLICIT))],
)
def test_old_network_transfer_syntax_preferences(old: str, expected: tuple[str, ...]) -> None:
    assert syntaxes(settings(old, "104")) == expected


def test_old_verbose_and_debug_spellings_are_the_logging_options() -> None:
    assert parse(["+V", "104"]).has("--verbose")
    assert parse(["+d", "104"]).has("--debug")


def test_no_old_spelling_collides_with_a_current_one() -> None:
    # The import-time check would put a colliding spelling here (current meaning wins).
    assert STORESCP_TABLE.collisions == ()
    for old, long in OLD_SPELLINGS.items():
        spec = STORESCP_TABLE.find(old)
        assert spec is not None and spec.long == long


def test_rightmost_of_exclusive_options_wins() -> None:
    assert encoding(settings("+te", "+ti", "104")).transfer_syntax == IMPLICIT
    sorting = settings("-ss", "a", "-sp", "104").storescp
    assert sorting is not None and sorting.naming.sort_mode is SortMode.PATIENT_NAME
    assert syntaxes(settings("+xb", "-te", "104"))[0] == LE


def test_prefer_options_put_their_syntax_first() -> None:
    assert syntaxes(settings("+xs", "104")) == ("1.2.840.10008.1.2.4.70", LE, BE, IMPLICIT)
    assert syntaxes(settings("+xr", "104"))[0] == "1.2.840.10008.1.2.5"
    everything = syntaxes(settings("+xa", "104"))
    assert everything[-3:] == (LE, BE, IMPLICIT)
    assert "1.2.840.10008.1.2.4.90" in everything and len(set(everything)) == len(everything)


def test_output_options() -> None:
    s = settings("+g", "-e", "-u", "+p", "16", "8", "+uc", "104")
    written = encoding(s)
    assert written.group_length is GroupLength.CREATE
    assert written.undefined_lengths and not written.new_vrs
    assert (written.file_padding, written.item_padding) == (16, 8)
    assert written.reencode and written.write_meta
    assert s.storescp is not None and s.storescp.convert_un
    dataset_only = encoding(settings("-F", "+td", "+cl", "9", "104"))
    assert not dataset_only.write_meta
    assert dataset_only.transfer_syntax == "1.2.840.10008.1.2.1.99"
    assert dataset_only.compression_level == 9


def test_item_padding_alone_is_a_conversion() -> None:
    # +p 0 8: no file padding, but the items are padded, so the file is re-encoded.
    padded = encoding(settings("+p", "0", "8", "104"))
    assert (padded.file_padding, padded.item_padding) == (0, 8)
    assert padded.changes("1.2.840.10008.1.2.1")
    unpadded = settings("+p", "0", "0", "104").storescp
    assert unpadded is not None and unpadded.encoding is None  # nothing to convert


def test_padding_and_write_dataset_conflict() -> None:
    with pytest.raises(ArgvError, match="--padding-create not allowed with --write-dataset"):
        settings("-F", "+p", "16", "8", "104")


def test_events_need_sorting() -> None:
    s = settings("-su", "x", "-xcs", "echo #p", "-rns", "-tos", "5", "104").storescp
    assert s is not None
    assert s.events.exec_on_eostudy == "echo #p"
    assert s.events.rename_on_eostudy and s.events.eostudy_timeout == 5.0


def test_fork_and_max_associations_are_accepted_together_with_end_of_study() -> None:
    s = settings("--fork", "--max-associations", "4", "-ss", "p", "-xcs", "x", "104")
    assert s.max_associations == 4


def test_ipv6_is_refused_clearly() -> None:
    with pytest.raises(ArgvError, match="IPv6 is not yet supported"):
        settings("-i6", "104")
    assert settings("-i6", "-i4", "104").port == 104


def test_prefix_with_a_separator_is_refused() -> None:
    with pytest.raises(ArgvError, match="--sort-conc-studies"):
        settings("-ss", "../x", "104")


def test_help_lists_current_and_old_spellings() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "--sort-conc-studies" in result.output
    assert "-xcr" in result.output and "+x=" in result.output
    assert "same as --refuse" in result.output


# --- against DCMTK's storescp ---------------------------------------------------------

ERROR_CASES = [
    ["-xyz", "104"],
    ["70000"],
    ["-v"],
    ["+v", "104"],
    ["-pdu", "100", "104"],
    ["+tb", "+xa", "104"],
    ["-tos", "5", "104"],
    ["-xcs", "x", "104"],
    ["-rns", "104"],
    ["-tn", "+uf", "104"],
    ["-ss", "p", "+B", "104"],
    ["+g", "+B", "104"],
    ["+te", "+B", "104"],
    ["-F", "+p", "8", "8", "104"],
    ["-xf", "f", "p", "+xe", "104"],
    ["-xf", "f", "p", "-pm", "104"],
    ["+cl", "5", "+te", "104"],
    ["+cl", "12", "104"],
    ["-ta", "0", "104"],
    ["-ss"],
]


def _ours(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from dcmrecv.commands.storescp import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def _error_line(stderr: str) -> str:
    return next((line for line in stderr.splitlines() if line.startswith("error:")), stderr)


@pytest.mark.dcmtk
@pytest.mark.parametrize("args", ERROR_CASES, ids=" ".join)
def test_command_line_errors_match_dcmtk(args: list[str]) -> None:
    dcmtk = subprocess.run(
        [require_tool("storescp"), *args], capture_output=True, text=True, timeout=60
    )
    ours = _ours(args)
    assert (ours.returncode, _error_line(ours.stderr)) == (
        dcmtk.returncode,
        _error_line(dcmtk.stderr),
    )
    assert ours.returncode == 1


@pytest.mark.dcmtk
def test_missing_output_directory_matches_dcmtk(tmp_path: Path) -> None:
    args = ["-od", str(tmp_path / "missing"), "11112"]
    dcmtk = subprocess.run(
        [require_tool("storescp"), *args], capture_output=True, text=True, timeout=60
    )
    ours = _ours(args)
    assert dcmtk.returncode == ours.returncode == 1
    assert (
        dcmtk.stderr.strip()
        == ours.stderr.strip()
        == ("F: specified output directory does not exist")
    )


@pytest.mark.dcmtk
def test_unreadable_config_file_exits_like_dcmtk(tmp_path: Path) -> None:
    args = ["-xf", str(tmp_path / "none.cfg"), "Default", "11112"]
    dcmtk = subprocess.run(
        [require_tool("storescp"), *args], capture_output=True, text=True, timeout=60
    )
    ours = _ours(args)
    assert dcmtk.returncode == ours.returncode == 1
    assert ours.stderr.startswith("F: cannot read config file: ")
    assert dcmtk.stderr.startswith("F: cannot read config file: ")


def test_endless_config_file_is_refused() -> None:
    result = _ours(["-xf", "/dev/zero", "Default", "11112"])
    assert result.returncode == 1
    assert result.stderr.startswith("F: cannot read config file: /dev/zero: larger than 4 MiB")


def test_no_arguments_prints_usage_and_exits_0() -> None:
    result = _ours([])
    assert result.returncode == 0
    assert "usage: storescp [options] [port]" in result.stdout


@pytest.mark.dcmtk
def test_port_in_use_matches_dcmtk() -> None:
    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        dcmtk = subprocess.run(
            [require_tool("storescp"), port], capture_output=True, text=True, timeout=60
        )
        ours = _ours([port])
    assert dcmtk.returncode == ours.returncode == 1
    assert ours.stderr == dcmtk.stderr
