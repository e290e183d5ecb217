"""Every option of both commands, one row each: the one place an option is defined.

A row (:class:`dcmrecv.commands.option.Option`) holds the option's spellings, its
``--help`` text and section, which commands have it, the configuration field it
sets, how its value is read, and what it requires or conflicts with.  The parser's
lookup, ``--help`` in DCMTK's layout, the ``DCMRECV_*`` variables, and the checks
with DCMTK's messages all come from here.  The spellings, defaults and words are
DCMTK's (dcmrecv.man, storescp.man, dcmtls' options); the sections that say "not
in DCMTK" hold our own options, spelled long only so they never meet a DCMTK one.

Adding an option is adding a row, for example::

    Option(
        "--http-max-connections",
        None,
        "serve at most n HTTP clients at a time",
        values="[n]umber: integer (default: 16)",
        section=MONITORING,
        field="http_max_connections",  # a ReceiverConfig field
        parse=values.unsigned(1),
    ),

and, when the configuration lacks the field, adding it to ReceiverConfig.  The
option then parses, shows in both commands' ``--help`` (``commands=`` limits it to
one), can be set as ``DCMRECV_HTTP_MAX_CONNECTIONS``, and is checked after the options
DCMTK checks (dcmrecv.commands.checks); a command's plan names it only if it must be
checked at another point.

Rows are in ``--help`` order within each section; a command lists its sections in
its own order (DCMRECV_SECTIONS, STORESCP_SECTIONS).  Where DCMTK's two tools place
or word a shared option differently, the row has a Variant for storescp.  dcmrecv's
own ``--eostudy-timeout`` and ``--exec-on-eostudy`` (studies across associations,
README "Operations") are not storescp's options of those names (DCMTK's end of study
within an association): two rows each, one per command.
"""

from __future__ import annotations

from typing import Final

from dcmrecv.commands import values
from dcmrecv.commands.option import (
    DCMRECV,
    DCMRECV_ONLY,
    STORESCP,
    STORESCP_ONLY,
    Option,
    Section,
    Variant,
)
from dcmrecv.commands.table import Table
from dcmrecv.storage.model import FilenameMode, StorageMode, SubdirectoryMode
from dcmrecv.tlsconfig import CRLMode, KeyFormat, PeerVerification, SecurityProfile

# --- sections of the help text -----------------------------------------------------------

GENERAL = Section("general options:")
MULTI_PROCESS = Section("multi-process options:")
_NETWORK = "network options:"
IP_VERSION = Section(_NETWORK, "IP protocol version:")
PROFILE = Section(_NETWORK, "association negotiation profile from configuration file:")
PREFERRED_SYNTAXES = Section(
    _NETWORK, "preferred network transfer syntaxes (not with --config-file):"
)
TCP_WRAPPER = Section(_NETWORK, "network host access control (tcp wrapper):")
AE_TITLE = Section(_NETWORK, "application entity title:")
OTHER_NETWORK = Section(_NETWORK, "other network options:")
ACCESS = Section(_NETWORK, "access control (not in DCMTK):")
_TLS = "transport layer security (TLS) options:"
TLS_TRANSPORT = Section(_TLS, "transport protocol stack:")
TLS_PASSWORD = Section(_TLS, "private key password (only with --enable-tls):")
TLS_FORMAT = Section(_TLS, "key and certificate file format:")
TLS_AUTHORITY = Section(_TLS, "certification authority:")
TLS_PROFILE = Section(_TLS, "security profile:")
TLS_CIPHERS = Section(_TLS, "ciphersuite:")
TLS_SNI = Section(_TLS, "server name indication:")
TLS_SEED = Section(_TLS, "pseudo random generator:")
TLS_PEER = Section(_TLS, "peer authentication:")
_OPERATIONS = "operations options (not in DCMTK):"
MONITORING = Section(_OPERATIONS, "monitoring:")
END_OF_STUDY = Section(_OPERATIONS, "end of study (across all associations):")
SCALING = Section(_OPERATIONS, "scaling out:")
COMMITMENT = Section(_OPERATIONS, "storage commitment (PS3.4 annex J):")
_OUTPUT = "output options:"
OUTPUT_GENERAL = Section(_OUTPUT, "general:")
SUBDIRECTORIES = Section(_OUTPUT, "subdirectory generation:")
FILENAMES = Section(_OUTPUT, "filename generation:")
STORAGE_MODE = Section(_OUTPUT, "storage mode:")
POLICIES = Section(_OUTPUT, "storage policies (not in DCMTK):")
BIT_PRESERVING = Section(_OUTPUT, "bit preserving mode:")
FILE_FORMAT = Section(_OUTPUT, "output file format:")
WRITE_SYNTAX = Section(
    _OUTPUT, "output transfer syntax (not with --bit-preserving or compressed transmission):"
)
NEW_VRS = Section(_OUTPUT, "post-1993 value representations (not with --bit-preserving):")
GROUP_LENGTH = Section(_OUTPUT, "group length encoding (not with --bit-preserving):")
LENGTHS = Section(_OUTPUT, "length encoding in sequences and items (not with --bit-preserving):")
PADDING = Section(
    _OUTPUT, "data set trailing padding (not with --write-dataset or --bit-preserving):"
)
UN_ELEMENTS = Section(_OUTPUT, "handling of defined length UN elements:")
COMPRESSION = Section(_OUTPUT, "deflate compression level (only with --write-xfer-deflated/same):")
SORTING = Section(_OUTPUT, "sorting into subdirectories (not with --bit-preserving):")
EVENTS = Section("event options:")

