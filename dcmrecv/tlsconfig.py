"""The values of DCMTK's TLS options (dcmrecv.man, "transport layer security (TLS)
options"), after the command line checks: plain data the configuration carries.

The transport layer (dcmrecv.wire.tls) builds the server's SSL context from them when
the receiver starts (PS3.15 Annex B, secure transport connection profiles).
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass


class SecurityProfile(enum.Enum):
    """DCMTK's TLS Secure Transport Connection Profiles; values are the long options."""

    BCP195_RFC8996 = "--profile-8996"
    BCP195_RFC8996_MODIFIED = "--profile-8996-mod"
    BCP195_ND = "--profile-bcp195-nd"
    BCP195 = "--profile-bcp195"
    BCP195_EXTENDED = "--profile-bcp195-ex"
    BASIC = "--profile-basic"
    AES = "--profile-aes"
    NULL = "--profile-null"


class KeyFormat(enum.Enum):
    """``-pem`` / ``-der``: the encoding of key, certificate and CRL files."""

    PEM = "pem"
    DER = "der"


class PeerVerification(enum.Enum):
    """``-rc`` / ``-vc`` / ``-ic`` (dcmrecv.man, "peer authentication")."""

    REQUIRE = ssl.CERT_REQUIRED  # -rc: verify, fail if absent (DCMTK's default)
    VERIFY = ssl.CERT_OPTIONAL  # -vc: verify if present
    IGNORE = ssl.CERT_NONE  # -ic: do not ask for one


class CRLMode(enum.Enum):
    """``+crv`` / ``+cra``; ``+crl`` implies the leaf check when neither is given."""

    NONE = "none"
    LEAF = "leaf"
    CHAIN = "chain"


@dataclass(frozen=True)
class TLSOptions:
    """The values of DCMTK's TLS options, after the command line checks."""

    private_key: str
    certificate: str
    #: ``+pw``/``-pw``; None means ``+ps``, ask on standard input when the key is encrypted.
    password: str | None = None
    key_format: KeyFormat = KeyFormat.PEM
    ca_files: tuple[str, ...] = ()
    ca_dirs: tuple[str, ...] = ()
    crl_files: tuple[str, ...] = ()
    crl_mode: CRLMode = CRLMode.NONE
    profile: SecurityProfile = SecurityProfile.BCP195_RFC8996
    #: ``+cs``: IANA names of ciphersuites added to the profile's list.
    ciphers: tuple[str, ...] = ()
    dhparam: str | None = None
    verification: PeerVerification = PeerVerification.REQUIRE
    expected_sni: str | None = None
    #: ``+rs``, ``+ws``/``+wf``: accepted for compatibility, see the module docstring.
    seed_file: str | None = None
    write_seed_file: str | None = None
