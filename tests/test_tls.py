"""TLS (DICOM PS3.15 Annex B secure transport) with DCMTK's options and DCMTK's clients.

Certificates are made for the test run with the ``openssl`` command line tool: a CA,
a second CA nobody trusts, a server and client certificate, an expired and a revoked
client certificate.  The clients are DCMTK's ``echoscu``/``storescu`` with ``+tls``
and pynetdicom with an ``ssl_context``.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dcmrecv.commands.argv import ArgvError
from dcmrecv.commands.dcmrecv import evaluate, parse
from dcmrecv.negotiation.asconfig import Profile
from dcmrecv.wire import tls
from tests.conftest import (
    free_port,
    require_program,
    require_tool,
    running_receiver,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parent.parent
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
PASSWORD = "secret"

# Certificates are issued with ``openssl ca`` and explicit validity dates
# (-startdate/-enddate), which every OpenSSL in use understands: ``x509 -days -1`` for an
# expired certificate is refused by OpenSSL 3.5, and ``x509 -not_before/-not_after`` exist
# only from OpenSSL 3.4 on.  The extensions are those RFC 5280 section 4.2 asks of an end
# entity, so strict verifiers (Python 3.13's default context) accept the good ones.
_CA_CONFIG = """[ca]
default_ca = CA_default
[CA_default]
database = {name}.index
serial = {name}.serial
crlnumber = {name}.crlnumber
new_certs_dir = .
default_md = sha256
default_crl_days = 2
unique_subject = no
policy = any_subject
x509_extensions = end_entity
[any_subject]
commonName = supplied
[end_entity]
basicConstraints = critical, CA:FALSE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


def asn1_time(moment: datetime.datetime) -> str:
    """``YYMMDDHHMMSSZ``, the UTCTime form that ``openssl ca -startdate`` takes."""
    return moment.astimezone(datetime.UTC).strftime("%y%m%d%H%M%SZ")


class PKI:
    """Keys and certificates in one directory, made with the openssl tool."""

    def __init__(self, directory: Path, openssl: str) -> None:
        self.dir = directory
        self.openssl = openssl

    def run(self, *args: str) -> None:
        subprocess.run(
            [self.openssl, *args], cwd=self.dir, check=True, capture_output=True, timeout=60
        )

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def make_ca(self, name: str) -> None:
        self.run(
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256"),
            *("-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2"),
            *("-subj", f"/CN={name}"),
        )
        (self.dir / f"{name}.cnf").write_text(_CA_CONFIG.format(name=name))
        (self.dir / f"{name}.index").write_text("")
        (self.dir / f"{name}.serial").write_text("1000\n")
        (self.dir / f"{name}.crlnumber").write_text("01\n")

    def ca(self, ca: str, *args: str) -> None:
        """``openssl ca`` as certificate authority ``ca``."""
        self.run(
            *("ca", "-batch", "-config", f"{ca}.cnf", "-keyfile", f"{ca}.key"),
            *("-cert", f"{ca}.crt", *args),
        )

    def make_cert(
        self,
        name: str,
        ca: str,
        not_before: datetime.datetime,
        not_after: datetime.datetime,
        bits: int = 2048,
    ) -> None:
        self.run(
            *("req", "-new", "-newkey", f"rsa:{bits}", "-nodes"),
            *("-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}"),
        )
        self.ca(
            ca,
            *("-notext", "-in", f"{name}.csr", "-out", f"{name}.crt"),
            *("-startdate", asn1_time(not_before), "-enddate", asn1_time(not_after)),
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    openssl = require_program("openssl", "to make test certificates")
    made = PKI(tmp_path_factory.mktemp("pki"), openssl)
    made.make_ca("ca")
    made.make_ca("otherca")
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - HOUR, now + 2 * DAY)
    made.make_cert("server", "ca", *valid)
    made.make_cert("client", "ca", *valid)
    made.make_cert("stranger", "otherca", *valid)
    # Valid for a day that ended yesterday: expired.
    made.make_cert("expired", "ca", now - 2 * DAY, now - DAY)
    made.make_cert("revoked", "ca", *valid)
    made.make_cert("weak", "ca", *valid, bits=1024)
    made.make_cert("other", "ca", *valid)
    made.run(
        *("pkey", "-in", "server.key", "-aes256", "-passout", f"pass:{PASSWORD}"),
        *("-out", "server-encrypted.key"),
    )
    made.run(
        "rsa", "-in", "server.key", "-traditional", "-outform", "DER", "-out", "server-key.der"
    )
    made.run("pkcs8", "-topk8", "-nocrypt", "-in", "server.key", "-outform", "DER",
             "-out", "server-key8.der")  # fmt: skip
    made.run("x509", "-in", "server.crt", "-outform", "DER", "-out", "server-crt.der")
    made.run("x509", "-in", "ca.crt", "-outform", "DER", "-out", "ca-crt.der")
    # A CRL of "ca" that revokes "revoked".
    made.ca("ca", "-revoke", "revoked.crt")
    made.ca("ca", "-gencrl", "-out", "ca.crl")
    return made


