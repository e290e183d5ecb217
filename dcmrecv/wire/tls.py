"""Server-side TLS (DICOM PS3.15 Annex B, secure transport) from DCMTK's ``+tls`` options.

The options are DCMTK's (dcmrecv.man, "transport layer security (TLS) options");
this module turns their values (:class:`TLSOptions`) into an :class:`ssl.SSLContext`.
Python's :mod:`ssl` (OpenSSL) does all of the cryptography.  Planning is pure
(:func:`cipher_plan`, :func:`der_key_label`); files are read only in
:func:`create_context`.  Startup problems raise :class:`TLSError` carrying DCMTK's
condition text (``000b:0004 Unable to load private TLS key from 'key.pem'``), which
the command turns into exit code 71 as dcmrecv does.

Security profiles, as DCMTK 3.7 defines them (dcmtls ``tlsciphr.cc``
``setTLSProfile``/``getTLSOptions`` and ``tlslayer.cc`` ``activateCipherSuites``),
mapped to OpenSSL settings.  The TLS 1.2 suites are offered strongest first and the
server's order wins (BCP 195: prefer forward secrecy and the strongest suite):

=====  ==================================  ========  ======================================
opt.   profile (DCMTK's name)              TLS       TLS 1.2 ciphersuites (IANA names)
=====  ==================================  ========  ======================================
+pg    BCP 195 RFC 8996 TLS Profile        1.2, 1.3  ECDHE_{RSA,ECDSA}_WITH_AES_128_GCM_SHA256,
       (the default)                                 ECDHE_{RSA,ECDSA}_WITH_AES_256_GCM_SHA384;
                                                     ``+cs`` may add suites, but no NULL
                                                     and no SHA-1 MAC suite
+pm    Modified BCP 195 RFC 8996 TLS       1.2, 1.3  ECDHE_{RSA,ECDSA} with AES-GCM and
       Profile                                       CHACHA20_POLY1305, ECDHE_ECDSA with
                                                     AES_{128,256}_CCM and _CCM_8; no
                                                     ``+cs``; peer RSA keys >= 2048 bits
+py    Non-downgrading BCP 195 TLS         1.2, 1.3  {ECDHE,DHE}_RSA_WITH_AES_128_GCM_SHA256,
       Profile (retired)                             {ECDHE,DHE}_RSA_WITH_AES_256_GCM_SHA384
+px    BCP 195 TLS Profile (retired)       1.0-1.3   as +py, plus RSA_WITH_AES_128_CBC_SHA
                                                     (and RSA_WITH_3DES_EDE_CBC_SHA if
                                                     OpenSSL has it)
+pz    Extended BCP 195 TLS Profile        1.2       as +py, plus ECDHE_ECDSA_WITH_AES_128_
       (retired)                                     GCM_SHA256 and .._AES_256_GCM_SHA384;
                                                     no ``+cs``
+pb    Basic TLS Secure Transport          1.0-1.2   RSA_WITH_3DES_EDE_CBC_SHA
       Connection Profile (retired)
+pa    AES TLS Secure Transport            1.0-1.2   RSA_WITH_AES_128_CBC_SHA (and 3DES as
       Connection Profile (retired)                  for +px)
+pn    Authenticated unencrypted           1.0-1.2   RSA_WITH_NULL_SHA (no encryption)
       communication (retired)
=====  ==================================  ========  ======================================

Like DCMTK, the context runs at OpenSSL security level 0 (the profile's suite list,
not OpenSSL's level, decides what is allowed), except under ``+pm`` (level 2, which
enforces the profile's peer key sizes and refuses SHA-1 signatures).  Under ``+pg``
and ``+pm`` our own certificate must pass level 2 (RSA keys of 2048 bits or more), as
DCMTK refuses shorter server keys there.

What Python's :mod:`ssl` cannot do, and what happens instead:

* TLS 1.3 ciphersuites cannot be chosen (there is no ``SSL_CTX_set_ciphersuites``):
  OpenSSL's default TLS 1.3 suites are offered, which are DCMTK's for every profile
  except ``+pm``, whose TLS_AES_128_CCM_SHA256 and TLS_AES_128_CCM_8_SHA256 are missing.
* There is no certificate verification callback, so DCMTK's warnings about short or
  SHA-1-signed peer certificates under the other profiles are not printed.
* ``+pb`` needs 3DES and ``+pn`` the NULL cipher: if the OpenSSL that Python uses
  lacks them (3DES is gone from OpenSSL 3 builds such as Debian's), the profile is
  refused with a clear error; DCMTK hides such options instead.
* ``+rs``/``+ws``/``+wf`` (PRNG seed files) are accepted and ignored with a warning:
  OpenSSL 1.1.0 and later seed themselves from the operating system.
* A client proposing ALPN protocols other than ``dicom`` is served without ALPN,
  where DCMTK refuses the handshake.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import getpass
import logging
import os
import ssl
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TextIO

from dcmrecv.tlsconfig import CRLMode as CRLMode
from dcmrecv.tlsconfig import KeyFormat as KeyFormat
from dcmrecv.tlsconfig import PeerVerification as PeerVerification
from dcmrecv.tlsconfig import SecurityProfile as SecurityProfile
from dcmrecv.tlsconfig import TLSOptions as TLSOptions

log = logging.getLogger(__name__)

#: DCMTK's module number of dcmtls in condition codes (``OFM_dcmtls``).
_DCMTLS_MODULE = 0x000B


class TLSError(Exception):
    """A TLS set-up problem; ``str()`` is DCMTK's condition text with its code.

    ``details`` are the lower-level reasons DCMTK logs as errors before the fatal
    message (OpenSSL's reason, the file system's complaint).
    """

    def __init__(self, code: int, text: str, details: tuple[str, ...] = ()) -> None:
        super().__init__(f"{_DCMTLS_MODULE:04x}:{code:04x} {text}")
        self.code = code
        self.details = details


# DCMTK's condition codes (dcmtls tlscond.cc).
_EC_SET_CIPHERSUITES = 2
_EC_UNKNOWN_CIPHERSUITE = 3
_EC_LOAD_PRIVATE_KEY = 4
_EC_LOAD_CERTIFICATE = 5
_EC_KEY_MISMATCH = 6
_EC_CIPHERSUITE_NOT_ALLOWED = 10
_EC_PROFILE_NOT_SUPPORTED = 24


# --- ciphersuites and profiles (pure) ---------------------------------------------------

#: DCMTK's ciphersuite table (dcmtls ``tlsciphr.cc``), weakest first: IANA name and
#: OpenSSL name.  The server offers them in the reverse order.  The CAMELLIA-GCM entries
#: DCMTK compiles only for OpenSSL builds that have them (none do) are left out.
CIPHER_SUITES: tuple[tuple[str, str], ...] = (
    ("TLS_RSA_WITH_NULL_SHA", "NULL-SHA"),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
    ("TLS_RSA_WITH_CAMELLIA_128_CBC_SHA", "CAMELLIA128-SHA"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
    ("TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA", "ECDH-ECDSA-AES128-SHA"),
    ("TLS_ECDH_RSA_WITH_AES_128_CBC_SHA", "ECDH-RSA-AES128-SHA"),
    ("TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256", "ECDH-ECDSA-AES128-SHA256"),
    ("TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256", "ECDH-RSA-AES128-SHA256"),
    ("TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256", "ECDH-ECDSA-AES128-GCM-SHA256"),
    ("TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256", "ECDH-RSA-AES128-GCM-SHA256"),
    ("TLS_RSA_WITH_CAMELLIA_256_CBC_SHA", "CAMELLIA256-SHA"),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"),
    ("TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256"),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
    ("TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA", "ECDH-ECDSA-AES256-SHA"),
    ("TLS_ECDH_RSA_WITH_AES_256_CBC_SHA", "ECDH-RSA-AES256-SHA"),
    ("TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384", "ECDH-ECDSA-AES256-SHA384"),
    ("TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384", "ECDH-RSA-AES256-SHA384"),
    ("TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384", "ECDH-ECDSA-AES256-GCM-SHA384"),
    ("TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384", "ECDH-RSA-AES256-GCM-SHA384"),
    ("TLS_DHE_DSS_WITH_AES_128_CBC_SHA", "DHE-DSS-AES128-SHA"),
    ("TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA", "DHE-DSS-CAMELLIA128-SHA"),
    ("TLS_DHE_RSA_WITH_AES_128_CBC_SHA", "DHE-RSA-AES128-SHA"),
    ("TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA", "DHE-RSA-CAMELLIA128-SHA"),
    ("TLS_DHE_DSS_WITH_AES_128_CBC_SHA256", "DHE-DSS-AES128-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", "DHE-RSA-AES128-SHA256"),
    ("TLS_DHE_DSS_WITH_AES_128_GCM_SHA256", "DHE-DSS-AES128-GCM-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CCM", "ECDHE-ECDSA-AES128-CCM"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", "ECDHE-ECDSA-AES128-CCM8"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLS_DHE_DSS_WITH_AES_256_CBC_SHA", "DHE-DSS-AES256-SHA"),
    ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA", "DHE-RSA-AES256-SHA"),
    ("TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA", "DHE-DSS-CAMELLIA256-SHA"),
    ("TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA", "DHE-RSA-CAMELLIA256-SHA"),
    ("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "DHE-RSA-CHACHA20-POLY1305"),
    ("TLS_DHE_DSS_WITH_AES_256_CBC_SHA256", "DHE-DSS-AES256-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", "DHE-RSA-AES256-SHA256"),
    ("TLS_DHE_DSS_WITH_AES_256_GCM_SHA384", "DHE-DSS-AES256-GCM-SHA384"),
    ("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "ECDHE-ECDSA-AES256-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", "ECDHE-RSA-AES256-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CCM", "ECDHE-ECDSA-AES256-CCM"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8", "ECDHE-ECDSA-AES256-CCM8"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
)

_INDEX = {iana: index for index, (iana, _) in enumerate(CIPHER_SUITES)}
_TRIPLE_DES = "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
_NULL = "TLS_RSA_WITH_NULL_SHA"
_BCP195_ND_SUITES = (
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
)


class _Extra(enum.Enum):
    """How a profile treats ``+cs`` (DCMTK ``DcmTLSCiphersuiteHandler::addCipherSuite``)."""

    FREE = "free"  # anything goes (+pn)
    ENCRYPTED = "encrypted"  # no NULL suite; warn about static RSA (+pb +pa +px +py)
    RFC9325 = "rfc9325"  # no NULL, no SHA-1 MAC; warn about RSA, DHE, CBC (+pg)
    NONE = "none"  # no additional suites at all (+pz +pm)


@dataclass(frozen=True)
class ProfileRule:
    """One security profile: its name, suites and protocol versions."""

    name: str
    retired: bool
    suites: tuple[str, ...]
    #: Offered when OpenSSL has it, with DCMTK's warning when it does not.
    optional: tuple[str, ...]
    minimum: ssl.TLSVersion
    tls13: bool
    security_level: int
    extra: _Extra
    #: Our own certificate must load at OpenSSL security level 2 (RSA >= 2048 bits).
    strict_own_certificate: bool = False


PROFILES: dict[SecurityProfile, ProfileRule] = {
    SecurityProfile.BCP195_RFC8996: ProfileRule(
        "BCP 195 RFC 8996 TLS Profile",
        False,
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ),
        (),
        ssl.TLSVersion.TLSv1_2,
        True,
        0,
        _Extra.RFC9325,
        strict_own_certificate=True,
    ),
    SecurityProfile.BCP195_RFC8996_MODIFIED: ProfileRule(
        "Modified BCP 195 RFC 8996 TLS Profile",
        False,
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
            "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
            "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ),
        (),
        ssl.TLSVersion.TLSv1_2,
        True,
        2,
        _Extra.NONE,
        strict_own_certificate=True,
    ),
    SecurityProfile.BCP195_ND: ProfileRule(
        "Non-downgrading BCP 195 TLS Profile",
        True,
        _BCP195_ND_SUITES,
        (),
        ssl.TLSVersion.TLSv1_2,
        True,
        0,
        _Extra.ENCRYPTED,
    ),
    SecurityProfile.BCP195: ProfileRule(
        "BCP 195 TLS Profile",
        True,
        (*_BCP195_ND_SUITES, "TLS_RSA_WITH_AES_128_CBC_SHA"),
        (_TRIPLE_DES,),
        ssl.TLSVersion.TLSv1,
        True,
        0,
        _Extra.ENCRYPTED,
    ),
    SecurityProfile.BCP195_EXTENDED: ProfileRule(
        "Extended BCP 195 TLS Profile",
        True,
        (
            *_BCP195_ND_SUITES,
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
        (),
        ssl.TLSVersion.TLSv1_2,
        False,
        0,
        _Extra.NONE,
    ),
    SecurityProfile.BASIC: ProfileRule(
        "Basic TLS Secure Transport Connection Profile",
        True,
        (_TRIPLE_DES,),
        (),
        ssl.TLSVersion.TLSv1,
        False,
        0,
        _Extra.ENCRYPTED,
    ),
    SecurityProfile.AES: ProfileRule(
        "AES TLS Secure Transport Connection Profile",
        True,
        ("TLS_RSA_WITH_AES_128_CBC_SHA",),
        (_TRIPLE_DES,),
        ssl.TLSVersion.TLSv1,
        False,
        0,
        _Extra.ENCRYPTED,
    ),
    SecurityProfile.NULL: ProfileRule(
        "Authenticated unencrypted communication",
        True,
        (_NULL,),
        (),
        ssl.TLSVersion.TLSv1,
        False,
        0,
        _Extra.FREE,
    ),
}


def openssl_name(iana: str) -> str | None:
    """OpenSSL's name of a ciphersuite DCMTK knows by its IANA name, or None."""
    index = _INDEX.get(iana)
    return None if index is None else CIPHER_SUITES[index][1]


