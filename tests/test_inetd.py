"""Sockets from a super server: ``storescp --inetd`` and systemd socket activation.

inetd is emulated as inetd works: the test accepts the connection of DCMTK's
``storescu`` on a listener of its own and starts the receiver with the connected
socket as standard input.  DCMTK's storescp runs the same way as the reference.
Socket activation is emulated as systemd does it: the test binds and listens,
then starts the receiver with that socket on descriptor 3 and ``LISTEN_PID`` set
to the receiver's process ID by the shell that execs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from dcmrecv.commands.argv import ArgvError
from dcmrecv.commands.storescp import evaluate, parse
from dcmrecv.wire import inherited
from tests.conftest import free_port, require_program, require_tool, wait_for_port
from tests.helpers import ROOT, environment, files_under, pydicom_file, stop

STORESCP = [sys.executable, "-c", "from dcmrecv.commands.storescp import main; main()"]
DCMRECV = [sys.executable, "-m", "dcmrecv"]
TIMEOUT = 60


FILES = [pydicom_file("CT_small.dcm"), pydicom_file("MR_small.dcm")]
UIDS = sorted(str(pydicom.dcmread(path).SOPInstanceUID) for path in FILES)


def log_config(tmp_path: Path) -> tuple[Path, Path]:
    """A ``-lc`` file that writes every record to a file: with --inetd the only log."""
    log = tmp_path / "storescp.log"
    config = tmp_path / "logger.cfg"
    config.write_text(
        "log4cplus.rootLogger = DEBUG, file\n"
        "log4cplus.appender.file = log4cplus::FileAppender\n"
        f"log4cplus.appender.file.File = {log}\n"
        "log4cplus.appender.file.layout = log4cplus::PatternLayout\n"
        "log4cplus.appender.file.layout.ConversionPattern = %p: %m%n\n"
    )
    return config, log


def stored_uids(directory: Path) -> list[str]:
    return sorted(
        str(pydicom.dcmread(directory / name).SOPInstanceUID) for name in files_under(directory)
    )


# --- the environment of an activated service (pure) --------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 0),
        ({"LISTEN_FDS": "1"}, 0),  # no LISTEN_PID: not activated
        ({"LISTEN_PID": "4242", "LISTEN_FDS": "1"}, 1),
        ({"LISTEN_PID": "4242", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "a:b:c"}, 3),
        ({"LISTEN_PID": "1", "LISTEN_FDS": "1"}, 0),  # meant for another process
        ({"LISTEN_PID": "1", "LISTEN_FDS": "junk"}, 0),  # not ours: not even read
    ],
)
def test_listen_fds_counts_the_sockets_meant_for_us(environ: dict[str, str], expected: int) -> None:
    assert inherited.listen_fds(environ, 4242) == expected


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({"LISTEN_PID": "abc", "LISTEN_FDS": "1"}, "LISTEN_PID is not a process ID: 'abc'"),
        ({"LISTEN_PID": "-4242", "LISTEN_FDS": "1"}, "LISTEN_PID is not a process ID"),
        ({"LISTEN_PID": "0", "LISTEN_FDS": "1"}, "LISTEN_PID is not a process ID"),
        ({"LISTEN_PID": "4242"}, "LISTEN_FDS is not a positive number: ''"),
        ({"LISTEN_PID": "4242", "LISTEN_FDS": "0"}, "LISTEN_FDS is not a positive number"),
        ({"LISTEN_PID": "4242", "LISTEN_FDS": "x1"}, "LISTEN_FDS is not a positive number"),
    ],
)
def test_malformed_activation_variables_are_an_error(environ: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        inherited.listen_fds(environ, 4242)


def test_activation_variables_are_removed_even_when_not_meant_for_us() -> None:
    environ = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "dicom", "HOME": "/x"}
    assert inherited.activated_listener(environ, 4242) is None
    assert environ == {"HOME": "/x"}


def test_malformed_activation_is_an_os_error_and_the_variables_go() -> None:
    environ = {"LISTEN_PID": "4242", "LISTEN_FDS": "none"}
    with pytest.raises(OSError, match="socket activation: LISTEN_FDS is not a positive number"):
        inherited.activated_listener(environ, 4242)
    assert environ == {}


# --- what is on the descriptor ------------------------------------------------------------


def test_a_listening_tcp_socket_is_taken() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        taken = inherited.listening_socket(os.dup(listener.fileno()))
        with taken:
            assert taken.getsockname() == listener.getsockname()
            assert not taken.getblocking()


@contextlib.contextmanager
def descriptor(kind: str, tmp_path: Path) -> Iterator[int]:
    """A duplicate of a descriptor of the given kind (the function under test may close
    it); the originals are closed afterwards."""
    with contextlib.ExitStack() as stack:
        if kind == "file":
            fd = os.open(tmp_path / "plain", os.O_RDWR | os.O_CREAT)
            stack.callback(os.close, fd)
        else:
            if kind == "udp":
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            elif kind == "unix listener":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(str(tmp_path / "sock"))
                sock.listen()
            elif kind == "unix pair":
                sock, other = socket.socketpair()
                stack.enter_context(other)
            elif kind == "tcp, unconnected":
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            else:  # "tcp connection": what systemd passes with Accept=yes
                listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
                sock = socket.create_connection(listener.getsockname())
            stack.enter_context(sock)
            fd = sock.fileno()
        duplicate = os.dup(fd)
        stack.callback(_close_quietly, duplicate)
        yield duplicate


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("file", "descriptor .* passed by systemd \\(LISTEN_FDS\\) is not a socket"),
        ("udp", "is not a TCP socket: the .socket unit needs ListenStream="),
        ("unix listener", "is not a TCP socket"),
        ("tcp connection", "is a connection, not a listening socket: with Accept=yes"),
        ("tcp, unconnected", "is a connection, not a listening socket"),
    ],
)
def test_anything_but_a_listening_tcp_socket_is_refused_with_the_reason(
    tmp_path: Path, kind: str, message: str
) -> None:
    with descriptor(kind, tmp_path) as fd, pytest.raises(OSError, match=message):
        inherited.listening_socket(fd)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("file", "standard input is not a socket: Socket operation on non-socket"),
        ("unix pair", "standard input is not a TCP connection"),
        ("tcp, unconnected", "standard input is not a connected socket"),
    ],
)
def test_inetd_connection_must_be_a_connected_tcp_socket(
    tmp_path: Path, kind: str, message: str
) -> None:
    with descriptor(kind, tmp_path) as fd, pytest.raises(OSError, match=message):
        inherited.connected_socket(fd)


def test_inetd_connection_names_its_peer(tmp_path: Path) -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as client,
    ):
        sock, address = inherited.connected_socket(os.dup(client.fileno()))
        with sock:
            assert address == listener.getsockname()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("::FFFF:127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("10.1.2.3", "10.1.2.3"),
        ("::ffff:zz", "::ffff:zz"),
    ],
)
def test_ipv4_mapped_peers_are_named_by_their_ipv4_address(host: str, expected: str) -> None:
    assert inherited.unmapped(host) == expected


# --- the command line ----------------------------------------------------------------------


def test_inetd_needs_no_port_and_does_not_check_one() -> None:
    for args in (["--inetd"], ["-id", "104"], ["-id", "no-port"]):
        assert evaluate(parse(args)).port == 0
    with pytest.raises(ArgvError, match=r"^Missing parameter port$"):
        evaluate(parse(["-od", "."]), verbose=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # storescp.cc (current DCMTK) checks --inetd first: --fork is excluded, and
        # --max-associations needs --fork.
        (["--inetd", "--fork"], "--inetd not allowed with --fork"),
        (["--fork", "-id", "--single-process"], "--inetd not allowed with --fork"),
        (["--inetd", "--max-associations", "2"], "--max-associations only allowed with --fork"),
        (["-id", "-ss", "x", "-xcs", "true"], "--exec-on-eostudy not allowed with --inetd"),
        # The conflict comes before the missing sort option, as in storescp.cc.
        (["-id", "-xcs", "true"], "--exec-on-eostudy not allowed with --inetd"),
        (["-id", "-su", "", "-rns"], "--rename-on-eostudy not allowed with --inetd"),
        # Ours: every inetd process would want the one HTTP port.
        (["-id", "--http-port", "0"], "--http-port not allowed with --inetd"),
    ],
)
def test_options_that_conflict_with_inetd(args: list[str], message: str) -> None:
    with pytest.raises(ArgvError, match=f"^{message}$"):
        evaluate(parse(args), verbose=False)


# --- inetd, emulated ---------------------------------------------------------------------


@dataclass
class InetdRun:
    scp: subprocess.CompletedProcess[str]
    scu: subprocess.CompletedProcess[str]


def run_inetd(
    command: Sequence[str],
    args: Sequence[str],
    cwd: Path,
    files: Sequence[Path] = FILES,
    scu_args: Sequence[str] = (),
) -> InetdRun:
    """Do what inetd does for one connection of DCMTK's storescu: accept it, start
    ``command args`` with the socket as standard input, let the process end."""
    cwd.mkdir(parents=True, exist_ok=True)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.settimeout(TIMEOUT)
        scu = subprocess.Popen(
            [require_tool("storescu"), *scu_args, "127.0.0.1", str(port), *map(str, files)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        try:
            conn, _ = listener.accept()
        except BaseException:
            scu.kill()
            scu.wait(TIMEOUT)
            raise
    with conn:
        scp = subprocess.run(
            [*command, *args],
            stdin=conn.fileno(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=cwd,
            env=environment(),
            check=False,
        )
    # Our copy of the connection is closed now: a peer left waiting sees the end.
    out, err = scu.communicate(timeout=TIMEOUT)
    return InetdRun(scp, subprocess.CompletedProcess(scu.args, scu.returncode, out, err))


@pytest.mark.dcmtk
def test_inetd_stores_like_dcmtks_storescp_and_exits_by_itself(tmp_path: Path) -> None:
    runs = {}
    for name, command in (("dcmtk", [require_tool("storescp")]), ("ours", STORESCP)):
        output = tmp_path / name / "out"
        output.mkdir(parents=True)
        run = run_inetd(command, ["--inetd", "-od", str(output)], tmp_path / name)
        assert run.scu.returncode == 0, f"{name}: {run.scu.stderr}"
        # DCMTK's stdout and stderr are /dev/null in inetd mode: nothing reaches them,
        # which under inetd would be the DICOM connection.
        assert (run.scp.returncode, run.scp.stdout, run.scp.stderr) == (0, "", ""), name
        runs[name] = files_under(output)
        assert stored_uids(output) == UIDS, name
    assert runs["ours"] == runs["dcmtk"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed key and certificate, both ends' own and trusted by both."""
    openssl = require_program("openssl", "to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    key, cert = str(directory / "key.pem"), str(directory / "cert.pem")
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256"),
            *("-days", "2", "-keyout", key, "-out", cert, "-subj", "/CN=localhost"),
        ],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    return key, cert


