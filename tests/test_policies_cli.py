"""The storage policy options on dcmrecv's command line: values, refusals, exit codes.

The server is replaced by a recorder (as in test_cli); what is checked is the
configuration the command hands to it and what the user sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dcmrecv import exitcodes
from dcmrecv.config import DuplicatePolicy
from dcmrecv.storage.freespace import parse_watermark
from dcmrecv.storage.template import parse_template
from tests.conftest import FakeServer
from tests.helpers import invoke_dcmrecv as run

pytestmark = pytest.mark.usefixtures("fresh_logging")


def test_policies_are_off_by_default(server: FakeServer, in_tmp: Path) -> None:
    assert run("104").exit_code == 0
    config = server.configs[0]
    assert config.output_template is None
    assert config.on_duplicate is DuplicatePolicy.OVERWRITE
    assert config.min_free_space is None
    assert config.quarantine_directory is None


def test_policy_options_reach_the_config(server: FakeServer, in_tmp: Path) -> None:
    template = "{PatientID}/{StudyDate}_{AccessionNumber}/{SOPInstanceUID}.dcm"
    result = run(
        *("--output-template", template, "--template-fallback", "NONE"),
        *("--on-duplicate", "reject", "--min-free-space", "10%", "104"),
    )
    assert result.exit_code == 0, result.output
    config = server.configs[0]
    assert config.output_template == parse_template(template)
    assert config.template_fallback == "NONE"
    assert config.on_duplicate is DuplicatePolicy.REJECT
    assert config.min_free_space == parse_watermark("10%")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--output-template", "../{PatientID}"],
            "Invalid value for option --output-template ('../{PatientID}': '.' and '..'",
        ),
        (
            ["--output-template", "/srv/{PatientID}"],
            "must be a path relative to the output directory",
        ),
        (["--output-template", "{PatientsFavouriteColour}"], "not a DICOM keyword"),
        (["--output-template", "{PatientID!r}"], "conversions are not supported"),
        (["--template-fallback", "a/b"], "Invalid value for option --template-fallback"),
        (["--on-duplicate", "ignore"], "expected one of overwrite, keep, rename, reject"),
        (["--min-free-space", "lots"], "Invalid value for option --min-free-space"),
        (["--min-free-space", "150%"], "a percentage must be between 0 and 100"),
        (["--quarantine-limit", "0"], "expected a size such as 1G or 500M, or 5%"),
        (["--quarantine-limit", "lots"], "Invalid value for option --quarantine-limit"),
    ],
)
def test_bad_policy_values_exit_1(
    server: FakeServer, in_tmp: Path, args: list[str], message: str
) -> None:
    result = run(*args, "104")
    assert result.exit_code == exitcodes.EXITCODE_COMMANDLINE_SYNTAX_ERROR
    assert message in result.stderr
    assert server.configs == []


# --- --check-config ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent

JPEG_ONLY = """\
[[TransferSyntaxes]]
[JPEG]
TransferSyntax1 = JPEGBaseline
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = LittleEndianImplicit

[[PresentationContexts]]
[Contexts]
PresentationContext1 = CTImageStorage\\JPEG
PresentationContext2 = MRImageStorage\\Uncompressed
PresentationContext3 = RETIRED_UltrasoundImageStorage\\Uncompressed