@dataclass(frozen=True)
class CipherPlan:
    """The TLS 1.2 ciphersuites to offer (OpenSSL names, strongest first) and warnings."""

    openssl_names: tuple[str, ...]
    warnings: tuple[str, ...]


_NOT_IN_OPENSSL = "Ciphersuite '{}' not supported by the OpenSSL library used by Python."


def cipher_plan(
    profile: SecurityProfile, extra: tuple[str, ...], available: frozenset[str]
) -> CipherPlan:
    """The ciphersuites of ``profile`` plus the ``+cs`` suites ``extra``.

    ``available`` holds the OpenSSL names this OpenSSL offers.  The rules and messages
    are DCMTK's (``setTLSProfile`` and ``addCipherSuite``): unknown names, NULL suites
    in an encrypting profile, SHA-1 MAC suites under +pg and any addition under +pz
    and +pm are refused; static RSA, DHE and CBC suites draw RFC 9325 warnings.
    """
    rule = PROFILES[profile]
    notes: list[str] = []
    chosen: list[str] = []
    for suite in rule.suites:
        if openssl_name(suite) in available:
            chosen.append(suite)
    for suite in rule.optional:
        if openssl_name(suite) in available:
            chosen.append(suite)
        elif suite == _TRIPLE_DES:
            notes.append(
                f"{_NOT_IN_OPENSSL.format(suite)[:-1]}, no backward compatibility with"
                " DICOM Basic TLS profile."
            )
    if not chosen:
        missing = ", ".join(rule.suites)
        raise TLSError(
            _EC_PROFILE_NOT_SUPPORTED,
            "DICOM TLS Secure Transport Connection Profile not supported",
            (
                f"the {rule.name} needs {missing}, which the OpenSSL library used by"
                f" Python ({ssl.OPENSSL_VERSION}) does not provide",
            ),
        )
    for suite in extra:
        if suite not in _INDEX or openssl_name(suite) not in available:
            raise TLSError(
                _EC_UNKNOWN_CIPHERSUITE,
                f"Unknown or invalid ciphersuite: {suite}",
                (_NOT_IN_OPENSSL.format(suite),),
            )
        notes.extend(_check_extra(rule, suite))
        chosen.append(suite)
    # Server side: strongest first, which is DCMTK's table read backwards.
    ordered = sorted(set(chosen), key=lambda s: _INDEX[s], reverse=True)
    return CipherPlan(tuple(openssl_name(s) or "" for s in ordered), tuple(notes))


