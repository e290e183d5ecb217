"""Smoke tests for the benchmark's pure parts: data generation, parsers, table logic.

No timing here: the benchmark itself (``python3 -m benchmarks.run``) measures; these
tests only make sure what it sends is valid DICOM and what it reports adds up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from io import BytesIO
from pathlib import Path

import pydicom
import pydicom.filereader
import pytest
from pynetdicom.pdu import A_ASSOCIATE_RQ, P_DATA_TF

from benchmarks import (
    commands,
    cputime,
    data,
    datasets,
    disk,
    flushes,
    goals,
    idle,
    issue_rows,
    peers,
    plot,
    postgres,
    procs,
    profile,
    report,
    run,
    sender,
    startup,
    stats,
)
from benchmarks.run import OURS_DEFAULT, Tools, receiver_command, sender_command
from benchmarks.scenarios import FULL, QUICK, scenarios, select
from tests.conftest import require_tool


def test_series_instances_are_valid_ct_images_with_distinct_uids_and_pixels(tmp_path: Path) -> None:
    paths = data.write_series(tmp_path, data.SeriesSpec(count=3, rows=8, columns=6))

    datasets = [pydicom.dcmread(path) for path in paths]

    assert len({ds.SOPInstanceUID for ds in datasets}) == 3
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    for ds in datasets:
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert (ds.Rows, ds.Columns, len(ds.PixelData)) == (8, 6, 8 * 6 * 2)
    assert len({ds.PixelData for ds in datasets}) == 3


def test_ct_pixel_data_of_512_square_is_512_kib(tmp_path: Path) -> None:
    spec = data.SeriesSpec(count=1, rows=512, columns=512)
    (path,) = data.write_series(tmp_path, spec)
    assert len(pydicom.dcmread(path).PixelData) == 512 * 1024


def test_large_multiframe_is_streamed_into_a_readable_instance(tmp_path: Path) -> None:
    rows, columns = 4, 5
    frame_bytes = rows * columns * 2
    path = data.write_large_multiframe(
        tmp_path / "big.dcm", 3 * frame_bytes + 7, rows=rows, columns=columns
    )

    ds = pydicom.dcmread(path)

    assert ds.NumberOfFrames == 3
    assert (ds.Rows, ds.Columns) == (rows, columns)
    assert len(ds.PixelData) == 3 * frame_bytes
    # Frames differ: a receiver cannot deduplicate them.
    frames = [ds.PixelData[i * frame_bytes : (i + 1) * frame_bytes] for i in range(3)]
    assert len(set(frames)) == 3
    # Pixel Data is the last element: the file ends with it.
    assert path.read_bytes().endswith(ds.PixelData)


def test_pixel_data_length_must_be_even() -> None:
    with pytest.raises(ValueError, match="cannot be encoded"):
        data._pixel_data_header(3)


@pytest.mark.dcmtk
def test_dcmtk_reads_the_generated_instances(tmp_path: Path) -> None:
    dcmdump = require_tool("dcmdump")
    (ct,) = data.write_series(tmp_path / "ct", data.SeriesSpec(1, 16, 16))
    large = data.write_large_multiframe(tmp_path / "mf.dcm", 2 * 16 * 16 * 2, rows=16, columns=16)
    for path in (ct, large):
        result = subprocess.run(
            [dcmdump, "-q", "+E", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr


def test_split_into_spreads_files_over_sender_directories(tmp_path: Path) -> None:
    sources = []
    for index in range(5):
        source = tmp_path / "src" / f"f{index}"
        source.parent.mkdir(exist_ok=True)
        source.write_bytes(bytes([index]))
        sources.append(source)

    parts = data.split_into(sources, 2, tmp_path / "parts")

    names = [sorted(p.name for p in part.iterdir()) for part in parts]
    assert names == [["f0", "f2", "f4"], ["f1", "f3"]]


def test_square_side_fits_the_requested_pixel_bytes() -> None:
    assert data.square_side_for(512 * 1024) == 512
    assert data.square_side_for(512 * 1024 - 1) == 511


def test_associate_rq_decodes_as_a_verification_request() -> None:
    encoded = idle.associate_rq("DCMRECV", "IDLEBENCH", max_pdu=32768)

    pdu = A_ASSOCIATE_RQ()
    pdu.decode(encoded)

    assert pdu.called_ae_title == "DCMRECV"
    assert pdu.calling_ae_title == "IDLEBENCH"
    (context,) = pdu.presentation_context
    assert context.abstract_syntax == idle.VERIFICATION_SOP_CLASS
    assert context.transfer_syntax == [idle.IMPLICIT_VR_LITTLE_ENDIAN]
    assert pdu.user_information.maximum_length == 32768


def test_vmhwm_is_read_from_proc_status_text() -> None:
    text = "Name:\tdcmrecv\nVmPeak:\t  200000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 1000 kB\n"
    assert procs.parse_vmhwm_kib(text) == 12345
    assert procs.parse_vmhwm_kib("Name:\tx\n") is None


def test_cpu_ticks_count_from_the_last_parenthesis() -> None:
    # A command name with a space and a parenthesis must not shift the fields.
    fields = ["S", *(["0"] * 10), "70", "5", "99", "99"]
    stat = "4242 (a b) c) " + " ".join(fields) + "\n"
    assert procs.parse_cpu_ticks(stat) == 75


def test_median_ignores_one_slow_round() -> None:
    samples = stats.Samples()
    for value in (1.0, 9.0, 1.2):
        samples.add(stats.OURS, value)
    assert samples.median(stats.OURS) == 1.2
    assert samples.median(stats.DCMTK) is None


def test_ratio_and_goals() -> None:
    assert stats.ratio(1.0, 4.0) == 0.25
    assert stats.ratio(1.0, 0.0) is None
    assert stats.ratio(None, 1.0) is None
    at_most_one = stats.Goal(stats.RATIO_AT_MOST, 1.0)
    assert at_most_one.met(ours=5.0, ratio_value=0.9) is True
    assert at_most_one.met(ours=0.1, ratio_value=1.1) is False
    assert at_most_one.met(ours=0.1, ratio_value=None) is None
    rss = stats.Goal(stats.OURS_AT_MOST, 150.0)
    assert rss.met(ours=149.0, ratio_value=99.0) is True
    assert rss.met(ours=151.0, ratio_value=0.1) is False


def test_durability_cost_per_instance_in_ms() -> None:
    assert stats.per_instance_ms(3.0, 1.0, 200) == pytest.approx(10.0)
    assert stats.per_instance_ms(None, 1.0, 200) is None


def test_round_order_puts_each_variant_first_once() -> None:
    variants = ["a", "b", "c"]
    firsts = [stats.round_order(variants, r)[0] for r in range(3)]
    assert sorted(firsts) == variants
    assert all(sorted(stats.round_order(variants, r)) == variants for r in range(5))


def test_main_table_row_shows_values_ratio_and_verdict() -> None:
    row = stats.Row("CT", "s", 0.5, 0.25, stats.Goal(stats.RATIO_AT_MOST, 1.0))

    table = stats.main_table([row])

    header, rule, line = table.splitlines()
    assert header.count("|") == line.count("|") == rule.count("|") == 8
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells == ["CT", "0.500 s", "DCMTK dcmrecv", "0.250 s", "2.00", "<= 1", "**no**"]


def test_main_table_names_the_reference_and_says_when_a_scenario_could_not_run() -> None:
    concurrent = stats.Row(
        "concurrent",
        "s",
        0.7,
        1.0,
        stats.Goal(stats.RATIO_AT_MOST, 0.8),
        against=stats.LABELS[stats.STORESCP_FORK],
    )
    http = stats.Row("HTTP", "s", None, None, stats.INFO, missing="n/a (option not available)")

    lines = stats.main_table([concurrent, http]).splitlines()[2:]

    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert cells[0][2:] == ["DCMTK storescp --fork", "1.000 s", "0.70", "<= 0.8", "yes"]
    assert cells[1][1] == "n/a (option not available)"
    assert cells[1][-2:] == ["(no goal)", "n/a"]


def test_at_least_goal_is_met_from_the_limit_up() -> None:
    kept = stats.Goal(stats.OURS_AT_LEAST, 0.8)
    assert kept.met(ours=0.8, ratio_value=None) is True
    assert kept.met(ours=0.5, ratio_value=None) is False
    assert kept.describe("") == "ours >= 0.8"


def test_detail_table_reports_fsync_cost_and_floors() -> None:
    row = stats.DetailRow(
        "ct",
        100,
        {stats.OURS: 1.0, stats.OURS_DURABLE: 1.5, stats.DCMTK: 1.1, stats.DCMTK_IGNORE: 0.4},
        {stats.OURS: 40.0, stats.DCMTK: 20.0},
    )
    line = stats.detail_table([row]).splitlines()[2]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells == [
        "ct",
        "1.000 s",
        "1.500 s",
        "5.00 ms",
        "1.100 s",
        "0.91 / 1.36",
        "n/a",
        "0.400 s",
        "40 MB / 20 MB",
    ]


def _tools() -> Tools:
    return Tools(
        dcmrecv="/usr/bin/dcmrecv",
        storescu="/usr/bin/storescu",
        echoscu="/usr/bin/echoscu",
        ours=OURS_DEFAULT,
        stand_in=False,
        config=Path("/etc/dcmtk/storescp.cfg"),
    )


def test_receivers_compare_like_with_like() -> None:
    ct, tiny_defaults = (
        select(scenarios(FULL), ["ct"])[0],
        select(scenarios(FULL), ["tiny-defaults"])[0],
    )
    out = Path("/tmp/out")
    ours = receiver_command(_tools(), stats.OURS, ct, out, 1234)
    durable = receiver_command(_tools(), stats.OURS_DURABLE, ct, out, 1234)
    dcmtk = receiver_command(_tools(), stats.DCMTK, ct, out, 1234)
    floor = receiver_command(_tools(), stats.DCMTK_IGNORE, ct, out, 1234)

    assert "--no-fsync" in ours.argv and "--no-fsync" not in durable.argv
    assert dcmtk.argv == (
        "/usr/bin/dcmrecv",
        "-xf",
        "/etc/dcmtk/storescp.cfg",
        "Default",
        "-od",
        "/tmp/out",
        "1234",
    )
    assert floor.argv[-2:] == ("--ignore", "1234")
    assert ours.argv[-1] == "1234"
    assert dcmtk.env["TCP_NODELAY"] == "1"
    nagle = receiver_command(_tools(), stats.DCMTK, tiny_defaults, out, 1234)
    assert nagle.env["TCP_NODELAY"] is None
    assert "TCP_NODELAY" not in nagle.environment()


def test_max_pdu_scenario_sets_pdu_on_sender_and_receiver() -> None:
    (max_pdu,) = select(scenarios(FULL), ["max-pdu"])
    sender = sender_command(_tools(), max_pdu, Path("/data"), 1234)
    receiver = receiver_command(_tools(), stats.DCMTK, max_pdu, Path("/o"), 1234)
    assert sender.argv[sender.argv.index("-pdu") + 1] == "131072"
    assert receiver.argv[receiver.argv.index("-pdu") + 1] == "131072"


def test_quick_sizes_are_smaller_and_unknown_scenarios_are_refused() -> None:
    assert QUICK.tiny < FULL.tiny and QUICK.large_bytes < FULL.large_bytes
    assert [s.key for s in select(scenarios(FULL), ["idle", "ct"])] == ["ct", "idle"]
    with pytest.raises(ValueError, match="unknown scenario"):
        select(scenarios(FULL), ["nope"])


def test_folded_stacks_summarise_self_and_inclusive_samples() -> None:
    # Frames name files by absolute path, under wherever this checkout lives.
    repo = profile.REPO
    lines = [
        f"run ({repo}/dcmrecv/wire/server.py:10);recv (/x/lib/python3.11/socket.py:5) 6",
        f"run ({repo}/dcmrecv/wire/server.py:12);write ({repo}/dcmrecv/storage/naming.py:7) 3",
        f"run ({repo}/dcmrecv/wire/server.py:10) 1",
        "",
    ]

    result = profile.summarize_folded(lines)

    assert result.total == 10
    assert result.self_samples.most_common(1) == [("recv (socket.py)", 6)]
    assert result.self_samples["write (dcmrecv/storage/naming.py)"] == 3
    # Two lines of the same function count as one function, once per stack.
    assert result.inclusive_samples["run (dcmrecv/wire/server.py)"] == 10


# --- peers -------------------------------------------------------------------------


def _all_tools() -> Tools:
    return Tools(
        dcmrecv="/usr/bin/dcmrecv",
        storescu="/usr/bin/storescu",
        echoscu="/usr/bin/echoscu",
        ours=OURS_DEFAULT,
        stand_in=False,
        config=Path("/etc/dcmtk/storescp.cfg"),
        storescp="/usr/bin/storescp",
        pynetdicom=("python3", "-m", "pynetdicom", "storescp"),
        orthanc="/usr/sbin/Orthanc",
        strace="/usr/bin/strace",
        http_option=True,
    )


def test_peer_commands_store_into_the_run_directory_on_the_given_port() -> None:
    (concurrent,) = select(scenarios(FULL), ["concurrent"])
    (max_pdu,) = select(scenarios(FULL), ["max-pdu"])
    out = Path("/tmp/run/out")
    tools = _all_tools()

    fork = receiver_command(tools, stats.STORESCP_FORK, concurrent, out, 1234)
    plain = receiver_command(tools, stats.STORESCP, max_pdu, out, 1234)
    pynetdicom = receiver_command(tools, stats.PYNETDICOM, max_pdu, out, 1234)
    orthanc = receiver_command(tools, stats.ORTHANC, concurrent, out, 1234)

    assert fork.argv[0] == "/usr/bin/storescp" and "--fork" in fork.argv
    assert fork.argv[fork.argv.index("-od") + 1] == "/tmp/run/out" and fork.argv[-1] == "1234"
    assert "--fork" not in plain.argv and plain.argv[plain.argv.index("-pdu") + 1] == "131072"
    assert pynetdicom.argv[:4] == ("python3", "-m", "pynetdicom", "storescp")
    assert pynetdicom.argv[pynetdicom.argv.index("-od") + 1] == "/tmp/run/out"
    assert pynetdicom.argv[-1] == "1234"
    assert orthanc.argv == ("/usr/sbin/Orthanc", str(peers.orthanc_files(out)[0]))
    assert fork.env["TCP_NODELAY"] == "1"


def test_http_variant_adds_the_endpoint_to_the_like_for_like_receiver() -> None:
    (http,) = select(scenarios(FULL), ["http"])
    command = receiver_command(_all_tools(), stats.OURS_HTTP, http, Path("/o"), 1234)
    assert command.argv[-4:] == ("--no-fsync", "--http-port", "0", "1234")


def test_missing_peers_are_not_available_and_say_why() -> None:
    tools = _tools()
    assert not commands.available(tools, stats.ORTHANC)
    assert not commands.available(tools, stats.OURS_HTTP)
    assert commands.available(_all_tools(), stats.STORESCP_FORK)
    reasons = peers.PeerTools(None, None, None).missing()
    assert set(reasons) == {stats.STORESCP, stats.STORESCP_FORK, stats.PYNETDICOM, stats.ORTHANC}
    assert "orthanc" in reasons[stats.ORTHANC]


def test_orthanc_configuration_keeps_it_in_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "tiny-orthanc-0"
    out.mkdir()

    config_path = peers.write_orthanc_configuration(out, dicom_port=4001, http_port=4002)

    config = json.loads(config_path.read_text())
    assert config_path.parent == tmp_path
    assert config["StorageDirectory"] == str(out)
    assert Path(config["IndexDirectory"]).is_dir()
    assert Path(config["IndexDirectory"]) != out  # the index is not counted as instances
    assert (config["DicomPort"], config["HttpPort"]) == (4001, 4002)
    assert config["Plugins"] == []
    assert config["DicomAlwaysAllowStore"] is True
    assert config["DicomCheckCalledAet"] is False


def test_slow_peers_join_only_the_first_peer_rounds() -> None:
    (tiny,) = select(scenarios(FULL), ["tiny"])
    tools = _all_tools()

    first = run.round_variants(tools, tiny, FULL, 0, floors=True, with_peers=True)
    later = run.round_variants(tools, tiny, FULL, FULL.peer_rounds, floors=True, with_peers=True)
    without = run.round_variants(tools, tiny, FULL, 0, floors=False, with_peers=False)

    assert {stats.PYNETDICOM, stats.ORTHANC, stats.STORESCP} <= set(first)
    assert stats.STORESCP in later and stats.ORTHANC not in later
    assert stats.PYNETDICOM not in later
    assert sorted(without) == sorted([stats.OURS, stats.DCMTK, stats.OURS_DURABLE])


def test_subset_and_shares_link_the_same_files(tmp_path: Path) -> None:
    source = tmp_path / "series"
    paths = data.write_series(source, data.SeriesSpec(10, 4, 4))
    dataset = datasets.Dataset([source], len(paths))

    fifth = datasets.subset(dataset, 5, tmp_path / "fifth")
    dealt = datasets.shares(dataset, 4, tmp_path / "four")

    assert fifth.instances == 2 and datasets.count_files(tmp_path / "fifth") == 2
    assert datasets.subset(dataset, 1, tmp_path / "all") is dataset
    assert dealt.instances == 10 and len(dealt.directories) == 4
    assert sorted(len(list(d.iterdir())) for d in dealt.directories) == [2, 2, 3, 3]
    linked = next(dealt.directories[0].iterdir())
    assert linked.stat().st_ino == (source / linked.name).stat().st_ino
    assert dataset.megabytes == pytest.approx(sum(p.stat().st_size for p in paths) / 1e6)


def test_peer_table_compares_per_instance_and_marks_smaller_runs() -> None:
    row = stats.PeerRow(
        "tiny",
        {stats.OURS: 0.3, stats.DCMTK: 0.25, stats.ORTHANC: 30.0, stats.PYNETDICOM: None},
        {stats.OURS: 1000, stats.DCMTK: 1000, stats.ORTHANC: 200},
    )

    header, _, line = stats.peer_table([row]).splitlines()

    assert "Orthanc" in header and "DCMTK storescp --fork" not in header
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[0] == "tiny"
    assert cells[1] == "0.300 ms [1.00]"
    assert cells[2] == "0.250 ms [1.20]"
    assert cells[3] == "n/a"  # pynetdicom: run, no value
    assert cells[4] == "30.000 ms [0.010] n=200"


# --- flushes -------------------------------------------------------------------------

STRACE_SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 88.10    0.017898         127       140           fsync
 11.90    0.002417          40        60         2 fdatasync
------ ----------- ----------- --------- --------- ----------------
100.00    0.020315         101       200         2 total
"""


