"""storescp's command line: option table, parser and evaluation (pure functions).

The grammar is DCMTK's (dcmrecv.commands.argv): options are whole words starting with ``-``
or ``+``, values are the next words, the rightmost of exclusive options wins,
``@file`` expands.  The options are current DCMTK's (storescp.man) plus the
spellings of the original storescp, which scripts still use:

==========  ===================  ==========================================
old         current              meaning
==========  ===================  ==========================================
``-r``      ``--refuse``         refuse every association
``+R``      ``--reject``         reject a request without Implementation Class UID
``-s n``    ``--sleep-after``    sleep n seconds after each store
``+s n``    ``--sleep-during``   sleep n seconds after each received fragment
``-b n``    ``--max-pdu``/-pdu   maximum receive PDU (checked with today's range)
``-t=``     ``--prefer-uncompr``/``+x=``
``-te``     ``--prefer-little``/``+xe``
``-tb``     ``--prefer-big``/``+xb``
``-ti``     ``--implicit``/``+xi``  implicit VR little endian only
``-i``      ``--ignore``         receive, do not store
``+V``      ``--verbose``/``-v``
``+d``      ``--debug``/``-d``
==========  ===================  ==========================================

The old output spellings (``-F +F +t= +te +tb +ti +g +g= -g +e -e -p +p +u -u +B``)
are today's with the same meaning.  Where an old spelling is also a current one the
current meaning wins (COLLISIONS lists them; for storescp's own tables the list is
empty, and the import-time check keeps it honest).
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from dcmrecv.commands import argv, policy_options, rules
from dcmrecv.commands.argv import ArgvError, CommandLine, Occurrence, OptionSpec
from dcmrecv.commands.ops_options import HTTP_AND_EVENT_LOG_OPTIONS
from dcmrecv.config import DEFAULT_QUARANTINE_LIMIT, DuplicatePolicy, EventSettings, NamingSettings
from dcmrecv.negotiation import asconfig, uids
from dcmrecv.ops.hook_command import TemplateError, compile_template
from dcmrecv.storage.convert import GroupLength, OutputEncoding
from dcmrecv.storage.freespace import Watermark
from dcmrecv.storage.sorting import SortMode, check_prefix

APPNAME: Final = "storescp"
DEFAULT_AETITLE: Final = "STORESCP"
DEFAULT_SOCKET_TIMEOUT: Final = 60
PARAMS: Final = (("port", "tcp/ip port number to listen on"),)

_IPV6: Final = "IPv6 is not yet supported"
_WRAP: Final = "TCP wrapper access control (+ac) is not supported"


def _own_specs() -> list[OptionSpec]:
    table = argv.OptionTable()
    section = table.section

    add = section("multi-process options:", None)
    add("--single-process", None, "single process mode (default)")
    add(
        "--fork",
        None,
        "accepted: every association already runs\nconcurrently, in its own thread",
    )
    add(
        "--max-associations",
        None,
        "limit number of parallel associations to m\n(default: unlimited; no --fork needed)",
        nargs=1,
        values="[m]ax: integer",
    )

    network = "network options:"
    add = section(network, "association negotiation profile from configuration file:")
    add(
        "--config-file",
        "-xf",
        "use profile p from config file f",
        nargs=2,
        values="[f]ilename, [p]rofile: string",
    )
    add = section(network, "preferred network transfer syntaxes (not with --config-file):")
    for long, short, text in PREFER_OPTIONS:
        add(long, short, text)
    add = section(network, "network host access control (tcp wrapper):")
    add("--access-full", "-ac", "accept connections from any host (default)")
    add("--access-control", "+ac", "enforce host access control rules", unsupported=_WRAP)
    add = section(network, "other network options:")
    add("--inetd", "-id", "run from inetd super server (not with --fork)")
    add(
        "--socket-timeout",
        "-ts",
        "timeout for network socket (0 for none);\naccepted, see --acse/--dimse-timeout",
        nargs=1,
        values=f"[s]econds: integer (default: {DEFAULT_SOCKET_TIMEOUT})",
    )
    # Spelled and described as in dcmrecv's table.
    table.reuse(network, "other network options:", "--acse-timeout", "--dimse-timeout")
    add(
        "--aetitle",
        "-aet",
        f"set my AE title (default: {DEFAULT_AETITLE})",
        nargs=1,
        values="[a]etitle: string",
    )
    table.reuse(network, "other network options:", "--max-pdu", "--disable-host-lookup")
    add("--refuse", None, "refuse association")
    add("--reject", None, "reject association if no implement. class UID")
    add("--ignore", None, "ignore store data, receive but do not store")
    add(
        "--sleep-after",
        None,
        "sleep s seconds after store (default: 0)",
        nargs=1,
        values="[s]econds: integer",
    )
    add(
        "--sleep-during",
        None,
        "sleep s seconds during store (default: 0)",
        nargs=1,
        values="[s]econds: integer",
    )
    add(
        "--abort-after",
        None,
        "abort association after receipt of C-STORE-RQ\n(but before sending response)",
    )
    add("--abort-during", None, "abort association during receipt of C-STORE-RQ")
    add(
        "--promiscuous",
        "-pm",
        "promiscuous mode, accept unknown SOP classes\n(not with --config-file)",
    )
    add(
        "--uid-padding",
        "-up",
        "silently correct space-padded UIDs (always done:\nUIDs are compared without padding)",
    )
    table.reuse(network, "other network options:", "--shutdown-timeout")

    output = "output options:"
    table.reuse(output, "general:", "--output-directory", "--no-fsync")
    table.reuse(
        output,
        "storage policies (not in DCMTK):",
        "--on-duplicate",
        "--min-free-space",
        "--quarantine-dir",
        "--quarantine-limit",
        "--check-config",
    )
    add = section(output, "bit preserving mode:")
    add("--normal", "-B", "allow implicit format conversions (default)")
    add("--bit-preserving", "+B", "write data exactly as read")
    add = section(output, "output file format:")
    add("--write-file", "+F", "write file format (default)")
    add("--write-dataset", "-F", "write data set without file meta information")
    add = section(
        output, "output transfer syntax (not with --bit-preserving or compressed transmission):"
    )
    add("--write-xfer-same", "+t=", "write with same TS as input (default)")
    add("--write-xfer-little", "+te", "write with explicit VR little endian TS")
    add("--write-xfer-big", "+tb", "write with explicit VR big endian TS")
    add("--write-xfer-implicit", "+ti", "write with implicit VR little endian TS")
    add("--write-xfer-deflated", "+td", "write with deflated expl. VR little endian TS")
    add = section(output, "post-1993 value representations (not with --bit-preserving):")
    add("--enable-new-vr", "+u", "enable support for new VRs (UN/UT) (default)")
    add("--disable-new-vr", "-u", "disable support for new VRs, convert to OB")
    add = section(output, "group length encoding (not with --bit-preserving):")
    add("--group-length-recalc", "+g=", "recalculate group lengths if present (default)")
    add(
        "--group-length-create",
        "+g",
        "always write with group length elements\n(top-level data set only, see README)",
    )
    add("--group-length-remove", "-g", "always write without group length elements")
    add = section(output, "length encoding in sequences and items (not with --bit-preserving):")
    add("--length-explicit", "+e", "write with explicit lengths (default)")
    add("--length-undefined", "-e", "write with undefined lengths")
    add = section(
        output, "data set trailing padding (not with --write-dataset or --bit-preserving):"
    )
    add("--padding-off", "-p", "no padding (default)")
    add(
        "--padding-create",
        "+p",
        "align file on multiple of f bytes and items on\nmultiple of i bytes",
        nargs=2,
        values="[f]ile-pad [i]tem-pad: integer",
    )
    add = section(output, "handling of defined length UN elements:")
    add("--retain-un", "-uc", "retain elements as UN (default)")
    add("--convert-un", "+uc", "convert to real VR if known")
    add = section(output, "deflate compression level (only with --write-xfer-deflated/same):")
    add(
        "--compression-level",
        "+cl",
        "0=uncompressed, 1=fastest, 9=best compression",
        nargs=1,
        values="[l]evel: integer (default: 6)",
    )
    add = section(output, "sorting into subdirectories (not with --bit-preserving):")
    add(
        "--sort-conc-studies",
        "-ss",
        "sort studies using prefix p and a timestamp",
        nargs=1,
        values="[p]refix: string",
    )
    add(
        "--sort-on-study-uid",
        "-su",
        "sort studies using prefix p and the Study\nInstance UID",
        nargs=1,
        values="[p]refix: string",
    )
    add(
        "--sort-on-patientname",
        "-sp",
        "sort studies using the Patient's Name and\na timestamp",
    )
    add = section(output, "filename generation:")
    add("--default-filenames", "-uf", "generate filename from instance UID (default)")
    add("--unique-filenames", "+uf", "generate unique filenames")
    add("--timenames", "-tn", "generate filename from creation time")
    add(
        "--filename-extension",
        "-fe",
        "append e to all filenames",
        nargs=1,
        values="[e]xtension: string",
    )

    add = section("event options:", None)
    add(
        "--exec-on-reception",
        "-xcr",
        "execute command c after having received and\nprocessed one C-STORE-RQ message",
        nargs=1,
        values="[c]ommand: string",
    )
    add(
        "--exec-on-eostudy",
        "-xcs",
        "execute command c after having received and\nprocessed all C-STORE-RQ messages that"
        " belong\nto one study",
        nargs=1,
        values="[c]ommand: string",
    )
    add(
        "--rename-on-eostudy",
        "-rns",
        "having received and processed all C-STORE-RQ\nmessages that belong to one study,"
        " rename\noutput files according to certain pattern",
    )
    add(
        "--eostudy-timeout",
        "-tos",
        "specifies a timeout of t seconds for\nend-of-study determination",
        nargs=1,
        values="[t]imeout: integer",
    )
    add("--exec-sync", "-xs", "execute command synchronously in foreground")
    table.reuse(
        "operations options (not in DCMTK):",
        "monitoring:",
        "--http-port",
        "--http-address",
        "--event-log",
        "--log-format",
    )
    return table.specs


#: storescp's "preferred network transfer syntaxes" block, in DCMTK's order.
PREFER_OPTIONS: Final = (
    ("--prefer-uncompr", "+x=", "prefer explicit VR local byte order (default)"),
    ("--prefer-little", "+xe", "prefer explicit VR little endian TS"),
    ("--prefer-big", "+xb", "prefer explicit VR big endian TS"),
    ("--prefer-lossless", "+xs", "prefer default JPEG lossless TS"),
    ("--prefer-jpeg8", "+xy", "prefer default JPEG lossy TS for 8 bit data"),
    ("--prefer-jpeg12", "+xx", "prefer default JPEG lossy TS for 12 bit data"),
    ("--prefer-j2k-lossless", "+xv", "prefer JPEG 2000 lossless TS"),
    ("--prefer-j2k-lossy", "+xw", "prefer JPEG 2000 lossy TS"),
    ("--prefer-jls-lossless", "+xt", "prefer JPEG-LS lossless TS"),
    ("--prefer-jls-lossy", "+xu", "prefer JPEG-LS lossy TS"),
    ("--prefer-mpeg2", "+xm", "prefer MPEG2 Main Profile @ Main Level TS"),
    ("--prefer-mpeg2-high", "+xh", "prefer MPEG2 Main Profile @ High Level TS"),
    ("--prefer-mpeg4", "+xn", "prefer MPEG4 AVC/H.264 HP / Level 4.1 TS"),
    ("--prefer-mpeg4-bd", "+xl", "prefer MPEG4 AVC/H.264 BD-compatible TS"),
    ("--prefer-mpeg4-2-2d", "+x2", "prefer MPEG4 AVC/H.264 HP / Level 4.2 TS (2D)"),
    ("--prefer-mpeg4-2-3d", "+x3", "prefer MPEG4 AVC/H.264 HP / Level 4.2 TS (3D)"),
    ("--prefer-mpeg4-2-st", "+xo", "prefer MPEG4 AVC/H.264 Stereo HP / Level 4.2 TS"),
    ("--prefer-hevc", "+x4", "prefer HEVC/H.265 Main Profile / Level 5.1 TS"),
    ("--prefer-hevc10", "+x5", "prefer HEVC/H.265 Main 10 Profile / L5.1 TS"),
    ("--prefer-rle", "+xr", "prefer RLE lossless TS"),
    ("--prefer-deflated", "+xd", "prefer deflated expl. VR little endian TS"),
    ("--implicit", "+xi", "accept implicit VR little endian TS only"),
    ("--accept-all", "+xa", "accept all supported transfer syntaxes"),
)

_LE = uids.EXPLICIT_VR_LITTLE_ENDIAN
_BE = uids.EXPLICIT_VR_BIG_ENDIAN
_IMPLICIT = uids.IMPLICIT_VR_LITTLE_ENDIAN
#: The compressed (or deflated) syntax each --prefer-xxx option puts first; DCMTK's
#: storescp then accepts explicit little, explicit big and implicit VR (storescp.cc).
PREFERRED_SYNTAX: Final = {
    "--prefer-lossless": "1.2.840.10008.1.2.4.70",
    "--prefer-jpeg8": "1.2.840.10008.1.2.4.50",
    "--prefer-jpeg12": "1.2.840.10008.1.2.4.51",
    "--prefer-j2k-lossless": "1.2.840.10008.1.2.4.90",
    "--prefer-j2k-lossy": "1.2.840.10008.1.2.4.91",
    "--prefer-jls-lossless": "1.2.840.10008.1.2.4.80",
    "--prefer-jls-lossy": "1.2.840.10008.1.2.4.81",
    "--prefer-mpeg2": "1.2.840.10008.1.2.4.100",
    "--prefer-mpeg2-high": "1.2.840.10008.1.2.4.101",
    "--prefer-mpeg4": "1.2.840.10008.1.2.4.102",
    "--prefer-mpeg4-bd": "1.2.840.10008.1.2.4.103",
    "--prefer-mpeg4-2-2d": "1.2.840.10008.1.2.4.104",
    "--prefer-mpeg4-2-3d": "1.2.840.10008.1.2.4.105",
    "--prefer-mpeg4-2-st": "1.2.840.10008.1.2.4.106",
    "--prefer-hevc": "1.2.840.10008.1.2.4.107",
    "--prefer-hevc10": "1.2.840.10008.1.2.4.108",
    "--prefer-rle": "1.2.840.10008.1.2.5",
    "--prefer-deflated": uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
}
#: --accept-all, in current DCMTK's order (storescp.cc): every compressed syntax first,
#: then the local byte order, the other one, and implicit VR last.
ACCEPT_ALL: Final = (
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2 MP@ML
    "1.2.840.10008.1.2.4.100.1",  # fragmentable MPEG2 MP@ML
    "1.2.840.10008.1.2.4.101",  # MPEG2 MP@HL
    "1.2.840.10008.1.2.4.101.1",
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC HP/L4.1
    "1.2.840.10008.1.2.4.102.1",
    "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC BD
    "1.2.840.10008.1.2.4.103.1",
    "1.2.840.10008.1.2.4.104",  # MPEG-4 AVC HP/L4.2 2D
    "1.2.840.10008.1.2.4.104.1",
    "1.2.840.10008.1.2.4.105",  # MPEG-4 AVC HP/L4.2 3D
    "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106",  # MPEG-4 AVC Stereo HP/L4.2
    "1.2.840.10008.1.2.4.106.1",
    "1.2.840.10008.1.2.4.107",  # HEVC Main/L5.1
    "1.2.840.10008.1.2.4.108",  # HEVC Main 10/L5.1
    "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K RPCL lossless
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.4.110",  # JPEG XL lossless
    "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG recompression
    "1.2.840.10008.1.2.4.112",  # JPEG XL
    "1.2.840.10008.1.2.8.1",  # deflated image frame compression
    uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    "1.2.840.10008.1.2.1.98",  # encapsulated uncompressed explicit VR little endian
)


def _local_first() -> tuple[str, str]:
    return (_LE, _BE) if sys.byteorder == "little" else (_BE, _LE)


def network_transfer_syntaxes(prefer: str | None) -> tuple[str, ...]:
    """The transfer syntaxes storescp accepts, best first, for one --prefer option.

    ``prefer`` is the long name of the rightmost option of the block (None: default).
    """
    if prefer == "--implicit":
        return (_IMPLICIT,)
    if prefer == "--prefer-little":
        return (_LE, _BE, _IMPLICIT)
    if prefer == "--prefer-big":
        return (_BE, _LE, _IMPLICIT)
    if prefer in PREFERRED_SYNTAX:
        return (PREFERRED_SYNTAX[prefer], _LE, _BE, _IMPLICIT)
    if prefer == "--accept-all":
        return (*ACCEPT_ALL, *_local_first(), _IMPLICIT)
    return (*_local_first(), _IMPLICIT)


def storescp_profile(transfer_syntaxes: tuple[str, ...]) -> asconfig.Profile:
    """What storescp negotiates without -xf: Verification and every storage SOP class.

    Each with the same transfer syntaxes in the same order (storescp.man, "DICOM
    Conformance"; ASC_acceptContextsWithPreferredTransferSyntaxes in storescp.cc).
    """
    contexts = tuple(
        asconfig.PresentationContextSpec(uid, transfer_syntaxes)
        for uid in (uids.VERIFICATION_SOP_CLASS, *uids.STORAGE_SOP_CLASSES)
    )
    return asconfig.Profile(name="STORESCP", contexts=contexts)


# The old storescp's spellings (its 1998 manual), as aliases of current options.
OLD_SPELLINGS: Final = {
    "-r": "--refuse",
    "+R": "--reject",
    "-s": "--sleep-after",
    "+s": "--sleep-during",
    "-b": "--max-pdu",
    "-t=": "--prefer-uncompr",
    "-te": "--prefer-little",
    "-tb": "--prefer-big",
    "-ti": "--implicit",
    "-i": "--ignore",
    "+V": "--verbose",
    "+d": "--debug",
}


def _build() -> tuple[tuple[OptionSpec, ...], dict[str, OptionSpec], tuple[str, ...]]:
    general = [s for s in argv.OPTIONS if s.group == "general options:"]
    ip = [s for s in argv.OPTIONS if s.subgroup == "IP protocol version:"]
    tls = [s for s in argv.OPTIONS if s.group.startswith("transport layer security")]
    own = _own_specs()
    # The IP block belongs at the top of the network options, as in DCMTK's help.
    first_network = next(i for i, s in enumerate(own) if s.group == "network options:")
    ordered = [*general, *own[:first_network], *ip, *own[first_network:]]
    first_output = next(i for i, s in enumerate(ordered) if s.group == "output options:")
    ordered[first_output:first_output] = tls
    table: dict[str, OptionSpec] = {}
    for spec in ordered:
        for name in (spec.long, spec.short):
            if name is None:
                continue
            if name in table:  # pragma: no cover - a table typo, caught at import
                raise AssertionError(f"option {name} defined twice")
            table[name] = spec
    collisions = []
    for old, long in OLD_SPELLINGS.items():
        if old in table:
            collisions.append(old)  # the current meaning wins
        else:
            table[old] = table[long]
    return tuple(ordered), table, tuple(collisions)


OPTIONS, _BY_SPELLING, COLLISIONS = _build()


def find_option(spelling: str) -> OptionSpec | None:
    """The option spelled exactly ``spelling`` (current or old spelling), or None."""
    return _BY_SPELLING.get(spelling)


def parse(args: Sequence[str]) -> CommandLine:
    """Check every token of an (already ``@``-expanded) storescp argument list.

    The rules and messages are dcmrecv.commands.argv.parse's (DCMTK's); unlike dcmrecv the
    port is checked by :func:`evaluate`, as storescp's "port" is optional in its
    grammar (DCMTK: "Missing parameter port" unless --inetd).
    """
    return argv.parse(args, [name for name, _ in PARAMS], lookup=find_option, params_required=False)


# --- evaluation -----------------------------------------------------------------------


class StorageChoice(enum.Enum):
    NORMAL = "normal"
    BIT_PRESERVING = "bit-preserving"
    IGNORE = "ignore"


@dataclass(frozen=True)
class Settings:
    """Everything storescp's options ask for, checked, before any file is read."""

    port: int
    aetitle: str = DEFAULT_AETITLE
    acse_timeout: float | None = None
    dimse_timeout: float | None = None
    socket_timeout: int = DEFAULT_SOCKET_TIMEOUT
    max_pdu: int | None = None
    disable_host_lookup: bool = False
    refuse: bool = False
    reject: bool = False
    sleep_after: float = 0.0
    sleep_during: float = 0.0
    abort_after: bool = False
    abort_during: bool = False
    promiscuous: bool = False
    #: Network transfer syntaxes (without -xf), best first.
    transfer_syntaxes: tuple[str, ...] = field(
        default_factory=lambda: network_transfer_syntaxes(None)
    )
    profile_source: tuple[str, str] | None = None
    fork: bool = False
    max_associations: int | None = None
    #: ``--inetd``: serve the connection on standard input, then exit.
    inetd: bool = False
    shutdown_timeout: float | None = None
    output_directory: str = "."
    fsync: bool = True
    storage: StorageChoice = StorageChoice.NORMAL
    encoding: OutputEncoding = field(default_factory=OutputEncoding)
    convert_un: bool = False
    naming: NamingSettings = field(default_factory=NamingSettings)
    events: EventSettings = field(default_factory=EventSettings)
    verbose_pc: bool = False
    # Storage policies (dcmrecv.commands.policy_options): all off by default.
    on_duplicate: DuplicatePolicy = DuplicatePolicy.OVERWRITE
    min_free_space: Watermark | None = None
    quarantine_directory: Path | None = None
    quarantine_limit: Watermark = DEFAULT_QUARANTINE_LIMIT
    # Operations (not in DCMTK): see ReceiverConfig.
    http_port: int | None = None
    http_address: str = "127.0.0.1"
    event_log: Path | None = None