def _check_extra(rule: ProfileRule, suite: str) -> list[str]:
    """DCMTK's checks of one ``+cs`` suite under ``rule``; returns warnings or raises."""

    def refuse(reason: str) -> TLSError:
        return TLSError(
            _EC_CIPHERSUITE_NOT_ALLOWED,
            "Ciphersuite not allowed in current DICOM security profile",
            (reason,),
        )

    unencrypted = "_WITH_NULL_" in suite
    if rule.extra is _Extra.NONE:
        raise refuse(f"Additional ciphersuites not permitted with security profile '{rule.name}'")
    if rule.extra is _Extra.FREE:
        return []
    if unencrypted:
        raise refuse(
            f"Unencrypted ciphersuite '{suite}' not permitted with security profile '{rule.name}'"
        )
    static_rsa = suite.startswith("TLS_RSA_")
    if rule.extra is _Extra.ENCRYPTED:
        if static_rsa:
            return [
                f"Ciphersuite '{suite}' uses RSA key transport. RFC 7525 recommends that"
                " such cipher suites should not be used."
            ]
        return []
    # RFC 9325 (+pg): SHA-1 MACs are forbidden, several other kinds discouraged.
    if suite.endswith("_SHA"):
        raise refuse(
            f"Ciphersuite '{suite}' using SHA-1 MAC not permitted with security profile"
            f" '{rule.name}'"
        )
    notes = []
    if static_rsa:
        notes.append(
            f"Ciphersuite '{suite}' uses RSA key transport. RFC 9325 recommends that such"
            " cipher suites should not be used."
        )
    if suite.startswith("TLS_DHE_"):
        notes.append(
            f"Ciphersuite '{suite}' uses ephemeral finite-field Diffie-Hellman key agreement."
            " RFC 9325 recommends that such cipher suites should not be used."
        )
    if "_CBC_" in suite:
        notes.append(
            f"Ciphersuite '{suite}' uses CBC mode of operation. RFC 9325 recommends that such"
            " cipher suites should not be used, unless both sides support the"
            " encrypt_then_mac extension (we do)."
        )
    return notes