def test_strace_summary_gives_calls_per_system_call() -> None:
    assert flushes.parse_strace_summary(STRACE_SUMMARY) == {"fsync": 140, "fdatasync": 60}
    assert flushes.parse_strace_summary("") == {}


def test_strace_attaches_to_every_thread_and_counts_only_flushes() -> None:
    argv = flushes.strace_argv("/usr/bin/strace", 42, Path("/tmp/s.txt"))
    assert argv[:3] == ["/usr/bin/strace", "-f", "-c"]
    assert argv[-2:] == ["-p", "42"]
    traced = argv[argv.index("-e") + 1].removeprefix("trace=").split(",")
    assert {"fsync", "fdatasync", "sync_file_range", "syncfs"} <= set(traced)


def test_flush_rows_count_every_flush_call_per_instance() -> None:
    single = stats.FlushRow("1 sender", 200, {"fsync": 200, "fdatasync": 100}, 1.0)
    group = stats.FlushRow("8 senders", 400, {"fdatasync": 80, "mmap": 999}, 0.25)

    assert single.per_instance == 1.5 and single.met is False
    assert group.per_instance == 0.2 and group.met is True
    line = stats.flush_table([single]).splitlines()[2]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells == ["1 sender", "200", "200", "100", "0", "0", "1.50", "<= 1", "**no**"]