def _conflict(first: str, second: str) -> ArgvError:
    return ArgvError(f"{first} not allowed with {second}")


def _dependence(option: str, on: str) -> ArgvError:
    return ArgvError(f"{option} only allowed with {on}")


def option_signed(occurrence: Occurrence, low: int) -> int:
    """A signed integer option value (DCMTK's getValueAndCheckMin for OFCmdSignedInt)."""
    text = occurrence.values[0]
    prefix = f"Invalid value for option {occurrence.spec.long}"
    stripped = text.strip()
    digits = stripped[1:] if stripped[:1] in "+-" else stripped
    if not digits.isdigit():
        raise ArgvError(f"{prefix} ({text})")
    value = int(stripped)
    if value < low:
        raise ArgvError(f"{prefix} (underflow: {text})")
    return value


_WRITE_XFER: Final = {
    "--write-xfer-same": None,
    "--write-xfer-little": uids.EXPLICIT_VR_LITTLE_ENDIAN,
    "--write-xfer-big": uids.EXPLICIT_VR_BIG_ENDIAN,
    "--write-xfer-implicit": uids.IMPLICIT_VR_LITTLE_ENDIAN,
    "--write-xfer-deflated": uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
}
_SORT: Final = {
    "--sort-conc-studies": SortMode.TIMESTAMP,
    "--sort-on-study-uid": SortMode.STUDY_UID,
    "--sort-on-patientname": SortMode.PATIENT_NAME,
}
_SORT_NAMES: Final = "--sort-conc-studies, --sort-on-study-uid or --sort-on-patientname"