@cache
def available_ciphers() -> frozenset[str]:
    """OpenSSL names of every TLS 1.2 ciphersuite this OpenSSL offers, NULL ones included.

    As DCMTK's ``determineSupportedCiphers``: all suites, including unencrypted ones, at
    security level 0.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("ALL:eNULL:@SECLEVEL=0")
    return frozenset(str(c["name"]) for c in context.get_ciphers())


def supported_suites(available: frozenset[str]) -> list[str]:
    """IANA names of DCMTK's suites that ``available`` contains, in DCMTK's order."""
    return [iana for iana, name in CIPHER_SUITES if name in available]


def list_ciphers_text(available: frozenset[str]) -> str:
    """``+cc``: the lines DCMTK prints below its header."""
    lines = "".join(f"  {name}\n" for name in supported_suites(available))
    return f"\nSupported TLS ciphersuites are:\n{lines}"


def list_profiles_text(available: frozenset[str]) -> str:
    """``+ph``: the profiles this OpenSSL can honour, in DCMTK's order and words."""
    lines = [
        f"Cryptographic algorithms implemented by: {ssl.OPENSSL_VERSION}",
        "",
        "Supported TLS Secure Transport Connection Profiles are:",
    ]
    for profile, rule in PROFILES.items():
        if not any(openssl_name(s) in available for s in rule.suites):
            continue  # DCMTK lists +pb and +pn only when OpenSSL has their suites
        suffix = " (retired)" if rule.retired else ""
        if profile is SecurityProfile.BCP195_RFC8996:
            suffix = " (default)"
        lines.append(f"- {rule.name}{suffix}")
    return "\n".join(lines) + "\n"