@pytest.mark.dcmtk
def test_inetd_connection_speaks_tls_like_dcmtks_storescp(
    tmp_path: Path, certificate: tuple[str, str]
) -> None:
    key, cert = certificate
    tls = ["+tls", key, cert, "+cf", cert]
    for name, command in (("dcmtk", [require_tool("storescp")]), ("ours", STORESCP)):
        output = tmp_path / name / "out"
        output.mkdir(parents=True)
        run = run_inetd(command, ["-id", *tls, "-od", str(output)], tmp_path / name, FILES, tls)
        assert run.scu.returncode == 0, f"{name}: {run.scu.stderr}"
        assert run.scp.returncode == 0, name
        assert stored_uids(output) == UIDS, name
        # A sender without TLS gets nowhere, and the process still ends by itself.
        plain = run_inetd(command, ["-id", *tls, "-ta", "5", "-od", str(output)], tmp_path)
        assert plain.scu.returncode != 0, name
        assert plain.scp.returncode == 0, name
        assert stored_uids(output) == UIDS, name


def test_inetd_logs_only_to_the_log_config_file_and_warns_about_a_port(tmp_path: Path) -> None:
    config, log = log_config(tmp_path)
    output = tmp_path / "out"
    output.mkdir()
    run = run_inetd(STORESCP, ["-id", "-lc", str(config), "-od", str(output), "104"], tmp_path)
    assert run.scu.returncode == 0, run.scu.stderr
    assert (run.scp.returncode, run.scp.stdout, run.scp.stderr) == (0, "", "")
    assert stored_uids(output) == UIDS
    lines = log.read_text().splitlines()
    # DCMTK logs this before its logger is configured, so it never shows there.
    assert "WARN: Parameter port not required in inetd mode" in lines
    assert "INFO: Association Received" in lines
    assert "INFO: Association Release" in lines


