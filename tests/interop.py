"""Run DCMTK's dcmrecv and ours side by side on the same sends, and describe what each stored.

Used by tests/test_interop_dcmtk.py.  Both receivers are real processes started with the
same command line; the senders are DCMTK's own storescu and dcmsend.  Everything here
returns plain values (paths, strings, lists of differences) so the tests can state what
must be equal.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filereader import read_preamble

from tests.conftest import free_port, require_tool
from tests.helpers import files_under, listening

#: The profile file Debian's dcmtk package installs; DCMTK's dcmrecv and ours read the same one.
DCMTK_STORESCP_CFG = Path("/etc/dcmtk/storescp.cfg")

#: pydicom's bundled test files that are sent.  Chosen for many SOP classes and transfer
#: syntaxes, each SOP Instance UID once (two files with the same UID would be stored under
#: the same +fd name, the second overwriting the first).
CORPUS: tuple[str, ...] = (
    "CT_small.dcm",  # CT, Explicit VR Little Endian, Series Date set
    "J2K_pixelrep_mismatch.dcm",  # CT, JPEG 2000 lossless
    "ExplVR_BigEnd.dcm",  # US, Explicit VR Big Endian (retired TS)
    "ExplVR_BigEndNoMeta.dcm",  # RT Ion Plan, big endian, no file meta: sent as a data set
    "examples_jpeg2k.dcm",  # US, JPEG 2000 lossless, 150 KB: several PDVs
    "examples_palette.dcm",  # US, palette colour, 280 KB
    "examples_rgb_color.dcm",  # US, RGB
    "examples_ybr_color.dcm",  # US multi-frame, JPEG baseline, 220 KB
    "MR_small_RLE.dcm",  # MR, RLE lossless, empty Series Date
    "examples_overlay.dcm",  # MR with overlay, 320 KB
    "GDCMJ2K_TextGBR.dcm",  # SC, JPEG 2000 lossless, GB18030 text
    "JPEG2000.dcm",  # SC, JPEG 2000
    "JPEGLSNearLossless_08.dcm",  # SC, JPEG-LS near-lossless, 8 bit
    "JPEGLSNearLossless_16.dcm",  # SC, JPEG-LS near-lossless, 16 bit
    "SC_rgb_jls_lossy_line.dcm",  # SC, JPEG-LS, line interleaved
    "JPGExtended.dcm",  # SC, JPEG extended (process 2 and 4)
    "SC_jpeg_no_color_transform.dcm",  # SC, JPEG baseline
    "SC_rgb_dcmtk_+eb+cr.dcm",  # SC, JPEG baseline written by DCMTK
    "SC_rgb_small_odd_jpeg.dcm",  # SC, JPEG baseline, odd rows and columns
    "SC_rgb_jpeg_gdcm.dcm",  # SC, JPEG lossless SV1
    "SC_rgb_gdcm_KY.dcm",  # SC, JPEG 2000
    "SC_rgb_small_odd.dcm",  # SC, Explicit VR Little Endian, odd-length pixel data padded
    "SC_rgb_jpeg_dcmd.dcm",  # SC, Implicit VR Little Endian, 200 KB
    "SC_ybr_full_422_uncompressed.dcm",  # SC, YBR_FULL_422 uncompressed
    "image_dfl.dcm",  # SC, Deflated Explicit VR Little Endian
    "liver_1frame.dcm",  # Segmentation
    "reportsi.dcm",  # Basic Text SR
    "test-SR.dcm",  # Comprehensive SR
    "waveform_ecg.dcm",  # 12-lead ECG waveform, 290 KB
    "rtplan.dcm",  # RT Plan, Implicit VR Little Endian
    "rtdose.dcm",  # RT Dose, multi-frame
    "rtstruct.dcm",  # RT Structure Set, no preamble and no file meta
)

#: Bundled files left out, and why.
EXCLUDED: dict[str, str] = {
    # storescu reports "missing SOP class (or instance) in file" and stops: no SOP Class or
    # Instance UID in the data set, or a truncated/unreadable data set.
    "MR_truncated.dcm": "truncated pixel data",
    "rtplan_truncated.dcm": "truncated",
    "rtdose_rle.dcm": "storescu cannot read it",
    "rtdose_rle_1frame.dcm": "storescu cannot read it",
    "UN_sequence.dcm": "no SOP Instance UID",
    "empty_charset_LEI.dcm": "no SOP Class UID",
    "no_meta.dcm": "not a DICOM data set storescu can parse",
    "no_meta_group_length.dcm": "no SOP Instance UID",
    "priv_SQ.dcm": "no SOP Instance UID",
    "meta_missing_tsyntax.dcm": "no SOP Class UID",
    "nested_priv_SQ.dcm": "no SOP Class UID",
    # Encapsulated pixel data with VR OW and an odd length: DCMTK's storescu warns and then
    # fails with "unable to convert dataset from 'JPEG ...' transfer syntax".
    "693_J2KI.dcm": "encapsulated OW pixel data of odd length",
    "MR_small_jp2klossless.dcm": "encapsulated OW pixel data of odd length",
    "MR_small_jpeg_ls_lossless.dcm": "encapsulated OW pixel data of odd length",
    "SC_rgb_rle_16bit.dcm": "encapsulated OW pixel data of odd length",
    "SC_rgb_rle_16bit_2frame.dcm": "encapsulated OW pixel data of odd length",
    # The same SOP Instance UID as a file in CORPUS.
    "MR_small.dcm": "same UID as MR_small_RLE.dcm",
    "MR_small_bigendian.dcm": "same UID as MR_small_RLE.dcm",
    "MR_small_expb.dcm": "same UID as MR_small_RLE.dcm",
    "MR_small_implicit.dcm": "same UID as MR_small_RLE.dcm",
    "MR_small_padded.dcm": "same UID as MR_small_RLE.dcm",
    "JPEG-lossy.dcm": "same UID as JPGExtended.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm": "same UID as JPEG2000.dcm",
    "ExplVR_LitEndNoMeta.dcm": "same UID as ExplVR_BigEndNoMeta.dcm",
    "SC_jpeg_no_color_transform_2.dcm": "same UID as SC_rgb_jpeg_app14_dcmd.dcm",
    "SC_rgb_jpeg_app14_dcmd.dcm": "same UID as SC_jpeg_no_color_transform_2.dcm; JPEG is covered",
    "SC_rgb_jpeg.dcm": "same UID as SC_rgb_jpeg_dcmd.dcm, and a damaged header",
    "SC_rgb_dcmtk_+eb+cy+n2.dcm": "same UID as SC_ybr_full_422_uncompressed.dcm",
    "SC_rgb_rle.dcm": "same UID as SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_rle_2frame.dcm": "same UID as SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_rle_32bit.dcm": "same UID as SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_rle_32bit_2frame.dcm": "same UID as SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_small_odd_big_endian.dcm": "same UID as SC_rgb_small_odd.dcm",
    "liver_expb_1frame.dcm": "same UID as liver_1frame.dcm",
    "reportsi_with_empty_number_tags.dcm": "same UID as reportsi.dcm",
    "badVR.dcm": "same UID as rtdose.dcm",
    "rtdose_1frame.dcm": "same UID as rtdose.dcm",
    "rtdose_expb.dcm": "same UID as rtdose.dcm",
    "rtdose_expb_1frame.dcm": "same UID as rtdose.dcm",
}


def corpus_files() -> list[Path]:
    """The CORPUS files, from pydicom's own package (never downloaded)."""
    files = []
    for name in CORPUS:
        path = get_testdata_file(name, download=False)
        if path is None:
            raise FileNotFoundError(f"pydicom does not bundle {name}")
        files.append(Path(str(path)))
    return files


