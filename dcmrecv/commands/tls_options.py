"""The transport layer security options both commands share (dcmtls' ``DcmTLSOptions``).

Pure evaluation: the command line in, :class:`dcmrecv.wire.tls.TLSOptions` out.  The
context is built later, from these options, by the command (its errors have their own
exit code, 71 for dcmrecv).
"""

from __future__ import annotations

from dcmrecv.commands.argv import ArgvError, CommandLine
from dcmrecv.wire import tls


def _values(cmdline: CommandLine, long: str) -> tuple[str, ...]:
    """The first value of every occurrence of ``long``, in command line order."""
    return tuple(o.values[0] for o in cmdline.all(long))


_PROFILES = tuple(profile.value for profile in tls.SecurityProfile)
_VERIFICATION = {
    "--require-peer-cert": tls.PeerVerification.REQUIRE,
    "--verify-peer-cert": tls.PeerVerification.VERIFY,
    "--ignore-peer-cert": tls.PeerVerification.IGNORE,
}


def tls_settings(cmdline: CommandLine) -> tls.TLSOptions | None:
    """Evaluate the TLS options as DCMTK's ``DcmTLSOptions::parseArguments`` does.

    The checks come in DCMTK's order with its messages (``--use-passwd only allowed
    with --enable-tls``, ``--cipher not allowed with --profile-bcp195-ex``); of each
    block of alternatives the rightmost wins.  None when TLS is not enabled.
    """
    transport = cmdline.last("--disable-tls", "--enable-tls")
    enabled = transport is not None and transport.spec.long == "--enable-tls"

    def rightmost(*longs: str) -> str | None:
        found = cmdline.last(*longs)
        return found.spec.long if found is not None else None

    def depend(long: str | None, condition: bool, on: str = "--enable-tls") -> None:
        if long is not None and not condition:
            raise ArgvError(f"{long} only allowed with {on}")

    def present(long: str) -> str | None:
        return long if cmdline.has(long) else None

    password_option = cmdline.last("--std-passwd", "--use-passwd", "--null-passwd")
    depend(password_option.spec.long if password_option else None, enabled)
    password: str | None = None
    if password_option is not None and password_option.spec.long == "--use-passwd":
        password = password_option.values[0]
    elif password_option is not None and password_option.spec.long == "--null-passwd":
        password = ""
    key_format_option = rightmost("--pem-keys", "--der-keys")
    depend(key_format_option, enabled)
    crl_option = rightmost("--enable-crl-vfy", "--enable-crl-all")
    depend(crl_option, enabled)
    depend(present("--dhparam"), enabled)
    dhparam = cmdline.last("--dhparam")
    expect_sni = cmdline.last("--expect-sni")
    if cmdline.has("--no-sni") and expect_sni is not None:
        raise ArgvError("--no-sni not allowed with --expect-sni")
    seed = cmdline.last("--seed")
    depend(present("--seed"), enabled)
    write_seed = cmdline.last("--write-seed", "--write-seed-file")
    if write_seed is not None:
        depend(write_seed.spec.long, enabled)
        depend(write_seed.spec.long, seed is not None, "--seed")
    verification = rightmost(*_VERIFICATION)
    depend(verification, enabled)
    profile_option = rightmost(*_PROFILES)
    depend(profile_option, enabled)
    profile = (
        tls.SecurityProfile(profile_option)
        if profile_option is not None
        else tls.SecurityProfile.BCP195_RFC8996
    )
    for long in ("--add-cert-file", "--add-cert-dir", "--add-crl-file"):
        depend(present(long), enabled)
    if cmdline.has("--cipher"):
        depend("--cipher", enabled)
        if profile is tls.SecurityProfile.BCP195_EXTENDED:
            raise ArgvError("--cipher not allowed with --profile-bcp195-ex")

    if not enabled:
        return None
    assert transport is not None
    crl_mode = {
        None: tls.CRLMode.NONE,
        "--enable-crl-vfy": tls.CRLMode.LEAF,
        "--enable-crl-all": tls.CRLMode.CHAIN,
    }[crl_option]
    write_seed_file: str | None = None
    if write_seed is not None and seed is not None:
        write_seed_file = (
            seed.values[0] if write_seed.spec.long == "--write-seed" else write_seed.values[0]
        )
    return tls.TLSOptions(
        private_key=transport.values[0],
        certificate=transport.values[1],
        password=password,
        key_format=tls.KeyFormat.DER if key_format_option == "--der-keys" else tls.KeyFormat.PEM,
        ca_files=_values(cmdline, "--add-cert-file"),
        ca_dirs=_values(cmdline, "--add-cert-dir"),
        crl_files=_values(cmdline, "--add-crl-file"),
        crl_mode=crl_mode,
        profile=profile,
        ciphers=_values(cmdline, "--cipher"),
        dhparam=dhparam.values[0] if dhparam else None,
        verification=_VERIFICATION[verification] if verification else tls.PeerVerification.REQUIRE,
        expected_sni=expect_sni.values[0] if expect_sni else None,
        seed_file=seed.values[0] if seed else None,
        write_seed_file=write_seed_file,
    )