@pytest.mark.dcmtk
def test_inetd_puts_right_what_a_power_cut_left_in_the_output_directory(tmp_path: Path) -> None:
    """The crash recovery of a listening start runs in inetd mode too when the output
    directory holds a temporary file: a file truncated by a power cut (its temporary
    name records 1000 bytes, it has 600) goes with its final name."""
    output = tmp_path / "out"
    (output / "CT").mkdir(parents=True)
    truncated = output / "CT" / "CT.1.2.3"
    truncated.write_bytes(bytes(600))
    os.link(truncated, output / f".dcmrecv-{os.urandom(8).hex()}-1000.part")
    config, log = log_config(tmp_path)
    run = run_inetd(STORESCP, ["-id", "-lc", str(config), "-od", str(output)], tmp_path)
    assert run.scu.returncode == 0, run.scu.stderr
    assert run.scp.returncode == 0
    assert stored_uids(output) == UIDS  # the new files, and nothing else
    assert "removed 1 incomplete file(s) left by an earlier run" in log.read_text()


@pytest.mark.dcmtk
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--fork"], "--inetd not allowed with --fork"),
        (["-ss", "s", "-xcs", "true"], "--exec-on-eostudy not allowed with --inetd"),
        (["-ss", "s", "-rns"], "--rename-on-eostudy not allowed with --inetd"),
    ],
)
def test_conflicting_options_exit_as_dcmtks_storescp(
    tmp_path: Path, options: list[str], message: str
) -> None:
    for name, command in (("dcmtk", [require_tool("storescp")]), ("ours", STORESCP)):
        output = tmp_path / name / "out"
        output.mkdir(parents=True)
        run = run_inetd(command, ["--inetd", *options, "-od", str(output)], tmp_path / name)
        assert run.scp.returncode == 1, name
        assert run.scu.returncode != 0, name  # the connection closed unanswered
        assert files_under(output) == []
        if name == "ours":
            # Under inetd standard error is the connection: nothing may be printed
            # there (current DCMTK prints the --fork one before it redirects).
            assert (run.scp.stdout, run.scp.stderr) == ("", "")


