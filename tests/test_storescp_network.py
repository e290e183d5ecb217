"""storescp over the network: ours side by side with DCMTK's storescp, and our hooks.

Comparisons run both receivers as processes with the same options on free ports and
send the same files with DCMTK's storescu; time stamps and new UIDs in names are
masked, everything else must be equal.  Hook tests use a real program that records
the argument vector it was started with.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association

from dcmrecv.commands.storescp_syntaxes import network_transfer_syntaxes, storescp_profile
from dcmrecv.config import EventSettings, NamingSettings, ReceiverConfig, StorageMode
from dcmrecv.events import AssociationEnded, EventBus
from dcmrecv.ops.hook_command import PLACEHOLDERS
from dcmrecv.ops.process import run_command
from dcmrecv.ops.storescp_hooks import Runner, StorescpHooks
from dcmrecv.storage.convert import EncodingConverter, OutputEncoding, configure_pydicom
from dcmrecv.storage.namer import StorescpNamer
from dcmrecv.storage.sorting import SortMode
from dcmrecv.storage.writer import InstanceStore
from tests.conftest import require_tool, running_receiver, subscribed
from tests.helpers import files_under, pydicom_file
from tests.interop import receiver_process

LE, BE, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
OURS = [sys.executable, "-c", "from dcmrecv.commands.storescp import main; main()"]
RECORDER = (
    "import json, sys\n"
    "with open(sys.argv[1], 'a') as f:\n"
    "    f.write(json.dumps(sys.argv[2:]) + '\\n')\n"
)


FILES = [pydicom_file(n) for n in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")]


def storescu(port: int, files: Sequence[Path], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("storescu"), *extra, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TCP_NODELAY": "1"},
        check=False,
    )


def run_both(
    tmp_path: Path, options: Sequence[str], files: Sequence[Path] = FILES
) -> dict[str, Path]:
    """Run DCMTK's storescp and ours with ``options``, send ``files`` to each."""
    outputs = {}
    for name, command in (("dcmtk", [require_tool("storescp")]), ("ours", OURS)):
        workdir = tmp_path / name
        output = workdir / "out"
        output.mkdir(parents=True)
        with receiver_process(command, ["-v", *options, "-od", str(output)], workdir) as (
            port,
            _process,
        ):
            result = storescu(port, files)
            assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        outputs[name] = output
    return outputs


MASKS = [
    (re.compile(r"[0-9]{8}_[0-9]{9}"), "<date_time>"),  # -ss / -sp directories
    (re.compile(r"(^|/)[0-9]{17}(_[0-9]{4})?\."), r"\1<time>."),  # -tn names
    (re.compile(r"\.X\.[0-9.]+"), ".X.<uid>"),  # +uf names
]


def masked_tree(directory: Path) -> list[str]:
    names = []
    for relative in files_under(directory):
        for name_pattern, replacement in MASKS:
            relative = name_pattern.sub(replacement, relative)
        names.append(relative)
    return sorted(names)


@pytest.mark.dcmtk
@pytest.mark.parametrize(
    "options",
    [
        [],
        ["-fe", ".dcm"],
        ["-uf"],
        ["+uf"],
        ["+uf", "-fe", ".dcm"],
        ["-tn"],
        ["-ss", "pre"],
        ["-ss", ""],
        ["-su", "study"],
        ["-sp"],
        ["-sp", "-tn", "-fe", ".x"],
        ["-su", "", "-fe", ".dcm"],
    ],
    ids=lambda options: " ".join(options) or "defaults",
)
def test_names_and_sorting_match_dcmtk(tmp_path: Path, options: list[str]) -> None:
    outputs = run_both(tmp_path, options)
    assert masked_tree(outputs["ours"]) == masked_tree(outputs["dcmtk"])
    assert len(files_under(outputs["ours"])) == len(FILES)


@pytest.mark.dcmtk
def test_rename_on_end_of_study_matches_dcmtk(tmp_path: Path) -> None:
    # CT_small and MR_small are different studies: the MR ends the CT's study.
    outputs = run_both(tmp_path, ["-ss", "s", "-rns"], FILES[:2])
    assert masked_tree(outputs["ours"]) == masked_tree(outputs["dcmtk"])
    assert "s_<date_time>/CT000001" in masked_tree(outputs["ours"])


def describe(path: Path) -> tuple[str | None, bool, list[int], bytes | None]:
    """Transfer syntax (None without file meta), group lengths present, tags, pixels."""
    dataset = pydicom.dcmread(path, force=True)
    meta = getattr(dataset, "file_meta", None)
    syntax = (
        str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
    )
    present = list(dataset.keys())
    tags = sorted(int(tag) for tag in present if tag.element != 0 and tag.group != 0xFFFC)
    groups = any(tag.element == 0 for tag in present)
    pixels = dataset.get("PixelData")
    if syntax is None:
        dataset.file_meta = pydicom.dataset.FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = LE
    values = bytes(dataset.pixel_array.tobytes()) if pixels is not None else None
    return syntax, groups, tags, values


