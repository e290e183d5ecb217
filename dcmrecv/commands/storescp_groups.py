"""storescp's option groups: the options whose interplay is more than requires/conflicts.

Each function is one step of storescp's plan (dcmrecv.commands.storescp.PLAN) and
reads its group's options, which are rows of dcmrecv.commands.options without a
field of their own: the process options and ``--inetd``, the network transfer
syntaxes (``--prefer-*``, ``-pm``, ``-xf``), the storage mode, the output encoding,
naming and sorting, and the end-of-study events.  The checks and messages are
storescp.cc's, in its order.  Differences from DCMTK: ``--max-associations`` does not
need ``--fork``, and ``--fork`` is accepted with the end-of-study options (there is
one process and every association runs concurrently).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from dcmrecv.commands.argv import ArgvError, CommandLine, option_unsigned, param_unsigned
from dcmrecv.commands.checks import Check, set_field
from dcmrecv.commands.option import Occurrence
from dcmrecv.commands.options import IPV6_UNSUPPORTED, PREFERRED_SYNTAXES

if TYPE_CHECKING:
    from dcmrecv.config import ReceiverConfig


def _conflict(first: str, second: str) -> ArgvError:
    return ArgvError(f"{first} not allowed with {second}")


def _dependence(option: str, on: str) -> ArgvError:
    return ArgvError(f"{option} only allowed with {on}")


def _preferred(check: Check) -> Occurrence | None:
    """The rightmost of the "preferred network transfer syntaxes" block."""
    block = [o.long for o in check.table.options if o.section == PREFERRED_SYNTAXES]
    return check.cmdline.last(*block)


def _bit_preserving(cmdline: CommandLine) -> bool:
    found = cmdline.last("--normal", "--bit-preserving")
    return found is not None and found.spec.long == "--bit-preserving"


# --- process and network ---------------------------------------------------------------------


def refuse_access_control(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    found = check.cmdline.last("--access-control")
    if found is not None:
        raise ArgvError(str(found.spec.unsupported))
    return config


def inetd_mode(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """storescp.cc checks --inetd before the process options: it excludes --fork, and
    --max-associations, which needs --fork there (one association is served)."""
    cmdline = check.cmdline
    if cmdline.has("--inetd"):
        if cmdline.has("--fork"):
            raise _conflict("--inetd", "--fork")
        if cmdline.has("--max-associations"):
            raise _dependence("--max-associations", "--fork")
    return config


def port_parameter(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """The port: not needed with --inetd (inetd bound it), not even checked, as in
    storescp.cc (the start step warns "Parameter port not required in inetd mode");
    nothing listens with --check-config."""
    cmdline = check.cmdline
    if cmdline.has("--inetd") or (not cmdline.params and cmdline.has("--check-config")):
        return config
    if not cmdline.params:
        raise ArgvError("Missing parameter port")
    return replace(config, port=param_unsigned(cmdline, 1, 1, 65535))


def network_transfer_syntaxes(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """The profile without -xf: every storage SOP class with the transfer syntaxes of
    the rightmost --prefer option; ``-pm`` accepts any SOP class with them."""
    from dcmrecv.commands import storescp_syntaxes

    prefer = _preferred(check)
    syntaxes = storescp_syntaxes.network_transfer_syntaxes(prefer.spec.long if prefer else None)
    return replace(
        config,
        profile=storescp_syntaxes.storescp_profile(syntaxes),
        promiscuous_transfer_syntaxes=syntaxes if check.cmdline.has("--promiscuous") else (),
    )


def refuse_ipv6(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """-i6 and -i0 are refused when they win their block (``-i6 -i4`` is IPv4)."""
    cmdline = check.cmdline
    unsupported = cmdline.last("--ipv6", "--ip-auto")
    if unsupported is not None and cmdline.last("--ipv4", "--ipv6", "--ip-auto") is unsupported:
        raise ArgvError(f"{IPV6_UNSUPPORTED}: {unsupported.given}")
    return config


def profile_not_with_preferences(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """``-xf`` decides the transfer syntaxes: no --prefer option (but the default) and
    no ``-pm`` with it."""
    cmdline = check.cmdline
    if not cmdline.has("--config-file"):
        return config
    prefer = _preferred(check)
    if prefer is not None and prefer.spec.long != "--prefer-uncompr":
        raise _conflict("--config-file", prefer.spec.long)
    if cmdline.has("--promiscuous"):
        raise _conflict("--config-file", "--promiscuous")
    return config


def http_not_with_inetd(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """Ours: every inetd process would want the one HTTP port."""
    if check.cmdline.has("--inetd") and config.http_port is not None:
        raise _conflict("--http-port", "--inetd")
    return config


def storage_mode(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """``-B``/``+B``, the rightmost wins; ``--ignore`` wins over both.  The output
    directory as a path (storescp prints it as given, without a trailing separator)."""
    from dcmrecv.config import StorageMode

    mode = StorageMode.BIT_PRESERVING if _bit_preserving(check.cmdline) else StorageMode.NORMAL
    if check.cmdline.has("--ignore"):
        mode = StorageMode.IGNORE
    assert config.storescp is not None
    directory = Path(config.storescp.output_directory)
    return replace(config, storage_mode=mode, output_directory=directory)


# --- output encoding, naming, events ------------------------------------------------------------


def output_encoding(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """The output options that decide how a file is written, and ``--convert-un``.

    The --prefer options take part: an output transfer syntax may not contradict the
    network one they prefer.  Files are converted only when an option asks for it.
    """
    from dcmrecv.negotiation import uids
    from dcmrecv.storage.convert import GroupLength, OutputEncoding

    cmdline = check.cmdline
    bit_preserving = _bit_preserving(cmdline)
    write_xfer = {
        "--write-xfer-same": None,
        "--write-xfer-little": uids.EXPLICIT_VR_LITTLE_ENDIAN,
        "--write-xfer-big": uids.EXPLICIT_VR_BIG_ENDIAN,
        "--write-xfer-implicit": uids.IMPLICIT_VR_LITTLE_ENDIAN,
        "--write-xfer-deflated": uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    }
    prefer = _preferred(check)
    prefer_long = prefer.spec.long if prefer else None
    meta_option = cmdline.last("--write-file", "--write-dataset")
    write_meta = not (meta_option is not None and meta_option.spec.long == "--write-dataset")

    reencode = False
    xfer_option = cmdline.last(*write_xfer)
    write_syntax = write_xfer[xfer_option.spec.long] if xfer_option else None
    if xfer_option is not None and write_syntax is not None:
        from dcmrecv.commands.storescp_syntaxes import PREFERRED_SYNTAX

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
        file_pad = option_unsigned(padding, 0, None, 0)
        item_pad = option_unsigned(padding, 0, None, 1)
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
        level = option_unsigned(level_option, 0, 9)
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
    wanted = encoding.reencode or not encoding.write_meta or encoding.transfer_syntax
    config = set_field(config, "storescp.encoding", encoding if wanted else None)
    return set_field(config, "storescp.convert_un", convert_un)


_SORT_NAMES: Final = "--sort-conc-studies, --sort-on-study-uid or --sort-on-patientname"


def naming(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """Sorting into subdirectories and file name generation."""
    from dcmrecv.config import NamingSettings
    from dcmrecv.storage.sorting import SortMode, check_prefix

    cmdline = check.cmdline
    sort_modes = {
        "--sort-conc-studies": SortMode.TIMESTAMP,
        "--sort-on-study-uid": SortMode.STUDY_UID,
        "--sort-on-patientname": SortMode.PATIENT_NAME,
    }
    sort_option = cmdline.last(*sort_modes)
    sort_mode = SortMode.NONE
    sort_prefix = ""
    if sort_option is not None:
        if _bit_preserving(cmdline):
            raise _conflict(sort_option.spec.long, "--bit-preserving")
        sort_mode = sort_modes[sort_option.spec.long]
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
    settings = NamingSettings(sort_mode, sort_prefix, unique, time_names, extension)
    return set_field(config, "storescp.naming", settings)


def events(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """The event options; the end-of-study ones need a sorting option, and a process
    that outlives the association (not --inetd, storescp.cc)."""
    from dcmrecv.commands.values import signed
    from dcmrecv.config import EventSettings
    from dcmrecv.ops.hook_command import TemplateError, compile_template
    from dcmrecv.storage.sorting import SortMode

    cmdline = check.cmdline
    assert config.storescp is not None
    sort_mode = config.storescp.naming.sort_mode

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
        timeout = float(signed(0)(timeout_option))
    settings = EventSettings(
        exec_on_reception=on_reception,
        exec_on_eostudy=on_eostudy,
        rename_on_eostudy=rename,
        eostudy_timeout=timeout,
        exec_sync=cmdline.has("--exec-sync"),
    )
    return set_field(config, "storescp.events", settings)