# --- DER input (pure) ---------------------------------------------------------------


def _der_elements(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, contents) pairs of a DER byte string; ValueError if malformed."""
    elements = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("truncated DER")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4 or pos + count > len(data):
                raise ValueError("bad DER length")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        if pos + length > len(data):
            raise ValueError("truncated DER")
        elements.append((tag, data[pos : pos + length]))
        pos += length
    return elements


_SEQUENCE, _INTEGER, _OCTET_STRING = 0x30, 0x02, 0x04


def der_key_label(der: bytes) -> str:
    """The PEM label of a DER private key, found from its ASN.1 structure.

    PKCS#8 (RFC 5208) ``PrivateKeyInfo`` and ``EncryptedPrivateKeyInfo``, PKCS#1
    ``RSAPrivateKey`` (RFC 8017), SEC 1 ``ECPrivateKey`` (RFC 5915) and OpenSSL's
    traditional DSA key; ValueError for anything else.
    """
    outer = _der_elements(der)
    if len(outer) != 1 or outer[0][0] != _SEQUENCE:
        raise ValueError("not a DER private key")
    fields = _der_elements(outer[0][1])
    tags = [tag for tag, _ in fields]
    if tags[:2] == [_SEQUENCE, _OCTET_STRING]:
        return "ENCRYPTED PRIVATE KEY"
    if tags[:2] == [_INTEGER, _SEQUENCE]:
        return "PRIVATE KEY"
    if tags[:2] == [_INTEGER, _OCTET_STRING]:
        return "EC PRIVATE KEY"
    if tags and all(tag == _INTEGER for tag in tags):
        return "DSA PRIVATE KEY" if len(tags) == 6 else "RSA PRIVATE KEY"
    raise ValueError("not a DER private key")


def der_to_pem(der: bytes, label: str) -> str:
    """A DER object in PEM armour (RFC 7468)."""
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


# --- building the context (I/O) -----------------------------------------------------

#: RFC 7919 Appendix A.1, the ffdhe2048 group: DHE suites need DH parameters and
#: Python's ssl does not turn on OpenSSL's automatic choice; DCMTK likewise loads a
#: built-in 2048-bit group unless ``+dp`` gives one.
_FFDHE2048 = """-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""