def read_any(path: Path) -> Dataset:
    """A file or a bare data set (rtstruct.dcm, ExplVR_BigEndNoMeta.dcm have no file meta)."""
    return pydicom.dcmread(path, force=True)


# --- what storescu proposes -------------------------------------------------------------

UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2")


def storescu_profile(files: Iterable[Path]) -> str:
    """A storescu ``-xf`` configuration proposing each file's own SOP class and transfer syntax.

    storescu proposes only the transfer syntaxes of its ``-x?`` option (storescu.man,
    "proposed transmission transfer syntaxes"), one compressed syntax at most; a JPEG 2000
    file would then be decompressed, which DCMTK cannot do.  With a profile
    (asconfig.txt format) every (SOP class, transfer syntax) pair of the files gets its own
    presentation context, plus one context with the uncompressed syntaxes per SOP class, and
    storescu picks the context matching each file's own transfer syntax.  So a big endian
    or implicit VR file also arrives as it is, not converted to the receiver's preference.
    """
    pairs: dict[str, list[str]] = {}
    for path in files:
        dataset = read_any(path)
        syntax = _transfer_syntax(dataset)
        syntaxes = pairs.setdefault(str(dataset.SOPClassUID), [])
        if syntax not in syntaxes:
            syntaxes.append(syntax)
    names = {syntax: f"TS{n}" for n, syntax in enumerate(_all_syntaxes(pairs), start=1)}
    lines = ["[[TransferSyntaxes]]", "[Uncompressed]"]
    lines += [f"TransferSyntax{n} = {uid}" for n, uid in enumerate(UNCOMPRESSED, start=1)]
    for syntax, name in names.items():
        lines += [f"[{name}]", f"TransferSyntax1 = {syntax}"]
    lines += ["[[PresentationContexts]]", "[Corpus]"]
    contexts = []
    for sop_class, syntaxes in pairs.items():
        contexts += [f"{sop_class}\\{names[syntax]}" for syntax in syntaxes]
        contexts.append(f"{sop_class}\\Uncompressed")
    lines += [f"PresentationContext{n} = {c}" for n, c in enumerate(contexts, start=1)]
    lines += ["[[Profiles]]", "[Corpus]", "PresentationContexts = Corpus"]
    return "\n".join(lines) + "\n"


