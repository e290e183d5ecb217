"""How storescp writes what it received (storescp.man, "output options"): plain values.

The configuration carries these and the converter (``convert.py``, pydicom) applies
them; they live apart so that reading a configuration never imports pydicom.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class GroupLength(enum.Enum):
    """``+g=`` / ``+g`` / ``-g`` (storescp.man, "group length encoding")."""

    RECALC = "recalc"
    CREATE = "create"
    REMOVE = "remove"


@dataclass(frozen=True)
class OutputEncoding:
    """How storescp writes what it received; the defaults keep the received bytes.

    ``transfer_syntax`` None is ``+t=`` (as received); ``reencode`` True means an
    option asked for a re-encoding (``+g``, ``-g``, ``+e``, ``-e``, ``+p``, ``-u``,
    ``+uc``, ``+cl``), even in the same transfer syntax.
    """

    transfer_syntax: str | None = None
    write_meta: bool = True
    group_length: GroupLength = GroupLength.RECALC
    undefined_lengths: bool = False
    file_padding: int = 0
    item_padding: int = 0
    new_vrs: bool = True
    compression_level: int = 6
    reencode: bool = False

    def target_syntax(self, received: str) -> str:
        return self.transfer_syntax or received

    def changes(self, received: str) -> bool:
        """Whether a file received in ``received`` must be written differently."""
        return self.reencode or not self.write_meta or self.target_syntax(received) != received

    def reencodes(self, received: str) -> bool:
        return self.reencode or self.target_syntax(received) != received
