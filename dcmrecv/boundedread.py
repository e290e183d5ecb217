"""Reading a configuration file with a size bound.

Four kinds of file configure the receiver: ``@file`` command files, the ``-xf``
association configuration, the ``-lc`` logger configuration and
``--accept-calling-file``.  Each is text a person writes, a few kilobytes long;
none may make the process read until memory runs out because its name points at
``/dev/zero``, a FIFO or a huge file by mistake.  So each is read with
:func:`read_bounded`, which reads at most ``limit + 1`` bytes and refuses the file
when that last byte arrives; every caller turns :class:`FileTooLarge` into its own
message and exit code.

It sits in the bottom layer, with nothing of this package imported, so the readers in
``negotiation``, ``logs`` and ``commands`` can all use it.
"""

from __future__ import annotations

import os
from typing import Final

#: The largest configuration file we read: far above any real one (DCMTK's
#: storescp.cfg with every SOP class is about 60 KB), far below harm.
MAX_CONFIG_FILE_SIZE: Final = 4 * 1024 * 1024


class FileTooLarge(ValueError):
    """A configuration file larger than the bound; ``str()`` says which and by how much."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(path, limit)
        self.path = path
        self.limit = limit

    def __str__(self) -> str:
        return f"larger than {describe_size(self.limit)}"


def describe_size(size: int) -> str:
    """``4 MiB`` for whole mebibytes, else bytes."""
    mebibyte = 1024 * 1024
    return f"{size // mebibyte} MiB" if size % mebibyte == 0 else f"{size} bytes"


def read_bounded(path: str | os.PathLike[str], limit: int = MAX_CONFIG_FILE_SIZE) -> bytes:
    """The bytes of the file at ``path``, or :class:`FileTooLarge` past ``limit`` bytes.

    Never reads more than ``limit + 1`` bytes, whatever the file is (a device, a pipe,
    a file that grows while we read).  OSError (missing, a directory, no permission)
    reaches the caller unchanged.
    """
    with open(path, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(os.fspath(path), limit)
    return data
