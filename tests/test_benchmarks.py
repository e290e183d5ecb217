"""Smoke tests for the benchmark's pure parts: data generation, parsers, table logic.

No timing here: the benchmark itself (``python3 -m benchmarks.run``) measures; these
tests only make sure what it sends is valid DICOM and what it reports adds up.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest
from pynetdicom.pdu import A_ASSOCIATE_RQ

from benchmarks import data, idle, procs, profile, stats
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
    assert header.count("|") == line.count("|") == rule.count("|") == 7
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells == ["CT", "0.500 s", "0.250 s", "2.00", "<= 1", "**no**"]


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
