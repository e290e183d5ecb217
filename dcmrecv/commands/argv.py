"""DCMTK-style command line parsing for ``dcmrecv``: pure functions over strings.

DCMTK's grammar is not the POSIX/GNU one that click implements, and scripts
written for DCMTK depend on its differences (dcmrecv.man, "NOTES" and DCMTK's
``OFCommandLine`` behaviour, checked against DCMTK's ``dcmrecv``):

* options start with ``-`` or ``+`` and are matched as whole words: ``-ssd`` is an
  unknown option, never ``-s -s -d``; ``+fu=`` is unknown, never ``+fu`` with a value;
* a token is an option only if it has two or more characters and a sign is not
  followed by a digit (``-5`` and ``-`` are parameters);
* an option's values are the next tokens, taken verbatim even when they look like
  options (``-aet -v`` sets the AE title ``-v``);
* options and parameters may come in any order; ``--`` is an unknown option;
* ``@file`` is replaced by the words in that file (see :func:`split_command_file`);
* the first problem found stops parsing, with DCMTK's message.

:func:`parse` returns a :class:`CommandLine` that keeps the order of the options, so
the caller can let the rightmost of mutually exclusive options win, as DCMTK does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from dcmrecv.boundedread import FileTooLarge

#: Prefix of a command file argument (DCMTK's ``@filename``).
COMMAND_FILE_PREFIX = "@"

_IPV6 = "IPv6 is not yet supported"


@dataclass(frozen=True)
class OptionSpec:
    """One command line option: its spellings, value count and help entry."""

    long: str
    short: str | None
    nargs: int
    group: str
    subgroup: str | None
    #: Description of the values, e.g. ``[s]econds: integer (default: 30)``.
    values: str
    #: What the option does; may span several lines.
    help: str
    #: Exclusive options (``--help``, ``--version``) skip the parameter check.
    exclusive: bool = False
    #: Recognised so that the command line parses, but refused with this message.
    unsupported: str | None = None


class OptionTable:
    """Builds an option table section by section, in help order.

    Shared by dcmrecv's table (below) and storescp's (storescp_options.py), which
    also takes over specs of this table where the two commands spell an option
    and describe it alike.
    """

    def __init__(self) -> None:
        self.specs: list[OptionSpec] = []

    def section(self, group: str, subgroup: str | None) -> Callable[..., None]:
        """An ``add(long, short, help, *, nargs, values, exclusive, unsupported)``
        that appends options to ``group`` / ``subgroup``."""

        def add(
            long: str,
            short: str | None,
            help: str,
            *,
            nargs: int = 0,
            values: str = "",
            exclusive: bool = False,
            unsupported: str | None = None,
        ) -> None:
            self.specs.append(
                OptionSpec(
                    long, short, nargs, group, subgroup, values, help, exclusive, unsupported
                )
            )

        return add

    def reuse(self, group: str, subgroup: str | None, *longs: str) -> None:
        """Append dcmrecv's specs of these long options, moved to this section."""
        for long in longs:
            spec = next(spec for spec in OPTIONS if spec.long == long)
            self.specs.append(replace(spec, group=group, subgroup=subgroup))


