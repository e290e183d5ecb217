"""storescp's network test options as a policy the association consults.

DCMTK's storescp has options that make it misbehave on purpose, for testing
senders (storescp.man, "network options"): ``--sleep-after``, ``--sleep-during``,
``--abort-after``, ``--abort-during``.  (``--refuse`` and ``--reject`` decide the
association request and live in ``acceptance.decide``.)  They are not branches in
the receive loop: when none is given there is no policy at all, and the
association's data path does not look for one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from dcmrecv.config import ReceiverConfig


class AbortByOption(Exception):
    """``--abort-during``/``--abort-after``: end the association with an A-ABORT now."""


@dataclass(frozen=True)
class TestPolicy:
    """What storescp's test options ask for, in seconds and flags."""

    sleep_after_store: float = 0.0
    sleep_during_store: float = 0.0
    abort_after_store: bool = False
    abort_during_store: bool = False
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_config(cls, config: ReceiverConfig) -> TestPolicy | None:
        """The policy ``config`` asks for, or None when it asks for none."""
        policy = cls(
            config.sleep_after_store,
            config.sleep_during_store,
            config.abort_after_store,
            config.abort_during_store,
        )
        return policy if policy.active else None

    @property
    def active(self) -> bool:
        return bool(
            self.sleep_after_store
            or self.sleep_during_store
            or self.abort_after_store
            or self.abort_during_store
        )

    def data_fragment(self) -> None:
        """A data set fragment arrived (storescp.cc's storeSCPCallback, progress)."""
        if self.abort_during_store:
            raise AbortByOption
        if self.sleep_during_store:
            self.sleep(self.sleep_during_store)

    def data_set_complete(self) -> None:
        """The last fragment arrived, before the instance is stored."""
        if self.abort_during_store or self.abort_after_store:
            raise AbortByOption

    def stored(self) -> None:
        """The instance was stored (or refused), before the response."""
        if self.sleep_after_store:
            self.sleep(self.sleep_after_store)