def _refuse_unsupported(cmdline: CommandLine) -> None:
    found = cmdline.last("--access-control")
    if found is not None:
        assert found.spec.unsupported is not None
        raise ArgvError(found.spec.unsupported)


def _inetd(cmdline: CommandLine) -> rules.Fields:
    """storescp.cc checks --inetd before the process options: it excludes --fork, and
    --max-associations, which needs --fork there (one association is served)."""
    if not cmdline.has("--inetd"):
        return {}
    if cmdline.has("--fork"):
        raise _conflict("--inetd", "--fork")
    if cmdline.has("--max-associations"):
        raise _dependence("--max-associations", "--fork")
    return {"inetd": True}


def _port(cmdline: CommandLine) -> rules.Fields:
    if cmdline.has("--inetd"):
        # Not needed: inetd bound the port.  Not even checked, as in storescp.cc; the
        # command warns "Parameter port not required in inetd mode" when one is given.
        return {}
    if not cmdline.params and cmdline.has("--check-config"):
        return {}  # nothing listens
    if not cmdline.params:
        raise ArgvError("Missing parameter port")
    return {"port": argv.param_unsigned(cmdline, 1, 1, 65535)}


def _seconds(low: int) -> Callable[[Occurrence], float]:
    return lambda occurrence: float(argv.option_unsigned(occurrence, low))


