"""storescp's hook commands (dcmrecv.ops.hook_command), run by the real /bin/sh.

Two sides: a DCMTK-style command line keeps its shell meaning (redirects, pipes,
``&&``, ``&``, variables, quotes), and a value from the peer stays literal text in
every quoting context a template can put a placeholder in.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcmrecv.ops.hook_command import PLACEHOLDERS, TemplateError, compile_template

#: Text a hostile peer could choose: each line would run a command if it were source.
HOSTILE = [
    "$(touch pwned1)",
    "`touch pwned2`",
    "A;touch pwned3",
    "A' ; touch pwned4 ; '",
    'B" ; touch pwned5 ; "',
    "C\ntouch pwned6",
    "D && touch pwned7 | x",
    "${IFS}*",
    "#a #f",
]
BENIGN = {"#p": "out/dir", "#f": "CT.1.2.3", "#a": "SENDER", "#c": "STORESCP", "#r": "host"}


def run(template: str, values: dict[str, str], cwd: Path) -> str:
    command = compile_template(template)
    done = subprocess.run(
        command.argv(values), cwd=cwd, capture_output=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8", "surrogateescape")  # no newline translation


def dcmtk_paste(template: str, values: dict[str, str]) -> str:
    """The command DCMTK 3.6.7 hands to /bin/sh: values pasted, AE titles in quotes."""
    command = template
    for name in PLACEHOLDERS:
        value = values[name]
        command = command.replace(name, f'"{value}"' if name in ("#a", "#c") else value)
    return command


@pytest.mark.parametrize(
    "template",
    [
        "echo #a #c #f >> received.log && cat received.log",
        "echo #p/#f | tr a-z A-Z",
        "test -n #a && echo yes #c || echo no",
        'echo "file #f from #a at #r"',
        'for word in #a #c; do echo "<$word>"; done',
        "F=#f; echo ${F%%.*} $F",
        "echo #f > bg.log & wait; cat bg.log",
        "(echo #r; echo #p) 2>&1 | sort",
        "echo #a # a comment with #f and it's quote",
        "cat <<EOF\nstudy #p/#f\nEOF",
    ],
)
def test_dcmtk_command_lines_mean_the_same(tmp_path: Path, template: str) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "dcmtk"
    ours.mkdir()
    theirs.mkdir()
    pasted = subprocess.run(
        ["/bin/sh", "-c", dcmtk_paste(template, BENIGN)],
        cwd=theirs,
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    assert pasted  # every template prints something
    assert run(template, BENIGN, ours) == pasted
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())


# Each template prints the calling AE title once, between < and >, from another context.
CONTEXTS = {
    "unquoted": "printf '<%s>' #a",
    "double quotes": 'printf "<%s>" "#a"',
    "inside double quotes": 'printf "%s" "<#a>"',
    "single quotes": "printf '%s' '<#a>'",
    "command substitution": 'printf "%s" "$(printf "<%s>" #a)"',
    "backquotes": 'printf "%s" "`printf "<%s>" #a`"',
    "parameter default": 'printf "%s" "<${UNSET_VARIABLE:-#a}>"',
    "here-document": "cat <<EOF\n<#a>\nEOF",
    "escaped": 'printf "<%s>" \\#a',
}


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_peer_text_is_never_source(tmp_path: Path, context: str, value: str) -> None:
    output = run(CONTEXTS[context], {**BENIGN, "#a": value}, tmp_path)
    expected = f"<{value}>"
    assert output.rstrip("\n") == expected
    assert list(tmp_path.iterdir()) == []  # no "touch" ran


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
        max_size=24,
    ),
    st.sampled_from(sorted(CONTEXTS)),
)
def test_any_value_arrives_literally(tmp_path: Path, value: str, context: str) -> None:
    template = CONTEXTS[context]
    output = run(template, {**BENIGN, "#a": value}, tmp_path)
    if context == "here-document":
        output = output.removesuffix("\n")
    assert output == f"<{value}>"


def test_single_quoted_placeholder_gives_the_value_not_a_reference(tmp_path: Path) -> None:
    command = compile_template("echo 'from #a: #f'")
    assert "'" in command.script  # the user's quotes stay; only the references step out
    assert run("echo 'from #a: #f'", BENIGN, tmp_path) == "from SENDER: CT.1.2.3\n"
    assert run("echo '$HOME #f'", BENIGN, tmp_path) == "$HOME CT.1.2.3\n"


def test_ae_titles_come_without_dcmtks_quotes_where_quotes_are_text(tmp_path: Path) -> None:
    # DCMTK pastes '"SENDER"'; inside single quotes and here-documents the quotes are
    # printed.  The title is what the command means to get.
    assert run("echo '#a'", BENIGN, tmp_path) == "SENDER\n"
    assert run("cat <<EOF\n#a\nEOF", BENIGN, tmp_path) == "SENDER\n"


def test_missing_values_stay_as_written(tmp_path: Path) -> None:
    # storescp.man: #p and #f are not available with --ignore; DCMTK leaves them.
    assert run("echo #p #f #a", {"#a": "SCU"}, tmp_path) == "#p #f SCU\n"


def test_a_value_is_never_scanned_for_placeholders(tmp_path: Path) -> None:
    assert run("echo #a #c", {**BENIGN, "#a": "#c", "#c": "x"}, tmp_path) == "#c x\n"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("echo 'unclosed", "unterminated single quote"),
        ('echo "unclosed', "unterminated double quote"),
        ("echo $(date", r"unterminated \$\(\.\.\.\)"),
        ("echo $((#a + 1))", r"inside \$\(\(\.\.\.\)\)"),
        ("cat <<'EOF'\n#f\nEOF", "quoted delimiter"),
    ],
)
def test_unsafe_or_broken_templates_are_refused(template: str, reason: str) -> None:
    with pytest.raises(TemplateError, match=reason):
        compile_template(template)


def test_parameter_default_inside_a_command_substitution_in_quotes(tmp_path: Path) -> None:
    # The ${...} is in $(...), a new quoting level, even though "..." is around both.
    template = 'printf "%s" "$(printf "<%s>" ${UNSET_VARIABLE:-#a})"'
    assert run(template, {**BENIGN, "#a": "a  b*"}, tmp_path) == "<a  b*>"