@contextlib.contextmanager
def _text_file(text: str) -> Iterator[str]:
    """A path holding ``text`` for OpenSSL's file-only loaders, gone afterwards.

    An anonymous memory file where the system has one, so converted keys never
    touch the disk; otherwise a private temporary directory.
    """
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("dcmrecv-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, text.encode("ascii"))
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="dcmrecv-tls-") as directory:  # pragma: no cover
        path = Path(directory, "data.pem")
        path.write_text(text, encoding="ascii")
        path.chmod(0o600)
        yield str(path)


def prompt_password(stdin: TextIO | None = None) -> str:
    """``+ps``: ask for the private key password (OpenSSL's prompt, as DCMTK shows it)."""
    stream = stdin if stdin is not None else sys.stdin
    if stream.isatty():
        return getpass.getpass("Enter PEM pass phrase:")
    sys.stderr.write("Enter PEM pass phrase:")
    sys.stderr.flush()
    answer = stream.readline().rstrip("\r\n")
    sys.stderr.write("\n")  # the typed line's newline went to the pipe, not the screen
    return answer


def _reason(exc: BaseException) -> str:
    """A short reason for a log line: OpenSSL's reason or the system's error text."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason.replace("_", " ").lower() if exc.reason else str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _add_trust_file(context: ssl.SSLContext, path: str, key_format: KeyFormat, what: str) -> bool:
    """``+cf``/``+crl``: add certificates or CRLs; False (after a reason) if unusable."""
    try:
        if key_format is KeyFormat.PEM:
            context.load_verify_locations(cafile=path)
            return True
        der = _read(path)
        label = "X509 CRL" if what == "CRL" else "CERTIFICATE"
        with _text_file(der_to_pem(der, label)) as pem:
            context.load_verify_locations(cafile=pem)
        return True
    except (OSError, ValueError) as exc:
        log.error("cannot load %s '%s': %s", what, path, _reason(exc))
        return False


def _add_trust_dir(context: ssl.SSLContext, path: str, key_format: KeyFormat) -> bool:
    """``+cd``: a directory of certificates named by subject hash (``c_rehash``)."""
    if not Path(path).is_dir():
        log.error("cannot load certificates from '%s': not a directory", path)
        return False
    if key_format is KeyFormat.PEM:
        context.load_verify_locations(capath=path)
        return True
    # OpenSSL's hashed-directory lookup reads PEM only through Python's ssl: load DER
    # files one by one, certificates first, then as CRLs.
    loaded = False
    for entry in sorted(Path(path).iterdir()):
        if entry.is_file():
            loaded = _add_trust_file(context, str(entry), key_format, "certificate") or loaded
    return loaded


def _is_encrypted(pem: bytes) -> bool:
    return b"ENCRYPTED" in pem


def _load_identity(
    context: ssl.SSLContext,
    options: TLSOptions,
    password: str | Callable[[], str],
    rule: ProfileRule,
) -> None:
    """Our key and certificate, with DCMTK's three distinct failures (4, 5, 6)."""
    key_path, cert_path = options.private_key, options.certificate
    try:
        key_bytes = _read(key_path)
    except OSError as exc:
        raise TLSError(
            _EC_LOAD_PRIVATE_KEY,
            f"Unable to load private TLS key from '{key_path}'",
            (f"cannot read '{key_path}': {_reason(exc)}",),
        ) from None
    try:
        cert_bytes = _read(cert_path)
    except OSError as exc:
        raise TLSError(
            _EC_LOAD_CERTIFICATE,
            f"Unable to load certificate from '{cert_path}'",
            (f"cannot read '{cert_path}': {_reason(exc)}",),
        ) from None

    if options.key_format is KeyFormat.DER:
        try:
            key_pem = der_to_pem(key_bytes, der_key_label(key_bytes))
        except ValueError as exc:
            raise TLSError(
                _EC_LOAD_PRIVATE_KEY,
                f"Unable to load private TLS key from '{key_path}'",
                (f"'{key_path}': {exc}",),
            ) from None
        cert_pem = der_to_pem(cert_bytes, "CERTIFICATE")
    else:
        key_pem = key_bytes.decode("ascii", "replace")
        cert_pem = cert_bytes.decode("ascii", "replace")

    # Does the certificate parse on its own?  Tells a bad certificate from a bad key.
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_verify_locations(cadata=cert_pem)
    except (ssl.SSLError, ValueError):
        raise TLSError(
            _EC_LOAD_CERTIFICATE,
            f"Unable to load certificate from '{cert_path}'",
            (f"'{cert_path}' holds no {options.key_format.name} certificate",),
        ) from None

    with _text_file(key_pem) as key_file, _text_file(cert_pem) as cert_file:
        try:
            context.load_cert_chain(cert_file, key_file, password)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise TLSError(
                    _EC_KEY_MISMATCH,
                    f"Private key '{key_path}' and certificate '{cert_path}' do not match",
                ) from None
            if exc.reason in ("EE_KEY_TOO_SMALL", "CA_MD_TOO_WEAK"):
                raise TLSError(
                    _EC_LOAD_CERTIFICATE,
                    f"Unable to load certificate from '{cert_path}'",
                    (f"'{cert_path}': {_reason(exc)}",),
                ) from None
            hint = (
                " (wrong password?)"
                if _is_encrypted(key_bytes) or options.key_format is KeyFormat.DER
                else ""
            )
            raise TLSError(
                _EC_LOAD_PRIVATE_KEY,
                f"Unable to load private TLS key from '{key_path}'",
                (f"'{key_path}' holds no usable private key{hint}",),
            ) from None
        if rule.strict_own_certificate:
            _check_own_certificate(cert_file, key_file, password, cert_path, rule)


