"""Where each received instance goes: every file-name strategy behind one interface.

The writer asks a :class:`Namer` for a :class:`PathPlan` once the instance is
complete and its facts are known, and asks again when the name is taken by another
instance (the plan does not identify the instance: ``+fu``, ``+fsu``, ``+fst``,
storescp's ``+uf``/``-tn``).  A plan that identifies it (``+fd``, a template,
storescp's default) is a duplicate instead, which ``--on-duplicate`` decides; its
``rename`` copies are named by :meth:`Namer.copy`.

* :class:`DcmrecvNamer`: DCMTK dcmrecv's schemes (dcmrecv.man, "filename
  generation", "subdirectory generation"), via the pure ``naming.plan_path``.
* :class:`TemplateNamer`: ``--output-template`` (``placement.template_plan``).
* :class:`StorescpNamer`: DCMTK storescp's names and study subdirectories
  (storescp.man, "sorting into subdirectories", "filename generation").

Peer values are made safe and distinct by the pure functions they call
(``naming.sanitize_uid``, the template's renderer); nothing here touches the disk
but ``StorescpNamer``'s look whether a time-stamped study directory exists.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final, Protocol

from dcmrecv.storage import sorting
from dcmrecv.storage.model import (
    FilenameMode,
    InstanceFacts,
    PathPlan,
    PlanError,
    StorageOptions,
)
from dcmrecv.storage.naming import (
    UNKNOWN_MODALITY,
    plan_path,
    sanitize_uid,
    short_unique_name,
    uuid_uid,
)
from dcmrecv.storage.placement import Arrival, renamed, template_plan, template_values
from dcmrecv.storage.sorting import SortMode
from dcmrecv.storage.template import Template

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: How many later milliseconds a time-stamped study directory may move to.
_MAX_NAME_BUMPS: Final = 1000
_MILLISECOND: Final = timedelta(milliseconds=1)
#: Explicit VR Big Endian: its binary values read big-endian in templates.
_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"


class Namer(Protocol):
    """Names instances (called in the association's thread; thread-safe)."""

    def plan(self, facts: InstanceFacts, taken: PathPlan | None = None) -> PathPlan:
        """Where ``facts``' instance goes; ``taken`` is a plan whose name was taken.
        Raises PlanError when no name can be made (the instance is refused, 0xC000)."""
        ...

    def copy(self, plan: PathPlan, number: int) -> PathPlan:
        """``--on-duplicate rename``: the ``number``-th other copy of ``plan``."""
        ...

    def intended(self, facts: InstanceFacts) -> str | None:
        """Where a refused instance would have gone, for storescp's ``-xcr`` (no effects)."""
        ...


class _Copies:
    def copy(self, plan: PathPlan, number: int) -> PathPlan:
        return PathPlan(plan.directory, renamed(plan.filename, number), replace_existing=False)

    def intended(self, facts: InstanceFacts) -> str | None:
        return None


class DcmrecvNamer(_Copies):
    """DCMTK dcmrecv's names: ``-s``/``+ssd`` and ``+fd``/``+fu``/``+fsu``/``+fst``."""

    def __init__(self, options: StorageOptions, clock: Clock = datetime.now) -> None:
        self.options = options
        self.clock = clock
        #: DCMTK's +fsu names start with the time its name generator was made.
        self.started = int(time.time())

    def plan(self, facts: InstanceFacts, taken: PathPlan | None = None) -> PathPlan:
        options = self.options
        mode = options.filename_mode
        summary = facts.summary
        return plan_path(
            subdirectory=options.subdirectory,
            filename_mode=mode,
            extension=options.filename_extension,
            sop_instance_uid=facts.sop_instance_uid,
            modality=facts.modality,
            series_date=summary.series_date if summary is not None else None,
            now=self.clock(),
            new_uid=uuid_uid(uuid.uuid4().int) if mode is FilenameMode.UNIQUE else None,
            short_name=(
                short_unique_name(self.started, secrets.randbits(32))
                if mode is FilenameMode.SHORT_UNIQUE
                else None
            ),
        )


class TemplateNamer(_Copies):
    """``--output-template``: a path from the data set's attributes and the arrival."""

    def __init__(self, template: Template, fallback: str) -> None:
        self.template = template
        self.fallback = fallback

    def plan(self, facts: InstanceFacts, taken: PathPlan | None = None) -> PathPlan:
        template = self.template
        arrival = Arrival(
            calling_aetitle=facts.calling_aetitle,
            called_aetitle=facts.called_aetitle,
            peer_address=facts.peer_address,
            received=facts.received or datetime.now(),
            prefix=facts.modality or UNKNOWN_MODALITY,
            unique_name=uuid_uid(uuid.uuid4().int) if template.uses("UniqueName") else "",
        )
        values = template_values(
            template,
            facts.summary,
            arrival,
            little_endian=facts.transfer_syntax_uid != _BIG_ENDIAN,
        )
        return template_plan(template, values, self.fallback)


class StorescpNamer(_Copies):
    """DCMTK storescp's names (``-uf``/``+uf``/``-tn``, ``-fe``) and study subdirectories
    (``-ss``/``-su``/``-sp``), one per study until the study ends (``end_study``).

    Differences from DCMTK, on purpose: a time-stamped study directory (``-ss``,
    ``-sp``) that exists already, because another study started in the same
    millisecond, moves to the next free millisecond (DCMTK puts both studies into one
    directory).
    """

    def __init__(
        self,
        root: str,
        naming_sort_mode: SortMode,
        sort_prefix: str,
        *,
        unique_filenames: bool,
        time_names: bool,
        extension: str,
        clock: Clock = datetime.now,
    ) -> None:
        #: The output directory as storescp prints it ("." or the -od value).
        self.root = root
        self.sort_mode = naming_sort_mode
        self.sort_prefix = sort_prefix
        self.unique_filenames = unique_filenames
        self.time_names = time_names
        self.extension = extension
        self.clock = clock
        self._lock = threading.Lock()
        #: Study Instance UID -> its subdirectory, while the study lasts.
        self._directories: dict[str, str] = {}
        self._last_name: str | None = None
        self._time_counter = -1

    def plan(self, facts: InstanceFacts, taken: PathPlan | None = None) -> PathPlan:
        now = self.clock()
        modality = facts.modality or UNKNOWN_MODALITY
        directory: tuple[str, ...] = ()
        if self.sort_mode is not SortMode.NONE:
            directory = (self._study_directory(facts, now),)
        if self.unique_filenames:
            name = f"{modality}.X.{uuid_uid(uuid.uuid4().int)}{self.extension}"
            return PathPlan(directory, name, replace_existing=False)
        if self.time_names:
            with self._lock:
                last = taken.filename if taken is not None else self._last_name
                chosen = sorting.time_name(now, modality, self.extension, last, self._time_counter)
                self._time_counter = chosen.counter
                self._last_name = chosen.name
            return PathPlan(directory, chosen.name, replace_existing=False)
        uid = sanitize_uid(facts.sop_instance_uid)
        if not uid:
            raise PlanError("SOP Instance UID is empty")
        name = f"{modality}.{uid}{self.extension}"
        if len(name.encode("utf-8", "surrogateescape")) > 255:
            raise PlanError("file name would be longer than 255 bytes")
        return PathPlan(directory, name, replace_existing=True)

    def intended(self, facts: InstanceFacts) -> str | None:
        """DCMTK names the file before it writes it and gives that name to ``-xcr``
        even when writing failed (storescp.cc, storeSCPCallback()).  We name it after
        converting, so it is worked out here the same way, without taking a
        ``--timenames`` serial number or opening a study directory."""
        directory = self.root
        if self.sort_mode is not SortMode.NONE and facts.summary is not None:
            uid = sorting.first_value(facts.summary.study_instance_uid)
            with self._lock:
                known = self._directories.get(uid)
            if known is not None:
                directory = os.path.join(self.root, known)
        modality = facts.modality or UNKNOWN_MODALITY
        if self.unique_filenames:
            name = f"{modality}.X.{uuid_uid(uuid.uuid4().int)}{self.extension}"
        elif self.time_names:
            with self._lock:
                chosen = sorting.time_name(
                    self.clock(), modality, self.extension, self._last_name, self._time_counter
                )
            name = chosen.name
        else:
            name = f"{modality}.{sanitize_uid(facts.sop_instance_uid)}{self.extension}"
        return os.path.join(directory, name)

    def end_study(self, study_instance_uid: str) -> None:
        """The study has ended: its next instance starts a new subdirectory (DCMTK)."""
        with self._lock:
            self._directories.pop(sorting.first_value(study_instance_uid), None)

    def _study_directory(self, facts: InstanceFacts, now: datetime) -> str:
        summary = facts.summary
        study_uid = sorting.first_value(summary.study_instance_uid if summary else None)
        if not study_uid:
            log.error("element StudyInstanceUID (0020,000d) absent or empty in data set")
            raise PlanError("Study Instance UID absent or empty")
        with self._lock:
            directory = self._directories.get(study_uid)
            if directory is None:
                directory = self._new_study(study_uid, facts, now)
                self._directories[study_uid] = directory
            return directory

    def _new_study(self, study_uid: str, facts: InstanceFacts, now: datetime) -> str:
        raw_name: bytes | None = None
        summary = facts.summary
        if self.sort_mode is SortMode.PATIENT_NAME:
            text = sorting.first_value(summary.patient_name if summary else None)
            raw_name = text.encode("latin-1", "replace")
            if not raw_name:
                log.warning(
                    "element PatientName (0010,0010) absent or empty in data set, using '%s'"
                    " instead",
                    sorting.ANONYMOUS,
                )
            elif sorting.needs_charset_warning(
                raw_name, summary.specific_character_set if summary else None
            ):
                charset = summary.specific_character_set if summary else ""
                log.warning(
                    "Patient name not in Latin-1 (charset: %s), ASCII dir name may be broken",
                    charset,
                )
        in_use = set(self._directories.values())
        for _attempt in range(_MAX_NAME_BUMPS):
            try:
                name = sorting.study_directory(
                    self.sort_mode,
                    self.sort_prefix,
                    study_instance_uid=study_uid,
                    patient_name=raw_name,
                    now=now,
                )
            except sorting.SortError as exc:
                log.error("%s", exc)
                raise PlanError(str(exc)) from None
            shown = os.path.join(self.root, name)
            if self.sort_mode is SortMode.STUDY_UID or not (
                name in in_use or os.path.lexists(shown)
            ):
                break
            # Two studies starting in the same millisecond: DCMTK puts both into one
            # directory; the next millisecond keeps them apart.
            now += _MILLISECOND
        if os.path.isdir(shown):
            log.info("using existing subdirectory for study: %s", shown)
        else:
            log.info("created new subdirectory for study: %s", shown)
        # A new directory cannot hold a name of the last one: DCMTK restarts the
        # --timenames serial numbers here.
        self._time_counter = -1
        return name


def namer_for(options: StorageOptions, clock: Clock = datetime.now) -> Namer:
    """dcmrecv's namer for ``options``: the template's, or DCMTK's schemes."""
    template = options.output_template
    if template is not None:
        return TemplateNamer(template, options.template_fallback)
    return DcmrecvNamer(options, clock)
