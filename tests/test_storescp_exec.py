"""storescp's hooks over the network, with DCMTK's storescu as the sender.

DCMTK-style command lines (redirects, pipes, ``&&``, ``&``) run through /bin/sh in
both receivers, ours and DCMTK's storescp, with the same options: the files they
write must have the same contents.  Hostile AE titles are sent to ours only (DCMTK
3.6.7 runs them: ``-aet '$(touch x)'`` creates ``x``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.helpers import pydicom_file
from tests.interop import receiver_process
from tests.test_storescp_network import FILES, OURS, storescu

RECEIVERS = ("dcmtk", "ours")

#: A profile DCMTK 3.6.7 can read: SC images only in JPEG Baseline, CT uncompressed.
JPEG_PROFILE = """\
[[TransferSyntaxes]]
[JPEG]
TransferSyntax1 = JPEGBaseline
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = LittleEndianImplicit

[[PresentationContexts]]
[Contexts]
PresentationContext1 = SecondaryCaptureImageStorage\\JPEG
PresentationContext2 = CTImageStorage\\Uncompressed

[[Profiles]]
[JpegAndCT]
PresentationContexts = Contexts
"""


def run_hooks(
    tmp_path: Path,
    name: str,
    options: Sequence[str],
    files: Sequence[Path] = FILES[:2],
    sender: Sequence[str] = ("-aet", "SENDER", "-aec", "RECEIVER"),
) -> Path:
    """Run one receiver (in its own working directory) with ``options``; send ``files``."""
    command = [require_tool("storescp")] if name == "dcmtk" else OURS
    workdir = tmp_path / name
    (workdir / "out").mkdir(parents=True)
    (workdir / "jpeg.cfg").write_text(JPEG_PROFILE)
    with receiver_process(command, ["-dhl", "-xs", *options, "-od", "out"], workdir) as (
        port,
        _process,
    ):
        sent = storescu(port, files, *sender)
    # storescu exits non-zero when a C-STORE fails: only the -xf jpeg.cfg test wants that.
    assert (sent.returncode == 0) != ("jpeg.cfg" in options), sent.stdout + sent.stderr
    return workdir


def contents(workdir: Path, name: str) -> str:
    return (workdir / name).read_text() if (workdir / name).exists() else "<missing>"


def wait_for_lines(path: Path, count: int, timeout: float = 15) -> list[str]:
    """The lines of a file a background command (``&``) writes, once ``count`` are there."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


@pytest.mark.dcmtk
@pytest.mark.parametrize(
    ("template", "written"),
    [
        ("echo #a #c #f >> received.log", "received.log"),
        (
            "echo #p/#f | tr a-z. A-Z_ >> piped.log && test -f #p/#f && echo ok >> piped.log",
            "piped.log",
        ),
        ("cd #p && ls #f > listed.log 2>&1; echo $? >> listed.log", "out/listed.log"),
        ('X=#f; echo "got ${X%%.*} from #a" >> vars.log', "vars.log"),
        ("test -n #a || echo never >> neg.log; echo #r >> neg.log", "neg.log"),
    ],
    ids=["redirect", "pipe-and", "cd-status", "variables", "or"],
)
def test_shell_command_lines_write_what_dcmtk_writes(
    tmp_path: Path, template: str, written: str
) -> None:
    results = {}
    for name in RECEIVERS:
        workdir = run_hooks(tmp_path, name, ["-xcr", template])
        results[name] = contents(workdir, written)
    assert results["ours"] == results["dcmtk"]
    assert results["ours"].count("\n") >= 2  # one line per stored object at least


@pytest.mark.dcmtk
def test_background_command_runs_like_dcmtk(tmp_path: Path) -> None:
    results = {}
    for name in RECEIVERS:
        workdir = run_hooks(tmp_path, name, ["-xcr", "echo #f #a >> background.log &"])
        results[name] = sorted(wait_for_lines(workdir / "background.log", 2))
    assert results["ours"] == results["dcmtk"]
    assert len(results["ours"]) == 2


@pytest.mark.dcmtk
def test_end_of_study_command_line_matches_dcmtk(tmp_path: Path) -> None:
    # CT_small and MR_small are two studies: the MR ends the CT's study.
    template = "ls #p | wc -l > study.log && echo #a #c >> study.log"
    results = {}
    for name in RECEIVERS:
        workdir = run_hooks(tmp_path, name, ["-su", "s", "-xcs", template])
        results[name] = contents(workdir, "study.log")
    assert results["ours"] == results["dcmtk"]
    assert results["ours"].split() == ["1", "SENDER", "RECEIVER"]


@pytest.mark.dcmtk
def test_reception_hook_runs_after_a_failed_store_like_dcmtk(tmp_path: Path) -> None:
    # JPEG Baseline cannot be written as Explicit VR Little Endian by either receiver
    # (no decoder): the C-STORE fails, and -xcr still runs with the intended name.
    jpeg = pydicom_file("SC_jpeg_no_color_transform.dcm")
    results = {}
    for name in RECEIVERS:
        workdir = run_hooks(
            tmp_path,
            name,
            ["-xf", "jpeg.cfg", "JpegAndCT", "+te", "-xcr", "echo #p #f >> failed.log"],
            [jpeg],
            ["-xy"],
        )
        assert list((workdir / "out").iterdir()) == []
        results[name] = contents(workdir, "failed.log")
    assert results["ours"] == results["dcmtk"]
    assert results["ours"].startswith("out SC.1.2.276.")


HOSTILE_TITLES = [
    "$(touch pwn1)",
    "`touch pwn2`",
    ";touch pwn3",
    "a'b\"c;touch pwn4",
    "A\ntouch pwn5",
    "x&&touch pwn6",
]


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_hostile_ae_titles_from_storescu_are_never_run(tmp_path: Path, title: str) -> None:
    template = "printf '<%s>\\n' #a '#c' \"#a\" >> titles.log; echo #f >> titles.log"
    workdir = run_hooks(
        tmp_path,
        "ours",
        ["-xcr", template],
        FILES[:1],
        ["-aet", title, "-aec", "B|touch pwn9"],
    )
    lines = contents(workdir, "titles.log").split("\n")
    assert "\n".join(lines[:-2]) == f"<{title}>\n<B|touch pwn9>\n<{title}>"
    assert lines[-2].startswith("CT.")
    assert sorted(p.name for p in workdir.iterdir()) == [
        "jpeg.cfg",
        "out",
        "receiver.log",
        "titles.log",
    ]