def _transfer_syntaxes(cmdline: CommandLine) -> rules.Fields:
    prefer = cmdline.last(*(long for long, _short, _text in PREFER_OPTIONS))
    return {"transfer_syntaxes": network_transfer_syntaxes(prefer.spec.long if prefer else None)}


def _refuse_ipv6(cmdline: CommandLine) -> rules.Fields:
    unsupported = cmdline.last("--ipv6", "--ip-auto")
    if unsupported is not None and cmdline.last("--ipv4", "--ipv6", "--ip-auto") is unsupported:
        raise ArgvError(f"{_IPV6}: {unsupported.given}")
    return {}


def _config_file(cmdline: CommandLine) -> rules.Fields:
    config_file = cmdline.last("--config-file")
    if config_file is None:
        return {}
    prefer = cmdline.last(*(long for long, _short, _text in PREFER_OPTIONS))
    if prefer is not None and prefer.spec.long != "--prefer-uncompr":
        raise _conflict("--config-file", prefer.spec.long)
    if cmdline.has("--promiscuous"):
        raise _conflict("--config-file", "--promiscuous")
    return {"profile_source": (config_file.values[0], config_file.values[1])}


def _output_directory(occurrence: Occurrence) -> str:
    # DCMTK's normalizeDirName: no trailing separator (it prints paths joined to it).
    return occurrence.values[0].rstrip("/") or "/"