def _specs() -> tuple[OptionSpec, ...]:
    table = OptionTable()
    section = table.section

    general = "general options:"
    add = section(general, None)
    add("--help", "-h", "print this help text and exit", exclusive=True)
    add("--version", None, "print version information and exit", exclusive=True)
    add("--arguments", None, "print expanded command line arguments")
    add("--quiet", "-q", "quiet mode, print no warnings and errors")
    add("--verbose", "-v", "verbose mode, print processing details")
    add("--debug", "-d", "debug mode, print debug information")
    add(
        "--log-level",
        "-ll",
        "(fatal, error, warn, info, debug, trace)\nuse level l for the logger",
        nargs=1,
        values="[l]evel: string constant",
    )
    add(
        "--log-config",
        "-lc",
        "use config file f for the logger",
        nargs=1,
        values="[f]ilename: string",
    )
    add("--verbose-pc", "+v", "show presentation contexts in verbose mode")

    network = "network options:"
    add = section(network, "IP protocol version:")
    add("--ipv4", "-i4", "use IPv4 only (default)")
    add("--ipv6", "-i6", "use IPv6 only (not yet supported)", unsupported=_IPV6)
    add("--ip-auto", "-i0", "use IPv6/IPv4 dual stack (not yet supported)", unsupported=_IPV6)
    add = section(network, "association negotiation profile from configuration file:")
    add(
        "--config-file",
        "-xf",
        "use profile p from configuration file f",
        nargs=2,
        values="[f]ilename, [p]rofile: string",
    )
    add = section(network, "application entity title:")
    add("--use-called-aetitle", "-uca", "always respond with called AE title (default)")
    add(
        "--aetitle",
        "-aet",
        "set my AE title and check called AE title",
        nargs=1,
        values="[a]etitle: string",
    )
    add = section(network, "other network options:")
    add(
        "--acse-timeout",
        "-ta",
        "timeout for ACSE messages",
        nargs=1,
        values="[s]econds: integer (default: 30)",
    )
    add(
        "--dimse-timeout",
        "-td",
        "timeout for DIMSE messages",
        nargs=1,
        values="[s]econds: integer (default: unlimited)",
    )
    add(
        "--max-pdu",
        "-pdu",
        "set max receive pdu to n bytes (default: 16384)",
        nargs=1,
        values="[n]umber of bytes: integer (4096..131072)",
    )
    add("--disable-host-lookup", "-dhl", "disable hostname lookup")
    add(
        "--max-associations",
        None,
        "accept at most n associations at a time,\nreject more (default: unlimited)",
        nargs=1,
        values="[n]umber: integer",
    )
    add(
        "--shutdown-timeout",
        None,
        "on SIGTERM/SIGINT, let running associations\nfinish for s seconds (default: 30)",
        nargs=1,
        values="[s]econds: number",
    )

    # Our own options: long names only, so they never meet a DCMTK spelling.
    add = section(network, "access control (not in DCMTK):")
    add(
        "--accept-calling",
        None,
        "accept associations only from calling AE title a\n"
        "(repeatable; others: A-ASSOCIATE-RJ 1,1,3)",
        nargs=1,
        values="[a]etitle: string",
    )
    add(
        "--accept-calling-file",
        None,
        "accept the calling AE titles listed in f,\none per line, # starts a comment",
        nargs=1,
        values="[f]ilename: string",
    )
    add(
        "--accept-from",
        None,
        "accept connections only from network n\n(repeatable; others are closed at connect)",
        nargs=1,
        values="[n]etwork: address or CIDR, e.g. 10.0.0.0/8",
    )
    add(
        "--max-associations-per-peer",
        None,
        "let one peer (IPv4 address, IPv6 /64) hold at most\n"
        "n connections; reject more (default: 256)",
        nargs=1,
        values="[n]umber: integer",
    )

    tls = "transport layer security (TLS) options:"
    add = section(tls, "transport protocol stack:")
    add("--disable-tls", "-tls", "use normal TCP/IP connection (default)")
    add(
        "--enable-tls",
        "+tls",
        "use authenticated secure TLS connection",
        nargs=2,
        values="[p]rivate key file, [c]ertificate file: string",
    )
    add = section(tls, "private key password (only with --enable-tls):")
    add("--std-passwd", "+ps", "prompt user to type password on stdin (default)")
    add(
        "--use-passwd",
        "+pw",
        "use specified password",
        nargs=1,
        values="[p]assword: string",
    )
    add("--null-passwd", "-pw", "use empty string as password")
    add = section(tls, "key and certificate file format:")
    add("--pem-keys", "-pem", "read keys and certificates as PEM file (default)")
    add("--der-keys", "-der", "read keys and certificates as DER file")
    add = section(tls, "certification authority:")
    add(
        "--add-cert-file",
        "+cf",
        "add certificate file to list of certificates",
        nargs=1,
        values="[f]ilename: string",
    )
    add(
        "--add-cert-dir",
        "+cd",
        "add certificates in d to list of certificates",
        nargs=1,
        values="[d]irectory: string",
    )
    add(
        "--add-crl-file",
        "+crl",
        "add certificate revocation list file\n(implies --enable-crl-vfy)",
        nargs=1,
        values="[f]ilename: string",
    )
    add("--enable-crl-vfy", "+crv", "enable leaf CRL verification")
    add("--enable-crl-all", "+cra", "enable full chain CRL verification")
    add = section(tls, "security profile:")
    add(
        "--list-profiles",
        "+ph",
        "list supported TLS profiles and exit",
        exclusive=True,
    )
    add("--profile-8996", "+pg", "BCP 195 RFC 8996 TLS Profile (default)")
    add("--profile-8996-mod", "+pm", "Modified BCP 195 RFC 8996 TLS Profile")
    add("--profile-bcp195-nd", "+py", "Non-downgrading BCP 195 TLS Profile (retired)")
    add("--profile-bcp195", "+px", "BCP 195 TLS Profile (retired)")
    add("--profile-bcp195-ex", "+pz", "Extended BCP 195 TLS Profile (retired)")
    add(
        "--profile-basic",
        "+pb",
        "Basic TLS Secure Transport Connection Profile\n(retired, needs 3DES in OpenSSL)",
    )
    add("--profile-aes", "+pa", "AES TLS Secure Transport Connection Profile\n(retired)")
    add(
        "--profile-null",
        "+pn",
        "Authenticated unencrypted communication\n(retired, was used in IHE ATNA)",
    )
    add = section(tls, "ciphersuite:")
    add(
        "--list-ciphers",
        "+cc",
        "list supported TLS ciphersuites and exit",
        exclusive=True,
    )
    add(
        "--cipher",
        "+cs",
        "add ciphersuite to list of negotiated suites\n(not with --profile-bcp195-ex)",
        nargs=1,
        values="[c]iphersuite name: string",
    )
    add(
        "--dhparam",
        "+dp",
        "read DH parameters for DH/DSS ciphersuites",
        nargs=1,
        values="[f]ilename: string",
    )
    add = section(tls, "server name indication:")
    add("--no-sni", None, "do not use SNI (default)")
    add(
        "--expect-sni",
        None,
        "expect requests for server name s",
        nargs=1,
        values="[s]erver name: string",
    )
    add = section(tls, "pseudo random generator:")
    add(
        "--seed",
        "+rs",
        "accepted and ignored: OpenSSL seeds itself",
        nargs=1,
        values="[f]ilename: string",
    )
    add("--write-seed", "+ws", "accepted and ignored (only with --seed)")
    add(
        "--write-seed-file",
        "+wf",
        "accepted and ignored",
        nargs=1,
        values="[f]ilename: string (only with --seed)",
    )
    add = section(tls, "peer authentication:")
    add(
        "--require-peer-cert",
        "-rc",
        "verify peer certificate, fail if absent (default)",
    )
    add("--verify-peer-cert", "-vc", "verify peer certificate if present")
    add("--ignore-peer-cert", "-ic", "don't verify peer certificate")

    # Operations (not in DCMTK; README, "Operations"): long names only.
    operations = "operations options (not in DCMTK):"
    add = section(operations, "monitoring:")
    add(
        "--http-port",
        None,
        "serve /metrics, /healthz and /readyz over HTTP\non port n (0: any free port)",
        nargs=1,
        values="[n]umber: integer (default: no HTTP)",
    )
    add(
        "--http-address",
        None,
        "listen for HTTP on address a",
        nargs=1,
        values="[a]ddress: IP address (default: 127.0.0.1)",
    )
    add(
        "--event-log",
        None,
        "append one JSON line per stored or failed\ninstance, association end and study to f",
        nargs=1,
        values="[f]ilename: string (- for standard output)",
    )
    add(
        "--log-format",
        None,
        "write log lines as DCMTK does (dcmtk, default)\nor as JSON objects (json)",
        nargs=1,
        values="[f]ormat: dcmtk or json",
    )
    add = section(operations, "end of study (across all associations):")
    add(
        "--eostudy-timeout",
        None,
        "a study is complete when none of its instances\narrived for s seconds",
        nargs=1,
        values="[s]econds: number",
    )
    add(
        "--exec-on-eostudy",
        None,
        "run shell command c for each complete study,\nits JSON manifest on standard input",
        nargs=1,
        values="[c]ommand: string",
    )
    add(
        "--exec-timeout",
        None,
        "kill the --exec-on-eostudy command after s seconds",
        nargs=1,
        values="[s]econds: number (default: 60)",
    )

    output = "output options:"
    add = section(output, "general:")
    add(
        "--output-directory",
        "-od",
        "write received objects to existing directory d",
        nargs=1,
        values='[d]irectory: string (default: ".")',
    )
    add(
        "--no-fsync",
        None,
        "answer Success without waiting for the disk;\n"
        "by default every file and its directory are\n"
        "flushed to disk (fsync) before Success is sent",
    )
    add = section(output, "subdirectory generation:")
    add("--no-subdir", "-s", "do not generate any subdirectories (default)")
    add("--series-date-subdir", "+ssd", "generate subdirectories from series date")
    add = section(output, "filename generation:")
    add("--default-filenames", "+fd", "generate filename from instance UID (default)")
    add("--unique-filenames", "+fu", "generate unique filename based on new UID")
    add("--short-unique-names", "+fsu", "generate short pseudo-random unique filename")
    add("--system-time-names", "+fst", "generate filename from current system time")
    add(
        "--filename-extension",
        "-fe",
        "append e to all generated filenames",
        nargs=1,
        values="[e]xtension: string (default: none)",
    )
    add = section(output, "storage mode:")
    add("--normal", "-B", "allow implicit format conversions (default)")
    add("--bit-preserving", "+B", "write dataset exactly as received")
    add("--ignore", None, "ignore dataset, receive but do not store it")
    # Our own options: long names only, so they never meet a DCMTK spelling.
    add = section(output, "storage policies (not in DCMTK):")
    add(
        "--output-template",
        None,
        "name files by template t, e.g. {PatientID}/\n"
        "{StudyDate}_{AccessionNumber}/{SOPInstanceUID}.dcm\n"
        "(replaces subdirectory and filename generation)",
        nargs=1,
        values="[t]emplate: string",
    )
    add(
        "--template-fallback",
        None,
        "use word w for missing template values",
        nargs=1,
        values="[w]ord: string (default: UNKNOWN)",
    )
    add(
        "--on-duplicate",
        None,
        "a second, different copy of a stored instance:\n"
        "overwrite (default), keep, rename or reject",
        nargs=1,
        values="[p]olicy: string",
    )
    add(
        "--min-free-space",
        None,
        "refuse associations and C-STOREs while free space\non the output file system is below s",
        nargs=1,
        values="[s]ize: e.g. 5G, 500M or 10%",
    )
    add(
        "--quarantine-dir",
        None,
        "keep data sets refused after receipt in d,\neach with a JSON sidecar saying why",
        nargs=1,
        values="[d]irectory: string",
    )
    add(
        "--quarantine-limit",
        None,
        "quarantine holds at most s, oldest removed first",
        nargs=1,
        values="[s]ize: e.g. 1G or 5% (default: 5%)",
    )
    add(
        "--check-config",
        None,
        "check the -xf profile (and --output-template),\nprint the negotiation table and exit",
        exclusive=True,
    )
    return tuple(table.specs)