@pytest.mark.dcmtk
@pytest.mark.parametrize(
    "options",
    [
        ["+te"],
        ["+ti"],
        ["+tb"],
        ["+td"],
        ["-F"],
        ["-F", "+ti"],
        ["+g"],
        ["-g"],
        ["-e"],
        ["+td", "+cl", "1"],
    ],
    ids=" ".join,
)
def test_output_conversions_match_dcmtk(tmp_path: Path, options: list[str]) -> None:
    configure_pydicom(convert_un=False)
    outputs = run_both(tmp_path, options, [FILES[0], FILES[2]])
    ours, theirs = files_under(outputs["ours"]), files_under(outputs["dcmtk"])
    assert ours == theirs
    for relative in ours:
        mine = describe(outputs["ours"] / relative)
        other = describe(outputs["dcmtk"] / relative)
        assert mine == other, relative


def dumped_data_set(path: Path) -> list[str]:
    """dcmdump's lines for the data set of ``path`` (nested items included)."""
    done = subprocess.run(
        [require_tool("dcmdump"), "+L", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.splitlines()
    return lines[lines.index("# Dicom-Data-Set") + 1 :]


@pytest.mark.dcmtk
@pytest.mark.parametrize(
    ("options", "file_pad"),
    [
        (["+p", "64", "16"], 64),
        (["-g", "+p", "0", "8", "+ti"], 0),
        (["+p", "128", "32", "-e", "+tb"], 128),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else str(value),
)
def test_item_padding_matches_dcmtk(tmp_path: Path, options: list[str], file_pad: int) -> None:
    # rtplan has sequences three deep; every item gets its own padding element.
    outputs = run_both(tmp_path, options, [FILES[2]])
    (relative,) = files_under(outputs["ours"])
    mine = dumped_data_set(outputs["ours"] / relative)
    other = dumped_data_set(outputs["dcmtk"] / relative)
    assert sum("(fffc,fffc)" in line for line in mine) > 10
    if file_pad:
        # The last line is the file's padding: its size depends on the file meta
        # information, which differs (our Implementation Class UID and Version Name).
        assert mine[-1].startswith("(fffc,fffc)") and other[-1].startswith("(fffc,fffc)")
        mine, other = mine[:-1], other[:-1]
        for name in ("ours", "dcmtk"):
            assert (outputs[name] / relative).stat().st_size % file_pad == 0
    assert mine == other


@pytest.mark.dcmtk
def test_ignore_stores_nothing_like_dcmtk(tmp_path: Path) -> None:
    outputs = run_both(tmp_path, ["--ignore"])
    assert files_under(outputs["ours"]) == files_under(outputs["dcmtk"]) == []


def recorder(tmp_path: Path) -> tuple[str, Path]:
    """A command template prefix that appends its arguments (JSON) to a record file."""
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    record = tmp_path / "record.jsonl"
    prefix = " ".join(shlex.quote(part) for part in (sys.executable, str(script), str(record)))
    return prefix, record


def records(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.dcmtk
def test_exec_on_reception_arguments_match_dcmtk(tmp_path: Path) -> None:
    prefix, _ = recorder(tmp_path)
    results = {}
    for name, command in (("dcmtk", [require_tool("storescp")]), ("ours", OURS)):
        workdir = tmp_path / name
        output = workdir / "out"
        output.mkdir(parents=True)
        record = workdir / "record.jsonl"
        template = prefix.rsplit(" ", 1)[0] + " " + shlex.quote(str(record))
        options = ["-xs", "-xcr", f"{template} #p #f #a #c #r", "-od", str(output)]
        with receiver_process(command, ["-dhl", *options], workdir) as (port, _process):
            assert storescu(port, FILES[:2], "-aet", "SENDER", "-aec", "RECEIVER").returncode == 0
        results[name] = [
            [value.replace(str(workdir), "<workdir>") for value in entry]
            for entry in records(record)
        ]
    assert results["ours"] == results["dcmtk"]
    assert results["ours"][0][2:] == ["SENDER", "RECEIVER", "127.0.0.1"]


# --- our hooks with hostile peers and concurrent studies (in-process receiver) ----------


def dataset(study: str, instance: str, name: str = "CT_small.dcm") -> Dataset:
    ds = copy.deepcopy(pydicom.dcmread(pydicom_file(name)))
    ds.StudyInstanceUID = study
    ds.SOPInstanceUID = instance
    return ds


def associate(port: int, calling: str, called: str = "STORESCP") -> Association:
    ae = AE(ae_title=calling)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", [LE])
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7", ["1.2.840.10008.1.2.4.50"])
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    return assoc


def store(assoc: Association, ds: Dataset) -> int:
    status = assoc.send_c_store(ds)
    return int(status.Status)


class EndedAssociations:
    """A subscriber that counts the associations that ended."""

    def __init__(self) -> None:
        self.ended = threading.Semaphore(0)

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(AssociationEnded, lambda _: self.ended.release())


class CommandLog:
    """A runner that records the placeholder values of each command instead of running it.

    ``argv`` is ``/bin/sh -c SCRIPT sh $1 .. $5``; a call is recorded as the values of
    the placeholders the template uses.
    """

    def __init__(self, *used: str) -> None:
        self.used = used
        self.calls: list[list[str]] = []
        self.changed = threading.Condition()

    def __call__(self, argv: Sequence[str], sync: bool) -> None:
        assert list(argv[:2]) == ["/bin/sh", "-c"]
        values = dict(zip(PLACEHOLDERS, argv[4:], strict=True))
        with self.changed:
            self.calls.append([values[name] for name in self.used])
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 15) -> list[list[str]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.calls) >= count, timeout)
            return list(self.calls)


@contextlib.contextmanager
def storescp_receiver(
    output: Path,
    naming: NamingSettings | None = None,
    events: EventSettings | None = None,
    *,
    encoding: OutputEncoding | None = None,
    runner: Runner = run_command,
    clock: Callable[[], datetime] = datetime.now,
    prefer: str | None = "--prefer-little",
    also: tuple[object, ...] = (),
    **settings: object,
) -> Iterator[object]:
    """Our receiver with storescp's naming, conversions and hooks, in this process."""
    naming = naming or NamingSettings()
    namer = StorescpNamer(
        str(output),
        naming.sort_mode,
        naming.sort_prefix,
        unique_filenames=naming.unique_filenames,
        time_names=naming.time_names,
        extension=naming.extension,
        clock=clock,
    )
    hooks = StorescpHooks(events or EventSettings(), namer, runner=runner)
    settings = {
        "output_directory": output,
        "aetitle": "STORESCP",
        "use_called_aetitle": False,
        "profile": storescp_profile(network_transfer_syntaxes(prefer)),
        **settings,
    }
    converter = EncodingConverter(encoding) if encoding is not None else None
    store = InstanceStore(ReceiverConfig(port=0, **settings), namer=namer, converter=converter)  # type: ignore[arg-type]
    hooks.start()
    try:
        with running_receiver(
            server_args={**subscribed(hooks, *also), "store": store}, **settings
        ) as server:
            yield server
    finally:
        hooks.close()


@pytest.mark.parametrize(
    ("calling", "called"),
    [("A;touch X", "B|touch W"), ("$(touch Y)", "`touch Z`"), ('Q"; touch V', "R' &&x")],
)
def test_hostile_ae_titles_reach_the_command_literally(
    tmp_path: Path, calling: str, called: str
) -> None:
    prefix, record = recorder(tmp_path)
    output = tmp_path / "out"
    output.mkdir()
    events = EventSettings(exec_on_reception=f"{prefix} #a #c #f", exec_sync=True)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a command run by a shell would create its files here
    try:
        with storescp_receiver(output, events=events) as server:
            assoc = associate(server.port, calling, called)  # type: ignore[attr-defined]
            assert store(assoc, dataset("1.2.3", "1.2.3.4")) == 0
            assoc.release()
    finally:
        os.chdir(cwd)
    assert records(record) == [[calling, called, "CT.1.2.3.4"]]
    leftovers = {p.name for p in tmp_path.iterdir()} - {"out", "record.py", "record.jsonl"}
    assert leftovers == set()


def test_end_of_study_with_two_concurrent_associations(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    commands = CommandLog("#p", "#a")
    session = EndedAssociations()
    with storescp_receiver(
        output,
        NamingSettings(sort_mode=SortMode.STUDY_UID, sort_prefix="s"),
        EventSettings(exec_on_eostudy="done #p #a", rename_on_eostudy=True, exec_sync=True),
        runner=commands,
        also=(session,),
    ) as server:
        port = server.port  # type: ignore[attr-defined]
        first = associate(port, "FIRST")
        second = associate(port, "SECOND")
        assert store(first, dataset("1.1", "1.1.1")) == 0
        assert store(second, dataset("2.2", "2.2.1")) == 0
        assert store(first, dataset("1.1", "1.1.2")) == 0
        # Both studies are still being sent: neither has ended.
        assert commands.calls == []
        first.release()
        assert session.ended.acquire(timeout=15)
        assert commands.calls == []  # DCMTK does not end a study at release either
        assert store(second, dataset("2.2", "2.2.2")) == 0
        calls = commands.wait_for(1)
        assert calls == [[str(output / "s_1.1"), "SECOND"]]
        second.release()
        assert session.ended.acquire(timeout=15)
    # Study 1 was renamed in order of reception; study 2 is still open, not renamed.
    assert sorted(p.name for p in (output / "s_1.1").iterdir()) == ["CT000001", "CT000002"]
    assert sorted(p.name for p in (output / "s_2.2").iterdir()) == ["CT.2.2.1", "CT.2.2.2"]
    assert commands.calls == calls


def test_end_of_study_timeout(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    commands = CommandLog("#p")
    with storescp_receiver(
        output,
        NamingSettings(sort_mode=SortMode.TIMESTAMP, sort_prefix="t"),
        EventSettings(exec_on_eostudy="eos #p", eostudy_timeout=0.2),
        runner=commands,
    ) as server:
        assoc = associate(server.port, "SCU")  # type: ignore[attr-defined]
        assert store(assoc, dataset("7.7", "7.7.1")) == 0
        calls = commands.wait_for(1)
        assoc.release()
    (directory,) = output.iterdir()
    assert calls == [[str(directory)]]
    assert re.fullmatch(r"t_[0-9]{8}_[0-9]{9}", directory.name)


def test_compressed_to_uncompressed_fails_and_stores_nothing(tmp_path: Path) -> None:
    configure_pydicom(convert_un=False)
    output = tmp_path / "out"
    output.mkdir()
    jpeg = pydicom.dcmread(pydicom_file("SC_jpeg_no_color_transform.dcm"))
    with storescp_receiver(
        output, encoding=OutputEncoding(transfer_syntax=LE), prefer="--prefer-jpeg8"
    ) as server:
        assoc = associate(server.port, "SCU")
        assert store(assoc, jpeg) == 0xA700
        assoc.release()
    assert list(output.iterdir()) == []


def test_ignore_runs_the_reception_hook_without_paths(tmp_path: Path) -> None:
    commands = CommandLog("#p", "#f", "#a")
    with storescp_receiver(
        tmp_path,
        events=EventSettings(exec_on_reception="got #p #f #a"),
        runner=commands,
        prefer=None,
        storage_mode=StorageMode.IGNORE,
    ) as server:
        assoc = associate(server.port, "SCU")
        assert store(assoc, dataset("1", "1.2")) == 0
        assoc.release()
    # storescp.man: #p and #f are "not available with option --ignore".
    assert commands.wait_for(1) == [["#p", "#f", "SCU"]]
    assert list(tmp_path.iterdir()) == []


def test_studies_starting_in_the_same_millisecond_get_their_own_directories(
    tmp_path: Path,
) -> None:
    fixed = datetime(2024, 1, 2, 3, 4, 5, 678000)
    with storescp_receiver(
        tmp_path, NamingSettings(sort_mode=SortMode.TIMESTAMP, sort_prefix="p"), clock=lambda: fixed
    ) as server:
        assoc = associate(server.port, "SCU")  # type: ignore[attr-defined]
        assert store(assoc, dataset("1.1", "1.1.1")) == 0
        assert store(assoc, dataset("2.2", "2.2.1")) == 0
        assoc.release()
    assert files_under(tmp_path) == [
        "p_20240102_030405678/CT.1.1.1",
        "p_20240102_030405679/CT.2.2.1",
    ]


def comparable(log: str) -> list[str]:
    """The I: lines of a -v log, with time stamps masked and the port probe dropped.

    DCMTK logs the readiness probe (a connection closed at once) as "Association
    Received"; we log "Connection from ...".  Whether DCMTK reports a study directory
    as "created" or "using existing" depends on two studies' milliseconds (see
    test_studies_starting_in_the_same_millisecond_get_their_own_directories).
    """
    lines = [line for line in log.splitlines() if line.startswith("I: ")]
    ours_only = ("I: Connection from ", "I: Association summary: ", "I: received SIGTERM")
    lines = [line for line in lines if not line.startswith(ours_only)]
    if lines[:2] == ["I: Association Received", "I: Association Received"]:
        lines = lines[1:]
    result = []
    for line in lines:
        line = re.sub(r"[0-9]{8}_[0-9]{9}", "<date_time>", line)
        line = line.replace("using existing subdirectory", "created new subdirectory")
        result.append(line)
    return result


@pytest.mark.dcmtk
@pytest.mark.parametrize("options", [[], ["-ss", "x"], ["+te", "-fe", ".dcm"]], ids=" ".join)
def test_verbose_log_lines_match_dcmtk(tmp_path: Path, options: list[str]) -> None:
    outputs = run_both(tmp_path, options)
    logs = {
        name: comparable((tmp_path / name / "receiver.log").read_text()).copy() for name in outputs
    }
    for name in logs:
        logs[name] = [line.replace(str(tmp_path / name), "<workdir>") for line in logs[name]]
    assert logs["ours"] == logs["dcmtk"]
    assert "I: Received Store Request (MsgID 1, CT)" in logs["ours"]
