"""``storescp --inetd``: the connection is moved off descriptors 0-2 before anything is printed.

Under inetd (and systemd's ``Accept=yes`` with ``StandardInput=socket``) standard
input, output and error are all the DICOM connection.  A byte written to any of them
(a command line error, a warning, a traceback) reaches the peer as the start of a
PDU: DCMTK's storescu then reports "Unrecognized PDU type".  storescp.cc therefore
moves them first, before it reads its other options; we do the same at the top of
``main`` (:func:`protect_connection`), so that nothing but DICOM ever reaches the
connection: command line errors found later go to the ``--log-config`` log when it
is set up (:func:`report`), else nowhere, as in DCMTK.

Whether ``--inetd`` is asked for is decided from the whole command line (``@file``
words included) with storescp's own parser (``storescp.wants_inetd``), so a value such as
``-aet -id`` is not taken for the option; a command line that does not parse falls back
to DCMTK's test, any word spelled ``-id`` or ``--inetd``, and is refused later anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dcmrecv.logs.layout import BASE_LOGGER


@dataclass(frozen=True)
class Taken:
    """What :func:`protect_connection` did: the connection's new descriptor, or why
    there is none (standard input closed: storescp.cc's exit code 99, reported once
    the log is set up)."""

    connection: int | None
    error: OSError | None


_taken: Taken | None = None


def protect_connection(wanted: bool) -> None:
    """With ``--inetd`` (``wanted``): keep the connection on a new descriptor and point
    0-2 at ``/dev/null`` (:func:`dcmrecv.wire.inherited.take_inetd_connection`).  Call
    it first in ``main``, before anything can print."""
    global _taken
    if _taken is not None or not wanted:
        return
    from dcmrecv.wire import inherited

    try:
        _taken = Taken(inherited.take_inetd_connection(), None)
    except OSError as exc:
        _taken = Taken(None, exc)


def connection() -> int:
    """The connection taken at the start (taken now if it was not); OSError when
    standard input was closed."""
    global _taken
    if _taken is None:
        from dcmrecv.wire import inherited

        _taken = Taken(inherited.take_inetd_connection(), None)
    if _taken.error is not None:
        raise _taken.error
    assert _taken.connection is not None
    return _taken.connection


def report(message: str) -> bool:
    """Log a command line error when descriptors 0-2 are no longer the terminal (they
    are ``/dev/null``): True when it was logged, so the caller prints nothing."""
    if _taken is None or _taken.connection is None:
        return False
    logging.getLogger(BASE_LOGGER).critical("error: %s", message)
    return True
