"""The storage policy options both commands share (not in DCMTK), and their checks.

``--output-template``, ``--template-fallback``, ``--on-duplicate``,
``--min-free-space``, ``--quarantine-dir``, ``--quarantine-limit`` as option rows
(:mod:`dcmrecv.commands.rules`), the quarantine directory's check and
``--check-config``'s output.  storescp takes all but the template: its own
naming and sorting options decide where its files go.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from dcmrecv.commands import rules
from dcmrecv.commands.argv import ArgvError, Occurrence
from dcmrecv.config import DuplicatePolicy
from dcmrecv.logs.layout import BASE_LOGGER
from dcmrecv.negotiation.asconfig import Profile
from dcmrecv.storage.freespace import parse_watermark
from dcmrecv.storage.template import Template, TemplateError, check_fallback, parse_template

log = logging.getLogger(BASE_LOGGER)


def _invalid(occurrence: Occurrence, why: object) -> ArgvError:
    return ArgvError(f"Invalid value for option {occurrence.spec.long} ({why})")


def _output_template(occurrence: Occurrence) -> object:
    # Parsed after DCMDICTPATH is installed, so the dictionary's names work too;
    # a template that could leave the output directory is refused here (exit 1).
    try:
        return parse_template(occurrence.values[0])
    except TemplateError as exc:
        raise _invalid(occurrence, exc) from None


def _template_fallback(occurrence: Occurrence) -> str:
    try:
        return check_fallback(occurrence.values[0])
    except TemplateError as exc:
        raise _invalid(occurrence, exc) from None


def _on_duplicate(occurrence: Occurrence) -> DuplicatePolicy:
    try:
        return DuplicatePolicy(occurrence.values[0])
    except ValueError:
        choices = ", ".join(policy.value for policy in DuplicatePolicy)
        raise _invalid(occurrence, f"expected one of {choices}") from None


def _watermark(occurrence: Occurrence) -> object:
    try:
        return parse_watermark(occurrence.values[0])
    except ValueError as exc:
        raise _invalid(occurrence, exc) from None


def _limit(occurrence: Occurrence) -> object:
    """``--quarantine-limit``: a size, or a percentage of the quarantine's file system."""
    try:
        mark = parse_watermark(occurrence.values[0])
    except ValueError as exc:
        raise _invalid(occurrence, exc) from None
    if mark.size is not None and mark.size <= 0:
        raise _invalid(occurrence, "expected a size such as 1G or 500M, or 5%")
    return mark


#: Storage policies (our own options, after the port): all off by default.  The
#: fields are ReceiverConfig's; storescp's Settings has those of STORESCP_OPTIONS.
STORESCP_OPTIONS: tuple[rules.Rule, ...] = (
    rules.value("--on-duplicate", "on_duplicate", _on_duplicate),
    rules.value("--min-free-space", "min_free_space", _watermark),
    rules.value("--quarantine-dir", "quarantine_directory", lambda o: Path(o.values[0])),
    rules.value("--quarantine-limit", "quarantine_limit", _limit),
)
POLICY_OPTIONS: tuple[rules.Rule, ...] = (
    rules.value("--output-template", "output_template", _output_template),
    rules.value("--template-fallback", "template_fallback", _template_fallback),
    *STORESCP_OPTIONS,
)


def template_warning(template: Template | None) -> str | None:
    """A template that names no per-instance value puts several instances under one
    name, where ``--on-duplicate`` then decides (by default: the last one stays)."""
    if template is None or template.uses("SOPInstanceUID") or template.uses("UniqueName"):
        return None
    if 0x00080018 in template.tags:
        return None
    return (
        f"--output-template {template.text!r} names neither {{SOPInstanceUID}} nor "
        "{UniqueName}: instances with the same values share one file (--on-duplicate)"
    )


def _directory_problem(path: Path) -> str | None:
    if not path.is_dir():
        return "Directory does not exist"
    if not os.access(path, os.W_OK):
        return "Directory is not writable"
    return None


def quarantine_problem(quarantine: Path | None, output_directory: Path) -> str | None:
    """Why ``--quarantine-dir`` cannot be used, or None.  It must be a writable
    directory outside the output directory, so a refused data set never appears
    among the stored ones."""
    if quarantine is None:
        return None
    problem = _directory_problem(quarantine)
    if problem is not None:
        return f"{quarantine}: {problem}"
    inner, outer = quarantine.resolve(), output_directory.resolve()
    if inner == outer or outer in inner.parents:
        return f"{quarantine}: must not be inside the output directory"
    return None


def check_config(profile: Profile | None, template: Template | None, fallback: str) -> None:
    """``--check-config``: the negotiation table on stdout, likely mistakes as W: lines,
    and with ``--output-template`` the path of a sample data set."""
    from dcmrecv.commands import checkconfig
    from dcmrecv.negotiation.asconfig import verification_only_profile

    profile = profile or verification_only_profile()
    click.echo("\n".join(checkconfig.negotiation_table(profile)))
    for warning in checkconfig.profile_warnings(profile):
        log.warning("%s", warning)
    if template is not None:
        shared = template_warning(template)
        if shared is not None:
            log.warning("%s", shared)
        import pydicom
        from pydicom.data import get_testdata_file

        sample = get_testdata_file("CT_small.dcm")
        dataset = pydicom.dcmread(str(sample), stop_before_pixels=True)
        path = checkconfig.sample_path(dataset, template, fallback)
        click.echo(f"--output-template: pydicom's CT_small.dcm would be stored as {path}")