#: The options storescp.cc checks first (before --verbose-pc): each row sets
#: Settings fields (dcmrecv.commands.rules).
PROCESS_RULES: tuple[rules.Rule, ...] = (
    _inetd,
    rules.choice("fork", {"--single-process": False, "--fork": True}),
    rules.value("--max-associations", "max_associations", lambda o: argv.option_unsigned(o, 1)),
    _port,
)

#: The simple options from the network options to the output directory, in
#: storescp.cc's order (the order decides which bad value is reported first).
RULES: tuple[rules.Rule, ...] = (
    # network options
    _transfer_syntaxes,
    rules.value("--socket-timeout", "socket_timeout", lambda o: option_signed(o, -1)),
    rules.value("--acse-timeout", "acse_timeout", _seconds(1)),
    rules.value("--dimse-timeout", "dimse_timeout", _seconds(1)),
    rules.value("--aetitle", "aetitle", lambda o: o.values[0]),
    rules.value("--max-pdu", "max_pdu", lambda o: argv.option_unsigned(o, 4096, 131072)),
    rules.flag("--disable-host-lookup", "disable_host_lookup"),
    rules.flag("--refuse", "refuse"),
    rules.flag("--reject", "reject"),
    rules.value("--sleep-after", "sleep_after", _seconds(0)),
    rules.value("--sleep-during", "sleep_during", _seconds(0)),
    rules.flag("--abort-after", "abort_after"),
    rules.flag("--abort-during", "abort_during"),
    rules.flag("--promiscuous", "promiscuous"),
    rules.flag("--verbose-pc", "verbose_pc"),
    rules.value("--shutdown-timeout", "shutdown_timeout", lambda o: argv.option_number(o, 0.0)),
    _refuse_ipv6,
    _config_file,
    # output options: general
    rules.value("--output-directory", "output_directory", _output_directory),
    rules.flag("--no-fsync", "fsync", False),
    *policy_options.STORESCP_OPTIONS,
    # operations (not in DCMTK)
    *HTTP_AND_EVENT_LOG_OPTIONS,
)


