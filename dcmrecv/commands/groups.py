"""Check steps both commands share: ``+v`` and the TLS options (dcmtls' DcmTLSOptions).

The TLS options are rows like any other (each requires ``--enable-tls``, with
DCMTK's message); :data:`TLS_CHECKS` is the order in which DCMTK's
``DcmTLSOptions::parseArguments`` checks them, which decides the error a user sees
first.  The result is ``config.tls``: plain values, or None without ``+tls``; the
context is built from them when the receiver starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcmrecv.commands.argv import ArgvError
from dcmrecv.commands.checks import Check, Step, set_field

if TYPE_CHECKING:
    from dcmrecv.config import ReceiverConfig


def verbose_pc_needs_verbose(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """``+v`` shows the presentation contexts in INFO messages: useless without them."""
    if check.cmdline.has("--verbose-pc") and not check.verbose:
        raise ArgvError("--verbose-pc only allowed with verbose mode")
    return config


def tls_write_seed(check: Check, config: ReceiverConfig) -> ReceiverConfig:
    """``+ws`` writes back to the ``--seed`` file, ``+wf`` to its own (both need it)."""
    found = check.cmdline.last("--write-seed", "--write-seed-file")
    if found is None:
        return config
    check.check(found)
    seed = check.cmdline.last("--seed")
    assert seed is not None  # required by the rows
    written = seed.values[0] if found.spec.long == "--write-seed" else found.values[0]
    return set_field(config, "tls.write_seed_file", written)


#: The TLS options in DCMTK's order (after the port, in both commands).
#: Storage commitment's options (both commands): each needs --storage-commitment;
#: the --commitment-peers files are read after the profile (pipeline.py).
COMMITMENT_CHECKS: tuple[Step, ...] = (
    "storage_commitment",
    "commitment_peers",
    "--commitment-peers",
    "commitment_verify",
    "commitment_retry",
)

TLS_CHECKS: tuple[Step, ...] = (
    "tls",
    "tls.password",
    "tls.key_format",
    "tls.crl_mode",
    "tls.dhparam",
    "--no-sni",
    "tls.expected_sni",
    "tls.seed_file",
    tls_write_seed,
    "tls.verification",
    "tls.profile",
    "tls.ca_files",
    "tls.ca_dirs",
    "tls.crl_files",
    "tls.ciphers",
)
