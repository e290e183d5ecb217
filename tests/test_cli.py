"""The dcmrecv command line: argv -> ReceiverConfig, messages and exit codes as DCMTK's.

The server is replaced by a recorder; what is checked is the configuration the
command hands to it and what the user sees.  Tests marked ``dcmtk`` run DCMTK's
own ``dcmrecv`` on the same command line and compare.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

import dcmrecv
from dcmrecv import exitcodes
from dcmrecv.boundedread import MAX_CONFIG_FILE_SIZE
from dcmrecv.commands.dcmrecv import main
from dcmrecv.config import (
    FilenameMode,
    LogOptions,
    ReceiverConfig,
    StorageMode,
    SubdirectoryMode,
)
from tests.conftest import FakeServer, require_tool
from tests.helpers import invoke_dcmrecv as run

pytestmark = pytest.mark.usefixtures("fresh_logging")


# --- argv -> ReceiverConfig ------------------------------------------------------------


def test_defaults_are_dcmtks(server: FakeServer, in_tmp: Path) -> None:
    result = run("104")
    assert result.exit_code == 0, result.output
    assert server.config == ReceiverConfig(port=104)
    assert server.config.output_directory == Path(".")


def test_every_option_reaches_the_config(server: FakeServer, in_tmp: Path) -> None:
    out = in_tmp / "out"
    out.mkdir()
    result = run(
        *("-v", "+v", "-aet", "STORE_SCP", "-ta", "12", "-td", "7", "-pdu", "65536", "-dhl"),
        *("-od", str(out), "+ssd", "+fsu", "-fe", ".dcm", "--ignore", "-tls", "-i4"),
        *("--max-associations", "4", "--no-fsync", "--shutdown-timeout", "2.5", "11112"),
    )
    assert result.exit_code == 0, result.output
    assert server.config == ReceiverConfig(
        port=11112,
        aetitle="STORE_SCP",
        aetitle_explicit=True,
        use_called_aetitle=False,
        acse_timeout=12.0,
        dimse_timeout=7.0,
        max_pdu=65536,
        disable_host_lookup=True,
        output_directory=out,
        subdirectory=SubdirectoryMode.SERIES_DATE,
        filename_mode=FilenameMode.SHORT_UNIQUE,
        filename_extension=".dcm",
        storage_mode=StorageMode.IGNORE,
        fsync=False,
        max_associations=4,
        verbose_pc=True,
        shutdown_timeout=2.5,
        # -v: the workers of --workers log as the command does.
        logging=LogOptions(level="info", appname="dcmrecv"),
    )


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        (["+fu", "+fd"], "filename_mode", FilenameMode.DEFAULT),
        (["+fd", "+fu"], "filename_mode", FilenameMode.UNIQUE),
        (["+fu", "+fst"], "filename_mode", FilenameMode.SYSTEM_TIME),
        (["-s", "+ssd"], "subdirectory", SubdirectoryMode.SERIES_DATE),
        (["+ssd", "-s"], "subdirectory", SubdirectoryMode.NONE),
        (["--ignore", "-B"], "storage_mode", StorageMode.NORMAL),
        (["-B", "+B"], "storage_mode", StorageMode.BIT_PRESERVING),
        # Unlike DCMTK, bit-preserving mode combines with series date subdirectories.
        (["+B", "+ssd"], "subdirectory", SubdirectoryMode.SERIES_DATE),
        (["+ssd", "+B"], "storage_mode", StorageMode.BIT_PRESERVING),
        (["-aet", "A", "-uca"], "aetitle_explicit", False),
        (["-uca", "-aet", "A"], "aetitle_explicit", True),
        (["-aet", "A", "-aet", "B"], "aetitle", "B"),
        (["-ta", "5", "-ta", "9"], "acse_timeout", 9.0),
    ],
)
def test_rightmost_option_wins(
    server: FakeServer, in_tmp: Path, args: list[str], field: str, value: object
) -> None:
    result = run(*args, "104")
    assert result.exit_code == 0, result.output
    assert getattr(server.config, field) == value


def test_options_after_the_port(server: FakeServer, in_tmp: Path) -> None:
    result = run("104", "+fu", "-aet", "X")
    assert result.exit_code == 0, result.output
    assert server.config.filename_mode is FilenameMode.UNIQUE
    assert server.config.aetitle == "X"


def test_value_that_looks_like_an_option(server: FakeServer, in_tmp: Path) -> None:
    result = run("-aet", "-v", "-fe", "+t=", "104")
    assert result.exit_code == 0, result.output
    assert server.config.aetitle == "-v"
    assert server.config.filename_extension == "+t="


def test_command_file_with_quotes(server: FakeServer, in_tmp: Path) -> None:
    target = in_tmp / "dir with spaces"
    target.mkdir()
    (in_tmp / "args.txt").write_text("-od 'dir with spaces'\n+fu -aet \"MY AE\"\n104\n")
    result = run("@args.txt")
    assert result.exit_code == 0, result.output
    assert server.config.output_directory == Path("dir with spaces")
    assert server.config.aetitle == "MY AE"
    assert server.config.port == 104


def test_serve_exit_code_is_the_process_exit_code(server: FakeServer, in_tmp: Path) -> None:
    server.exit_code = exitcodes.EXITCODE_CANNOT_START_SCP_AND_LISTEN
    assert run("104").exit_code == 64


def test_verbose_pc_with_debug(server: FakeServer, in_tmp: Path) -> None:
    assert run("-d", "+v", "104").exit_code == 0
    assert server.config.verbose_pc


# --- syntax errors: exit code 1 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-ssd", "104"], "Unknown option -ssd"),
        # An extension with a path separator would put files outside their folder.
        (["-fe", "a/b", "104"], "Invalid value for option --filename-extension"),
        (["-pdu", "10", "104"], "Invalid value for option --max-pdu (underflow: 10)"),
        (["-v"], "Missing parameter port"),
        (["70000"], "Invalid parameter value 70000 (overflow)"),
        (["-ta", "0", "104"], "Invalid value for option --acse-timeout (underflow: 0)"),
        (["-td", "x", "104"], "Invalid value for option --dimse-timeout (x)"),
        (["+v", "104"], "--verbose-pc only allowed with verbose mode"),
        (
            ["-v", "-ll", "info", "104"],
            "--log-level not allowed with --verbose, --debug or --quiet",
        ),
        (["-ll", "loud", "104"], "Invalid log level for --log-level option"),
        (["-lc", "x.cfg", "-ll", "info", "104"], "--log-config not allowed with --log-level"),
        (["@missing.txt"], "Cannot open command file 'missing.txt'"),
        (["--max-associations", "0", "104"], "Invalid value for option --max-associations"),
        (["--shutdown-timeout", "soon", "104"], "Invalid value for option --shutdown-timeout"),
        (["-i6", "104"], "IPv6 is not yet supported: -i6"),
    ],
)
def test_syntax_errors(server: FakeServer, in_tmp: Path, args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == exitcodes.EXITCODE_COMMANDLINE_SYNTAX_ERROR
    assert "dcmrecv: Simple DICOM storage SCP (receiver)" in result.stderr
    assert f"error: {message}" in result.stderr
    assert result.stdout == ""
    assert server.configs == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+pw", "secret"], "--use-passwd only allowed with --enable-tls"),
        (["-pw"], "--null-passwd only allowed with --enable-tls"),
        (["-der"], "--der-keys only allowed with --enable-tls"),
        (["+cf", "ca.pem"], "--add-cert-file only allowed with --enable-tls"),
        (["-ic"], "--ignore-peer-cert only allowed with --enable-tls"),
        (["+px"], "--profile-bcp195 only allowed with --enable-tls"),
        (["+cs", "X"], "--cipher only allowed with --enable-tls"),
        (["+tls", "k", "c", "+ws"], "--write-seed only allowed with --seed"),
        (["+tls", "k", "c", "+pz", "+cs", "X"], "--cipher not allowed with --profile-bcp195-ex"),
        (["--no-sni", "--expect-sni", "host"], "--no-sni not allowed with --expect-sni"),
    ],
)
def test_tls_option_dependencies(
    server: FakeServer, in_tmp: Path, args: list[str], message: str
) -> None:
    # Messages checked against DCMTK 3.6.7's dcmrecv (see test_tls.py for the comparison).
    result = run(*args, "104")
    assert result.exit_code == exitcodes.EXITCODE_COMMANDLINE_SYNTAX_ERROR
    assert f"error: {message}" in result.stderr
    assert server.configs == []


def test_tls_start_up_error_exits_71(in_tmp: Path) -> None:
    # A missing key file is reported at start-up with exit code 71, after the checks
    # and before the port is opened (the real serve: 104 would need privileges).
    result = run("+tls", "missing.key", "missing.crt", "--expect-sni", "pacs", "104")
    assert result.exit_code == exitcodes.EXITCODE_CANNOT_CREATE_TRANSPORT_LAYER
    assert "Unable to load private TLS key from 'missing.key'" in result.stderr
    assert "cannot start SCP" not in result.stderr


def test_disable_tls_is_the_default_and_accepted(server: FakeServer, in_tmp: Path) -> None:
    assert run("-tls", "104").exit_code == 0
    assert run("--disable-tls", "104").exit_code == 0
    assert len(server.configs) == 2


def test_quiet_mode_silences_value_errors(server: FakeServer, in_tmp: Path) -> None:
    quiet = run("-q", "-ta", "0", "104")
    assert quiet.exit_code == 1
    assert quiet.stderr == ""
    # -q -v: verbose is the rightmost, so the error shows again
    loud = run("-q", "-v", "-ta", "0", "104")
    assert "error: Invalid value for option --acse-timeout" in loud.stderr


# --- output directory: exit code 45 ----------------------------------------------------------


def test_missing_output_directory(server: FakeServer, in_tmp: Path) -> None:
    result = run("-od", str(in_tmp / "nope"), "104")
    assert result.exit_code == exitcodes.EXITCODE_INVALID_OUTPUT_DIRECTORY == 45
    assert "F: cannot specify output directory: Directory does not exist\n" in result.stderr
    assert server.configs == []


def test_output_directory_that_is_a_file(server: FakeServer, in_tmp: Path) -> None:
    (in_tmp / "file").write_text("x")
    result = run("-od", "file", "104")
    assert result.exit_code == 45
    assert "Directory does not exist" in result.stderr


def test_output_directory_not_writable(
    server: FakeServer, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # root may write anywhere, so ask the access check itself to say no
    monkeypatch.setattr("os.access", lambda path, mode: False)
    result = run("-od", str(in_tmp), "104")
    assert result.exit_code == 45
    assert "F: cannot specify output directory: Directory is not writable\n" in result.stderr


# --- association profiles: exit code 66 -------------------------------------------------------

PROFILE_FILE = """\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = LittleEndianImplicit