def _transfer_syntax(dataset: Dataset) -> str:
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return str(meta.TransferSyntaxUID)
    # A bare data set: pydicom guessed the encoding from its first bytes.
    if not dataset.is_little_endian:
        return "1.2.840.10008.1.2.2"
    return "1.2.840.10008.1.2.1" if not dataset.is_implicit_VR else "1.2.840.10008.1.2"


def _all_syntaxes(pairs: dict[str, list[str]]) -> list[str]:
    seen: list[str] = []
    for syntaxes in pairs.values():
        seen += [s for s in syntaxes if s not in seen]
    return seen


# --- the receivers ------------------------------------------------------------------------


def dcmtk_command() -> list[str]:
    return [require_tool("dcmrecv")]


def our_command() -> list[str]:
    return [sys.executable, "-m", "dcmrecv"]


@dataclass
class ReceiverRun:
    """What one receiver process did with one send."""

    output_directory: Path
    log: str
    returncode: int
    sender_returncode: int
    sender_log: str


@contextlib.contextmanager
def receiver_process(
    command: Sequence[str], arguments: Sequence[str], workdir: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Start ``command arguments... port`` listening on a free port, and SIGTERM it afterwards.

    Standard output and error go to ``workdir/receiver.log`` (DCMTK logs to stderr).
    """
    port = free_port()
    log = workdir / "receiver.log"
    with listening(
        [*command, *arguments, str(port)], port, workdir, log, append=False, timeout=30
    ) as process:
        yield port, process


def _environment() -> dict[str, str]:
    """The environment of the senders started here.

    DCMTK programs leave Nagle's algorithm on unless TCP_NODELAY=1 is in their environment
    (dcmrecv.man, ENVIRONMENT); then every C-STORE round trip between two DCMTK programs
    waits up to 40 ms for a delayed ACK.  It changes the timing only, not what is stored.
    """
    return {**os.environ, "TCP_NODELAY": "1"}


def send(sender: str, port: int, files: Sequence[Path], workdir: Path) -> tuple[int, str]:
    """Send all files over one association with DCMTK's storescu or dcmsend."""
    if sender == "storescu":
        profile = workdir / "storescu.cfg"
        profile.write_text(storescu_profile(files))
        command = [require_tool("storescu"), "-v", "-aec", "ANY-SCP", "-xf", str(profile), "Corpus"]
    else:
        # dcmsend proposes each file's SOP class and transfer syntax by itself (dcmsend.man);
        # +f: also read the files that are a bare data set without file meta.
        command = [require_tool("dcmsend"), "-v", "+f", "-aec", "ANY-SCP"]
    result = subprocess.run(
        [*command, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_environment(),
    )
    return result.returncode, result.stdout + result.stderr


def run_receiver(
    command: Sequence[str],
    options: Sequence[str],
    sender: str,
    files: Sequence[Path],
    workdir: Path,
) -> ReceiverRun:
    """One receiver, one send of all files, then stop; returns what it stored and logged."""
    workdir = workdir.resolve()
    output = workdir / "out"
    output.mkdir(parents=True)
    arguments = ["-v", *options, "-od", str(output)]
    with receiver_process(command, arguments, workdir) as (port, process):
        sender_returncode, sender_log = send(sender, port, files, workdir)
    return ReceiverRun(
        output_directory=output,
        log=(workdir / "receiver.log").read_text(errors="replace"),
        returncode=process.returncode,
        sender_returncode=sender_returncode,
        sender_log=sender_log,
    )


# --- what was stored ----------------------------------------------------------------------


def stored_directories(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_dir())


#: The random or time-dependent part of the generated names (dcmrecv.man, "filename
#: generation"), masked so two receivers' names can be compared.
_NAME_MASKS: dict[str, tuple[re.Pattern[str], str]] = {
    # +fu: <prefix>.X.<new UID>
    "+fu": (re.compile(r"^([A-Za-z0-9]+)\.X\.[0-9]+(?:\.[0-9]+)*"), r"\1.X.<uid>"),
    # +fsu: <prefix>_<16 hexadecimal digits>, in lower case as DCMTK writes them
    "+fsu": (re.compile(r"^([A-Za-z0-9]+)_[0-9a-f]{16}"), r"\1_<hex16>"),
    # +fst: <YYYYMMDDHHMMSS>.<microseconds>.<prefix>
    "+fst": (re.compile(r"^[0-9]{14}\.[0-9]{6}\."), "<time>.<usec>."),
}


def masked_name(relative_path: str, filename_mode: str) -> str:
    """relative_path with the random part of the file name replaced by a placeholder.

    A name that does not fit the mode's pattern is returned unchanged, so the comparison
    shows it.
    """
    if filename_mode not in _NAME_MASKS:
        return relative_path
    pattern, replacement = _NAME_MASKS[filename_mode]
    head, _, name = relative_path.rpartition("/")
    masked, count = pattern.subn(replacement, name, count=1)
    if count == 0:
        return relative_path
    return f"{head}/{masked}" if head else masked


def by_instance(directory: Path) -> dict[str, str]:
    """SOP Instance UID (from the file meta) -> relative path, for every stored file."""
    result: dict[str, str] = {}
    for relative in files_under(directory):
        meta = pydicom.dcmread(directory / relative, stop_before_pixels=True).file_meta
        uid = str(meta.MediaStorageSOPInstanceUID)
        if uid in result:
            raise AssertionError(f"{uid} stored twice: {result[uid]} and {relative}")
        result[uid] = relative
    return result


def preamble_and_meta(path: Path) -> tuple[bytes, Dataset, bytes]:
    """The 128-byte preamble, the file meta elements, and the data set bytes after them."""
    with path.open("rb") as handle:
        preamble = read_preamble(handle, False) or b""
        meta = pydicom.filereader._read_file_meta_info(handle)
        return preamble, meta, handle.read()


def element_differences(ours: Dataset, theirs: Dataset, where: str = "") -> list[str]:
    """Every element that differs between two data sets, described; [] if they are equal.

    Sequences are compared item by item, so the message names the nested element.
    """
    differences: list[str] = []
    our_tags = set(ours.keys())
    their_tags = set(theirs.keys())
    for tag in sorted(their_tags - our_tags):
        differences.append(f"{where}{tag} only in DCMTK's: {theirs[tag]!r}")
    for tag in sorted(our_tags - their_tags):
        differences.append(f"{where}{tag} only in ours: {ours[tag]!r}")
    for tag in sorted(our_tags & their_tags):
        mine, other = ours[tag], theirs[tag]
        if mine.VR == "SQ" and other.VR == "SQ":
            if len(mine.value) != len(other.value):
                differences.append(
                    f"{where}{tag} items: ours {len(mine.value)}, DCMTK's {len(other.value)}"
                )
                continue
            for n, (a, b) in enumerate(zip(mine.value, other.value, strict=True)):
                differences += element_differences(a, b, f"{where}{tag}[{n}].")
        elif mine.VR != other.VR or _value(mine.value) != _value(other.value):
            differences.append(f"{where}{tag}: ours {mine!r}, DCMTK's {other!r}")
    return differences


def _value(value: Any) -> Any:
    return bytes(value) if isinstance(value, bytearray | memoryview) else value


# --- console logs -------------------------------------------------------------------------

_STORED = "I: Stored received object to file: "
#: DCMTK's lines for a TCP connection that closes before sending a PDU, such as the
#: readiness probe of tests.conftest.wait_for_port (see test_interop_dcmtk.py for the
#: comparison of that case on its own).
_PROBE = re.compile(r"I: Association Received [^:]*:  -> $")
_PROBE_REFUSAL = "I: Refusing Association (bad application context)"
#: Lines only ours writes, on purpose (README): the per-association summary, and the
#: notice that SIGTERM was received (DCMTK's dcmrecv is simply killed by it).
# Our own extra lines: the per-association summary, the signal, and the port probe
# (which DCMTK logs as an empty association plus a refusal: _PROBE above).
#: Our lines DCMTK has no counterpart of; "stopping: ..." appears when the SIGTERM
#: that ends a run arrives while an association's thread is still winding down.
_OURS_ONLY = (
    "I: Association summary: ",
    "I: received SIGTERM",
    "I: Connection from ",
    "I: stopping: ",
)


def comparable_log(log: str, output_directory: Path, filename_mode: str) -> list[str]:
    """The ``I:`` lines of a ``-v`` log, made comparable between two receivers.

    The output directory becomes ``<od>``, and generated file names are masked as in
    masked_name(); the readiness probe's lines and our own extra lines are dropped.
    """
    result: list[str] = []
    lines = [line for line in log.splitlines() if line.startswith("I: ")]
    skip_refusal = False
    for line in lines:
        if _PROBE.match(line):
            skip_refusal = True
            continue
        if skip_refusal and line == _PROBE_REFUSAL:
            skip_refusal = False
            continue
        skip_refusal = False
        if line.startswith(_OURS_ONLY):
            continue
        if line.startswith(_STORED):
            path = line[len(_STORED) :]
            prefix = f"{output_directory}/"
            if path.startswith(prefix):
                path = "<od>/" + masked_name(path[len(prefix) :], filename_mode)
            line = _STORED + path
        result.append(line.replace(str(output_directory), "<od>"))
    return result