def evaluate(cmdline: CommandLine, verbose: bool) -> Settings:
    """Check the options in storescp.cc's order, with its messages; the rightmost of
    exclusive options wins.  ``verbose``: INFO messages are logged (+v needs it).
    With ``--inetd`` there is no port, and ``--http-port`` (our own) is refused: every
    connection is a process of its own, which could not all serve that port.

    The simple options are rows of :data:`RULES`; the option groups whose options
    depend on each other (output encoding, naming and sorting, end-of-study events)
    each have a function.  Raises ArgvError.  Differences from DCMTK:
    ``--max-associations`` does not need ``--fork``, and ``--fork`` is accepted with
    the end-of-study options (there is one process and every association runs
    concurrently).
    """
    _refuse_unsupported(cmdline)
    settings = rules.apply(Settings(port=0), PROCESS_RULES, cmdline)
    if cmdline.has("--verbose-pc") and not verbose:
        raise _dependence("--verbose-pc", "verbose mode")
    settings = rules.apply(settings, RULES, cmdline)
    if settings.inetd and settings.http_port is not None:
        raise _conflict("--http-port", "--inetd")
    bit_preserving = _bit_preserving(cmdline)
    encoding, convert_un = output_encoding(cmdline, bit_preserving)
    naming = naming_settings(cmdline, bit_preserving)
    events = event_settings(cmdline, naming.sort_mode)
    storage = StorageChoice.BIT_PRESERVING if bit_preserving else StorageChoice.NORMAL
    if cmdline.has("--ignore"):
        storage = StorageChoice.IGNORE
    return replace(
        settings,
        encoding=encoding,
        convert_un=convert_un,
        naming=naming,
        events=events,
        storage=storage,
    )


