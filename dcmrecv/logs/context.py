"""Which association a log record belongs to.

The association's thread sets its serial number here while it runs, so any log
record made in that thread (by the wire, the storage layer or a hook) can carry
it: ``--log-format json`` writes it as ``"association": N``.  A context variable,
not a logging adapter, so code that logs needs to know nothing about it.
"""

from __future__ import annotations

import contextvars

#: The serial of the association served by the current thread; None outside one.
association_serial: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "association_serial", default=None
)
