"""Memory of open studies (``--eostudy-timeout``): bytes per open study and per file.

``python3 -m benchmarks.study_memory`` adds 5000 studies of 10 files each to a
StudyTracker, with UIDs, paths and times as long as real ones, and reports what
tracemalloc counts.  The README's figures ("Operations") come from here.
"""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass

from dcmrecv.ops.eventlog import now_iso
from dcmrecv.ops.studies import StudyFile, StudyTracker

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class StudyMemory:
    studies: int
    files_per_study: int
    total_bytes: int
    #: An open study with its first file, less one file entry.
    per_study: float
    #: Each further file of a study.
    per_file: float


def _uid(*parts: int) -> str:
    return "1.2.826.0.1.3680043.10.999." + ".".join(map(str, parts))


def _file(study: int, number: int) -> StudyFile:
    sop = _uid(study, number % 2, number)
    series = _uid(study, number % 2)
    return StudyFile(f"/data/out/CT.{sop}", CT_IMAGE_STORAGE, sop, series, 500_000, now_iso())


def measure(studies: int = 5000, files_per_study: int = 10) -> StudyMemory:
    tracker = StudyTracker(3600)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for study in range(studies):
            tracker.add(_uid(study), _file(study, 0), "MODALITY01", time.monotonic())
        first = tracemalloc.get_traced_memory()[0]
        for study in range(studies):
            for number in range(1, files_per_study):
                tracker.add(_uid(study), _file(study, number), "MODALITY01", time.monotonic())
        full = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_file = (full - first) / max(studies * (files_per_study - 1), 1)
    return StudyMemory(
        studies, files_per_study, full - base, (first - base) / studies - per_file, per_file
    )


def main() -> None:
    result = measure()
    print(
        f"{result.studies} open studies x {result.files_per_study} files:"
        f" {result.total_bytes / 1e6:.1f} MB;"
        f" {result.per_study:.0f} bytes per study, {result.per_file:.0f} bytes per file"
    )


if __name__ == "__main__":
    main()