def _check_own_certificate(
    cert_file: str,
    key_file: str,
    password: str | Callable[[], str],
    cert_path: str,
    rule: ProfileRule,
) -> None:
    """+pg/+pm: DCMTK refuses a server RSA key under 2048 bits (RFC 9325 4.1)."""
    strict = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    strict.set_ciphers("DEFAULT:@SECLEVEL=2")
    try:
        strict.load_cert_chain(cert_file, key_file, password)
    except ssl.SSLError as exc:
        if exc.reason == "EE_KEY_TOO_SMALL":
            raise TLSError(
                _EC_LOAD_CERTIFICATE,
                f"Unable to load certificate from '{cert_path}'",
                (
                    "Key length of public key too short: RFC 9325 requires at least 2048"
                    f" bits for server RSA keys, as does the {rule.name}; the key in"
                    f" certificate file '{cert_path}' is shorter.",
                ),
            ) from None
        if exc.reason == "CA_MD_TOO_WEAK":
            message = (
                "Weak certificate hash key: RFC 9325 recommends the use of SHA-256 (or"
                f" better) for certificates, but certificate file '{cert_path}' uses a"
                " weaker one."
            )
            if rule.security_level >= 2:
                raise TLSError(
                    _EC_LOAD_CERTIFICATE,
                    f"Unable to load certificate from '{cert_path}'",
                    (message,),
                ) from None
            log.warning("%s", message)