@pytest.mark.dcmtk
def test_standard_input_that_is_no_socket_is_logged_and_exits_as_dcmtk(tmp_path: Path) -> None:
    config, log = log_config(tmp_path)
    codes = {}
    for name, command in (("dcmtk", [require_tool("storescp")]), ("ours", STORESCP)):
        result = subprocess.run(
            [*command, "--inetd", "-lc", str(config), "-od", str(tmp_path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=environment(),
            check=False,
        )
        codes[name] = result.returncode
        text = log.read_text()
        assert "ERROR: Receiving Association failed:" in text, name
        assert "non-socket" in text, name
        log.unlink()
    assert codes == {"dcmtk": 0, "ours": 0}


def serve_like_inetd(args: Sequence[str], cwd: Path) -> tuple[int, bytes]:
    """Start our storescp as inetd does, the connection on descriptors 0, 1 and 2;
    return its exit code and every byte the peer received before the close."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
    with client, conn:
        process = subprocess.Popen(
            [*STORESCP, *args],
            stdin=conn.fileno(),
            stdout=conn.fileno(),
            stderr=conn.fileno(),
            cwd=cwd,
            env=environment(),
        )
        conn.close()
        client.settimeout(TIMEOUT)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return process.wait(TIMEOUT), received


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # The case: the README's inetd line without the logger file it names.
        (["-lc", "/nonexistent/logger.cfg"], "Specified --log-config file does not exist"),
        (["--fork"], "--inetd not allowed with --fork"),
        (["--no-such-option"], "Unknown option --no-such-option"),
        (["-xcs", "true"], "--exec-on-eostudy not allowed with --inetd"),
    ],
)
def test_command_line_errors_never_reach_the_inetd_connection(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Under inetd standard error is the DICOM connection: an error printed there
    reaches the peer as a malformed PDU.  The peer sees the connection close with
    nothing sent; the error goes to the -lc log when that was read first."""
    config, log = log_config(tmp_path)
    for spelling in ("--inetd", "-id"):
        code, received = serve_like_inetd([spelling, *args, "-od", str(tmp_path)], tmp_path)
        assert (code, received) == (1, b""), spelling
    code, received = serve_like_inetd(["-lc", str(config), "-id", *args], tmp_path)
    assert (code, received) == (1, b"")
    if "-lc" not in args and message.startswith("--"):  # found after -lc was read
        assert f"FATAL: error: {message}" in log.read_text().splitlines()


def test_inetd_in_a_command_file_takes_the_connection_first(tmp_path: Path) -> None:
    command_file = tmp_path / "inetd.args"
    command_file.write_text("--inetd --fork\n")
    code, received = serve_like_inetd([f"@{command_file}"], tmp_path)
    assert (code, received) == (1, b"")


def test_an_option_value_spelled_like_inetd_is_not_inetd(tmp_path: Path) -> None:
    """``-aet -id`` names an AE title: no connection is taken, the error is printed."""
    result = subprocess.run(
        [*STORESCP, "-aet", "-id", "-od", str(tmp_path / "missing"), "11112"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment(),
        check=False,
    )
    assert result.returncode == 1
    assert "specified output directory does not exist" in result.stderr


def test_inetd_with_standard_input_closed_exits_99(tmp_path: Path) -> None:
    # The shell closes standard input before it starts the receiver.
    result = subprocess.run(
        ["sh", "-c", 'exec "$@" <&-', "sh", *STORESCP, "--inetd", "-od", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment(),
        check=False,
    )
    assert result.returncode == 99  # storescp.cc's exit code when dup(0) fails
    assert "cannot take the connection from standard input: Bad file descriptor" in result.stderr


@contextlib.contextmanager
def inetd_process(
    args: Sequence[str], cwd: Path
) -> Iterator[tuple[socket.socket, subprocess.Popen[str]]]:
    """Our storescp --inetd on a connection whose client end the test holds."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
    with client, conn:
        process = subprocess.Popen(
            [*STORESCP, "--inetd", *args],
            stdin=conn.fileno(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=environment(),
        )
        conn.close()
        try:
            yield client, process
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=TIMEOUT)


def test_a_silent_peer_is_closed_at_the_acse_timeout_and_the_process_ends(
    tmp_path: Path,
) -> None:
    config, log = log_config(tmp_path)
    with inetd_process(["-ta", "1", "-lc", str(config), "-od", str(tmp_path)], tmp_path) as (
        client,
        process,
    ):
        client.settimeout(TIMEOUT)
        started = time.monotonic()
        assert client.recv(1) == b""  # closed by the receiver, with nothing sent
        assert process.wait(TIMEOUT) == 0
        assert time.monotonic() - started < 10  # -ta 1, not the 30 s default
    assert "No A-ASSOCIATE-RQ from 127.0.0.1:" in log.read_text()


def test_sigterm_ends_an_idle_inetd_association_with_exit_code_0(tmp_path: Path) -> None:
    config, log = log_config(tmp_path)
    from tests import rawpeer

    with inetd_process(["-lc", str(config), "-od", str(tmp_path)], tmp_path) as (
        client,
        process,
    ):
        client.settimeout(TIMEOUT)
        client.sendall(rawpeer.associate_rq())
        assert client.recv(1)[0] == rawpeer.A_ASSOCIATE_AC
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    text = log.read_text()
    assert "received SIGTERM: shutting down" in text
    assert "Association Received" in text


# --- systemd socket activation, emulated --------------------------------------------------

#: A small wrapper does what systemd does before it starts an activated service: it
#: puts the socket on descriptor 3, sets LISTEN_PID to its own process ID and LISTEN_FDS,
#: and execs the service (same process ID).  ``pid`` "other" sets them for another process.
ACTIVATE = (
    "import os, sys\n"
    "fd = int(os.environ.pop('LISTENER'))\n"
    "if fd != 3:\n"
    "    os.dup2(fd, 3)\n"
    "    os.close(fd)\n"
    "os.environ['LISTEN_PID'] = '1' if sys.argv[1] == 'other' else str(os.getpid())\n"
    "os.environ['LISTEN_FDS'] = '1'\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
#: A hook that records what it inherited: the activation variables and descriptor 3.
HOOK = (
    "import json, os, sys\n"
    "try:\n"
    "    os.fstat(3)\n"
    "    fd3 = True\n"
    "except OSError:\n"
    "    fd3 = False\n"
    "seen = {k: v for k, v in os.environ.items() if k.startswith('LISTEN_')}\n"
    "with open(sys.argv[1], 'a') as f:\n"
    "    f.write(json.dumps({'env': seen, 'fd3': fd3}) + '\\n')\n"
)


@contextlib.contextmanager
def activated(
    command: Sequence[str], args: Sequence[str], fd: int, cwd: Path, pid: str = "ours"
) -> Iterator[subprocess.Popen[str]]:
    """``command args`` started with descriptor ``fd`` as its descriptor 3; SIGTERM
    at the end, which must give exit code 0."""
    env = environment()
    env["LISTENER"] = str(fd)
    process = subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, pid, *command, *args],
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env=env,
    )
    try:
        yield process
    finally:
        stop(process)


def send(port: int, files: Sequence[Path] = FILES) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("storescu"), "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment(),
        check=False,
    )


def output_of(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.read()


COMMANDS = {
    # The port parameter differs from the socket's port: the socket wins, with a warning.
    "dcmrecv": (DCMRECV, ["-v", "-xf", str(ROOT / "storescp.cfg"), "Default", "104"]),
    "storescp": (STORESCP, ["-v", "104"]),
}


@pytest.mark.dcmtk
@pytest.mark.parametrize("name", COMMANDS)
def test_socket_activated_receiver_serves_systemds_socket(tmp_path: Path, name: str) -> None:
    command, args = COMMANDS[name]
    record = tmp_path / "hook.jsonl"
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK)
    extra = ["-od", str(tmp_path / "out")]
    if name == "storescp":
        # The hooks must inherit neither the variables nor the listening socket.
        argv = " ".join(shlex.quote(p) for p in (sys.executable, str(hook), str(record)))
        extra += ["-xs", "-xcr", argv]
    (tmp_path / "out").mkdir()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with activated(command, [*args, *extra], listener.fileno(), tmp_path) as process:
            listener.close()  # only the receiver holds the port now
            result = send(port)
            assert result.returncode == 0, result.stderr
            process.send_signal(signal.SIGTERM)
            assert process.wait(TIMEOUT) == 0
            log = output_of(process)
    assert stored_uids(tmp_path / "out") == UIDS
    assert (
        "W: socket activation: using the listening socket systemd passed"
        f" (descriptor 3, 127.0.0.1 port {port}) instead of binding port 104"
    ) in log
    if name == "storescp":
        hooks = [json.loads(line) for line in record.read_text().splitlines()]
        assert hooks == [{"env": {}, "fd3": False}] * len(FILES)


@pytest.mark.dcmtk
@pytest.mark.parametrize("name", COMMANDS)
def test_activation_variables_for_another_process_are_ignored(tmp_path: Path, name: str) -> None:
    command, args = COMMANDS[name]
    port = free_port()
    args = [*args[:-1], str(port), "-od", str(tmp_path)]
    with (
        socket.create_server(("127.0.0.1", 0)) as decoy,
        activated(command, args, decoy.fileno(), tmp_path, "other") as process,
    ):
        decoy.close()
        wait_for_port(port, process)  # type: ignore[arg-type]
        result = send(port)
        assert result.returncode == 0, result.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
        assert "socket activation" not in output_of(process)
    assert stored_uids(tmp_path) == UIDS


@pytest.mark.parametrize(("name", "code"), [("dcmrecv", 64), ("storescp", 1)])
@pytest.mark.parametrize("kind", ["tcp connection", "file"])
def test_descriptor_3_that_is_no_listening_socket_fails_like_a_busy_port(
    tmp_path: Path, name: str, code: int, kind: str
) -> None:
    command, args = COMMANDS[name]
    with (
        descriptor(kind, tmp_path) as fd,
        activated(command, [*args, "-od", str(tmp_path)], fd, tmp_path) as process,
    ):
        assert process.wait(TIMEOUT) == code
        log = output_of(process)
    what = "is a connection, not a listening socket" if kind != "file" else "is not a socket"
    assert f"descriptor 3 passed by systemd (LISTEN_FDS) {what}" in log


@pytest.mark.dcmtk
def test_dual_stack_socket_from_systemd_sees_ipv4_peers_as_ipv4(tmp_path: Path) -> None:
    """``ListenStream=104`` is one IPv6 socket for both families (BindIPv6Only=default):
    --accept-from with an IPv4 network still admits the IPv4 sender."""
    if not socket.has_dualstack_ipv6():
        pytest.skip("no dual-stack IPv6 sockets here")
    command, args = COMMANDS["dcmrecv"]
    options = [*args, "--accept-from", "127.0.0.0/8", "-od", str(tmp_path)]
    with socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True) as listener:
        port = listener.getsockname()[1]
        with activated(command, options, listener.fileno(), tmp_path) as process:
            listener.close()
            result = send(port)
            assert result.returncode == 0, result.stderr
            process.send_signal(signal.SIGTERM)
            assert process.wait(TIMEOUT) == 0
            log = output_of(process)
    assert stored_uids(tmp_path) == UIDS
    assert f"(descriptor 3, :: port {port})" in log
    assert "Association summary: peer 127.0.0.1:" in log