_TLS_SECTIONS = (
    TLS_TRANSPORT,
    TLS_PASSWORD,
    TLS_FORMAT,
    TLS_AUTHORITY,
    TLS_PROFILE,
    TLS_CIPHERS,
    TLS_SNI,
    TLS_SEED,
    TLS_PEER,
)
#: ``dcmrecv --help``, section by section.
DCMRECV_SECTIONS: Final = (
    GENERAL,
    IP_VERSION,
    PROFILE,
    AE_TITLE,
    OTHER_NETWORK,
    ACCESS,
    *_TLS_SECTIONS,
    MONITORING,
    END_OF_STUDY,
    SCALING,
    COMMITMENT,
    OUTPUT_GENERAL,
    SUBDIRECTORIES,
    FILENAMES,
    STORAGE_MODE,
    POLICIES,
)
#: ``storescp --help``, section by section.
STORESCP_SECTIONS: Final = (
    GENERAL,
    MULTI_PROCESS,
    IP_VERSION,
    PROFILE,
    PREFERRED_SYNTAXES,
    TCP_WRAPPER,
    OTHER_NETWORK,
    *_TLS_SECTIONS,
    OUTPUT_GENERAL,
    POLICIES,
    BIT_PRESERVING,
    FILE_FORMAT,
    WRITE_SYNTAX,
    NEW_VRS,
    GROUP_LENGTH,
    LENGTHS,
    PADDING,
    UN_ELEMENTS,
    COMPRESSION,
    SORTING,
    FILENAMES,
    EVENTS,
    MONITORING,
    COMMITMENT,
)

IPV6_UNSUPPORTED: Final = "IPv6 is not yet supported"
#: What the TLS options other than ``+tls`` itself need (DCMTK's checkDependence).
_WITH_TLS = ("--enable-tls",)


def _prefer(long: str, short: str, text: str) -> Option:
    # storescp's transfer syntax preferences: read as a block by its transfer syntax
    # step (dcmrecv.commands.storescp_groups), which builds the profile from them.
    return Option(long, short, text, section=PREFERRED_SYNTAXES, commands=STORESCP_ONLY)


def _storescp(long: str, short: str, text: str, section: Section, values: str = "") -> Option:
    """One of storescp's own options (output encoding, sorting, events...), read by the
    function of its group in dcmrecv.commands.storescp_groups."""
    return Option(long, short, text, section=section, values=values, commands=STORESCP_ONLY)


def _profile(long: str, short: str, text: str, profile: SecurityProfile) -> Option:
    return Option(
        long,
        short,
        text,
        section=TLS_PROFILE,
        field="tls.profile",
        const=profile,
        requires=_WITH_TLS,
    )


