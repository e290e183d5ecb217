"""ReceiverConfig: everything the server needs, validated once by the CLI.

The commands (``dcmrecv.commands``) only turn argv into one of these and hand it to
:func:`dcmrecv.serve`; the server and the storage code read it and never look at argv.
Names follow DCMTK's ``dcmrecv`` manual page (option long names) so the mapping stays
obvious.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dcmrecv.storage.model import DuplicatePolicy as DuplicatePolicy
from dcmrecv.storage.model import FilenameMode as FilenameMode
from dcmrecv.storage.model import StorageMode as StorageMode
from dcmrecv.storage.model import SubdirectoryMode as SubdirectoryMode
from dcmrecv.storage.sorting import SortMode
from dcmrecv.storage.template import DEFAULT_FALLBACK

if TYPE_CHECKING:
    # Types of fields only: the commands import this module on every start, and
    # asconfig brings the UID table, the template module pydicom's dictionary.
    from dcmrecv.commitment.peers import Peer
    from dcmrecv.negotiation.asconfig import Profile
    from dcmrecv.storage.encoding import OutputEncoding
    from dcmrecv.storage.freespace import Watermark
    from dcmrecv.storage.template import Template
    from dcmrecv.tlsconfig import TLSOptions

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class LogOptions:
    """The logging options as the command evaluated them (``-ll``, ``-lc``,
    ``--log-format``): a worker process sets up its logging the same way."""

    level: str = "warn"
    config_file: str | None = None
    appname: str = "dcmrecv"
    json_lines: bool = False


@dataclass(frozen=True)
class NamingSettings:
    """storescp's file naming and sorting options (storescp.man, "output options")."""

    sort_mode: SortMode = SortMode.NONE
    sort_prefix: str = ""
    unique_filenames: bool = False
    time_names: bool = False
    extension: str = ""


@dataclass(frozen=True)
class EventSettings:
    """storescp's event options (storescp.man, "event options"); commands as given,
    with DCMTK's placeholders (``#p #f #a #c #r``), checked by the command line."""

    exec_on_reception: str | None = None
    exec_on_eostudy: str | None = None
    rename_on_eostudy: bool = False
    #: ``--eostudy-timeout`` in seconds; None waits for an object of another study.
    eostudy_timeout: float | None = None
    exec_sync: bool = False


@dataclass(frozen=True)
class StorescpSettings:
    """What only the ``storescp`` command asks for: its naming, events and output
    conversions; None in :class:`ReceiverConfig` for ``dcmrecv``."""

    #: The output directory as storescp prints it in paths ("." or the ``-od`` value
    #: without a trailing separator, DCMTK's normalizeDirName).
    output_directory: str = "."
    naming: NamingSettings = field(default_factory=NamingSettings)
    events: EventSettings = field(default_factory=EventSettings)
    #: How files are written when they are converted; None keeps the received bytes.
    encoding: OutputEncoding | None = None
    #: ``+uc``: pydicom converts defined-length UN elements to their real VR.
    convert_un: bool = False


#: DCMTK's defaults (dcmrecv.man): AE title, ACSE timeout, max receive PDU.
DEFAULT_AETITLE = "DCMRECV"
DEFAULT_ACSE_TIMEOUT = 30.0
DEFAULT_MAX_PDU = 16384
#: The range dcmrecv accepts for ``-pdu`` (ASC_MINIMUMPDUSIZE..ASC_MAXIMUMPDUSIZE as DCMTK
#: allows on the command line).
MIN_MAX_PDU = 4096
MAX_MAX_PDU = 131072