def _bit_preserving(cmdline: CommandLine) -> bool:
    found = cmdline.last("--normal", "--bit-preserving")
    return found is not None and found.spec.long == "--bit-preserving"


def output_encoding(cmdline: CommandLine, bit_preserving: bool) -> tuple[OutputEncoding, bool]:
    """The output options that decide how a file is written, and ``--convert-un``.

    The --prefer options take part: an output transfer syntax may not contradict the
    network one they prefer.
    """
    prefer = cmdline.last(*(long for long, _short, _text in PREFER_OPTIONS))
    prefer_long = prefer.spec.long if prefer else None
    meta_option = cmdline.last("--write-file", "--write-dataset")
    write_meta = not (meta_option is not None and meta_option.spec.long == "--write-dataset")

    reencode = False
    xfer_option = cmdline.last(*_WRITE_XFER)
    write_syntax = _WRITE_XFER[xfer_option.spec.long] if xfer_option else None
    if xfer_option is not None and write_syntax is not None:
        name = xfer_option.spec.long
        if prefer_long == "--accept-all":
            raise _conflict(name, "--accept-all")
        if bit_preserving:
            raise _conflict(name, "--bit-preserving")
        if prefer_long in PREFERRED_SYNTAX and prefer_long != "--prefer-deflated":
            raise _conflict(name, prefer_long)

    def block(*longs: str) -> Occurrence | None:
        found = cmdline.last(*longs)
        if found is not None and bit_preserving:
            raise _conflict(found.spec.long, "--bit-preserving")
        return found

    new_vr = block("--enable-new-vr", "--disable-new-vr")
    new_vrs = not (new_vr is not None and new_vr.spec.long == "--disable-new-vr")
    reencode |= not new_vrs
    group = block("--group-length-recalc", "--group-length-create", "--group-length-remove")
    group_length = {
        None: GroupLength.RECALC,
        "--group-length-recalc": GroupLength.RECALC,
        "--group-length-create": GroupLength.CREATE,
        "--group-length-remove": GroupLength.REMOVE,
    }[group.spec.long if group else None]
    reencode |= group_length is not GroupLength.RECALC
    lengths = block("--length-explicit", "--length-undefined")
    undefined = lengths is not None and lengths.spec.long == "--length-undefined"
    reencode |= lengths is not None

    file_pad = item_pad = 0
    padding = cmdline.last("--padding-off", "--padding-create")
    if padding is not None and padding.spec.long == "--padding-create":
        if not write_meta:
            raise _conflict("--padding-create", "--write-dataset")
        if bit_preserving:
            raise _conflict("--padding-create", "--bit-preserving")
        file_pad = argv.option_unsigned(padding, 0, None, 0)
        item_pad = argv.option_unsigned(padding, 0, None, 1)
        if file_pad % 2 or item_pad % 2:
            # DCMTK accepts odd values and then fails to write every file.
            raise ArgvError(
                f"Invalid value for option --padding-create (odd: {file_pad} {item_pad})"
            )
        reencode |= file_pad > 0 or item_pad > 0

    un_option = cmdline.last("--retain-un", "--convert-un")
    convert_un = un_option is not None and un_option.spec.long == "--convert-un"
    reencode |= convert_un

    level = 6
    level_option = cmdline.last("--compression-level")
    if level_option is not None:
        if write_syntax not in (None, uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN):
            raise _dependence("--compression-level", "--write-xfer-deflated or --write-xfer-same")
        level = argv.option_unsigned(level_option, 0, 9)
        reencode = True
    encoding = OutputEncoding(
        transfer_syntax=write_syntax,
        write_meta=write_meta,
        group_length=group_length,
        undefined_lengths=undefined,
        file_padding=file_pad,
        item_padding=item_pad,
        new_vrs=new_vrs,
        compression_level=level,
        reencode=reencode,
    )
    return encoding, convert_un