#: Every option of dcmrecv and storescp, in help order within each section.
OPTIONS: Final[tuple[Option, ...]] = (
    # --- general: read by the prologue (dcmrecv.commands.pipeline) -------------------------
    Option("--help", "-h", "print this help text and exit", section=GENERAL, exclusive=True),
    Option(
        "--version", None, "print version information and exit", section=GENERAL, exclusive=True
    ),
    Option("--arguments", None, "print expanded command line arguments", section=GENERAL),
    Option("--quiet", "-q", "quiet mode, print no warnings and errors", section=GENERAL),
    Option("--verbose", "-v", "verbose mode, print processing details", section=GENERAL),
    Option("--debug", "-d", "debug mode, print debug information", section=GENERAL),
    Option(
        "--log-level",
        "-ll",
        "(fatal, error, warn, info, debug, trace)\nuse level l for the logger",
        values="[l]evel: string constant",
        section=GENERAL,
    ),
    Option(
        "--log-config",
        "-lc",
        "use config file f for the logger",
        values="[f]ilename: string",
        section=GENERAL,
    ),
    Option(
        "--verbose-pc",
        "+v",
        "show presentation contexts in verbose mode",
        section=GENERAL,
        field="verbose_pc",
    ),
    # --- storescp's process options: read by its process step ------------------------------
    Option(
        "--single-process",
        None,
        "single process mode (default)",
        section=MULTI_PROCESS,
        commands=STORESCP_ONLY,
    ),
    Option(
        "--fork",
        None,
        "accepted: every association already runs\nconcurrently, in its own thread",
        section=MULTI_PROCESS,
        commands=STORESCP_ONLY,
    ),
    # --- network --------------------------------------------------------------------------
    Option("--ipv4", "-i4", "use IPv4 only (default)", section=IP_VERSION),
    Option(
        "--ipv6",
        "-i6",
        "use IPv6 only (not yet supported)",
        section=IP_VERSION,
        unsupported=IPV6_UNSUPPORTED,
    ),
    Option(
        "--ip-auto",
        "-i0",
        "use IPv6/IPv4 dual stack (not yet supported)",
        section=IP_VERSION,
        unsupported=IPV6_UNSUPPORTED,
    ),
    # Loaded by the profile step, after the checks (its errors have their own exit code).
    Option(
        "--config-file",
        "-xf",
        "use profile p from configuration file f",
        values="[f]ilename, [p]rofile: string",
        section=PROFILE,
        storescp=Variant(help="use profile p from config file f"),
    ),
    _prefer("--prefer-uncompr", "+x=", "prefer explicit VR local byte order (default)"),
    _prefer("--prefer-little", "+xe", "prefer explicit VR little endian TS"),
    _prefer("--prefer-big", "+xb", "prefer explicit VR big endian TS"),
    _prefer("--prefer-lossless", "+xs", "prefer default JPEG lossless TS"),
    _prefer("--prefer-jpeg8", "+xy", "prefer default JPEG lossy TS for 8 bit data"),
    _prefer("--prefer-jpeg12", "+xx", "prefer default JPEG lossy TS for 12 bit data"),
    _prefer("--prefer-j2k-lossless", "+xv", "prefer JPEG 2000 lossless TS"),
    _prefer("--prefer-j2k-lossy", "+xw", "prefer JPEG 2000 lossy TS"),
    _prefer("--prefer-jls-lossless", "+xt", "prefer JPEG-LS lossless TS"),
    _prefer("--prefer-jls-lossy", "+xu", "prefer JPEG-LS lossy TS"),
    _prefer("--prefer-mpeg2", "+xm", "prefer MPEG2 Main Profile @ Main Level TS"),
    _prefer("--prefer-mpeg2-high", "+xh", "prefer MPEG2 Main Profile @ High Level TS"),
    _prefer("--prefer-mpeg4", "+xn", "prefer MPEG4 AVC/H.264 HP / Level 4.1 TS"),
    _prefer("--prefer-mpeg4-bd", "+xl", "prefer MPEG4 AVC/H.264 BD-compatible TS"),
    _prefer("--prefer-mpeg4-2-2d", "+x2", "prefer MPEG4 AVC/H.264 HP / Level 4.2 TS (2D)"),
    _prefer("--prefer-mpeg4-2-3d", "+x3", "prefer MPEG4 AVC/H.264 HP / Level 4.2 TS (3D)"),
    _prefer("--prefer-mpeg4-2-st", "+xo", "prefer MPEG4 AVC/H.264 Stereo HP / Level 4.2 TS"),
    _prefer("--prefer-hevc", "+x4", "prefer HEVC/H.265 Main Profile / Level 5.1 TS"),
    _prefer("--prefer-hevc10", "+x5", "prefer HEVC/H.265 Main 10 Profile / L5.1 TS"),
    _prefer("--prefer-rle", "+xr", "prefer RLE lossless TS"),
    _prefer("--prefer-deflated", "+xd", "prefer deflated expl. VR little endian TS"),
    _prefer("--implicit", "+xi", "accept implicit VR little endian TS only"),
    _prefer("--accept-all", "+xa", "accept all supported transfer syntaxes"),
    Option(
        "--access-full",
        "-ac",
        "accept connections from any host (default)",
        section=TCP_WRAPPER,
        commands=STORESCP_ONLY,
    ),
    Option(
        "--access-control",
        "+ac",
        "enforce host access control rules",
        section=TCP_WRAPPER,
        commands=STORESCP_ONLY,
        unsupported="TCP wrapper access control (+ac) is not supported",
    ),
    # dcmrecv's -aet and -uca set three fields together: their step is aetitle_or_called.
    Option(
        "--use-called-aetitle",
        "-uca",
        "always respond with called AE title (default)",
        section=AE_TITLE,
        commands=DCMRECV_ONLY,
    ),
    Option(
        "--inetd",
        "-id",
        "run from inetd super server (not with --fork)",
        section=OTHER_NETWORK,
        commands=STORESCP_ONLY,
    ),
    Option(
        "--socket-timeout",
        "-ts",
        "timeout for network socket (0 for none);\naccepted, see --acse/--dimse-timeout",
        values="[s]econds: integer (default: 60)",
        section=OTHER_NETWORK,
        commands=STORESCP_ONLY,
        parse=values.signed(-1),
    ),
    Option(
        "--acse-timeout",
        "-ta",
        "timeout for ACSE messages",
        values="[s]econds: integer (default: 30)",
        section=OTHER_NETWORK,
        field="acse_timeout",
        parse=values.seconds(1),
    ),
    Option(
        "--dimse-timeout",
        "-td",
        "timeout for DIMSE messages",
        values="[s]econds: integer (default: unlimited)",
        section=OTHER_NETWORK,
        field="dimse_timeout",
        parse=values.seconds(1),
    ),
    Option(
        "--aetitle",
        "-aet",
        "set my AE title and check called AE title",
        values="[a]etitle: string",
        section=AE_TITLE,
        storescp=Variant(
            help="set my AE title (default: STORESCP)", section=OTHER_NETWORK, field="aetitle"
        ),
    ),
    Option(
        "--max-pdu",
        "-pdu",
        "set max receive pdu to n bytes (default: 16384)",
        values="[n]umber of bytes: integer (4096..131072)",
        section=OTHER_NETWORK,
        field="max_pdu",
        parse=values.max_pdu,
    ),
    Option(
        "--disable-host-lookup",
        "-dhl",
        "disable hostname lookup",
        section=OTHER_NETWORK,
        field="disable_host_lookup",
    ),
    Option(
        "--max-associations",
        None,
        "accept at most n associations at a time,\nreject more (default: unlimited)",
        values="[n]umber: integer",
        section=OTHER_NETWORK,
        field="max_associations",
        parse=values.unsigned(1),
        storescp=Variant(
            help="limit number of parallel associations to m\n"
            "(default: unlimited; no --fork needed)",
            values="[m]ax: integer",
            section=MULTI_PROCESS,
        ),
    ),
    # storescp's network test options.  --ignore is one of them there (after --reject)
    # and a storage mode after -B/+B in dcmrecv's help, so the storage modes stand here.
    Option(
        "--refuse",
        None,
        "refuse association",
        section=OTHER_NETWORK,
        commands=STORESCP_ONLY,
        field="refuse_associations",
    ),
    Option(
        "--reject",
        None,
        "reject association if no implement. class UID",
        section=OTHER_NETWORK,
        commands=STORESCP_ONLY,
        field="require_implementation_uid",
    ),
    # storescp: -B/+B decide the output encoding too, and --ignore wins over both, so
    # its storage step reads them (dcmrecv.commands.storescp_groups).
    Option(
        "--normal",
        "-B",
        "allow implicit format conversions (default)",
        section=STORAGE_MODE,
        field="storage_mode",
        const=StorageMode.NORMAL,
        storescp=Variant(section=BIT_PRESERVING, field=None),
    ),
    Option(
        "--bit-preserving",
        "+B",
        "write dataset exactly as received",
        section=STORAGE_MODE,
        field="storage_mode",
        const=StorageMode.BIT_PRESERVING,
        storescp=Variant(help="write data exactly as read", section=BIT_PRESERVING, field=None),
    ),
    Option(
        "--ignore",
        None,
        "ignore dataset, receive but do not store it",
        section=STORAGE_MODE,
        field="storage_mode",
        const=StorageMode.IGNORE,
        storescp=Variant(
            help="ignore store data, receive but do not store",
            section=OTHER_NETWORK,
            field=None,
        ),
    ),
    Option(
        "--sleep-after",
        None,
        "sleep s seconds after store (default: 0)",
        values="[s]econds: integer",
        section=OTHER_NETWORK,
        commands=STORESCP_ONLY,
        field="sleep_after_store",
        parse=values.seconds(0),
    ),
    Option(
        "--sleep-during",
        None,
        "sleep s seconds during store (default: 0)",
        values="[s]econds: integer",
        section=OTHER_NETWORK,
        commands=STORESCP_ONLY,
        field="sleep_during_store",
        parse=values.seconds(0),
    ),
    Option(
        "--abort-after",
        None,
        "abort association after receipt of C-STORE-RQ\n(but before sending response)",
        section=OTHER_NETWORK,
        commands=STORESCP_ONLY,
        field="abort_after_store",
    ),
    Option(
        "--abort-during",
        None,
        "abort association during receipt of C-STORE-RQ",
        section=OTHER_NETWORK,
        commands=STORESCP_ONLY,
        field="abort_during_store",
    ),
    # Read by storescp's transfer syntax step (the syntaxes it accepts for any class).
    Option(
        "--promiscuous",
        "-pm",
        "promiscuous mode, accept unknown SOP classes\n(not with --config-file)",
        section=OTHER_NETWORK,
        commands=STORESCP_ONLY,
    ),
    Option(
        "--uid-padding",
        "-up",
        "silently correct space-padded UIDs (always done:\nUIDs are compared without padding)",
        section=OTHER_NETWORK,
        commands=STORESCP_ONLY,
    ),
    Option(
        "--shutdown-timeout",
        None,
        "on SIGTERM/SIGINT, let running associations\nfinish for s seconds (default: 30)",
        values="[s]econds: number",
        section=OTHER_NETWORK,
        field="shutdown_timeout",
        parse=values.number(0.0),
    ),
    # --accept-calling is read with --accept-calling-file (dcmrecv.commands.groups),
    # whose files are read after the profile.
    Option(
        "--accept-calling",
        None,
        "accept associations only from calling AE title a\n"
        "(repeatable; others: A-ASSOCIATE-RJ 1,1,3)",
        values="[a]etitle: string",
        section=ACCESS,
        commands=DCMRECV_ONLY,
    ),
    Option(
        "--accept-calling-file",
        None,
        "accept the calling AE titles listed in f,\none per line, # starts a comment",
        values="[f]ilename: string",
        section=ACCESS,
        commands=DCMRECV_ONLY,
    ),
    Option(
        "--accept-from",
        None,
        "accept connections only from network n\n(repeatable; others are closed at connect)",
        values="[n]etwork: address or CIDR, e.g. 10.0.0.0/8",
        section=ACCESS,
        commands=DCMRECV_ONLY,
        field="accept_from",
        parse=values.network,
        many=True,
    ),
    Option(
        "--max-associations-per-peer",
        None,
        "let one peer (IPv4 address, IPv6 /64) hold at most\n"
        "n connections; reject more (default: 256)",
        values="[n]umber: integer",
        section=ACCESS,
        commands=DCMRECV_ONLY,
        field="max_associations_per_peer",
        parse=values.unsigned(1, 1024),
    ),
    # --- TLS (dcmtls' DcmTLSOptions): plain values, the context is built by serve --------
    Option(
        "--disable-tls",
        "-tls",
        "use normal TCP/IP connection (default)",
        section=TLS_TRANSPORT,
        field="tls",
        const=None,
    ),
    Option(
        "--enable-tls",
        "+tls",
        "use authenticated secure TLS connection",
        values="[p]rivate key file, [c]ertificate file: string",
        section=TLS_TRANSPORT,
        field="tls",
        parse=values.tls_files,
    ),
    Option(
        "--std-passwd",
        "+ps",
        "prompt user to type password on stdin (default)",
        section=TLS_PASSWORD,
        field="tls.password",
        const=None,
        requires=_WITH_TLS,
    ),
    Option(
        "--use-passwd",
        "+pw",
        "use specified password",
        values="[p]assword: string",
        section=TLS_PASSWORD,
        field="tls.password",
        requires=_WITH_TLS,
    ),
    Option(
        "--null-passwd",
        "-pw",
        "use empty string as password",
        section=TLS_PASSWORD,
        field="tls.password",
        const="",
        requires=_WITH_TLS,
    ),
    Option(
        "--pem-keys",
        "-pem",
        "read keys and certificates as PEM file (default)",
        section=TLS_FORMAT,
        field="tls.key_format",
        const=KeyFormat.PEM,
        requires=_WITH_TLS,
    ),
    Option(
        "--der-keys",
        "-der",
        "read keys and certificates as DER file",
        section=TLS_FORMAT,
        field="tls.key_format",
        const=KeyFormat.DER,
        requires=_WITH_TLS,
    ),
    Option(
        "--add-cert-file",
        "+cf",
        "add certificate file to list of certificates",
        values="[f]ilename: string",
        section=TLS_AUTHORITY,
        field="tls.ca_files",
        many=True,
        requires=_WITH_TLS,
    ),
    Option(
        "--add-cert-dir",
        "+cd",
        "add certificates in d to list of certificates",
        values="[d]irectory: string",
        section=TLS_AUTHORITY,
        field="tls.ca_dirs",
        many=True,
        requires=_WITH_TLS,
    ),
    Option(
        "--add-crl-file",
        "+crl",
        "add certificate revocation list file\n(implies --enable-crl-vfy)",
        values="[f]ilename: string",
        section=TLS_AUTHORITY,
        field="tls.crl_files",
        many=True,
        requires=_WITH_TLS,
    ),
    Option(
        "--enable-crl-vfy",
        "+crv",
        "enable leaf CRL verification",
        section=TLS_AUTHORITY,
        field="tls.crl_mode",
        const=CRLMode.LEAF,
        requires=_WITH_TLS,
    ),
    Option(
        "--enable-crl-all",
        "+cra",
        "enable full chain CRL verification",
        section=TLS_AUTHORITY,
        field="tls.crl_mode",
        const=CRLMode.CHAIN,
        requires=_WITH_TLS,
    ),
    Option(
        "--list-profiles",
        "+ph",
        "list supported TLS profiles and exit",
        section=TLS_PROFILE,
        exclusive=True,
    ),
    _profile(
        "--profile-8996",
        "+pg",
        "BCP 195 RFC 8996 TLS Profile (default)",
        SecurityProfile.BCP195_RFC8996,
    ),
    _profile(
        "--profile-8996-mod",
        "+pm",
        "Modified BCP 195 RFC 8996 TLS Profile",
        SecurityProfile.BCP195_RFC8996_MODIFIED,
    ),
    _profile(
        "--profile-bcp195-nd",
        "+py",
        "Non-downgrading BCP 195 TLS Profile (retired)",
        SecurityProfile.BCP195_ND,
    ),
    _profile("--profile-bcp195", "+px", "BCP 195 TLS Profile (retired)", SecurityProfile.BCP195),
    _profile(
        "--profile-bcp195-ex",
        "+pz",
        "Extended BCP 195 TLS Profile (retired)",
        SecurityProfile.BCP195_EXTENDED,
    ),
    _profile(
        "--profile-basic",
        "+pb",
        "Basic TLS Secure Transport Connection Profile\n(retired, needs 3DES in OpenSSL)",
        SecurityProfile.BASIC,
    ),
    _profile(
        "--profile-aes",
        "+pa",
        "AES TLS Secure Transport Connection Profile\n(retired)",
        SecurityProfile.AES,
    ),
    _profile(
        "--profile-null",
        "+pn",
        "Authenticated unencrypted communication\n(retired, was used in IHE ATNA)",
        SecurityProfile.NULL,
    ),
    Option(
        "--list-ciphers",
        "+cc",
        "list supported TLS ciphersuites and exit",
        section=TLS_CIPHERS,
        exclusive=True,
    ),
    Option(
        "--cipher",
        "+cs",
        "add ciphersuite to list of negotiated suites\n(not with --profile-bcp195-ex)",
        values="[c]iphersuite name: string",
        section=TLS_CIPHERS,
        field="tls.ciphers",
        many=True,
        requires=_WITH_TLS,
        conflicts=("--profile-bcp195-ex",),
    ),
    Option(
        "--dhparam",
        "+dp",
        "read DH parameters for DH/DSS ciphersuites",
        values="[f]ilename: string",
        section=TLS_CIPHERS,
        field="tls.dhparam",
        requires=_WITH_TLS,
    ),
    Option(
        "--no-sni",
        None,
        "do not use SNI (default)",
        section=TLS_SNI,
        conflicts=("--expect-sni",),
    ),
    Option(
        "--expect-sni",
        None,
        "expect requests for server name s",
        values="[s]erver name: string",
        section=TLS_SNI,
        field="tls.expected_sni",
    ),
    Option(
        "--seed",
        "+rs",
        "accepted and ignored: OpenSSL seeds itself",
        values="[f]ilename: string",
        section=TLS_SEED,
        field="tls.seed_file",
        requires=_WITH_TLS,
    ),
    # +ws writes back to the --seed file: read by the tls_write_seed step.
    Option(
        "--write-seed",
        "+ws",
        "accepted and ignored (only with --seed)",
        section=TLS_SEED,
        requires=(*_WITH_TLS, "--seed"),
    ),
    Option(
        "--write-seed-file",
        "+wf",
        "accepted and ignored",
        values="[f]ilename: string (only with --seed)",
        section=TLS_SEED,
        requires=(*_WITH_TLS, "--seed"),
    ),
    Option(
        "--require-peer-cert",
        "-rc",
        "verify peer certificate, fail if absent (default)",
        section=TLS_PEER,
        field="tls.verification",
        const=PeerVerification.REQUIRE,
        requires=_WITH_TLS,
    ),
    Option(
        "--verify-peer-cert",
        "-vc",
        "verify peer certificate if present",
        section=TLS_PEER,
        field="tls.verification",
        const=PeerVerification.VERIFY,
        requires=_WITH_TLS,
    ),
    Option(
        "--ignore-peer-cert",
        "-ic",
        "don't verify peer certificate",
        section=TLS_PEER,
        field="tls.verification",
        const=PeerVerification.IGNORE,
        requires=_WITH_TLS,
    ),
    # --- operations (README, "Operations"; not in DCMTK) ----------------------------------
    Option(
        "--http-port",
        None,
        "serve /metrics, /healthz and /readyz over HTTP\non port n (0: any free port)",
        values="[n]umber: integer (default: no HTTP)",
        section=MONITORING,
        field="http_port",
        parse=values.unsigned(0, 65535),
    ),
    Option(
        "--http-address",
        None,
        "listen for HTTP on address a",
        values="[a]ddress: IP address (default: 127.0.0.1)",
        section=MONITORING,
        field="http_address",
        parse=values.http_address,
    ),
    Option(
        "--event-log",
        None,
        "append one JSON line per stored or failed\ninstance, association end and study to f",
        values="[f]ilename: string (- for standard output)",
        section=MONITORING,
        field="event_log",
        parse=values.path,
    ),
    # Read by the prologue with the other logging options.
    Option(
        "--log-format",
        None,
        "write log lines as DCMTK does (dcmtk, default)\nor as JSON objects (json)",
        values="[f]ormat: dcmtk or json",
        section=MONITORING,
    ),
    # dcmrecv's study completion: read together by the study_completion step.
    Option(
        "--eostudy-timeout",
        None,
        "a study is complete when none of its instances\narrived for s seconds",
        values="[s]econds: number",
        section=END_OF_STUDY,
        commands=DCMRECV_ONLY,
    ),
    Option(
        "--exec-on-eostudy",
        None,
        "run shell command c for each complete study,\nits JSON manifest on standard input",
        values="[c]ommand: string",
        section=END_OF_STUDY,
        commands=DCMRECV_ONLY,
    ),
    Option(
        "--exec-timeout",
        None,
        "kill the --exec-on-eostudy command after s seconds",
        values="[s]econds: number (default: 60)",
        section=END_OF_STUDY,
        commands=DCMRECV_ONLY,
    ),
    Option(
        "--workers",
        None,
        "serve associations in n processes, one port\n(0: one per CPU; default: 1)",
        values="[n]umber: integer",
        section=SCALING,
        field="workers",
        parse=values.workers,
        commands=DCMRECV_ONLY,
    ),
    Option(
        "--state",
        None,
        "keep studies and the instance index in u:\n"
        "sqlite:///path or postgresql://user@host/db\n"
        "(default: a file in the output directory)",
        values="[u]rl: string",
        section=SCALING,
        field="state",
        parse=values.state_url,
        commands=DCMRECV_ONLY,
    ),
    # --- storage commitment (README, "Storage commitment"; PS3.4 Annex J) -------------------
    Option(
        "--storage-commitment",
        None,
        "accept Storage Commitment Push Model requests\n"
        "and report which instances are safely stored",
        section=COMMITMENT,
        field="storage_commitment",
    ),
    Option(
        "--commitment-peer",
        None,
        "send reports for requester AE title a to h:p\n(repeatable; others are refused)",
        values="[p]eer: a=h:p, e.g. MODALITY=10.0.0.7:104",
        section=COMMITMENT,
        field="commitment_peers",
        parse=values.commitment_peer,
        many=True,
        requires=("--storage-commitment",),
    ),
    Option(
        "--commitment-peers",
        None,
        "read requesters from f: AET HOST PORT a line,\nor DCMTK's dcmqrscp.cfg HostTable",
        values="[f]ilename: string",
        section=COMMITMENT,
        requires=("--storage-commitment",),
    ),
    Option(
        "--commitment-verify",
        None,
        "re-read each file and check its SHA-256\nbefore reporting it committed",
        section=COMMITMENT,
        field="commitment_verify",
        requires=("--storage-commitment",),
    ),
    Option(
        "--commitment-retry",
        None,
        "try to deliver a report for s seconds",
        values="[s]econds: number (default: 3600)",
        section=COMMITMENT,
        field="commitment_retry",
        parse=values.number(0.0),
        requires=("--storage-commitment",),
    ),
    # --- output ---------------------------------------------------------------------------
    Option(
        "--output-directory",
        "-od",
        "write received objects to existing directory d",
        values='[d]irectory: string (default: ".")',
        section=OUTPUT_GENERAL,
        field="output_directory",
        parse=values.path,
        # storescp prints file paths joined to the directory as given.
        storescp=Variant(field="storescp.output_directory", parse=values.normalized_directory),
    ),
    Option(
        "--no-fsync",
        None,
        "answer Success without waiting for the disk;\n"
        "by default every file and its directory are\n"
        "flushed to disk (fsync) before Success is sent",
        section=OUTPUT_GENERAL,
        field="fsync",
        const=False,
    ),
    Option(
        "--no-subdir",
        "-s",
        "do not generate any subdirectories (default)",
        section=SUBDIRECTORIES,
        commands=DCMRECV_ONLY,
        field="subdirectory",
        const=SubdirectoryMode.NONE,
    ),
    Option(
        "--series-date-subdir",
        "+ssd",
        "generate subdirectories from series date",
        section=SUBDIRECTORIES,
        commands=DCMRECV_ONLY,
        field="subdirectory",
        const=SubdirectoryMode.SERIES_DATE,
    ),
    # storescp's file names are read with its sorting options by its naming step.
    Option(
        "--default-filenames",
        "+fd",
        "generate filename from instance UID (default)",
        section=FILENAMES,
        field="filename_mode",
        const=FilenameMode.DEFAULT,
        storescp=Variant(short="-uf", field=None),
    ),
    Option(
        "--unique-filenames",
        "+fu",
        "generate unique filename based on new UID",
        section=FILENAMES,
        field="filename_mode",
        const=FilenameMode.UNIQUE,
        storescp=Variant(short="+uf", help="generate unique filenames", field=None),
    ),
    Option(
        "--short-unique-names",
        "+fsu",
        "generate short pseudo-random unique filename",
        section=FILENAMES,
        commands=DCMRECV_ONLY,
        field="filename_mode",
        const=FilenameMode.SHORT_UNIQUE,
    ),
    Option(
        "--system-time-names",
        "+fst",
        "generate filename from current system time",
        section=FILENAMES,
        commands=DCMRECV_ONLY,
        field="filename_mode",
        const=FilenameMode.SYSTEM_TIME,
    ),
    _storescp("--timenames", "-tn", "generate filename from creation time", FILENAMES),
    Option(
        "--filename-extension",
        "-fe",
        "append e to all generated filenames",
        values="[e]xtension: string (default: none)",
        section=FILENAMES,
        field="filename_extension",
        parse=values.filename_extension,
        storescp=Variant(
            help="append e to all filenames",
            values="[e]xtension: string",
            field=None,
            parse=None,
        ),
    ),
    Option(
        "--output-template",
        None,
        "name files by template t, e.g. {PatientID}/\n"
        "{StudyDate}_{AccessionNumber}/{SOPInstanceUID}.dcm\n"
        "(replaces subdirectory and filename generation)",
        values="[t]emplate: string",
        section=POLICIES,
        commands=DCMRECV_ONLY,
        field="output_template",
        parse=values.output_template,
    ),
    Option(
        "--template-fallback",
        None,
        "use word w for missing template values",
        values="[w]ord: string (default: UNKNOWN)",
        section=POLICIES,
        commands=DCMRECV_ONLY,
        field="template_fallback",
        parse=values.template_fallback,
    ),
    Option(
        "--on-duplicate",
        None,
        "a second, different copy of a stored instance:\n"
        "overwrite (default), keep, rename or reject",
        values="[p]olicy: string",
        section=POLICIES,
        field="on_duplicate",
        parse=values.duplicate_policy,
    ),
    Option(
        "--min-free-space",
        None,
        "refuse associations and C-STOREs while free space\non the output file system is below s",
        values="[s]ize: e.g. 5G, 500M or 10%",
        section=POLICIES,
        field="min_free_space",
        parse=values.watermark,
    ),
    Option(
        "--quarantine-dir",
        None,
        "keep data sets refused after receipt in d,\neach with a JSON sidecar saying why",
        values="[d]irectory: string",
        section=POLICIES,
        field="quarantine_directory",
        parse=values.path,
    ),
    Option(
        "--quarantine-limit",
        None,
        "quarantine holds at most s, oldest removed first",
        values="[s]ize: e.g. 1G or 5% (default: 5%)",
        section=POLICIES,
        field="quarantine_limit",
        parse=values.quarantine_limit,
    ),
    # Acted on by the pipeline's check_config step, after the profile is loaded.
    Option(
        "--check-config",
        None,
        "check the -xf profile (and --output-template),\nprint the negotiation table and exit",
        section=POLICIES,
        exclusive=True,
    ),
    # --- storescp's output encoding: read as a group by its output_encoding step ----------
    _storescp("--write-file", "+F", "write file format (default)", FILE_FORMAT),
    _storescp("--write-dataset", "-F", "write data set without file meta information", FILE_FORMAT),
    _storescp("--write-xfer-same", "+t=", "write with same TS as input (default)", WRITE_SYNTAX),
    _storescp(
        "--write-xfer-little", "+te", "write with explicit VR little endian TS", WRITE_SYNTAX
    ),
    _storescp("--write-xfer-big", "+tb", "write with explicit VR big endian TS", WRITE_SYNTAX),
    _storescp(
        "--write-xfer-implicit", "+ti", "write with implicit VR little endian TS", WRITE_SYNTAX
    ),
    _storescp(
        "--write-xfer-deflated",
        "+td",
        "write with deflated expl. VR little endian TS",
        WRITE_SYNTAX,
    ),
    _storescp("--enable-new-vr", "+u", "enable support for new VRs (UN/UT) (default)", NEW_VRS),
    _storescp("--disable-new-vr", "-u", "disable support for new VRs, convert to OB", NEW_VRS),
    _storescp(
        "--group-length-recalc",
        "+g=",
        "recalculate group lengths if present (default)",
        GROUP_LENGTH,
    ),
    _storescp(
        "--group-length-create",
        "+g",
        "always write with group length elements\n(top-level data set only, see README)",
        GROUP_LENGTH,
    ),
    _storescp(
        "--group-length-remove", "-g", "always write without group length elements", GROUP_LENGTH
    ),
    _storescp("--length-explicit", "+e", "write with explicit lengths (default)", LENGTHS),
    _storescp("--length-undefined", "-e", "write with undefined lengths", LENGTHS),
    _storescp("--padding-off", "-p", "no padding (default)", PADDING),
    _storescp(
        "--padding-create",
        "+p",
        "align file on multiple of f bytes and items on\nmultiple of i bytes",
        PADDING,
        values="[f]ile-pad [i]tem-pad: integer",
    ),
    _storescp("--retain-un", "-uc", "retain elements as UN (default)", UN_ELEMENTS),
    _storescp("--convert-un", "+uc", "convert to real VR if known", UN_ELEMENTS),
    _storescp(
        "--compression-level",
        "+cl",
        "0=uncompressed, 1=fastest, 9=best compression",
        COMPRESSION,
        values="[l]evel: integer (default: 6)",
    ),
    # --- storescp's sorting: read with its file names by its naming step ------------------
    _storescp(
        "--sort-conc-studies",
        "-ss",
        "sort studies using prefix p and a timestamp",
        SORTING,
        values="[p]refix: string",
    ),
    _storescp(
        "--sort-on-study-uid",
        "-su",
        "sort studies using prefix p and the Study\nInstance UID",
        SORTING,
        values="[p]refix: string",
    ),
    _storescp(
        "--sort-on-patientname",
        "-sp",
        "sort studies using the Patient's Name and\na timestamp",
        SORTING,
    ),
    # --- storescp's events: read as a group by its events step -----------------------------
    _storescp(
        "--exec-on-reception",
        "-xcr",
        "execute command c after having received and\nprocessed one C-STORE-RQ message",
        EVENTS,
        values="[c]ommand: string",
    ),
    _storescp(
        "--exec-on-eostudy",
        "-xcs",
        "execute command c after having received and\n"
        "processed all C-STORE-RQ messages that belong\nto one study",
        EVENTS,
        values="[c]ommand: string",
    ),
    _storescp(
        "--rename-on-eostudy",
        "-rns",
        "having received and processed all C-STORE-RQ\n"
        "messages that belong to one study, rename\noutput files according to certain pattern",
        EVENTS,
    ),
    _storescp(
        "--eostudy-timeout",
        "-tos",
        "specifies a timeout of t seconds for\nend-of-study determination",
        EVENTS,
        values="[t]imeout: integer",
    ),
    _storescp("--exec-sync", "-xs", "execute command synchronously in foreground", EVENTS),
)

#: The old storescp's spellings (its 1998 manual), as aliases of today's options, in
#: that manual's order (``storescp --help`` lists them so at its end).  The old output
#: spellings (``-F +F +t= +te +tb +ti +g +g= -g +e -e -p +p +u -u +B``) are today's
#: with the same meaning; where an old spelling is also a current one, the current
#: meaning wins (Table.collisions; none today).
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

#: The options of each command, as its parser, help and checks see them.
DCMRECV_TABLE: Final = Table(DCMRECV, OPTIONS, DCMRECV_SECTIONS)
STORESCP_TABLE: Final = Table(STORESCP, OPTIONS, STORESCP_SECTIONS, OLD_SPELLINGS)