[[PresentationContexts]]
[CTOnly]
PresentationContext1 = CTImageStorage\\Uncompressed

[[Profiles]]
[CT]
PresentationContexts = CTOnly
"""


def test_profile_is_loaded(server: FakeServer, in_tmp: Path) -> None:
    (in_tmp / "store.cfg").write_text(PROFILE_FILE)
    result = run("-xf", "store.cfg", "CT", "104")
    assert result.exit_code == 0, result.output
    assert server.config.profile is not None


@pytest.mark.parametrize(
    ("text", "profile"),
    [(PROFILE_FILE, "NoSuchProfile"), ("[[Profiles]]\n[X]\nbroken line\n", "X"), (None, "CT")],
)
def test_profile_problems(server: FakeServer, in_tmp: Path, text: str | None, profile: str) -> None:
    if text is not None:
        (in_tmp / "store.cfg").write_text(text)
    result = run("-xf", "store.cfg", profile, "104")
    assert result.exit_code == exitcodes.EXITCODE_INVALID_ASSOCIATION_CONFIG == 66
    assert "F: cannot load association configuration: " in result.stderr
    assert server.configs == []


# --- configuration files have a size bound -------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["-xf", "/dev/zero", "Default", "104"],
            exitcodes.EXITCODE_INVALID_ASSOCIATION_CONFIG,
            "F: cannot load association configuration: /dev/zero: larger than 4 MiB:"
            " not an association configuration file",
        ),
        (["-lc", "/dev/zero", "104"], 1, "error: Specified --log-config file is larger than 4 MiB"),
        (
            ["--accept-calling-file", "/dev/zero", "104"],
            1,
            "error: Cannot use --accept-calling-file '/dev/zero': larger than 4 MiB",
        ),
        (["@/dev/zero"], 1, "error: Command file '/dev/zero' is larger than 4 MiB"),
    ],
)
def test_endless_configuration_file_is_refused(
    server: FakeServer, in_tmp: Path, args: list[str], code: int, message: str
) -> None:
    """A file name pointing at /dev/zero (or any huge file) is refused after 4 MiB."""
    result = run(*args)
    assert result.exit_code == code
    assert message in result.stderr
    assert server.configs == []


def test_command_file_as_large_as_the_bound_is_read(server: FakeServer, in_tmp: Path) -> None:
    words = "-od . -fe .dcm 104\n"
    padding = " " * (MAX_CONFIG_FILE_SIZE - len(words))
    (in_tmp / "large.txt").write_text(padding + words)
    result = run("@large.txt")
    assert result.exit_code == 0, result.output
    assert server.config.filename_extension == ".dcm"
    (in_tmp / "large.txt").write_text(" " + padding + words)
    assert run("@large.txt").exit_code == 1


# --- the public entry point --------------------------------------------------------------------


def test_serve_reports_a_port_in_use_with_exit_code_64(in_tmp: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code = dcmrecv.serve(ReceiverConfig(port=port, bind_address="127.0.0.1"))
    assert code == exitcodes.EXITCODE_CANNOT_START_SCP_AND_LISTEN == 64


def test_importing_the_package_does_not_load_the_engine() -> None:
    """``import dcmrecv`` (the health probe's first step) loads nothing heavy."""
    script = (
        "import sys, dcmrecv; print(' '.join(sorted(m for m in sys.modules"
        " if m.startswith(('dcmrecv', 'pydicom', 'pynetdicom', 'click')))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["dcmrecv", "dcmrecv.implementation"]


# --- help, version, --arguments -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [[], ["-h"], ["--help"], ["-h", "104", "105"], ["--version", "-h"]]
)
def test_help(server: FakeServer, args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[2] == "dcmrecv: Simple DICOM storage SCP (receiver)"
    assert "usage: dcmrecv [options] port" in lines
    for heading in ("parameters:", "general options:", "network options:", "output options:"):
        assert heading in lines
    assert "  -h      --help                 print this help text and exit" in lines
    text = result.stdout
    assert "    +ssd  --series-date-subdir   generate subdirectories from series date" in text
    assert "--no-fsync" in text and "before Success is sent" in text
    assert server.configs == []


def test_version(server: FakeServer) -> None:
    result = run("--version", "104")
    assert result.exit_code == 0
    assert f"dcmrecv v{dcmrecv.__version__}" in result.stdout
    assert "External libraries used:" in result.stdout
    for library in ("pydicom", "click"):
        assert f"- {library} {metadata.version(library)}" in result.stdout
    # pynetdicom is a test peer, not a library the receiver runs on.
    assert "pynetdicom" not in result.stdout
    assert server.configs == []


def test_arguments_are_printed_expanded(server: FakeServer, in_tmp: Path) -> None:
    (in_tmp / "more.txt").write_text("+fu 104")
    result = run("--arguments", "-q", "-od", ".", "@more.txt")
    assert result.exit_code == 0
    # forced output, shown even in quiet mode; long names; ends with an empty I: line
    assert result.stderr == (
        "I: calling 'dcmrecv' with 6 arguments: '--arguments' '--quiet' "
        "'--output-directory' '.' '--unique-filenames' '104' \nI: \n"
    )


# --- end to end: a real process ------------------------------------------------------------------

_MAIN = "import sys; sys.argv[0] = 'dcmrecv'; from dcmrecv.commands.dcmrecv import main; main()"


def _ours(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parent.parent
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", _MAIN, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_console_log_format_is_dcmtks(tmp_path: Path) -> None:
    result = _ours("-v", "-od", "missing", "104", cwd=tmp_path)
    assert result.returncode == 45
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert "I: configuring service class provider ..." in lines
    assert lines[-1] == "F: cannot specify output directory: Directory does not exist"


def _without_identification(text: str) -> str:
    """Drop the first line of an error block: DCMTK's and our version lines differ."""
    lines = text.splitlines()
    if lines and lines[0].startswith("$"):
        lines = lines[1:]
    return "\n".join(lines)


@pytest.mark.dcmtk
@pytest.mark.parametrize(
    "args",
    [
        ["-ssd", "104"],
        ["104", "-s-s"],
        ["+fu=", "104"],
        ["--", "-v"],
        ["-pdu", "10", "104"],
        ["-pdu", "-5", "104"],
        ["-ta", "abc", "104"],
        ["-aet"],
        ["-xf", "a"],
        ["-v"],
        ["104", "105"],
        ["abc"],
        ["0"],
        ["+v", "104"],
        ["-ll", "info", "-v", "104"],
        ["-ll", "nonsense", "104"],
        ["-q", "-ta", "0", "104"],
        ["-q", "-v", "-ta", "0", "104"],
        ["@does-not-exist"],
        ["-lc", "does-not-exist.cfg", "104"],
    ],
)
def test_same_error_as_dcmtk(tmp_path: Path, args: list[str]) -> None:
    dcmtk = subprocess.run(
        [require_tool("dcmrecv"), *args], capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    ours = _ours(*args, cwd=tmp_path)
    assert dcmtk.returncode == 1  # these all fail before DCMTK would listen
    assert ours.returncode == dcmtk.returncode
    assert ours.stdout == dcmtk.stdout
    assert _without_identification(ours.stderr) == _without_identification(dcmtk.stderr)


@pytest.mark.dcmtk
def test_same_fatal_line_as_dcmtk_for_a_missing_output_directory(tmp_path: Path) -> None:
    args = ["-v", "-od", "missing", "104"]
    dcmtk = subprocess.run(
        [require_tool("dcmrecv"), *args], capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    ours = _ours(*args, cwd=tmp_path)
    assert ours.returncode == dcmtk.returncode == 45
    for line in (
        "I: configuring service class provider ...",
        "F: cannot specify output directory: Directory does not exist",
    ):
        assert line in dcmtk.stderr.splitlines()
        assert line in ours.stderr.splitlines()


def test_environment_configures_and_the_command_line_wins(server: FakeServer, in_tmp: Path) -> None:
    out = in_tmp / "env-out"
    out.mkdir()
    environment = {
        "DCMRECV_PORT": "2000",
        "DCMRECV_AETITLE": "FROM_ENV",
        "DCMRECV_OUTPUT_DIRECTORY": str(out),
        "DCMRECV_MAX_ASSOCIATIONS": "3",
    }
    result = CliRunner().invoke(main, ["-aet", "FROM_ARGS"], env=environment)
    assert result.exit_code == 0, result.output
    assert server.config is not None
    assert server.config.port == 2000
    assert server.config.aetitle == "FROM_ARGS"  # the command line wins
    assert server.config.output_directory == out
    assert server.config.max_associations == 3


def test_unknown_receiver_variable_is_a_clear_error(server: FakeServer, in_tmp: Path) -> None:
    result = CliRunner().invoke(main, ["104"], env={"DCMRECV_PORTT": "1"})
    assert result.exit_code == 1
    assert "DCMRECV_PORTT" in result.output