def naming_settings(cmdline: CommandLine, bit_preserving: bool) -> NamingSettings:
    """Sorting into subdirectories and file name generation."""
    sort_option = cmdline.last(*_SORT)
    sort_mode = SortMode.NONE
    sort_prefix = ""
    if sort_option is not None:
        if bit_preserving:
            raise _conflict(sort_option.spec.long, "--bit-preserving")
        sort_mode = _SORT[sort_option.spec.long]
        if sort_option.values:
            sort_prefix = sort_option.values[0]
            problem = check_prefix(sort_prefix)
            if problem is not None:
                raise ArgvError(
                    f"Invalid value for option {sort_option.spec.long} ({problem}: {sort_prefix})"
                )
    names = cmdline.last("--default-filenames", "--unique-filenames")
    unique = names is not None and names.spec.long == "--unique-filenames"
    time_names = cmdline.has("--timenames")
    extension_option = cmdline.last("--filename-extension")
    extension = extension_option.values[0] if extension_option else ""
    if "/" in extension or "\0" in extension:
        raise ArgvError(f"Invalid value for option --filename-extension ({extension})")
    if time_names and unique:
        raise _conflict("--timenames", "--unique-filenames")
    return NamingSettings(sort_mode, sort_prefix, unique, time_names, extension)


def event_settings(cmdline: CommandLine, sort_mode: SortMode) -> EventSettings:
    """The event options; the end-of-study ones need a sorting option."""

    def template(long: str) -> str | None:
        # Checked here (a bad placeholder is a command line error); the engine
        # compiles the text again when it starts.
        found = cmdline.last(long)
        if found is None:
            return None
        try:
            compile_template(found.values[0])
        except TemplateError as exc:
            raise ArgvError(f"Invalid value for option {long} ({exc})") from None
        return found.values[0]

    on_reception = template("--exec-on-reception")
    on_eostudy = None
    # storescp.cc: the end-of-study options need the process to outlive the
    # association, which with --inetd it does not.
    inetd = cmdline.has("--inetd")
    if cmdline.has("--exec-on-eostudy"):
        if inetd:
            raise _conflict("--exec-on-eostudy", "--inetd")
        if sort_mode is SortMode.NONE:
            raise _dependence("--exec-on-eostudy", _SORT_NAMES)
        on_eostudy = template("--exec-on-eostudy")
    rename = cmdline.has("--rename-on-eostudy")
    if rename and inetd:
        raise _conflict("--rename-on-eostudy", "--inetd")
    if rename and sort_mode is SortMode.NONE:
        raise _dependence("--rename-on-eostudy", _SORT_NAMES)
    timeout_option = cmdline.last("--eostudy-timeout")
    timeout: float | None = None
    if timeout_option is not None:
        if sort_mode is SortMode.NONE and on_eostudy is None and not rename:
            raise _dependence(
                "--eostudy-timeout",
                "--sort-conc-studies, --sort-on-study-uid, --sort-on-patientname,"
                " --exec-on-eostudy or --rename-on-eostudy",
            )
        timeout = float(option_signed(timeout_option, 0))
    return EventSettings(
        exec_on_reception=on_reception,
        exec_on_eostudy=on_eostudy,
        rename_on_eostudy=rename,
        eostudy_timeout=timeout,
        exec_sync=cmdline.has("--exec-sync"),
    )


def old_spellings_help() -> str:
    """The old storescp spellings, for the end of --help."""
    lines = ["old storescp spellings (still accepted):"]
    for old, long in OLD_SPELLINGS.items():
        if old in COLLISIONS:
            continue
        spec = _BY_SPELLING[long]
        value = " n" if spec.nargs else ""
        lines.append(f"  {(old + value).ljust(8)}same as {long}")
    return "\n".join(lines) + "\n"
