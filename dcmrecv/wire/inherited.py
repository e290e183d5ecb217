"""Sockets a super server hands us: inetd's connection, systemd's listening socket.

inetd (``storescp --inetd``; storescp.man, "Running storescp from inetd") accepts
the connection itself and starts one storescp per connection, the socket on
standard input, output and error.  DCMTK's storescp keeps a duplicate of standard
input as its socket and points descriptors 0, 1 and 2 at ``/dev/null``, so that no
message or log line is ever written into the DICOM connection; logging then goes
only where a ``--log-config`` file sends it.  :func:`take_inetd_connection` does
the same, :func:`connected_socket` checks what was handed over.

systemd socket activation (sd_listen_fds(3)) binds the port itself, before the
service runs, and passes the listening socket as descriptor 3
(``SD_LISTEN_FDS_START``), announced by ``LISTEN_PID`` (the process meant) and
``LISTEN_FDS`` (how many).  :func:`listen_fds` reads the announcement (pure);
:func:`activated_listener` takes the socket, unsets the variables so the hooks we
start do not take them as meant for themselves, and checks that descriptor 3 really
is a listening TCP socket.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Mapping, MutableMapping

#: sd_listen_fds(3): the first passed descriptor; the others follow it.
SD_LISTEN_FDS_START = 3
#: The variables systemd sets for an activated service (sd_listen_fds(3)).
ACTIVATION_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

_FAMILIES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


def listen_fds(environ: Mapping[str, str], pid: int) -> int:
    """How many listening sockets systemd passed to process ``pid``, from descriptor 3 on.

    0 when ``LISTEN_PID`` is not set or names another process (the variables were
    meant for a parent, which left them behind).  A malformed value raises
    ValueError with the reason, as sd_listen_fds(3) returns -EINVAL then.
    """
    listen_pid = environ.get("LISTEN_PID")
    if listen_pid is None:
        return 0
    if not listen_pid.isdigit() or int(listen_pid) <= 0:
        raise ValueError(f"LISTEN_PID is not a process ID: {listen_pid!r}")
    if int(listen_pid) != pid:
        return 0
    count = environ.get("LISTEN_FDS", "")
    if not count.isdigit() or int(count) <= 0:
        raise ValueError(f"LISTEN_FDS is not a positive number: {count!r}")
    return int(count)


def activated_listener(
    environ: MutableMapping[str, str], pid: int
) -> tuple[socket.socket, int] | None:
    """systemd's listening socket and the number of sockets it passed, or None.

    The activation variables are removed from ``environ`` (``os.environ``: the
    process environment) whatever they say, as ``sd_listen_fds(1)`` does.  Raises
    OSError with a message that names the problem when the variables are malformed
    or descriptor 3 is not a listening TCP socket.
    """
    try:
        count = listen_fds(environ, pid)
    except ValueError as exc:
        raise OSError(errno.EINVAL, f"socket activation: {exc}") from None
    finally:
        for name in ACTIVATION_VARIABLES:
            environ.pop(name, None)
    if count == 0:
        return None
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        # sd_listen_fds(3) sets FD_CLOEXEC: the hooks we start must not hold the port.
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass  # a missing descriptor is reported below, if it is the one we use
    return listening_socket(SD_LISTEN_FDS_START), count


def listening_socket(fd: int) -> socket.socket:
    """The listening TCP socket on descriptor ``fd``, non-blocking; OSError otherwise.

    A descriptor that is not what we need is left open: it is not ours to close.
    """
    where = f"descriptor {fd} passed by systemd (LISTEN_FDS)"
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise OSError(exc.errno, f"{where} is not a socket: {exc.strerror or exc}") from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 0
    except OSError:
        listening = False
    if sock.type != socket.SOCK_STREAM or sock.family not in _FAMILIES:
        sock.detach()
        raise OSError(
            errno.EINVAL, f"{where} is not a TCP socket: the .socket unit needs ListenStream="
        )
    if not listening:
        sock.detach()
        raise OSError(
            errno.EINVAL,
            f"{where} is a connection, not a listening socket: with Accept=yes systemd"
            " starts a process per connection, which is storescp --inetd",
        )
    sock.setblocking(False)
    return sock


def unmapped(host: str) -> str:
    """An IPv4-mapped IPv6 address (``::ffff:10.1.2.3``) as the IPv4 address it maps.

    systemd's ``ListenStream=104`` is one IPv6 socket that takes IPv4 connections too
    (BindIPv6Only=default); their peers must still match ``--accept-from 10.0.0.0/8``,
    count as the same host, and be logged as DCMTK logs them.
    """
    if not host.lower().startswith("::ffff:"):
        return host
    try:
        mapped = ipaddress.IPv6Address(host).ipv4_mapped
    except ValueError:
        return host
    return str(mapped) if mapped is not None else host


def take_inetd_connection() -> int:
    """Keep inetd's connection (standard input) on a new descriptor, returned, and
    point standard input, output and error at ``/dev/null``, as storescp.cc does.

    The new descriptor is not inherited by the programs we start (``os.dup``), so a
    hook cannot hold the connection open.  OSError when standard input is closed.
    """
    connection = os.dup(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != null:
            os.dup2(null, fd)
    if null > 2:
        os.close(null)
    return connection


def connected_socket(fd: int) -> tuple[socket.socket, tuple[str, int]]:
    """The connected TCP socket on descriptor ``fd`` and its peer's address.

    OSError, with the reason, when ``fd`` is not one (storescp started by hand with
    a file or terminal on standard input; DCMTK then reports that getpeername failed).
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise OSError(exc.errno, f"standard input is not a socket: {exc.strerror or exc}") from None
    if sock.type != socket.SOCK_STREAM or sock.family not in _FAMILIES:
        sock.close()
        raise OSError(errno.EINVAL, "standard input is not a TCP connection")
    try:
        address = sock.getpeername()
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"standard input is not a connected socket: {exc.strerror or exc}"
        ) from None
    return sock, (str(address[0]), int(address[1]))