def _sni_checker(
    expected: str,
) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]:
    """``--expect-sni``: refuse a handshake naming another server, as DCMTK does.

    A client that sends no server name is accepted (DCMTK ``checkServerSNI``); the
    refusal is the ``unrecognized_name`` alert (RFC 6066 section 3).
    """

    def check(
        connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> int | None:
        if server_name is not None and server_name != expected:
            log.error(
                "SNI failure: client requested server '%s', my name is '%s'.",
                server_name,
                expected,
            )
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    return check


def create_context(
    options: TLSOptions, prompt: Callable[[], str] = prompt_password
) -> ssl.SSLContext:
    """The server context for ``options``, built in DCMTK's order; raises TLSError.

    Unusable ``+cf``/``+cd``/``+crl``/``+dp`` files are warned about and ignored, as
    DCMTK does; a bad key or certificate, an unknown or forbidden ``+cs`` suite and a
    profile OpenSSL cannot honour are errors.
    """
    rule = PROFILES[options.profile]
    if options.seed_file is not None:
        log.warning(
            "ignoring --seed '%s': OpenSSL seeds its random generator from the system",
            options.seed_file,
        )
    if options.write_seed_file is not None:
        log.warning("ignoring --write-seed: no seed file is kept, OpenSSL seeds itself")
    if options.profile is SecurityProfile.BCP195_RFC8996_MODIFIED:
        log.warning(
            "%s: TLS 1.3 ciphersuites TLS_AES_128_CCM_SHA256 and TLS_AES_128_CCM_8_SHA256"
            " cannot be enabled through Python's ssl module; OpenSSL's default TLS 1.3"
            " ciphersuites are offered",
            rule.name,
        )

    plan = cipher_plan(options.profile, options.ciphers, available_ciphers())
    for note in plan.warnings:
        log.warning("%s", note)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # The security level goes with the cipher list and must be set before our own
    # certificate is loaded: OpenSSL checks the key size against it there.
    try:
        context.set_ciphers(":".join(plan.openssl_names) + f":@SECLEVEL={rule.security_level}")
    except ssl.SSLError as exc:
        raise TLSError(
            _EC_SET_CIPHERSUITES, "Unable to set selected cipher suites", (_reason(exc),)
        ) from None
    with warnings.catch_warnings():
        # TLS 1.0 is deprecated in Python; the retired profiles still allow it.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = rule.minimum
        context.maximum_version = (
            ssl.TLSVersion.MAXIMUM_SUPPORTED if rule.tls13 else ssl.TLSVersion.TLSv1_2
        )
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    # ALPN (RFC 7301): DICOM's registered protocol id.
    context.set_alpn_protocols(["dicom"])

    for path in options.ca_files:
        if not _add_trust_file(context, path, options.key_format, "certificate"):
            log.warning("unable to load certificate file '%s', ignoring", path)
    for path in options.ca_dirs:
        if not _add_trust_dir(context, path, options.key_format):
            log.warning("unable to load certificates from directory '%s', ignoring", path)
    crl_mode = options.crl_mode
    for path in options.crl_files:
        if _add_trust_file(context, path, options.key_format, "CRL"):
            if crl_mode is CRLMode.NONE:
                crl_mode = CRLMode.LEAF  # "+crl implies --enable-crl-vfy" (dcmrecv.man)
        else:
            log.warning("unable to load CRL file '%s', ignoring", path)
    if crl_mode is CRLMode.LEAF:
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    elif crl_mode is CRLMode.CHAIN:
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN

    password: str | Callable[[], str]
    if options.password is not None:
        password = options.password
    else:
        # Ask once even though the key may be read twice (see _check_own_certificate).
        answers: list[str] = []

        def password() -> str:
            if not answers:
                answers.append(prompt())
            return answers[0]

    _load_identity(context, options, password, rule)

    dh_loaded = False
    if options.dhparam is not None:
        try:
            context.load_dh_params(options.dhparam)
            dh_loaded = True
        except (OSError, ssl.SSLError) as exc:
            log.error("cannot load DH parameters from '%s': %s", options.dhparam, _reason(exc))
            log.warning(
                "unable to load temporary DH parameter file '%s', ignoring", options.dhparam
            )
    if not dh_loaded:
        with _text_file(_FFDHE2048) as path:
            context.load_dh_params(path)

    context.verify_mode = options.verification.value
    if options.expected_sni is not None:
        context.sni_callback = _sni_checker(options.expected_sni)
    return context