#: Every option ``dcmrecv`` knows, in help order.
OPTIONS: tuple[OptionSpec, ...] = _specs()

_BY_SPELLING: dict[str, OptionSpec] = {}
for _spec in OPTIONS:
    for _name in (_spec.long, _spec.short):
        if _name is not None:
            if _name in _BY_SPELLING:  # pragma: no cover - a table typo, caught at import
                raise AssertionError(f"option {_name} defined twice")
            _BY_SPELLING[_name] = _spec


def find_option(spelling: str) -> OptionSpec | None:
    """The option spelled exactly ``spelling`` (short or long), or None."""
    return _BY_SPELLING.get(spelling)


class ArgvError(Exception):
    """A command line DCMTK would reject; ``str()`` is DCMTK's message."""


def is_option(arg: str) -> bool:
    """True if DCMTK would read ``arg`` as an option rather than a parameter.

    An option has at least two characters, starts with ``-`` or ``+``, and the sign
    is not followed by a digit, so negative numbers stay parameters.
    """
    return len(arg) >= 2 and arg[0] in "-+" and not arg[1].isdigit()


#: What separates the words of a command file (DCMTK: blank, tab and line breaks only).
_SEPARATORS = re.compile(r"[ \t\n\r]+")
#: A command file in pieces: a run of ordinary characters, a quoted part (to the next
#: quote of the same kind, or to the end of the file), or a run of separators.
_PIECE = re.compile(r"[^ \t\n\r\"']+|\"[^\"]*\"?|'[^']*'?|[ \t\n\r]+")