def test_strace_counts_the_fsyncs_of_a_process(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace not installed (Debian package strace)")
    # The child fsyncs three files when told to, then says so and waits to be ended.
    script = (
        "import os, sys\n"
        "sys.stdin.readline()\n"
        "for i in range(3):\n"
        f"    fd = os.open(os.path.join({str(tmp_path)!r}, str(i)), os.O_CREAT | os.O_WRONLY)\n"
        "    os.fsync(fd)\n"
        "    os.close(fd)\n"
        "print('done', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        with flushes.Strace(strace, child.pid, tmp_path) as traced:
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline() == "done\n"
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    assert traced.calls.get("fsync") == 3


# --- scale and held -----------------------------------------------------------------


def test_status_fields_and_parent_pid_from_proc_text() -> None:
    status = "Name:\tpython\nVmHWM:\t  900 kB\nVmRSS:\t  800 kB\nThreads:\t7\n"
    assert procs.parse_status_kib(status, "VmRSS") == 800
    assert procs.parse_threads(status) == 7
    assert procs.parse_threads("Name:\tx\n") is None
    assert procs.parse_ppid("4242 (a (b) c) S 17 4242 4242 0") == 17


def test_tree_memory_counts_shared_file_pages_once() -> None:
    parent = "VmRSS:\t 9000 kB\nRssAnon:\t 1000 kB\nRssFile:\t 8000 kB\nRssShmem:\t 0 kB\n"
    child = "VmRSS:\t 8500 kB\nRssAnon:\t  500 kB\nRssFile:\t 7900 kB\nRssShmem:\t 100 kB\n"
    assert procs.tree_memory_kib([parent]) == 9000
    assert procs.tree_memory_kib([parent, child, child]) == 1000 + 2 * 600 + 8000
    assert procs.tree_memory_kib([]) == 0


def test_descendants_follow_the_tree_from_the_root_only() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 21: 20}
    assert procs.descendants(parents, 10) == {10, 11, 12, 13}
    assert procs.descendants(parents, 99) == {99}


def test_tree_sampler_sums_a_process_and_its_children() -> None:
    script = "import subprocess; subprocess.run(['sleep', '30'])"
    # A session of its own: the whole tree is ended by one killpg.
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        sampler = procs.TreeSampler(parent.pid)
        deadline = time.monotonic() + 10
        sample = sampler.sample()
        while (sample is None or sample.processes < 2) and time.monotonic() < deadline:
            time.sleep(0.02)  # polling for the child to appear; no event to await
            sample = sampler.sample()
    finally:
        os.killpg(parent.pid, signal.SIGTERM)
        parent.wait(timeout=10)
    assert sample is not None
    assert sample.processes == 2
    assert sample.threads >= 2
    assert sample.rss_kib > 1000  # a Python interpreter and sleep, in KiB


def _point(variant: str, senders: int, seconds: float) -> stats.ScalePoint:
    return stats.ScalePoint(variant, senders, 1000, 128.0, seconds, 40.0, senders + 1, 1)


def test_throughput_kept_shows_a_collapse_at_many_senders() -> None:
    steady = [_point("a", n, s) for n, s in ((1, 1.0), (4, 0.5), (16, 0.5), (64, 0.55))]
    collapse = [_point("b", n, s) for n, s in ((1, 1.0), (4, 0.5), (16, 2.0), (64, 5.0))]

    assert stats.throughput_kept(steady + collapse, "a") == pytest.approx(0.5 / 0.55)
    assert stats.throughput_kept(steady + collapse, "b") == pytest.approx(0.1)
    assert stats.throughput_kept(steady, "nobody") is None


def test_scale_table_has_a_line_per_sender_count() -> None:
    points = [_point(stats.OURS, 1, 2.0), _point(stats.OURS, 64, 1.0)]
    points.append(stats.ScalePoint(stats.STORESCP_FORK, 64, 1000, 128.0, 4.0, 500.0, 65, 65))

    lines = stats.scale_table(points).splitlines()

    assert len(lines) == 4
    first = [cell.strip() for cell in lines[2].strip("|").split("|")]
    last = [cell.strip() for cell in lines[3].strip("|").split("|")]
    assert first == ["1", "500", "64", "40 MB", "2 (1)", "-", "-", "-", "-"]
    assert last == ["64", "1000", "128", "40 MB", "65 (1)", "250", "32", "500 MB", "65 (65)"]


def test_refused_connections_count_as_not_accepted() -> None:
    # A listener that closes every connection at once, as a receiver at its limit does.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def refuse() -> None:
            for _ in range(3):
                connection, _ = listener.accept()
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.close()  # linger 0: a reset, not a FIN

        refuser = threading.Thread(target=refuse, daemon=True)
        refuser.start()
        sockets, accepted = idle.open_associations(port, 3, settle=0.5)
        refuser.join(timeout=10)
        idle.close_associations(sockets)

    assert accepted == 0


def test_held_rows_fail_when_not_every_association_is_accepted() -> None:
    (held,) = select(scenarios(FULL), ["held"])
    rows = run._held_rows(held, [(stats.OURS, stats.HeldResult(1000, 512, 164.0, 513, 0.0, 4))])

    accepted = rows[0]
    assert accepted.met is False
    cells = stats.main_table([accepted]).splitlines()[2].strip("|").split("|")
    assert [cell.strip() for cell in cells][1] == "512"
    assert [cell.strip() for cell in cells][-2] == "ours >= 1000"


def test_held_table_shows_memory_threads_and_cpu() -> None:
    held = stats.HeldResult(1000, 1000, 95.5, 1001, 0.25, 4.0)
    line = stats.held_table([(stats.OURS, held)]).splitlines()[2]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells == ["ours --no-fsync", "1000", "1000", "96 MB", "1001", "0.25 % over 4.0 s"]


# --- the multi-association sender -----------------------------------------------------


def test_c_store_rq_decodes_as_a_store_request(tmp_path: Path) -> None:
    (path,) = data.write_series(tmp_path, data.SeriesSpec(1, 4, 4))
    instance = sender.read_instance(path)

    command = pydicom.filereader.read_dataset(
        BytesIO(sender.c_store_rq(7, instance)), is_implicit_VR=True, is_little_endian=True
    )

    written = pydicom.dcmread(path)
    assert command.CommandField == 0x0001 and command.MessageID == 7
    assert command.AffectedSOPClassUID == written.SOPClassUID
    assert command.AffectedSOPInstanceUID == written.SOPInstanceUID
    assert command.CommandDataSetType == 0x0000
    assert command.CommandGroupLength == len(sender.c_store_rq(7, instance)) - 12
    # The data set is what follows the file meta, in the file's transfer syntax.
    data_set = pydicom.filereader.read_dataset(
        BytesIO(instance.data_set), is_implicit_VR=False, is_little_endian=True
    )
    assert data_set.SOPInstanceUID == written.SOPInstanceUID


def test_data_set_is_cut_into_p_data_tf_within_the_max_pdu() -> None:
    payload = bytes(range(256)) * 100

    fragments = list(sender.pdus(3, 0, payload, max_pdu=4096))

    assert all(len(pdu) - 6 <= 4096 for pdu in fragments)
    decoded = []
    for raw in fragments:
        pdu = P_DATA_TF()
        pdu.decode(raw)
        (item,) = pdu.presentation_data_value_items
        assert item.context_id == 3
        decoded.append(item.data)
    # Message control header (PS3.8 E.2): data, and "last" only on the final fragment.
    assert [value[0] for value in decoded] == [0] * (len(fragments) - 1) + [2]
    assert b"".join(value[1:] for value in decoded) == payload


def test_associate_rq_proposes_each_sop_class_with_explicit_little_endian() -> None:
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(sender.associate_rq("DCMRECV", "BENCHSCU", ["1.2.3", "1.2.4"]))

    contexts = [(c.context_id, c.abstract_syntax) for c in pdu.presentation_context]
    assert contexts == [(1, "1.2.3"), (3, "1.2.4")]
    assert pdu.presentation_context[0].transfer_syntax == ["1.2.840.10008.1.2.1"]


def test_sender_outcome_is_read_from_its_last_json_line() -> None:
    text = 'warning: x\n{"seconds": 1.5, "stored": 9, "sent": 10}\n'
    assert sender.parse_outcome(text) == sender.Outcome(1.5, 9, 10)
    assert sender.parse_outcome("no json here") is None


@pytest.mark.dcmtk
def test_sender_stores_every_instance_over_concurrent_associations(tmp_path: Path) -> None:
    storescp = require_tool("storescp")
    echoscu = require_tool("echoscu")
    paths = data.write_series(tmp_path / "series", data.SeriesSpec(6, 64, 64))
    parts = data.split_into(paths, 3, tmp_path / "parts")
    out = tmp_path / "out"
    out.mkdir()

    def build(port: int) -> procs.Command:
        return procs.Command((storescp, "--fork", "-od", str(out), str(port)), {})

    # start_receiver tries another port when a parallel test took the first one.
    with procs.start_receiver(build, echoscu, tmp_path / "storescp.log") as receiver:
        stored = asyncio.run(
            sender.send_all(
                receiver.port,
                "DCMRECV",
                [[sender.read_instance(p) for p in sorted(part.iterdir())] for part in parts],
            )
        )

    assert stored == 6
    received = {pydicom.dcmread(p).SOPInstanceUID for p in out.iterdir()}
    assert received == {pydicom.dcmread(p).SOPInstanceUID for p in paths}


# --- report ---------------------------------------------------------------------------


def test_report_has_a_section_for_each_part_measured() -> None:
    text = report.document(
        rows=[],
        details=[],
        peers=[stats.PeerRow("tiny", {stats.OURS: 1.0}, {stats.OURS: 10})],
        flushes=[stats.FlushRow("1 sender", 10, {"fsync": 10}, 1.0)],
        scale=[_point(stats.OURS, 1, 1.0)],
        held=[(stats.OURS, stats.HeldResult(10, 10, 30.0, 11, 0.0, 1.0))],
        machine=[("CPUs", "2")],
        settings=[("load average (1 min) before / after", "0.50 / 0.60")],
        notes=["Orthanc skipped: not installed"],
    )
    for heading in (
        "## Every receiver, per instance",
        "## Device flushes",
        "## Scale: concurrent senders",
        "## Held associations",
        "## Notes",
    ):
        assert heading in text
    assert "load average (1 min) before / after: 0.50 / 0.60" in text


def test_chart_is_written_with_peers_and_scale(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = [stats.Row("CT: x", "s", 0.9, 1.0, stats.Goal(stats.RATIO_AT_MOST, 0.9))]
    rows.append(stats.Row("flushes: 1", "", 2.0, None, stats.Goal(stats.OURS_AT_MOST, 1.0)))
    peer_rows = [stats.PeerRow("ct", {stats.OURS: 0.5, stats.ORTHANC: 20.0}, {})]
    points = [_point(stats.OURS, n, 1.0) for n in (1, 4, 16, 64)]

    assert plot.plot_all(rows, peer_rows, points, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.dcmtk
def test_a_receiver_that_exits_before_ready_is_started_again_on_a_new_port(
    tmp_path: Path,
) -> None:
    storescp = require_tool("storescp")
    echoscu = require_tool("echoscu")
    ports: list[int] = []

    def build(port: int) -> procs.Command:
        ports.append(port)
        if len(ports) == 1:  # as if the port had been taken: exits at once
            return procs.Command(("false",), {})
        return procs.Command((storescp, "-od", str(tmp_path), str(port)), {})

    with procs.start_receiver(build, echoscu, tmp_path / "log") as receiver:
        assert receiver.port == ports[-1]
        assert receiver.process is not None and receiver.process.poll() is None

    assert len(ports) == 2


def test_connections_are_spread_over_loopback_source_addresses() -> None:
    sources = [idle.source_address(number)[0] for number in range(64)]
    assert sources[:16] == ["127.0.0.1"] * 16
    assert sources[16] == "127.0.0.2" and sources[-1] == "127.0.0.4"
    assert max(sources.count(address) for address in set(sources)) == idle.PER_SOURCE


# --- issue 21: receiver CPU, the disk's flush, start-up; issue 20: workers, state ----


def test_cpu_ticks_with_children_add_fields_14_to_17() -> None:
    # utime 70, stime 5, cutime 20, cstime 3; a name with a space and a parenthesis.
    fields = ["S", *(["0"] * 10), "70", "5", "20", "3", "99"]
    assert cputime.parse_cpu_ticks_with_children("4242 (a b) c) " + " ".join(fields)) == 98


def _stat(pid: int, parent: int, utime: int, cutime: int = 0) -> str:
    return f"{pid} (p) S {parent} " + " ".join(["0"] * 9 + [str(utime), "0", str(cutime), "0"])


def test_tree_ticks_sum_a_process_and_its_descendants_only() -> None:
    stats_by_pid = {
        10: _stat(10, 1, 100, cutime=7),  # the receiver, with a reaped child's 7
        11: _stat(11, 10, 20),  # a live child
        12: _stat(12, 11, 3),  # its child
        20: _stat(20, 1, 500),  # somebody else
    }
    assert cputime.tree_ticks(stats_by_pid, 10) == 100 + 7 + 20 + 3
    assert cputime.tree_ticks(stats_by_pid, 99) == 0


def _burn(seconds: float) -> str:
    """Python source that uses at least ``seconds`` of CPU (its own process time)."""
    return f"import time\nwhile time.process_time() < {seconds}:\n    pass\n"


def test_tree_cpu_counts_a_child_that_exited_and_was_waited_for() -> None:
    # The parent starts a child that burns 0.3 s of CPU, waits for it, then says so.
    script = (
        "import subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {_burn(0.3)!r}], check=True)\n"
        "print('done', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        assert parent.stdout.readline() == "done\n"
        seconds = cputime.tree_cpu_seconds(parent.pid)
    finally:
        parent.stdin.close()
        parent.wait(timeout=30)
    # The child's 0.3 s is in the parent's cutime; the clock tick is 10 ms.
    assert seconds >= 0.3 - 0.01


def test_run_measured_gives_exit_code_and_cpu_of_the_process_and_its_children() -> None:
    script = (
        "import subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {_burn(0.2)!r}], check=True)\n"
        "print('out')\n"
        "sys.exit(3)\n"
    )
    measured = cputime.run_measured(procs.Command((sys.executable, "-c", script), {}))

    assert measured.returncode == 3
    assert measured.output == "out\n"
    assert measured.cpu >= 0.2
    assert measured.wall > 0


def test_flush_cost_is_measured_on_fresh_files_that_are_removed(tmp_path: Path) -> None:
    seconds = disk.fdatasync_seconds(tmp_path / "probe", 3)

    assert seconds > 0
    assert list((tmp_path / "probe").iterdir()) == []
    with pytest.raises(ValueError, match="at least 1"):
        disk.fdatasync_seconds(tmp_path, 0)


def test_cpu_rows_compare_ours_with_dcmtk_and_the_floors() -> None:
    (tiny,) = select(scenarios(FULL), ["tiny"])
    cpu = stats.Samples()
    for variant, value in (
        (stats.OURS, 0.36),
        (stats.DCMTK, 0.24),
        (stats.OURS_IGNORE, 0.13),
        (stats.DCMTK_IGNORE, 0.10),
    ):
        cpu.add(variant, value)

    main, floor = issue_rows.cpu_rows(tiny, cpu)

    assert main.ratio == pytest.approx(1.5) and main.met is False and main.issue == "21"
    assert main.against == "DCMTK dcmrecv" and main.unit == "ms"
    assert floor.ratio == pytest.approx(1.3) and floor.met is None
    (idle_scenario,) = select(scenarios(FULL), ["idle"])
    assert issue_rows.cpu_rows(idle_scenario, cpu) == []


def test_durable_overhead_is_shown_in_flushes_of_this_disk() -> None:
    (tiny,) = select(scenarios(FULL), ["tiny"])
    seconds = stats.Samples()
    seconds.add(stats.OURS, 2.0)
    seconds.add(stats.OURS_DURABLE, 2.6)

    (row,) = issue_rows.overhead_row(tiny, seconds, 1000, 0.0003)

    # 0.6 ms more per instance, one flush 0.3 ms: two flushes' worth.
    assert row.ours == pytest.approx(0.6) and row.dcmtk == pytest.approx(0.3)
    assert row.ratio == pytest.approx(2.0) and row.met is False
    assert "fdatasync" in row.against
    (ct,) = select(scenarios(FULL), ["ct"])
    (shown,) = issue_rows.overhead_row(ct, seconds, 1000, 0.0003)
    assert shown.met is None and shown.issue == ""


def test_rows_of_options_still_to_come_say_so() -> None:
    (concurrent,) = select(scenarios(FULL), ["concurrent"])
    (scale,) = select(scenarios(FULL), ["scale"])

    workers = issue_rows.workers_row(concurrent, stats.Samples(), available=False)
    (curve,) = issue_rows.workers_scale_rows(scale, [], available=False)
    embedded, postgresql = issue_rows.state_rows(
        stats.Samples(),
        {stats.OURS_STATE: issue_rows.NOT_AVAILABLE, stats.OURS_POSTGRESQL: "skipped (x)"},
    )

    for row in (workers, curve, embedded):
        cells = stats.main_table([row]).splitlines()[2].strip("|").split("|")
        assert cells[1].strip() == "not available in this build"
        assert row.met is None
    assert postgresql.missing == "skipped (x)"
    assert (workers.issue, embedded.issue, postgresql.issue) == ("20", "20", "20")


def test_workers_and_state_rows_fill_in_once_measured() -> None:
    (concurrent,) = select(scenarios(FULL), ["concurrent"])
    (scale,) = select(scenarios(FULL), ["scale"])
    seconds = stats.Samples()
    for variant, value in (
        (stats.OURS, 1.0),
        (stats.OURS_WORKERS, 0.3),
        (stats.STORESCP_FORK, 0.4),
        (stats.OURS_STATE, 1.05),
        (stats.OURS_POSTGRESQL, 1.4),
    ):
        seconds.add(variant, value)
    points = [_point(v, n, s) for v in stats.WORKERS for n, s in ((1, 1.0), (64, 1.1))]

    workers = issue_rows.workers_row(concurrent, seconds, available=True)
    curve = issue_rows.workers_scale_rows(scale, points, available=True)
    embedded, postgresql = issue_rows.state_rows(seconds, {})

    assert workers.ratio == pytest.approx(0.75) and workers.met is True
    assert [row.ours for row in curve] == [pytest.approx(1 / 1.1)] * 2
    assert "--workers 4" in curve[1].scenario
    assert embedded.met is True and postgresql.met is False
    table = stats.workers_table(points).splitlines()
    assert table[0].startswith("| senders | 1 worker: inst/s | 2 workers: inst/s")
    assert table[2].split("|")[1:5] == [" 1 ", " 1000 ", " 1000 ", " 1000 "]


def test_startup_rows_hold_wall_times_and_the_probes_cpu() -> None:
    results = stats.StartupResults()
    results.add(stats.DCMRECV_VERSION, stats.OURS, 0.4, 0.38)
    results.add(stats.DCMRECV_VERSION, stats.DCMTK, 0.01, 0.01)
    results.add(stats.PROBE, stats.OURS, 0.3, 0.19)
    results.missing[stats.INETD] = "n/a (DCMTK storescp not installed)"

    version, storescp, inetd, probe = issue_rows.startup_rows(results)

    assert version.ours == 0.4 and version.met is False and version.issue == "21"
    assert storescp.ours is None and storescp.met is None
    assert inetd.missing == "n/a (DCMTK storescp not installed)"
    assert probe.ours == 0.19 and probe.met is True and probe.against == "DCMTK echoscu"
    line = stats.startup_table(results).splitlines()[2]
    assert [cell.strip() for cell in line.strip("|").split("|")][:3] == [
        "dcmrecv --version",
        "0.400 s",
        "0.380 s",
    ]


def test_goals_table_shows_the_previous_reports_figure_beside_this_runs() -> None:
    ratio_goal = stats.Goal(stats.RATIO_AT_MOST, 0.9)
    rss_goal = stats.Goal(stats.OURS_AT_MOST, 150.0)
    before = [
        stats.Row("tiny", "s", 0.8, 1.0, ratio_goal, issue="21"),
        stats.Row("large, peak RSS", "MB", 151.0, 900.0, rss_goal, issue="21"),
        stats.Row("workers", "s", None, 1.0, ratio_goal, missing="not available", issue="20"),
    ]
    previous = goals.previous_figures(
        report.document(rows=before, details=[], machine=[], settings=[], notes=[])
    )
    now = [
        stats.Row("tiny", "s", 0.85, 1.0, ratio_goal, issue="21"),
        stats.Row("large, peak RSS", "MB", 140.0, 900.0, rss_goal, issue="21"),
        stats.Row("workers", "s", 0.5, 1.0, ratio_goal, issue="20"),
        stats.Row("new goal", "s", 0.5, 1.0, ratio_goal, issue="21"),
        stats.Row("issue 14 only", "s", 0.5, 1.0, ratio_goal),
    ]

    lines = goals.goals_table(now, previous).splitlines()[2:]

    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert [row[1] for row in cells] == ["tiny", "large, peak RSS", "workers", "new goal"]
    assert cells[0][3:] == ["0.85", "yes", "0.80 (yes)", "yes"]
    assert cells[1][3:] == ["140 MB", "yes", "151 MB (**no**)", "**no**"]
    assert cells[2][3:] == ["0.50", "yes", "not available (n/a)", "n/a"]
    assert cells[3][5:] == ["-", "n/a"]
    assert goals.previous_figures("no table here") == {}
    without = goals.goals_table(now, None).splitlines()[2]
    assert without.strip("|").split("|")[5].strip() == "-"


def test_variants_of_options_still_to_come_are_left_out_until_help_lists_them() -> None:
    (concurrent,) = select(scenarios(FULL), ["concurrent"])
    (state,) = select(scenarios(FULL), ["state"])
    without = _all_tools()
    listed = dataclasses.replace(
        without, options=frozenset({"--workers", "--state"}), state_url="postgresql://u@h:1/d"
    )

    assert stats.OURS_WORKERS not in run.round_variants(without, concurrent, FULL, 0, True, True)
    assert stats.OURS_WORKERS in run.round_variants(listed, concurrent, FULL, 0, True, True)
    assert not commands.available(dataclasses.replace(listed, state_url=None), "ours-postgresql")
    workers = receiver_command(listed, stats.OURS_WORKERS_4, concurrent, Path("/o"), 1234)
    assert workers.argv[-4:] == ("--no-fsync", "--workers", "4", "1234")
    embedded = receiver_command(listed, stats.OURS_STATE, state, Path("/o"), 1234)
    assert embedded.argv[-4:] == ("--no-fsync", "--eostudy-timeout", "5", "1234")
    postgresql = receiver_command(listed, stats.OURS_POSTGRESQL, state, Path("/o"), 1234)
    assert postgresql.argv[-3:] == ("--state", "postgresql://u@h:1/d", "1234")


def test_options_count_only_when_help_lists_them_as_words() -> None:
    text = "  --workers=N      processes\n  --state-dir D    a directory\n  --http-port, -p"
    ours = (sys.executable, "-c", f"print({text!r})")

    listed = run.listed_options(ours, dict(os.environ), ["--workers", "--state", "--http-port"])

    assert listed == {"--workers", "--http-port"}
    assert run.listed_options(("/nonexistent/dcmrecv",), {}, ["--workers"]) == set()


def test_postgresql_cluster_answers_on_loopback_and_is_removed() -> None:
    bin_dir = postgres.find_bin_dir()
    reason = postgres.missing_reason(bin_dir)
    if reason is not None or bin_dir is None:
        # Optional in the benchmark (a row saying skipped), and not installed in CI yet.
        pytest.skip(reason or "PostgreSQL not installed")

    with postgres.Cluster(bin_dir) as cluster:
        answer = subprocess.run(
            [str(bin_dir / "psql"), cluster.url, "-Atc", "select 41 + 1"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        root = cluster.root

    assert cluster.url.startswith("postgresql://dcmrecv@127.0.0.1:")
    assert answer.stdout.strip() == "42", answer.stderr
    assert not root.exists()


@pytest.mark.dcmtk
def test_an_inetd_connection_is_served_on_standard_input_by_both_storescps(
    tmp_path: Path,
) -> None:
    storescp = require_tool("storescp")
    storescu = require_tool("storescu")
    (instance,) = data.write_series(tmp_path / "one", data.SeriesSpec(1, 8, 8))
    ours = procs.Command(commands.OURS_STORESCP, {"PYTHONPATH": str(commands.REPO)})
    for name, command in (("dcmtk", procs.Command((storescp,), {})), ("ours", ours)):
        out = tmp_path / name
        out.mkdir()
        inetd = procs.Command((*command.argv, "--inetd", "-od", str(out)), command.env)

        measured = startup.inetd_connection(inetd, storescu, instance, out, tmp_path / "log")

        assert measured.returncode == 0 and measured.wall > 0, name
        (stored,) = out.iterdir()
        assert pydicom.dcmread(stored).SOPInstanceUID == pydicom.dcmread(instance).SOPInstanceUID


@pytest.mark.dcmtk
def test_startup_measures_versions_inetd_and_the_probe(tmp_path: Path) -> None:
    tools = dataclasses.replace(
        _tools(),
        dcmrecv=require_tool("dcmrecv"),
        storescu=require_tool("storescu"),
        echoscu=require_tool("echoscu"),
        storescp=require_tool("storescp"),
    )
    (scenario,) = select(scenarios(QUICK), ["startup"])
    one = datasets.prepare(scenario, QUICK, tmp_path, {})

    results = startup.measure(tools, scenario, one, 1, tmp_path, report=lambda _: None)

    assert results.missing == {}
    for name in (stats.DCMRECV_VERSION, stats.STORESCP_VERSION, stats.INETD, stats.PROBE):
        assert results.wall[name].values.keys() == {stats.OURS, stats.DCMTK}, name
        assert results.cpu[name].median(stats.OURS) is not None, name
    assert [row.missing for row in issue_rows.startup_rows(results)] == [None] * 4


def test_report_has_the_goals_cpu_start_up_and_workers_sections() -> None:
    startup_results = stats.StartupResults()
    startup_results.add(stats.DCMRECV_VERSION, stats.OURS, 0.3, 0.3)
    goal = stats.Goal(stats.RATIO_AT_MOST, 1.0)

    text = report.document(
        rows=[stats.Row("tiny, best, receiver CPU per instance", "ms", 0.3, 0.2, goal, issue="21")],
        details=[],
        cpu=[stats.PeerRow("tiny", {stats.OURS: 0.3, stats.DCMTK: 0.2}, {})],
        scale=[_point(stats.OURS, 1, 1.0), _point(stats.OURS_WORKERS, 1, 0.5)],
        startup=startup_results,
        previous=None,
        machine=[],
        settings=[],
        notes=[],
    )

    for heading in (
        "## Goals of issues 20 and 21",
        "## Receiver CPU per instance",
        "Workers (issue 20), instances per second:",
        "## Start-up",
    ):
        assert heading in text
    assert "No previous report to compare with." in text
    assert "| tiny | 0.300 ms [1.00] | 0.200 ms [1.50] |" in text