def server_options(pki: PKI, **changes: object) -> tls.TLSOptions:
    base = tls.TLSOptions(
        pki.path("server.key"), pki.path("server.crt"), ca_files=(pki.path("ca.crt"),)
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def dcmtk(tool: str, pki: PKI, *args: str | int | Path) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool in the PKI directory (so key files are given by name)."""
    return subprocess.run(
        [require_tool(tool), *(str(a) for a in args)],
        cwd=pki.dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tls_echo(pki: PKI, port: int, name: str = "client", *extra: str) -> int:
    """DCMTK's echoscu over TLS with certificate ``name``; its exit code."""
    args: list[str | int] = ["+tls", f"{name}.key", f"{name}.crt", "+cf", "ca.crt", *extra]
    return dcmtk("echoscu", pki, *args, "127.0.0.1", port).returncode


# --- ciphersuite planning (pure) ---------------------------------------------------------

EVERYTHING = frozenset(name for _, name in tls.CIPHER_SUITES)


def test_default_profile_offers_bcp195_rfc8996_suites_strongest_first() -> None:
    plan = tls.cipher_plan(tls.SecurityProfile.BCP195_RFC8996, (), EVERYTHING)
    # RFC 9325 section 4.2 recommended suites, AES-256 before AES-128 (DCMTK's order).
    assert plan.openssl_names == (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    )
    assert plan.warnings == ()


@pytest.mark.parametrize(
    ("profile", "suite", "code", "reason"),
    [
        (tls.SecurityProfile.BCP195_RFC8996, "TLS_RSA_WITH_AES_128_CBC_SHA", 10, "SHA-1 MAC"),
        (tls.SecurityProfile.BCP195_RFC8996, "TLS_RSA_WITH_NULL_SHA", 10, "Unencrypted"),
        (tls.SecurityProfile.BCP195_ND, "TLS_RSA_WITH_NULL_SHA", 10, "Unencrypted"),
        (tls.SecurityProfile.BCP195_EXTENDED, "TLS_RSA_WITH_AES_128_GCM_SHA256", 10, "Additional"),
        (
            tls.SecurityProfile.BCP195_RFC8996_MODIFIED,
            "TLS_RSA_WITH_AES_128_GCM_SHA256",
            10,
            "Additional",
        ),
        (tls.SecurityProfile.BCP195_RFC8996, "TLS_NO_SUCH_SUITE", 3, "not supported"),
        (tls.SecurityProfile.BCP195_RFC8996, "ECDHE-RSA-AES128-GCM-SHA256", 3, "not supported"),
    ],
)
def test_cipher_option_is_refused_as_dcmtk_refuses_it(
    profile: tls.SecurityProfile, suite: str, code: int, reason: str
) -> None:
    with pytest.raises(tls.TLSError) as excinfo:
        tls.cipher_plan(profile, (suite,), EVERYTHING)
    assert excinfo.value.code == code
    assert str(excinfo.value).startswith(f"000b:{code:04x} ")
    assert reason in " ".join(excinfo.value.details)


def test_cipher_option_adds_suites_with_rfc9325_warnings() -> None:
    plan = tls.cipher_plan(
        tls.SecurityProfile.BCP195_RFC8996,
        ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256"),
        EVERYTHING,
    )
    assert "DHE-RSA-AES256-SHA256" in plan.openssl_names
    assert "AES128-GCM-SHA256" in plan.openssl_names
    text = "\n".join(plan.warnings)
    assert "finite-field Diffie-Hellman" in text
    assert "CBC mode" in text
    assert "RSA key transport" in text


def test_null_profile_takes_any_suite() -> None:
    plan = tls.cipher_plan(tls.SecurityProfile.NULL, ("TLS_RSA_WITH_AES_128_CBC_SHA",), EVERYTHING)
    assert plan.openssl_names == ("AES128-SHA", "NULL-SHA")


def test_basic_profile_needs_3des_in_openssl() -> None:
    without_3des = EVERYTHING - {"DES-CBC3-SHA"}
    with pytest.raises(tls.TLSError) as excinfo:
        tls.cipher_plan(tls.SecurityProfile.BASIC, (), without_3des)
    assert excinfo.value.code == 24
    assert "TLS_RSA_WITH_3DES_EDE_CBC_SHA" in excinfo.value.details[0]
    assert tls.cipher_plan(tls.SecurityProfile.BASIC, (), EVERYTHING).openssl_names == (
        "DES-CBC3-SHA",
    )
    # The AES profile only misses its optional 3DES suite, with DCMTK's warning.
    plan = tls.cipher_plan(tls.SecurityProfile.AES, (), without_3des)
    assert plan.openssl_names == ("AES128-SHA",)
    assert "no backward compatibility with DICOM Basic TLS profile" in plan.warnings[0]


def test_profile_list_shows_only_what_openssl_can_do() -> None:
    full = tls.list_profiles_text(EVERYTHING)
    assert "- BCP 195 RFC 8996 TLS Profile (default)" in full
    assert "- Basic TLS Secure Transport Connection Profile (retired)" in full
    reduced = tls.list_profiles_text(EVERYTHING - {"DES-CBC3-SHA", "NULL-SHA"})
    assert "Basic TLS" not in reduced
    assert "Authenticated unencrypted communication" not in reduced
    assert "- AES TLS Secure Transport Connection Profile (retired)" in reduced


@pytest.mark.dcmtk
def test_cipher_list_covers_dcmtks() -> None:
    result = subprocess.run(
        [require_tool("dcmrecv"), "+cc"], capture_output=True, text=True, check=True
    )
    theirs = [line.strip() for line in result.stdout.splitlines() if line.startswith("  TLS_")]
    assert len(theirs) > 20
    ours = tls.supported_suites(tls.available_ciphers())
    # DCMTK 3.6.7 lists a subset of ours: newer DCMTK adds the CCM suites and orders
    # DHE before ECDHE, as our table (from the current sources) does.
    assert set(theirs) <= set(ours)


def test_command_line_options_map_to_tls_options() -> None:
    cmdline = parse(
        [
            *("+tls", "k.pem", "c.pem", "-der", "+pw", "pw", "+cf", "a.crt", "+cf", "b.crt"),
            *("+cd", "certs", "+crl", "x.crl", "+cra", "+px", "+cs", "TLS_X", "+dp", "dh.pem"),
            *("-vc", "--expect-sni", "pacs", "+rs", "seed", "+ws", "104"),
        ]
    )
    assert evaluate(cmdline).tls == tls.TLSOptions(
        "k.pem",
        "c.pem",
        password="pw",
        key_format=tls.KeyFormat.DER,
        ca_files=("a.crt", "b.crt"),
        ca_dirs=("certs",),
        crl_files=("x.crl",),
        crl_mode=tls.CRLMode.CHAIN,
        profile=tls.SecurityProfile.BCP195,
        ciphers=("TLS_X",),
        dhparam="dh.pem",
        verification=tls.PeerVerification.VERIFY,
        expected_sni="pacs",
        seed_file="seed",
        write_seed_file="seed",
    )
    # DCMTK's defaults: +pg, -rc, PEM, password prompt (+ps); -tls (the default) is no TLS.
    defaults = evaluate(parse(["+tls", "k", "c", "104"])).tls
    assert defaults == tls.TLSOptions("k", "c")
    assert defaults.profile is tls.SecurityProfile.BCP195_RFC8996
    assert evaluate(parse(["+tls", "k", "c", "-tls", "104"])).tls is None


@pytest.mark.dcmtk
@pytest.mark.parametrize(
    "args",
    [
        ["+pw", "x"],
        ["-der"],
        ["+cf", "ca.pem"],
        ["-ic"],
        ["+px"],
        ["+cs", "X"],
        ["+tls", "k", "c", "+ws"],
        ["+tls", "k", "c", "+pz", "+cs", "X"],
    ],
)
def test_option_errors_are_dcmtks(args: list[str]) -> None:
    theirs = subprocess.run(
        [require_tool("dcmrecv"), *args, "104"], capture_output=True, text=True, timeout=30
    )
    error = [line for line in theirs.stderr.splitlines() if line.startswith("error: ")]
    assert theirs.returncode == 1 and error
    with pytest.raises(ArgvError) as excinfo:
        evaluate(parse([*args, "104"]))
    assert f"error: {excinfo.value}" == error[0]


# --- DER input (pure, with keys from openssl) ----------------------------------------------


_RSA = "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024"
_EC = "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"


@pytest.mark.parametrize(
    ("make", "convert", "label"),
    [
        (_RSA, "pkcs8 -topk8 -nocrypt", "PRIVATE KEY"),
        (_EC, "pkcs8 -topk8 -nocrypt", "PRIVATE KEY"),
        (_RSA, "rsa -traditional", "RSA PRIVATE KEY"),
        (_EC, "ec", "EC PRIVATE KEY"),
    ],
)
def test_der_key_kind_is_recognised(pki: PKI, make: str, convert: str, label: str) -> None:
    def openssl(args: list[str], data: bytes | None = None) -> bytes:
        return subprocess.run(
            [pki.openssl, *args], input=data, capture_output=True, check=True, timeout=60
        ).stdout

    der = openssl([*convert.split(), "-outform", "DER"], openssl(make.split()))
    assert tls.der_key_label(der) == label


def test_encrypted_der_key_is_recognised(pki: PKI) -> None:
    der = subprocess.run(
        [pki.openssl, "pkcs8", "-topk8", "-in", pki.path("server.key"), "-outform", "DER",
         "-passout", "pass:x"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert tls.der_key_label(der) == "ENCRYPTED PRIVATE KEY"


@pytest.mark.parametrize("data", [b"", b"\x30", b"\x02\x01\x00", b"\x30\x03\x04\x01\x00"])
def test_der_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        tls.der_key_label(data)


# --- start-up problems -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "code", "text"),
    [
        ({"private_key": "missing.key"}, 4, "Unable to load private TLS key from 'missing.key'"),
        ({"certificate": "missing.crt"}, 5, "Unable to load certificate from 'missing.crt'"),
        ({"certificate": "ca.cnf"}, 5, "Unable to load certificate from '{dir}/ca.cnf'"),
        (
            {"certificate": "client.crt"},
            6,
            "Private key '{dir}/server.key' and certificate '{dir}/client.crt' do not match",
        ),
        (
            {"private_key": "server-encrypted.key", "password": "wrong"},
            4,
            "Unable to load private TLS key from '{dir}/server-encrypted.key'",
        ),
        (
            {"private_key": "server-encrypted.key", "password": ""},
            4,
            "Unable to load private TLS key from '{dir}/server-encrypted.key'",
        ),
        # DCMTK refuses a server RSA key below 2048 bits under +pg (RFC 9325).
        ({"private_key": "weak.key", "certificate": "weak.crt"}, 5, "weak.crt"),
    ],
)
def test_bad_key_or_certificate_is_a_clear_startup_error(
    pki: PKI, changes: dict[str, str], code: int, text: str
) -> None:
    resolved = {
        k: (pki.path(v) if k in ("private_key", "certificate") and v[:7] != "missing" else v)
        for k, v in changes.items()
    }
    with pytest.raises(tls.TLSError) as excinfo:
        tls.create_context(server_options(pki, **resolved))
    assert excinfo.value.code == code
    assert text.format(dir=pki.dir) in str(excinfo.value)


def test_short_key_is_allowed_by_the_retired_profiles(pki: PKI) -> None:
    options = server_options(
        pki,
        private_key=pki.path("weak.key"),
        certificate=pki.path("weak.crt"),
        profile=tls.SecurityProfile.BCP195,
    )
    assert isinstance(tls.create_context(options), ssl.SSLContext)


def test_password_prompt_is_asked_once(pki: PKI) -> None:
    asked: list[int] = []

    def prompt() -> str:
        asked.append(1)
        return PASSWORD

    options = server_options(pki, private_key=pki.path("server-encrypted.key"))
    tls.create_context(options, prompt=prompt)
    assert asked == [1]


def test_unreadable_trust_files_are_warned_about_and_ignored(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    options = server_options(
        pki,
        ca_files=("nonexistent.crt",),
        ca_dirs=("nonexistent-dir",),
        crl_files=("nonexistent.crl",),
        dhparam="nonexistent.pem",
        seed_file="seed.bin",
    )
    with caplog.at_level(logging.WARNING, logger="dcmrecv"):
        tls.create_context(options)
    text = caplog.text
    assert "unable to load certificate file 'nonexistent.crt', ignoring" in text
    assert "unable to load certificates from directory 'nonexistent-dir', ignoring" in text
    assert "unable to load CRL file 'nonexistent.crl', ignoring" in text
    assert "unable to load temporary DH parameter file 'nonexistent.pem', ignoring" in text
    assert "ignoring --seed 'seed.bin'" in text


# --- DCMTK's clients against our receiver ----------------------------------------------------


@pytest.mark.dcmtk
def test_storescu_over_tls_stores_the_instance(
    pki: PKI, tmp_path: Path, default_profile: Profile
) -> None:
    options = server_options(pki)
    with running_receiver(output_directory=tmp_path, profile=default_profile, tls=options) as srv:
        result = dcmtk(
            "storescu", pki, "+tls", "client.key", "client.crt", "+cf", "ca.crt",
            "127.0.0.1", srv.port, CT_SMALL,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stored = [p for p in tmp_path.iterdir() if p.is_file()]
    assert len(stored) == 1 and stored[0].name.startswith("CT.")


@pytest.mark.dcmtk
@pytest.mark.parametrize(
    ("verification", "anonymous_ok"),
    [
        (tls.PeerVerification.REQUIRE, False),
        (tls.PeerVerification.VERIFY, True),
        (tls.PeerVerification.IGNORE, True),
    ],
)
def test_client_without_certificate(
    pki: PKI, tmp_path: Path, verification: tls.PeerVerification, anonymous_ok: bool
) -> None:
    options = server_options(pki, verification=verification)
    with running_receiver(output_directory=tmp_path, tls=options) as srv:
        anonymous = dcmtk("echoscu", pki, "+tla", "+cf", "ca.crt", "127.0.0.1", srv.port)
        assert (anonymous.returncode == 0) is anonymous_ok, anonymous.stderr
        assert tls_echo(pki, srv.port) == 0


#: Client certificates the server must refuse, with OpenSSL's X509 verification message
#: (X509_verify_cert_error_string) for each.
REFUSAL_REASONS = {
    "stranger": "unable to get local issuer certificate",
    "expired": "certificate has expired",
    "revoked": "certificate revoked",
}


@pytest.mark.dcmtk
def test_untrusted_expired_and_revoked_clients_are_refused_and_others_go_on(
    pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = server_options(pki, crl_files=(pki.path("ca.crl"),))
    with (
        caplog.at_level(logging.ERROR, logger="dcmrecv"),
        running_receiver(output_directory=tmp_path, tls=options) as srv,
    ):
        for bad in REFUSAL_REASONS:
            assert tls_echo(pki, srv.port, bad) != 0, bad
            assert tls_echo(pki, srv.port) == 0, f"good client after {bad}"
    failures = [r.getMessage() for r in caplog.records if "TLS handshake with" in r.getMessage()]
    assert len(failures) == len(REFUSAL_REASONS)
    # Each refusal is logged with OpenSSL's verification result for that certificate.
    for message, reason in zip(failures, REFUSAL_REASONS.values(), strict=True):
        assert "CERTIFICATE_VERIFY_FAILED" in message and f"({reason})" in message, message


@pytest.mark.dcmtk
def test_ignore_peer_cert_accepts_even_an_untrusted_client(pki: PKI, tmp_path: Path) -> None:
    options = server_options(pki, verification=tls.PeerVerification.IGNORE)
    with running_receiver(output_directory=tmp_path, tls=options) as srv:
        assert tls_echo(pki, srv.port, "stranger") == 0


@pytest.mark.dcmtk
def test_plain_client_on_tls_port_fails_cleanly(
    pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = server_options(pki)
    with (
        caplog.at_level(logging.ERROR, logger="dcmrecv"),
        running_receiver(output_directory=tmp_path, tls=options) as srv,
    ):
        plain = dcmtk("echoscu", pki, "-ta", "10", "127.0.0.1", srv.port)
        assert plain.returncode != 0
        assert tls_echo(pki, srv.port) == 0
    assert "TLS handshake with 127.0.0.1:" in caplog.text


@pytest.mark.dcmtk
def test_tls_client_on_plain_port_fails_cleanly(pki: PKI, tmp_path: Path) -> None:
    with running_receiver(output_directory=tmp_path) as srv:
        result = dcmtk(
            "echoscu", pki, "+tls", "client.key", "client.crt", "+cf", "ca.crt",
            "127.0.0.1", srv.port,
        )  # fmt: skip
        assert result.returncode != 0
        assert "TLS" in result.stderr
        assert dcmtk("echoscu", pki, "127.0.0.1", srv.port).returncode == 0


#: Which DCMTK 3.6.7 client profile can talk to which of our server profiles, from
#: DCMTK's suite lists: the client offers its profile's suites, the server its own.
PROFILE_PAIRS = [
    (tls.SecurityProfile.BCP195_RFC8996, "+py", True),
    (tls.SecurityProfile.BCP195_RFC8996, "+pa", False),
    (tls.SecurityProfile.BCP195_ND, "+pz", True),
    (tls.SecurityProfile.BCP195, "+pa", True),
    (tls.SecurityProfile.BCP195_EXTENDED, "+px", True),
    (tls.SecurityProfile.AES, "+pa", True),
    (tls.SecurityProfile.AES, "+py", False),
    (tls.SecurityProfile.NULL, "+pn", True),
    (tls.SecurityProfile.NULL, "+py", False),
    (tls.SecurityProfile.BCP195_RFC8996_MODIFIED, "+py", True),
]


@pytest.mark.dcmtk
@pytest.mark.parametrize(("ours", "client", "works"), PROFILE_PAIRS)
def test_security_profiles_with_dcmtk_client_profiles(
    pki: PKI, tmp_path: Path, ours: tls.SecurityProfile, client: str, works: bool
) -> None:
    options = server_options(pki, profile=ours)
    with running_receiver(output_directory=tmp_path, tls=options) as srv:
        assert (tls_echo(pki, srv.port, "client", client) == 0) is works


@pytest.mark.dcmtk
@pytest.mark.parametrize("key", ["server-key.der", "server-key8.der"])
def test_der_keys_and_trust(pki: PKI, tmp_path: Path, key: str) -> None:
    options = tls.TLSOptions(
        pki.path(key),
        pki.path("server-crt.der"),
        key_format=tls.KeyFormat.DER,
        ca_files=(pki.path("ca-crt.der"),),
    )
    with running_receiver(output_directory=tmp_path, tls=options) as srv:
        assert tls_echo(pki, srv.port) == 0
        assert tls_echo(pki, srv.port, "stranger") != 0


# --- pynetdicom as TLS client, and --expect-sni ----------------------------------------------


def client_context(pki: PKI, name: str = "client") -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.path("ca.crt"))
    context.check_hostname = False  # the test certificates name no host
    context.load_cert_chain(pki.path(f"{name}.crt"), pki.path(f"{name}.key"))
    return context


def pynetdicom_echo(port: int, context: ssl.SSLContext, server_name: str | None) -> bool:
    ae = AE()
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, tls_args=(context, server_name))  # type: ignore[arg-type]
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status.Status == 0)


def test_pynetdicom_client_with_ssl_context(pki: PKI, tmp_path: Path) -> None:
    options = server_options(pki)
    with running_receiver(output_directory=tmp_path, tls=options) as srv:
        assert pynetdicom_echo(srv.port, client_context(pki), None)
        assert not pynetdicom_echo(srv.port, client_context(pki, "stranger"), None)


def test_expect_sni_refuses_another_server_name(
    pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = server_options(pki, expected_sni="pacs.example")
    with (
        caplog.at_level(logging.ERROR, logger="dcmrecv"),
        running_receiver(output_directory=tmp_path, tls=options) as srv,
    ):
        assert pynetdicom_echo(srv.port, client_context(pki), "pacs.example")
        assert not pynetdicom_echo(srv.port, client_context(pki), "other.example")
        # As DCMTK: a client that sends no server name is not refused.
        assert pynetdicom_echo(srv.port, client_context(pki), None)
    assert (
        "SNI failure: client requested server 'other.example', my name is 'pacs.example'."
        in caplog.text
    )


# --- the command: exit codes, +cc/+ph, a real TLS receiver -----------------------------------


def dcmrecv_command(*args: str | int | Path) -> list[str]:
    return [sys.executable, "-m", "dcmrecv", *(str(a) for a in args)]


def command_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_command(pki: PKI, *args: str | int, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        dcmrecv_command(*args),
        cwd=pki.dir,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=command_env(),
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("+tls", "badkey", "badcert"),
            "F: 000b:0004 Unable to load private TLS key from 'badkey'",
        ),
        (("+tls", "server.key", "client.crt"), "do not match"),
        (("+tls", "server-encrypted.key", "server.crt", "+pw", "wrong"), "wrong password?"),
        (("+tls", "server.key", "server.crt", "+cs", "NOPE"), "Unknown or invalid ciphersuite"),
    ],
)
def test_startup_errors_exit_71(pki: PKI, args: tuple[str, ...], message: str) -> None:
    result = run_command(pki, *args, free_port())
    assert result.returncode == 71, result.stderr
    assert message in result.stderr


@pytest.mark.dcmtk
def test_startup_error_texts_match_dcmtk(pki: PKI) -> None:
    # DCMTK 3.6.7 reports a missing key and a key/certificate mismatch with these words.
    for args in (("+tls", "badkey", "badcert"), ("+tls", "server.key", "client.crt")):
        theirs = dcmtk("dcmrecv", pki, *args, free_port())
        ours = run_command(pki, *args, free_port())
        assert theirs.returncode == ours.returncode == 71
        fatal = [line for line in theirs.stderr.splitlines() if line.startswith("F: ")]
        assert fatal and fatal[-1] in ours.stderr


def test_list_options_print_and_exit(pki: PKI) -> None:
    ciphers = run_command(pki, "+cc")
    assert ciphers.returncode == 0
    assert "Supported TLS ciphersuites are:\n  TLS_" in ciphers.stdout
    assert "  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n" in ciphers.stdout
    profiles = run_command(pki, "--list-profiles")
    assert profiles.returncode == 0
    assert "- BCP 195 RFC 8996 TLS Profile (default)" in profiles.stdout


@pytest.fixture
def tls_command(pki: PKI, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """The real command with an encrypted key whose password comes on stdin (+ps)."""
    port = free_port()
    command = dcmrecv_command(
        *("+tls", "server-encrypted.key", "server.crt", "+ps", "+cf", "ca.crt"),
        *("-xf", ROOT / "storescp.cfg", "Default", "-od", tmp_path, port),
    )
    process = subprocess.Popen(
        command,
        cwd=pki.dir,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=command_env(),
    )
    try:
        assert process.stdin is not None
        process.stdin.write(f"{PASSWORD}\n")
        process.stdin.close()
        wait_for_port(port, process)  # type: ignore[arg-type]
        yield port, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.dcmtk
def test_command_receives_over_tls_with_prompted_password(
    pki: PKI, tmp_path: Path, tls_command: tuple[int, subprocess.Popen[str]]
) -> None:
    port, process = tls_command
    result = dcmtk(
        "storescu", pki, "+tls", "client.key", "client.crt", "+cf", "ca.crt",
        "127.0.0.1", port, CT_SMALL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("CT.")]) == 1
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