[[Profiles]]
[Mistakes]
PresentationContexts = Contexts
"""


def test_check_config_prints_the_negotiation_table_and_exits_0(
    server: FakeServer, in_tmp: Path
) -> None:
    result = run("--check-config", "-xf", str(ROOT / "storescp.cfg"), "Default")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    at = lines.index("CTImageStorage (1.2.840.10008.5.1.4.1.1.2)")
    assert lines[at + 1] == "    1. JPEGBaseline (1.2.840.10008.1.2.4.50)"
    assert "profile [Default]" in lines[0]
    # DCMTK's sample profile has more contexts than DCMTK 3.6.7 accepts.
    assert "W: 212 presentation contexts: DCMTK 3.6.7 refuses more than 128" in result.stderr
    assert server.configs == []  # nothing listens


def test_check_config_warns_about_likely_mistakes(server: FakeServer, in_tmp: Path) -> None:
    (in_tmp / "mistakes.cfg").write_text(JPEG_ONLY)
    result = run("--check-config", "-xf", "mistakes.cfg", "Mistakes")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:3] == [
        "CTImageStorage (1.2.840.10008.5.1.4.1.1.2)",
        "    1. JPEGBaseline (1.2.840.10008.1.2.4.50)",
    ]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("W: ")]
    assert warnings == [
        "W: CTImageStorage (1.2.840.10008.5.1.4.1.1.2) accepts neither Implicit nor Explicit"
        " VR Little Endian: most senders propose one of them for storage",
        "W: RETIRED_UltrasoundImageStorage (1.2.840.10008.5.1.4.1.1.6) is retired (PS3.6):"
        " current senders do not propose it",
    ]


def test_check_config_with_a_broken_file_exits_66(server: FakeServer, in_tmp: Path) -> None:
    (in_tmp / "broken.cfg").write_text("[[Profiles]]\nnot an entry\n")
    result = run("--check-config", "-xf", "broken.cfg", "Default")
    assert result.exit_code == exitcodes.EXITCODE_INVALID_ASSOCIATION_CONFIG
    assert "F: cannot load association configuration: " in result.stderr


def test_check_config_shows_where_a_sample_would_go(server: FakeServer, in_tmp: Path) -> None:
    result = run(
        *("--check-config", "-xf", str(ROOT / "storescp.cfg"), "Default"),
        *("--output-template", "{PatientID}/{StudyDate}_{AccessionNumber}/{Modality}.dcm"),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "--output-template: pydicom's CT_small.dcm would be stored as 1CT1/20040119_UNKNOWN/CT.dcm"
    )


# --- --quarantine-dir -------------------------------------------------------------------


def test_quarantine_options_reach_the_config(server: FakeServer, in_tmp: Path) -> None:
    (in_tmp / "out").mkdir()
    (in_tmp / "quarantine").mkdir()
    result = run(
        *("-od", "out", "--quarantine-dir", "quarantine", "--quarantine-limit", "500M", "104")
    )
    assert result.exit_code == 0, result.output
    config = server.configs[0]
    assert config.quarantine_directory == Path("quarantine")
    assert config.quarantine_limit.size == 500 * 1024 * 1024
    result = run(*("-od", "out", "--quarantine-dir", "quarantine", "104"))
    assert server.configs[1].quarantine_limit is None  # the default: 5% of its file system
    result = run(
        *("-od", "out", "--quarantine-dir", "quarantine", "--quarantine-limit", "2%", "104")
    )
    assert result.exit_code == 0, result.output
    assert server.configs[2].quarantine_limit.percent == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quarantine-dir", "missing"], "(missing: Directory does not exist)"),
        (["--quarantine-dir", "."], "(.: must not be inside the output directory)"),
        (
            ["-od", ".", "--quarantine-dir", "out/q"],
            "(out/q: must not be inside the output directory)",
        ),
    ],
)
def test_unusable_quarantine_exits_1(
    server: FakeServer, in_tmp: Path, args: list[str], message: str
) -> None:
    (in_tmp / "out" / "q").mkdir(parents=True)
    result = run(*args, "104")
    assert result.exit_code == exitcodes.EXITCODE_COMMANDLINE_SYNTAX_ERROR
    assert f"error: Invalid value for option --quarantine-dir {message}" in result.stderr
    assert server.configs == []


# --- storescp ---------------------------------------------------------------------------


def run_storescp(*args: str) -> Result:
    from dcmrecv.commands.storescp import main as storescp_main

    return CliRunner().invoke(storescp_main, list(args), prog_name="storescp")


def test_storescp_takes_the_policies_but_the_template(server: FakeServer, in_tmp: Path) -> None:
    (in_tmp / "q").mkdir()
    (in_tmp / "out").mkdir()
    result = run_storescp(
        *("-od", "out", "--on-duplicate", "rename", "--min-free-space", "1G"),
        *("--quarantine-dir", "q", "104"),
    )
    assert result.exit_code == 0, result.output
    config = server.configs[0]
    assert config.on_duplicate is DuplicatePolicy.RENAME
    assert config.min_free_space == parse_watermark("1G")
    assert config.quarantine_directory == Path("q")
    # storescp's naming and sorting options decide its paths: no template option.
    refused = run_storescp("--output-template", "{PatientID}", "104")
    assert refused.exit_code == 1
    assert "Unknown option --output-template" in refused.stderr


def test_storescp_check_config(server: FakeServer, in_tmp: Path) -> None:
    result = run_storescp("--check-config", "-xf", str(ROOT / "storescp.cfg"), "Default")
    assert result.exit_code == 0, result.output
    assert "CTImageStorage (1.2.840.10008.5.1.4.1.1.2)" in result.stdout.splitlines()
    assert server.configs == []


def test_a_template_without_the_instance_uid_is_warned_about(
    server: FakeServer, in_tmp: Path
) -> None:
    result = run("--output-template", "{PatientID}/{StudyDate}.dcm", "104")
    assert result.exit_code == 0, result.output
    assert "W: --output-template '{PatientID}/{StudyDate}.dcm' names neither" in result.stderr
    quiet = run("--output-template", "{PatientID}/{00080018}.dcm", "104")
    assert "names neither" not in quiet.stderr