@dataclass(frozen=True)
class ReceiverConfig:
    """A complete, validated receiver configuration."""

    port: int
    #: ``-aet``: our AE title.
    aetitle: str = DEFAULT_AETITLE
    #: True when ``-aet`` was given explicitly: then (DCMTK 3.6.8 and later) a request
    #: calling any other AE title is rejected with A-ASSOCIATE-RJ (1,1,7).
    aetitle_explicit: bool = False
    #: ``-uca``: answer with the called AE title instead of ours.
    use_called_aetitle: bool = True
    #: ``-ta``: ACSE timeout in seconds (ARTIM, PS3.8 9.1.5), counted from connect.
    acse_timeout: float = DEFAULT_ACSE_TIMEOUT
    #: ``-td``: DIMSE timeout in seconds; None waits forever, as DCMTK's default.
    dimse_timeout: float | None = None
    #: ``-pdu``: our maximum receive PDU length, advertised in the A-ASSOCIATE-AC.
    max_pdu: int = DEFAULT_MAX_PDU
    #: ``-dhl``: do not resolve peer addresses to host names in log lines.
    disable_host_lookup: bool = False
    #: ``-xf FILE PROFILE`` (already loaded and checked); None means Verification only.
    profile: Profile | None = None
    #: ``-od``: existing, writable output directory.
    output_directory: Path = field(default_factory=lambda: Path("."))
    subdirectory: SubdirectoryMode = SubdirectoryMode.NONE
    filename_mode: FilenameMode = FilenameMode.DEFAULT
    #: ``-fe``: appended to every generated file name, e.g. ``.dcm``.
    filename_extension: str = ""
    storage_mode: StorageMode = StorageMode.NORMAL
    #: ``--no-fsync`` turns this off: fsync file and directory before answering Success.
    fsync: bool = True
    #: ``--max-associations``: concurrent associations; the next is rejected (2,3,2).
    #: None means unlimited.
    max_associations: int | None = None
    #: ``--max-associations-per-peer``: connections one peer may hold
    #: (wire.admission.Limits.max_per_peer; None: its default, 256).
    max_associations_per_peer: int | None = None
    #: ``+v``: log the presentation contexts in verbose mode.
    verbose_pc: bool = False
    #: Address to listen on; DCMTK listens on all interfaces.
    bind_address: str = ""
    #: ``storescp --inetd``: the descriptor of the connection inetd accepted; the
    #: server serves that one association and returns instead of listening.
    inetd_connection: int | None = None
    #: SIGTERM/SIGINT: how long running associations may take to finish, in seconds.
    shutdown_timeout: float = 30.0
    #: ``+tls`` and its options (PS3.15 B.1 secure transport); None is plain TCP.  The
    #: context is built when the receiver starts (exit code 71 when it cannot be).
    tls: TLSOptions | None = None
    #: ``--accept-calling``: calling AE titles allowed (None allows all); others get
    #: A-ASSOCIATE-RJ (1,1,3).  Titles are stored stripped of leading/trailing spaces.
    accept_calling: frozenset[str] | None = None
    #: ``--accept-from``: peer networks allowed (None allows all); others are refused.
    accept_from: tuple[IPNetwork, ...] | None = None

    # storescp's network test options (storescp.man, "network options").
    #: ``--refuse``: reject every association, A-ASSOCIATE-RJ (1,1,1).
    refuse_associations: bool = False
    #: ``--reject``: reject requests without an Implementation Class UID, RJ (1,1,1).
    require_implementation_uid: bool = False
    #: ``--sleep-after``: seconds to sleep after storing each instance.
    sleep_after_store: float = 0.0
    #: ``--sleep-during``: seconds to sleep after each received data set fragment.
    sleep_during_store: float = 0.0
    #: ``--abort-after``: A-ABORT after receiving a data set, instead of responding.
    abort_after_store: bool = False
    #: ``--abort-during``: A-ABORT as soon as data set fragments arrive.
    abort_during_store: bool = False
    #: ``--promiscuous``: accept any abstract syntax the profile does not list, with
    #: these transfer syntaxes in order of preference (storescp's -pm).
    promiscuous_transfer_syntaxes: tuple[str, ...] = ()
    #: storescp: answer with an A-ASSOCIATE-AC even when no presentation context is
    #: accepted (as DCMTK's storescp does); dcmrecv rejects such a request (1,1,1).
    acknowledge_without_contexts: bool = False
    #: storescp's naming, sorting, conversions and event hooks; None for dcmrecv, whose
    #: naming is ``subdirectory`` and ``filename_mode`` and whose files are the bytes received.
    storescp: StorescpSettings | None = None

    # Storage policies (not in DCMTK; all off by default, so DCMTK's behaviour stays).
    #: ``--output-template``: the path of each file (checked); None keeps -s/+fd naming.
    output_template: Template | None = None
    #: ``--template-fallback``: the word for a missing or empty template value.
    template_fallback: str = DEFAULT_FALLBACK
    #: ``--on-duplicate``: what a second, different copy of a stored instance does.
    on_duplicate: DuplicatePolicy = DuplicatePolicy.OVERWRITE
    #: ``--min-free-space``: below it, associations and C-STOREs are refused.
    min_free_space: Watermark | None = None
    #: Seconds between two looks at the free space (statvfs); a C-STORE in between
    #: costs a clock read.
    free_space_interval: float = 1.0
    #: ``--quarantine-dir``: refused data sets are kept there with a JSON sidecar.
    quarantine_directory: Path | None = None
    #: ``--quarantine-limit``: allocated bytes (or a percentage of its file system)
    #: the quarantine may hold; the oldest go first.  None: 5% of its file system
    #: (storage.quarantine.DEFAULT_LIMIT).
    quarantine_limit: Watermark | None = None
    # Operations (README, "Operations"); all off by default, DCMTK's behaviour.
    #: ``--http-port``: serve /metrics, /healthz and /readyz; None: no HTTP endpoint.
    http_port: int | None = None
    #: ``--http-address``: the HTTP endpoint's address (loopback unless told).
    http_address: str = "127.0.0.1"
    #: ``--event-log``: append one JSON line per instance, association and study.
    event_log: Path | None = None
    #: dcmrecv ``--eostudy-timeout``: a study is complete after this many seconds
    #: without an instance of it, across all associations; None: not tracked.
    study_timeout: float | None = None
    #: dcmrecv ``--exec-on-eostudy``: the operator's shell command, manifest on stdin.
    study_command: str | None = None
    #: ``--exec-timeout``: seconds before a hanging study command is killed.
    study_command_timeout: float = 60.0
    # Scaling out (README, "Scaling out"; not in DCMTK).
    #: ``--workers``: processes that serve the associations (1: this one; the parent of
    #: more keeps the listener and the admission policy, wire/workers.py).
    workers: int = 1
    #: ``--state``: where what spans associations lives (studies, the instance index):
    #: ``sqlite:///path``, ``postgresql://...``; None: the embedded default, in the
    #: output directory, opened only when something needs it.
    state: str | None = None
    #: Who stores, in the state store: set by the parent of ``--workers`` for its
    #: workers (one receiver, one replica); None: this process (``host:pid``).
    replica: str | None = None
    # Storage commitment (README, "Storage commitment"; PS3.4 Annex J; not in DCMTK).
    #: ``--storage-commitment``: accept the Push Model class (SCP role) and report.
    storage_commitment: bool = False
    #: ``--commitment-peer`` and ``--commitment-peers``: where reports go, by the
    #: requester's AE title; a requester not listed is refused.
    commitment_peers: tuple[Peer, ...] = ()
    #: ``--commitment-verify``: re-read each file and compare its SHA-256 first.
    commitment_verify: bool = False
    #: ``--commitment-retry``: seconds an undelivered report is tried again for.
    commitment_retry: float = 3600.0
    #: How the command set up logging, for the processes it starts (``--workers``).
    logging: LogOptions = field(default_factory=lambda: LogOptions())

    @property
    def uses_state(self) -> bool:
        """Whether something needs the state store: study completion or storage
        commitment (``--state`` alone names it without using it)."""
        return self.study_timeout is not None or self.storage_commitment

    @property
    def state_url(self) -> str:
        """``--state``, else the embedded store in the output directory (storescp's
        ``-od`` for storescp)."""
        from dcmrecv.state.url import default_url

        directory = Path(self.storescp.output_directory) if self.storescp else self.output_directory
        return self.state or default_url(directory)
