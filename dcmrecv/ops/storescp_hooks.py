"""storescp's event options as a subscriber of the bus (storescp.man, "event options").

* ``--exec-on-reception c`` runs ``c`` after each stored object; ``--exec-on-eostudy
  c`` when a study has ended; ``--rename-on-eostudy`` renames the study's files to
  ``[2-letter kind][6-digit number]`` first; ``--eostudy-timeout t`` also ends a study
  after ``t`` seconds without an object of it; ``--exec-sync`` waits for the command.
* Placeholders ``#p`` (directory of the file / of the study), ``#f`` (file name),
  ``#a`` (calling AE title), ``#c`` (called AE title), ``#r`` (peer host).

Differences from DCMTK, on purpose:

* Commands run through ``/bin/sh -c`` as in DCMTK, but placeholders are not pasted
  into the shell's source: each becomes a quoted reference to a positional parameter
  and the values are passed beside the script (dcmrecv.ops.hook_command).  A value
  from the peer (AE title, host name, file name) is therefore always literal text
  to the shell that runs the hook; ``;``, ``|``, backquotes, ``$(...)``, quotes and
  newlines in it do nothing there.  (DCMTK wraps AE titles in double quotes and
  pastes them; current DCMTK also replaces unusual characters.)
* ``-xcr`` also runs after a C-STORE that failed, as in DCMTK; ``#p``/``#f`` then name
  where the file would have gone (DCMTK names the file it deleted).  DCMTK's hook does
  not run when the data set cannot be read (the DIMSE layer fails); ours does not run
  when the data set could not be read or did not match the request, because the
  file's name is not known then.
* End of study works with concurrent associations (ops/studies.py, EndRule.NEXT_STUDY).
* ``--rename-on-eostudy`` never replaces a file: a name that exists is skipped for
  the next number (DCMTK renames over it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Final

from dcmrecv import events
from dcmrecv.config import EventSettings
from dcmrecv.events import AssociationInfo, EventBus
from dcmrecv.ops.hook_command import HookCommand, compile_template
from dcmrecv.ops.process import run_command
from dcmrecv.ops.studies import EndRule, OpenStudy, StudyCompletion, StudyFile, StudyTracker
from dcmrecv.status import is_stored
from dcmrecv.storage import sorting
from dcmrecv.storage.namer import StorescpNamer
from dcmrecv.storage.sorting import SortMode

log = logging.getLogger(__name__)

#: How far --rename-on-eostudy looks for a free number before it gives up on a file.
_MAX_RENAME_SKIP: Final = 1000

Runner = Callable[[Sequence[str], bool], None]


class StorescpHooks:
    """``-xcr``, ``-xcs``, ``-rns`` and ``-tos`` of one ``storescp`` run (thread-safe)."""

    def __init__(
        self,
        events_settings: EventSettings,
        namer: StorescpNamer,
        *,
        runner: Runner = run_command,
    ) -> None:
        self.settings = events_settings
        self.namer = namer
        self._run = runner
        self._on_reception = _compiled(events_settings.exec_on_reception)
        self._on_eostudy = _compiled(events_settings.exec_on_eostudy)
        #: Studies are tracked only when they are sorted into directories (storescp.cc).
        self._studies: StudyCompletion | None = None
        if namer.sort_mode is not SortMode.NONE:
            tracker = StudyTracker(events_settings.eostudy_timeout, EndRule.NEXT_STUDY)
            self._studies = StudyCompletion(tracker, self._timed_out)

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(events.InstanceAnswered, self.instance_answered)
        bus.subscribe(events.AssociationEnded, self.association_ended)

    def start(self) -> None:
        if self._studies is not None:
            self._studies.start()

    def close(self) -> None:
        """Stop the end-of-study timer (open studies stay open, as when DCMTK stops)."""
        if self._studies is not None:
            self._studies.stop()

    def instance_answered(self, event: events.InstanceAnswered) -> None:
        """After every C-STORE whose data set went to storage, stored or not."""
        if not event.stored:
            return
        association = event.association
        stored = is_stored(event.status)
        values = _association_values(association)
        if event.log_path is not None:
            values["#p"], values["#f"] = os.path.split(event.log_path)
        elif not stored:
            if event.intended_path is None:
                # Unreadable or not the announced instance: no name to give (DCMTK does
                # not run the hook for an unreadable data set either).
                return
            values["#p"], values["#f"] = os.path.split(event.intended_path)
        ended: list[OpenStudy] = []
        if (
            stored
            and self._studies is not None
            and event.study_instance_uid
            and event.log_path is not None
        ):
            file = StudyFile(
                path=event.log_path,
                sop_class_uid=event.sop_class_uid,
                sop_instance_uid=event.sop_instance_uid,
                series_instance_uid=event.series_instance_uid,
                size=event.received_bytes,
                received="",
            )
            uid = sorting.first_value(event.study_instance_uid)
            ended = self._studies.add(uid, file, association)
        if self._on_reception is not None:
            self._run(self._on_reception.argv(values), self.settings.exec_sync)
        for study in ended:
            self._end_of_study(study, association)

    def association_ended(self, event: events.AssociationEnded) -> None:
        if self._studies is not None:
            self._studies.association_ended(event.association.serial)

    def _timed_out(self, study: OpenStudy) -> None:
        self._end_of_study(study, study.last_association)

    def _end_of_study(self, study: OpenStudy, association: AssociationInfo | None) -> None:
        """storescp's executeEndOfStudyEvents(): rename first, then run the command."""
        self.namer.end_study(study.study_instance_uid)
        directory = os.path.dirname(next(iter(study.files.values())).path)
        if self.settings.rename_on_eostudy:
            self._rename(study)
        if self._on_eostudy is not None:
            values = _association_values(association) if association else {}
            values["#p"] = directory
            self._run(self._on_eostudy.argv(values), self.settings.exec_sync)

    def _rename(self, study: OpenStudy) -> None:
        number = 1
        for file in study.files.values():
            directory, filename = os.path.split(file.path)
            prefix = sorting.renamed_prefix(filename, self.namer.time_names)
            for _skip in range(_MAX_RENAME_SKIP):
                new = os.path.join(directory, sorting.renamed_name(prefix, number))
                number += 1
                try:
                    # link() fails if the name exists: never replace another file.
                    os.link(file.path, new, follow_symlinks=False)
                except FileExistsError:
                    continue
                except OSError:
                    log.warning("cannot rename file '%s' to '%s'", file.path, new)
                    break
                os.unlink(file.path)
                break


def _association_values(association: AssociationInfo) -> dict[str, str]:
    return {
        "#a": association.calling_ae_title,
        "#c": association.called_ae_title,
        "#r": association.peer_host,
    }


def _compiled(template: str | None) -> HookCommand | None:
    return compile_template(template) if template is not None else None