def split_command_file(text: str) -> list[str]:
    """The words of an ``@file``, as DCMTK's command file reader splits them.

    Words are separated by spaces, tabs and line breaks.  A double or single quote
    starts a quoted part that runs to the next quote of the same kind; inside it,
    separators and the other quote character are ordinary characters.  A closing
    quote ends the current word, so ``""`` is an empty argument and ``"a"b`` gives
    two words, ``a`` and ``b``.  An unclosed quote runs to the end of the file.

    The file is taken in pieces by regular expressions, not character by character,
    so the time grows with the file's length and stays well under a second per
    million words.
    """
    if '"' not in text and "'" not in text:
        return [word for word in _SEPARATORS.split(text) if word]
    words: list[str] = []
    value: list[str] = []
    for piece in _PIECE.findall(text):
        first = piece[0]
        if first in "\"'":
            closed = len(piece) > 1 and piece[-1] == first
            value.append(piece[1:-1] if closed else piece[1:])
            if closed:
                words.append("".join(value))
                value.clear()
        elif first in " \t\n\r":
            if value:
                words.append("".join(value))
                value.clear()
        else:
            value.append(piece)
    last = "".join(value)
    if last:
        words.append(last)
    return words


def expand_command_files(args: Iterable[str], read_text: Callable[[str], str]) -> list[str]:
    """Replace every ``@file`` argument by the words in that file.

    ``read_text(path)`` returns the file's text or raises :class:`OSError` (or
    :class:`dcmrecv.boundedread.FileTooLarge`).  Command files are not expanded
    recursively (DCMTK does not either); a lone ``@`` is an ordinary argument.
    """
    expanded: list[str] = []
    for arg in args:
        if arg.startswith(COMMAND_FILE_PREFIX) and len(arg) > 1:
            name = arg[1:]
            try:
                text = read_text(name)
            except FileTooLarge as exc:
                raise ArgvError(f"Command file '{name}' is {exc}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ArgvError(f"Cannot open command file '{name}'") from exc
            expanded.extend(split_command_file(text))
        else:
            expanded.append(arg)
    return expanded


class Occurrence(NamedTuple):
    """One option as it appeared: the option, the spelling used, and its values.

    A named tuple rather than a frozen dataclass: a command file may hold millions of
    options, and a tuple is several times cheaper to build.
    """

    spec: OptionSpec
    given: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class CommandLine:
    """A syntactically valid command line, options in the order given."""

    #: The arguments with options in their long spelling, as ``--arguments`` shows them.
    arguments: tuple[str, ...]
    occurrences: tuple[Occurrence, ...]
    params: tuple[str, ...]
    #: Where each option (long name) occurs, in order: ``has`` and ``last`` are then
    #: lookups, not scans, however long an ``@file`` made the command line.
    _positions: dict[str, list[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        positions: dict[str, list[int]] = {}
        for index, occurrence in enumerate(self.occurrences):
            long = occurrence.spec.long
            found = positions.get(long)
            if found is None:
                positions[long] = [index]
            else:
                found.append(index)
        object.__setattr__(self, "_positions", positions)

    @property
    def empty(self) -> bool:
        """No arguments at all: DCMTK then prints the usage text."""
        return not self.arguments

    @property
    def exclusive(self) -> bool:
        return any(self.occurrences[at[0]].spec.exclusive for at in self._positions.values())

    def has(self, long: str) -> bool:
        return long in self._positions

    def last(self, *longs: str) -> Occurrence | None:
        """The rightmost occurrence of any of ``longs``.

        Called with the options of one mutually exclusive block (e.g. ``--no-subdir``
        and ``--series-date-subdir``) this gives DCMTK's "rightmost wins" rule.
        """
        found = [self._positions[long][-1] for long in longs if long in self._positions]
        return self.occurrences[max(found)] if found else None

    def all(self, long: str) -> tuple[Occurrence, ...]:
        """Every occurrence of ``long``, in command line order."""
        return tuple(self.occurrences[i] for i in self._positions.get(long, ()))

    def unsupported(self) -> Occurrence | None:
        """The first option that is recognised but not implemented, if any."""
        found = [
            at[0]
            for at in self._positions.values()
            if self.occurrences[at[0]].spec.unsupported is not None
        ]
        return self.occurrences[min(found)] if found else None


def parse(
    args: Sequence[str],
    param_names: Sequence[str] = ("port",),
    *,
    lookup: Callable[[str], OptionSpec | None] | None = None,
    params_required: bool = True,
) -> CommandLine:
    """Check every token of an (already ``@``-expanded) argument list.

    Raises :class:`ArgvError` with DCMTK's message for an unknown option, a missing
    option value, a missing parameter or too many parameters.  The parameter count is
    not checked when the list is empty (the caller prints the usage text) or holds an
    exclusive option such as ``--help``.  ``lookup`` finds options in another
    command's table (storescp); ``params_required=False`` leaves missing parameters
    to the caller.
    """
    find = find_option if lookup is None else lookup
    arguments: list[str] = []
    occurrences: list[Occurrence] = []
    params: list[str] = []
    # A long @file repeats a few spellings many times: classify each spelling once
    # (None: a parameter), so a million words cost a million dictionary lookups; an
    # option without values is the same (immutable) Occurrence wherever it appears.
    seen: dict[str, OptionSpec | None] = {}
    flags: dict[str, Occurrence] = {}
    count = len(args)
    i = 0
    while i < count:
        arg = args[i]
        i += 1
        if arg in seen:
            spec = seen[arg]
        else:
            spec = seen[arg] = find(arg) if is_option(arg) else None
            if spec is None and is_option(arg):
                raise ArgvError(f"Unknown option {arg}")
        if spec is None:
            arguments.append(arg)
            params.append(arg)
            continue
        nargs = spec.nargs
        if nargs:
            if i + nargs > count:
                raise ArgvError(f"Missing value for option {spec.long}")
            values = tuple(args[i : i + nargs])
            i += nargs
            arguments.append(spec.long)
            arguments.extend(values)
            occurrences.append(Occurrence(spec, arg, values))
        else:
            arguments.append(spec.long)
            occurrence = flags.get(arg)
            if occurrence is None:
                occurrence = flags[arg] = Occurrence(spec, arg, ())
            occurrences.append(occurrence)
    cmdline = CommandLine(tuple(arguments), tuple(occurrences), tuple(params))
    if not cmdline.empty and not cmdline.exclusive:
        if params_required and len(params) < len(param_names):
            raise ArgvError(f"Missing parameter {param_names[len(params)]}")
        if len(params) > len(param_names):
            raise ArgvError("Too many parameters")
    return cmdline


# --- numbers, read the way DCMTK reads them -----------------------------------------

_ULONG_RANGE = 2**64


def _scan_unsigned(text: str) -> int | None:
    """C's ``sscanf(text, "%lu")``: leading white space, a sign, digits, rest ignored.

    A negative number wraps around as an unsigned long does; a value too large for
    an unsigned long saturates, as ``strtoul`` does.  None if no digits follow.
    """
    rest = text.lstrip(" \t\n\r\f\v")
    negative = rest[:1] == "-"
    if rest[:1] in "+-" and rest:
        rest = rest[1:]
    digits = ""
    for char in rest:
        if not char.isascii() or not char.isdigit():
            break
        digits += char
    if not digits:
        return None
    value = min(int(digits), _ULONG_RANGE - 1)
    if negative and value:
        value = _ULONG_RANGE - value
    return value


def option_unsigned(
    occurrence: Occurrence, low: int, high: int | None = None, index: int = 0
) -> int:
    """An option's unsigned integer value, checked as DCMTK checks it.

    Like DCMTK, trailing characters after the digits are ignored (``-ta 5s`` is 5)
    and a minus sign is refused.  Messages are DCMTK's, e.g.
    ``Invalid value for option --max-pdu (underflow: 10)``.
    """
    text = occurrence.values[index]
    prefix = f"Invalid value for option {occurrence.spec.long}"
    value = _scan_unsigned(text)
    if value is None or text.lstrip(" ")[:1] == "-":
        raise ArgvError(f"{prefix} ({text})")
    if value < low:
        raise ArgvError(f"{prefix} (underflow: {text})")
    if high is not None and value > high:
        raise ArgvError(f"{prefix} (overflow: {text})")
    return value


def option_number(occurrence: Occurrence, low: float) -> float:
    """A non-integer option value (our own options), with DCMTK-style messages."""
    text = occurrence.values[0]
    prefix = f"Invalid value for option {occurrence.spec.long}"
    try:
        value = float(text)
    except ValueError:
        raise ArgvError(f"{prefix} ({text})") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ArgvError(f"{prefix} ({text})")
    if value < low:
        raise ArgvError(f"{prefix} (underflow: {text})")
    return value


def param_unsigned(cmdline: CommandLine, position: int, low: int, high: int) -> int:
    """Parameter ``position`` (1-based) as an unsigned integer in ``low..high``.

    Messages are DCMTK's: ``Invalid parameter value abc``, ``... 0 (underflow)``,
    ``... 70000 (overflow)``.
    """
    text = cmdline.params[position - 1]
    value = _scan_unsigned(text)
    if value is None:
        raise ArgvError(f"Invalid parameter value {text}")
    if value < low:
        raise ArgvError(f"Invalid parameter value {text} (underflow)")
    if value > high:
        raise ArgvError(f"Invalid parameter value {text} (overflow)")
    return value


# --- help text in DCMTK's layout -----------------------------------------------------

#: Column where descriptions start (DCMTK: long column 21 + short column 4 + margins).
_TEXT_COLUMN = 33


def format_help(
    usage: str, params: Sequence[tuple[str, str]], options: Sequence[OptionSpec] = OPTIONS
) -> str:
    """Usage, parameters and option groups laid out like DCMTK's ``--help``.

    Top-level options are indented by two, options in a subgroup by four; short
    spellings, long spellings and descriptions each start in a fixed column.
    """
    lines = [usage, "", "parameters:"]
    lines += [f"  {name}".ljust(_TEXT_COLUMN) + text for name, text in params]
    lines.append("")
    group: str | None = None
    subgroup: str | None = None
    for spec in options:
        if spec.group != group:
            group, subgroup = spec.group, None
            lines.append(group)
        if spec.subgroup != subgroup:
            subgroup = spec.subgroup
            if subgroup is not None:
                lines.append(f"  {subgroup}")
        indent, short_width = ("    ", 6) if spec.subgroup else ("  ", 8)
        head = indent + (spec.short or "").ljust(short_width) + spec.long.ljust(23)
        texts = ([spec.values] if spec.values else []) + spec.help.split("\n")
        if len(head) > _TEXT_COLUMN:
            lines.append(head.rstrip())
            head = ""
        lines.append(head.ljust(_TEXT_COLUMN) + texts[0])
        lines += [" " * _TEXT_COLUMN + text for text in texts[1:]]
    # DCMTK ends its help with an empty line.
    return "\n".join(lines) + "\n\n"
