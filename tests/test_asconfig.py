"""DCMTK association configuration files (dcmrecv/negotiation/asconfig.py).

Fixtures are in tests/data/asconfig/ (see its README.md): DCMTK's own sample
files of every release from 3.5.4 to 3.7.0, annotated good and bad files.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcmrecv.negotiation.asconfig import (
    AssociationProfiles,
    ConfigError,
    ExtendedNegotiationSpec,
    PresentationContextSpec,
    Profile,
    RoleSpec,
    load_profile,
    parse_asconfig,
    read_asconfig,
    render_asconfig,
    verification_only_profile,
)
from dcmrecv.negotiation.uids import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES, uid_name
from tests.conftest import IN_CI

DATA = Path(__file__).resolve().parent / "data" / "asconfig"
RELEASES = ("3.5.4", "3.6.0", "3.6.2", "3.6.4", "3.6.6", "3.6.7", "3.6.8", "3.6.9", "3.7.0")

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
US_RETIRED = "1.2.840.10008.5.1.4.1.1.6"
IMPLANTATION_PLAN_SR = "1.2.840.10008.5.1.4.1.1.88.70"
ILE = "1.2.840.10008.1.2"
ELE = "1.2.840.10008.1.2.1"
EBE = "1.2.840.10008.1.2.2"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
RLE = "1.2.840.10008.1.2.5"

MINIMAL = """\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[[PresentationContexts]]
[PC]
PresentationContext1 = CTImageStorage\\Uncompressed
[[Profiles]]
[Default]
PresentationContexts = PC
"""


def _require_file(path: Path) -> None:
    if not path.exists():
        message = f"{path} not found: install Debian's dcmtk package (apt-get install dcmtk)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


# ---------------------------------------------------------------------------
# The annotated bad files: each one names the line and the message.

BAD_FILES = sorted(DATA.glob("bad-*.cfg"))
EXPECT = re.compile(r"# expect: (parse|scp)-error line (\d+|none): (.*)")


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_bad_file_is_refused_naming_the_line(path: Path) -> None:
    match = EXPECT.fullmatch(path.read_text(encoding="utf-8").splitlines()[0])
    assert match, f"{path.name}: first line must be an '# expect:' annotation"
    stage, line_text, message = match.groups()
    line = None if line_text == "none" else int(line_text)
    with pytest.raises(ConfigError) as caught:
        profiles = read_asconfig(path)
        assert stage == "scp", "parsed, but the annotation expects a parse error"
        profiles.scp_profile(profiles.names[0])
    error = caught.value
    assert error.file == str(path)
    assert error.line == line
    assert message in error.message
    prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(error) == prefix + error.message


def test_there_are_bad_files() -> None:
    assert len(BAD_FILES) >= 20


def test_error_message_reads_file_line_what() -> None:
    text = MINIMAL.replace("LittleEndianImplicit", "JPEGFoo").replace("[Uncompressed]", "[JPEG]")
    text = text.replace("\\Uncompressed", "\\JPEG")
    with pytest.raises(ConfigError) as caught:
        parse_asconfig(text, "storescp.cfg")
    assert str(caught.value).startswith(
        "storescp.cfg:4: unknown transfer syntax name 'JPEGFoo' in [[TransferSyntaxes]] [JPEG]"
    )


# ---------------------------------------------------------------------------
# Good files.


def test_good_quirks_file() -> None:
    profiles = read_asconfig(DATA / "good-quirks.cfg")
    assert profiles.names == ("My  SCP",)
    # Merged [Lossless Only] sections, the repeated ELE dropped; LocalEndianExplicit
    # on this machine's byte order; "=LittleEndianImplicit" with DCMTK's '=' prefix.
    local = ELE if sys.byteorder == "little" else EBE
    lossless = tuple(dict.fromkeys((JPEG_LOSSLESS_SV1, local, ILE, RLE, ELE)))
    reordered = (EBE, ILE)  # TransferSyntax1 comes first though written second
    profile = profiles.scp_profile("my scp")
    assert profile.contexts == (
        PresentationContextSpec(VERIFICATION, reordered),
        PresentationContextSpec(CT, lossless),
        PresentationContextSpec(MR, lossless),  # list name continued over three lines
        PresentationContextSpec(IMPLANTATION_PLAN_SR, lossless),  # DCMTK 3.6.7's name
        PresentationContextSpec(US_RETIRED, reordered),
    )
    assert profile.roles == (RoleSpec(CT, scu=True, scp=False), RoleSpec(MR, scu=True, scp=True))
    assert profile.extended_negotiation == (ExtendedNegotiationSpec(CT, bytes([2, 0, 3, 0, 0, 0])),)
    assert profile.source == str(DATA / "good-quirks.cfg")


def test_good_lenient_file_ignores_blanks_and_knows_keywords() -> None:
    profile = load_profile(DATA / "good-lenient.cfg", "Lenient")
    assert profile.contexts == (
        PresentationContextSpec(CT, (ELE, ILE, EBE)),
        PresentationContextSpec(MR, (ELE, ILE, EBE)),
        PresentationContextSpec(VERIFICATION, (ELE, ILE, EBE)),  # DICOM keywords
    )
    assert profile.roles == (RoleSpec(CT, scu=False, scp=True),)
    assert profile.extended_negotiation == (ExtendedNegotiationSpec(MR, b"\x01\x02"),)


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"], ids=["CRLF", "CR", "LF"])
@pytest.mark.parametrize("name", ["good-quirks.cfg", "dcmtk-3.7.0-storescp.cfg"])
def test_line_ends_do_not_matter(newline: str, name: str) -> None:
    text = (DATA / name).read_text(encoding="utf-8")
    expected = parse_asconfig(text, name)
    assert parse_asconfig(text.replace("\n", newline), name) == expected


@pytest.mark.parametrize("release", RELEASES)
def test_dcmtk_release_storescp_cfg_loads(release: str) -> None:
    path = DATA / f"dcmtk-{release}-storescp.cfg"
    profiles = read_asconfig(path)
    default = profiles.scp_profile("Default")
    assert VERIFICATION in {c.abstract_syntax for c in default.contexts}
    assert CT in {c.abstract_syntax for c in default.contexts}
    if release >= "3.6.2":
        assert profiles.scp_profile("alldicom").name == "AllDICOM"


@pytest.mark.parametrize("release", RELEASES)
def test_dcmtk_release_storescu_cfg_is_no_scp_profile(release: str) -> None:
    path = DATA / f"dcmtk-{release}-storescu.cfg"
    _assert_scu_profile_refused(path)


def _assert_scu_profile_refused(path: Path) -> None:
    profiles = read_asconfig(path)  # parses
    with pytest.raises(ConfigError) as caught:
        profiles.scp_profile("Default")
    error = caught.value
    named = re.search(r"SOP class (\S+) \(([0-9.]+)\) appears twice", error.message)
    assert named, error.message
    name, uid = named.groups()
    assert uid_name(uid) == name
    lines = path.read_text(encoding="utf-8").splitlines()
    assert error.line is not None
    # The named line is a presentation context for that class, and so is an earlier one.
    assert re.match(rf"PresentationContext\d+\s*=\s*{re.escape(name)}\\", lines[error.line - 1])
    earlier = [
        t for t in lines[: error.line - 1] if re.match(rf"Presentation\w+\s*=\s*{name}\\", t)
    ]
    assert earlier


def test_installed_dcmtk_storescp_cfg_loads() -> None:
    path = Path("/etc/dcmtk/storescp.cfg")
    _require_file(path)
    profile = load_profile(path, "Default")
    assert profile.name == "Default"
    verification = next(c for c in profile.contexts if c.abstract_syntax == VERIFICATION)
    assert set(verification.transfer_syntaxes) == {ELE, EBE, ILE}


def test_installed_dcmtk_storescu_cfg_parses_but_is_no_scp_profile() -> None:
    path = Path("/etc/dcmtk/storescu.cfg")
    _require_file(path)
    _assert_scu_profile_refused(path)


# ---------------------------------------------------------------------------
# Selecting a profile and reading files.


@pytest.mark.parametrize("asked", ["Default", "default", "DEFAULT", " de fault "])
def test_profile_names_ignore_case_and_blanks(asked: str) -> None:
    profiles = parse_asconfig(MINIMAL, "x.cfg")
    assert profiles.scp_profile(asked).name == "Default"


def test_unknown_profile_names_the_ones_defined(tmp_path: Path) -> None:
    path = tmp_path / "storescp.cfg"
    path.write_text(MINIMAL, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_profile(path, "AllDICOM")
    assert caught.value.line is None
    assert "'AllDICOM'" in caught.value.message
    assert "Default" in caught.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile(tmp_path / "nope.cfg", "Default")
    assert caught.value.file == str(tmp_path / "nope.cfg")
    assert caught.value.line is None
    assert "no such file" in caught.value.message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile(tmp_path, "Default")
    assert "directory" in caught.value.message


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.cfg"
    path.write_text(MINIMAL, encoding="utf-8")

    def refuse(name: str, limit: int = 0) -> bytes:
        raise PermissionError(13, "Permission denied", name)

    # Permissions do not stop root, who runs the tests in containers.
    monkeypatch.setattr("dcmrecv.negotiation.asconfig.read_bounded", refuse)
    with pytest.raises(ConfigError) as caught:
        load_profile(path, "Default")
    assert caught.value.line is None
    assert caught.value.message == "cannot read the file: Permission denied"


def test_nul_byte_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "binary.cfg"
    path.write_bytes(MINIMAL.encode().replace(b"[PC]", b"[P\0C]"))
    with pytest.raises(ConfigError) as caught:
        load_profile(path, "Default")
    assert caught.value.line == 6
    assert "not a text file" in caught.value.message


def test_binary_garbage_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "image.cfg"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ConfigError) as caught:
        load_profile(path, "Default")
    assert "not a text file" in caught.value.message


def test_latin1_comment_is_accepted_but_not_in_values(tmp_path: Path) -> None:
    path = tmp_path / "latin1.cfg"
    path.write_bytes(("# Röntgen, Ärzte\n" + MINIMAL).encode("latin-1"))
    assert load_profile(path, "Default").contexts == (PresentationContextSpec(CT, (ELE, ILE)),)
    path.write_bytes(("# Röntgen\n" + MINIMAL.replace("[PC]", "[PCÄ]")).encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_profile(path, "Default")
    assert caught.value.line == 7
    assert "UTF-8" in caught.value.message


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.cfg"
    path.write_bytes(b"\xef\xbb\xbf# comment\n" + MINIMAL.encode())
    assert load_profile(path, "Default").name == "Default"


def test_verification_only_profile_is_dcmrecvs_default() -> None:
    # dcmrecv.man: without a profile only Verification, Implicit VR Little Endian.
    assert verification_only_profile().contexts == (PresentationContextSpec(VERIFICATION, (ILE,)),)


def test_scu_profile_with_more_than_128_contexts_is_fine_for_an_scp() -> None:
    lines = "\n".join(
        f"PresentationContext{n} = {uid}\\Uncompressed"
        for n, uid in enumerate(STORAGE_SOP_CLASSES, 1)
    )
    text = MINIMAL.replace("PresentationContext1 = CTImageStorage\\Uncompressed", lines)
    assert len(parse_asconfig(text, "big.cfg").scp_profile("Default").contexts) > 128


# ---------------------------------------------------------------------------
# Properties.


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text_gives_profiles_or_config_error(text: str) -> None:
    try:
        result = parse_asconfig(text, "fuzz.cfg")
    except ConfigError as error:
        assert error.file == "fuzz.cfg"
        assert error.line is None or error.line >= 1
    else:
        assert isinstance(result, AssociationProfiles)


CONFIG_WORDS = [
    "[[TransferSyntaxes]]", "[[PresentationContexts]]", "[[Profiles]]",
    "[[SCPSCURoleSelection]]", "[[ExtendedNegotiation]]", "[[Other]]",
    "[A]", "[B]", "[ a ]", "[", "]", "[[A]", "[]",
    "TransferSyntax1 = LittleEndianExplicit", "TransferSyntax2 = 1.2.840.10008.1.2",
    "TransferSyntax1 = JPEGFoo", "TransferSyntax3 = LocalEndianExplicit",
    "PresentationContext1 = CTImageStorage\\A", "PresentationContext2 = MRImageStorage\\B",
    "PresentationContext1 = 1.2.3\\ a", "PresentationContext1 = CTImageStorage",
    "PresentationContexts = A", "PresentationContexts = B", "SCPSCURoleSelection = A",
    "ExtendedNegotiation = A", "Role1 = CTImageStorage\\BOTH", "Role1 = MRImageStorage\\SCX",
    "ExtendedNegotiation1 = CTImageStorage\\0102", "ExtendedNegotiation1 = CTImageStorage\\0",
    "# comment", "   continued", "  ", "", "=", "Key =", "\t[A]", "garbage",
]  # fmt: skip


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(CONFIG_WORDS), max_size=40), st.sampled_from(["\n", "\r\n", "\r"]))
def test_config_like_text_gives_profiles_or_config_error(lines: list[str], newline: str) -> None:
    try:
        result = parse_asconfig(newline.join(lines), "fuzz.cfg")
    except ConfigError as error:
        assert error.line is None or 1 <= error.line <= max(len(lines), 1)
    else:
        for profile in result.profiles:
            assert profile.contexts
            assert all(context.transfer_syntaxes for context in profile.contexts)


_SECTION_NAMES = ["A", " a ", "B"]
_VALID_TS = ["LittleEndianExplicit", "1.2.840.10008.1.2", "LocalEndianExplicit"]
_VALID_PC = ["CTImageStorage\\A", "MRImageStorage\\ a", "1.2.3\\A", "VerificationSOPClass\\B"]
_SUPERSECTIONS = {
    "TransferSyntaxes": ("TransferSyntax{}", _VALID_TS * 4 + ["JPEG"]),
    "PresentationContexts": ("PresentationContext{}", _VALID_PC * 3 + ["CTImageStorage"]),
    "SCPSCURoleSelection": ("Role{}", ["CTImageStorage\\SCU", "MRImageStorage\\both"]),
    "ExtendedNegotiation": ("ExtendedNegotiation{}", ["CTImageStorage\\0102", "1.2.3\\1"]),
}


@st.composite
def _config_like(draw: st.DrawFn) -> list[str]:
    """Mostly well-formed files with wrong references, numbering and noise mixed in.

    Hypothesis tries the first choice of a sampled_from() most often: it is a valid one.
    """
    lines: list[str] = []
    for title in draw(st.permutations([*_SUPERSECTIONS, "Profiles"])):
        lines.append(f"[[{title}]]")
        for section in draw(st.lists(st.sampled_from(_SECTION_NAMES), min_size=1, max_size=3)):
            lines.append(f"[{section}]")
            if title == "Profiles":
                lines.append("PresentationContexts = " + draw(st.sampled_from(_SECTION_NAMES)))
                for key in ("SCPSCURoleSelection", "ExtendedNegotiation"):
                    if draw(st.booleans()):
                        lines.append(f"{key} = " + draw(st.sampled_from(_SECTION_NAMES)))
                continue
            key, values = _SUPERSECTIONS[title]
            most = 2 if title in ("SCPSCURoleSelection", "ExtendedNegotiation") else 3
            for number in range(1, draw(st.integers(1, most)) + 1):
                written = draw(st.sampled_from([number] * 20 + [number + 10, 0]))
                lines.append(key.format(written) + " = " + draw(st.sampled_from(values)))
        if draw(st.integers(0, 9)) == 9:  # hypothesis favours 0
            lines.append(draw(st.sampled_from(CONFIG_WORDS)))
    return lines


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(_config_like())
def test_structured_config_gives_profiles_or_config_error(lines: list[str]) -> None:
    try:
        result = parse_asconfig("\n".join(lines), "fuzz.cfg")
    except ConfigError as error:
        assert error.line is None or 1 <= error.line <= len(lines)
    else:
        assert parse_asconfig(render_asconfig(result), "again.cfg") == result


_uids = st.one_of(
    st.sampled_from(STORAGE_SOP_CLASSES),
    st.lists(st.integers(0, 99999), min_size=2, max_size=6).map(
        lambda parts: "1.3.6.1.4.1.9590." + ".".join(map(str, parts))
    ),
)
_syntaxes = st.lists(
    st.one_of(st.sampled_from(TRANSFER_SYNTAXES), st.just("1.2.826.0.1.3680043.8.1")),
    min_size=1,
    max_size=6,
    unique=True,
).map(tuple)


@st.composite
def _profile(draw: st.DrawFn, name: str) -> Profile:
    contexts = draw(
        st.lists(st.builds(PresentationContextSpec, _uids, _syntaxes), min_size=1, max_size=8)
    )
    classes = sorted({c.abstract_syntax for c in contexts})
    role_classes = draw(st.lists(st.sampled_from(classes), unique=True, max_size=3))
    roles = [
        RoleSpec(uid, *draw(st.sampled_from([(True, False), (False, True), (True, True)])))
        for uid in role_classes
    ]
    ext_classes = draw(st.lists(st.sampled_from(classes), unique=True, max_size=3))
    extended = [
        ExtendedNegotiationSpec(uid, draw(st.binary(min_size=1, max_size=40)))
        for uid in ext_classes
    ]
    return Profile(name, tuple(contexts), tuple(roles), tuple(extended))


@st.composite
def _profiles(draw: st.DrawFn) -> AssociationProfiles:
    words = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1)
    names = draw(
        st.lists(
            st.tuples(words, st.sampled_from(["", " ", " x "]), words).map("".join),
            min_size=1,
            max_size=4,
            unique_by=lambda n: "".join(n.split()).upper(),
        )
    )
    return AssociationProfiles(tuple(draw(_profile(name)) for name in names))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(_profiles())
def test_render_then_parse_gives_the_same_profiles(profiles: AssociationProfiles) -> None:
    assert parse_asconfig(render_asconfig(profiles), "rendered.cfg") == profiles


@pytest.mark.parametrize(
    "name",
    [f"dcmtk-{r}-storescp.cfg" for r in RELEASES] + ["dcmtk-3.7.0-storescu.cfg", "good-quirks.cfg"],
)
def test_real_files_survive_render_and_parse(name: str) -> None:
    profiles = read_asconfig(DATA / name)
    assert parse_asconfig(render_asconfig(profiles), name) == profiles
