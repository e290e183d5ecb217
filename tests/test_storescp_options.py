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

from dcmrecv.commands import storescp_options as so
from dcmrecv.commands.storescp import main
from dcmrecv.storage.convert import GroupLength
from dcmrecv.storage.sorting import SortMode
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
LE, BE, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2"


def settings(*args: str, verbose: bool = False) -> so.Settings:
    return so.evaluate(so.parse(list(args)), verbose)


def test_defaults_follow_storescp_man() -> None:
    s = settings("104")
    assert s.port == 104
    assert s.aetitle == "STORESCP"
    # "DICOM Conformance": explicit VR little endian first on this machine, then big, implicit
    assert s.transfer_syntaxes == (LE, BE, IMPLICIT)
    assert s.naming.sort_mode is SortMode.NONE
    assert s.encoding.write_meta and not s.encoding.reencode
    assert s.storage is so.StorageChoice.NORMAL


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
    assert old.refuse and old.reject and old.max_pdu == 8192
    assert old.sleep_after == 3.0 and old.sleep_during == 2.0
    assert old.transfer_syntaxes == (IMPLICIT,)
    assert old.storage is so.StorageChoice.IGNORE


@pytest.mark.parametrize(
    ("old", "expected"),
    [("-t=", (LE, BE, IMPLICIT)), ("-te", (LE, BE, IMPLICIT)), ("-tb", (BE, LE, IMPLICIT))],
)
def test_old_network_transfer_syntax_preferences(old: str, expected: tuple[str, ...]) -> None:
    assert settings(old, "104").transfer_syntaxes == expected


def test_old_verbose_and_debug_spellings_are_the_logging_options() -> None:
    assert so.parse(["+V", "104"]).has("--verbose")
    assert so.parse(["+d", "104"]).has("--debug")


def test_no_old_spelling_collides_with_a_current_one() -> None:
    # The import-time check would put a colliding spelling here (current meaning wins).
    assert so.COLLISIONS == ()
    for old, long in so.OLD_SPELLINGS.items():
        spec = so.find_option(old)
        assert spec is not None and spec.long == long


def test_rightmost_of_exclusive_options_wins() -> None:
    assert settings("+te", "+ti", "104").encoding.transfer_syntax == IMPLICIT
    assert settings("-ss", "a", "-sp", "104").naming.sort_mode is SortMode.PATIENT_NAME
    assert settings("+xb", "-te", "104").transfer_syntaxes[0] == LE


def test_prefer_options_put_their_syntax_first() -> None:
    assert settings("+xs", "104").transfer_syntaxes == ("1.2.840.10008.1.2.4.70", LE, BE, IMPLICIT)
    assert settings("+xr", "104").transfer_syntaxes[0] == "1.2.840.10008.1.2.5"
    everything = settings("+xa", "104").transfer_syntaxes
    assert everything[-3:] == (LE, BE, IMPLICIT)
    assert "1.2.840.10008.1.2.4.90" in everything and len(set(everything)) == len(everything)


def test_output_options() -> None:
    s = settings("+g", "-e", "-u", "+p", "16", "8", "+uc", "104")
    assert s.encoding.group_length is GroupLength.CREATE
    assert s.encoding.undefined_lengths and not s.encoding.new_vrs
    assert (s.encoding.file_padding, s.encoding.item_padding) == (16, 8)
    assert s.encoding.reencode and s.encoding.write_meta
    assert s.convert_un
    dataset_only = settings("-F", "+td", "+cl", "9", "104").encoding
    assert not dataset_only.write_meta
    assert dataset_only.transfer_syntax == "1.2.840.10008.1.2.1.99"
    assert dataset_only.compression_level == 9


def test_item_padding_alone_is_a_conversion() -> None:
    # +p 0 8: no file padding, but the items are padded, so the file is re-encoded.
    encoding = settings("+p", "0", "8", "104").encoding
    assert (encoding.file_padding, encoding.item_padding) == (0, 8)
    assert encoding.changes("1.2.840.10008.1.2.1")
    assert not settings("+p", "0", "0", "104").encoding.changes("1.2.840.10008.1.2.1")


def test_padding_and_write_dataset_conflict() -> None:
    with pytest.raises(so.ArgvError, match="--padding-create not allowed with --write-dataset"):
        settings("-F", "+p", "16", "8", "104")


def test_events_need_sorting() -> None:
    s = settings("-su", "x", "-xcs", "echo #p", "-rns", "-tos", "5", "104")
    assert s.events.exec_on_eostudy is not None
    assert s.events.exec_on_eostudy == "echo #p"
    assert s.events.rename_on_eostudy and s.events.eostudy_timeout == 5.0


def test_fork_and_max_associations_are_accepted_together_with_end_of_study() -> None:
    s = settings("--fork", "--max-associations", "4", "-ss", "p", "-xcs", "x", "104")
    assert s.fork and s.max_associations == 4


def test_ipv6_is_refused_clearly() -> None:
    with pytest.raises(so.ArgvError, match="IPv6 is not yet supported"):
        settings("-i6", "104")
    assert settings("-i6", "-i4", "104").port == 104


def test_prefix_with_a_separator_is_refused() -> None:
    with pytest.raises(so.ArgvError, match="--sort-conc-studies"):
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
