"""The receiver's event bus: typed notifications in, subscribers out.

The association publishes what happens (an association received, a C-STORE
requested, an instance answered, an association ended, ...) as small frozen
values; subscribers that never know each other act on them: DCMTK's log lines and
storescp's (``logs/dialects.py``), the metrics, the event log, the study tracker,
storescp's ``-xcr``/``-xcs`` hooks.  Adding a log dialect or a service is adding a
subscriber, not a branch in the receive loop.

One error policy for every subscriber: an exception in a handler is logged and the
association goes on.  One intervention point: before a C-STORE response is sent,
``veto`` asks the subscribers that registered for it (the event log, which must
record a Success before it is sent) whether the answer must become a failure; the
first :class:`Veto` wins.

Pure values, no I/O: the bus is below every layer that publishes or subscribes.
Subscriptions are made while the receiver is built, before any association runs;
publishing is then lock-free.  An event type nobody subscribed to costs one
dictionary look-up (``wants`` lets a publisher skip building the value at all).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)


# --- what the events carry -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssociationInfo:
    """Who an accepted association is with (AE titles as received)."""

    calling_ae_title: str
    called_ae_title: str
    peer_address: str
    #: The peer's host name as DCMTK prints it (the address with ``-dhl``).
    peer_host: str
    #: A number unique within this process, for grouping events and log lines.
    serial: int


# --- the receiver's lifecycle ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenerStarting:
    """The receiver is about to open its port (or serve inetd's connection)."""


@dataclass(frozen=True, slots=True)
class ListenFailed:
    """The port cannot be opened: the receiver exits (64 for dcmrecv)."""

    port: int
    reason: str


# --- association establishment (PS3.8 9.2) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssociationReceived:
    """An A-ASSOCIATE-RQ arrived; it is about to be accepted or rejected."""

    peer_host: str
    calling_ae_title: str
    called_ae_title: str


@dataclass(frozen=True, slots=True)
class AssociationRejected:
    """An A-ASSOCIATE-RJ is being sent; ``why`` is DCMTK's reason text."""

    peer_address: str
    why: str


@dataclass(frozen=True, slots=True)
class AssociationAccepted:
    """An A-ASSOCIATE-AC is being sent."""

    association: AssociationInfo
    #: DCMTK's "Max Send PDV" figure for the log line.
    max_send_pdv: int
    #: How many presentation contexts were accepted (storescp acknowledges none).
    accepted_contexts: int


# --- DIMSE messages (PS3.7) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EchoReceived:
    """A C-ECHO-RQ arrived; it is answered with Success."""

    association: AssociationInfo
    message_id: int


@dataclass(frozen=True, slots=True)
class StoreRequested:
    """A C-STORE-RQ arrived; its data set follows (PS3.7 9.1.1)."""

    association: AssociationInfo
    message_id: int
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class InstanceAnswered:
    """A C-STORE's data set has arrived and been dealt with; the response goes next.

    ``stored`` is whether the instance went to storage at all (False when it was
    refused before its data set, e.g. a SOP class that is not the context's).
    """

    association: AssociationInfo
    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    #: The DIMSE status about to be sent (PS3.4 B.2.3).
    status: int
    #: Why it failed, or what a Success had to do unlike the others (the log line).
    reason: str | None
    #: The Error Comment (0000,0902) sent with a failure.
    error_comment: str | None
    #: Data set bytes received.
    received_bytes: int
    #: Seconds from the last data set fragment to now (None: not stored).
    seconds: float | None
    stored: bool = False
    #: The file, as the output directory joined with the relative path.
    path: str | None = None
    #: ``path`` as DCMTK prints it ("./CT.1.2..." for ``-od .``).
    log_path: str | None = None
    #: An earlier file of the same name was replaced.
    overwritten: bool = False
    #: Where a refused instance would have gone (storescp's ``-xcr`` names it).
    intended_path: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None


@dataclass(frozen=True, slots=True)
class Veto:
    """A subscriber's answer instead of the status it was asked about."""

    status: int
    error_comment: str
    reason: str


# --- association end -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReleaseReceived:
    """The peer sent A-RELEASE-RQ; A-RELEASE-RP follows."""

    association: AssociationInfo


@dataclass(frozen=True, slots=True)
class AbortReceived:
    """The peer sent A-ABORT."""

    association: AssociationInfo


@dataclass(frozen=True, slots=True)
class AssociationEnded:
    """An accepted association is over, with its totals."""

    association: AssociationInfo
    instances: int
    failures: int
    received_bytes: int
    seconds: float
    #: False when released (A-RELEASE), True for an A-ABORT, a timeout or a lost link.
    aborted: bool
    #: The peer as DCMTK prints it in the summary ("address:port").
    peer: str = ""


# --- studies --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StudyCompleted:
    """A study is complete (``--eostudy-timeout``): its manifest, as JSON-ready data.

    ``followup`` is True when instances arrived after the study had completed once:
    the manifest then lists the whole study again (``study_updated``).
    """

    study_instance_uid: str
    manifest: dict[str, Any]
    followup: bool = False


@dataclass(frozen=True, slots=True)
class StudyOpenAtShutdown:
    """A study was still open when the receiver stopped."""

    study_instance_uid: str
    manifest: dict[str, Any]


# --- storage commitment (PS3.4 Annex J) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommitmentRequested:
    """An N-ACTION Request Storage Commitment was answered: ``status`` 0 accepted it
    (its report follows), any other refused it for ``reason``."""

    association: AssociationInfo
    #: "" when the request could not be read.
    transaction_uid: str
    instances: int
    status: int
    reason: str | None = None
    #: The Transaction UID had been requested before (its report fails every
    #: instance with reason 0131H).
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class CommitmentReported:
    """A transaction is over: its report was delivered, or delivery was given up."""

    transaction_uid: str
    #: The requester's AE title, where the report went.
    requester: str
    committed: int
    failed: int
    delivered: bool
    #: "requesting association" or "new association".
    via: str
    attempts: int
    #: Why it was given up.
    reason: str | None = None


# --- the bus -----------------------------------------------------------------------------------

E = TypeVar("E")
Handler = Callable[[Any], None]
VetoHandler = Callable[[Any], "Veto | None"]


class EventBus:
    """Subscribers by event type; ``publish`` calls them in subscription order."""

    def __init__(self) -> None:
        self._handlers: dict[type, tuple[Handler, ...]] = {}
        self._vetoes: dict[type, tuple[VetoHandler, ...]] = {}

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> None:
        self._handlers[event_type] = (*self._handlers.get(event_type, ()), handler)

    def subscribe_veto(self, event_type: type[E], handler: Callable[[E], Veto | None]) -> None:
        """``handler`` is asked before the answer to ``event`` is sent; a Veto replaces it."""
        self._vetoes[event_type] = (*self._vetoes.get(event_type, ()), handler)

    def wants(self, event_type: type) -> bool:
        """Whether anyone listens to ``event_type`` (so the publisher may skip it)."""
        return event_type in self._handlers or event_type in self._vetoes

    def vetoes(self, event_type: type) -> bool:
        """Whether a subscriber may veto ``event_type`` (else the publisher need not ask,
        and builds the event once, final)."""
        return event_type in self._vetoes

    def publish(self, event: object) -> None:
        """Tell every subscriber of ``event``'s type; a failing subscriber is logged."""
        for handler in self._handlers.get(type(event), ()):
            try:
                handler(event)
            except Exception:
                log.exception("subscriber %s failed on %s", _name(handler), type(event).__name__)

    def veto(self, event: object) -> Veto | None:
        """The first veto of ``event`` by its veto subscribers, or None."""
        for handler in self._vetoes.get(type(event), ()):
            try:
                answer = handler(event)
            except Exception:
                log.exception("subscriber %s failed on %s", _name(handler), type(event).__name__)
                continue
            if answer is not None:
                return answer
        return None


def _name(handler: Callable[..., object]) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)
