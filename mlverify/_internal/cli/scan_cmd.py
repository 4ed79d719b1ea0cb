"""`mlverify scan`: find code in model files without running it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlverify._internal.errors import UsageError
from mlverify._internal.report import ReportFormat

_FAIL_ON = ["low", "medium", "high", "critical"]


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, metavar="PATH|REFERENCE")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(ReportFormat.names()),
    default="text",
    show_default=True,
    help="Report format (on stdout, or --output).",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="List every file (text, markdown); by default a directory scan lists the files "
    "with findings or not fully checked, and a summary. JSON and SARIF are always complete.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report to FILE instead of stdout.",
)
@click.option(
    "--fail-on",
    type=click.Choice(_FAIL_ON),
    default="medium",
    show_default=True,
    help="Exit 1 when a finding is at or above this severity.",
)
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="MODULE.NAME",
    help="Also allow this import (repeatable; 'module.*' allows a whole module).",
)
def scan_command(
    paths: tuple[str, ...],
    output_format: str,
    show_all: bool,
    output: Path | None,
    fail_on: str,
    allow: tuple[str, ...],
) -> None:
    """Scan model files or directories (recursively) for code a loader would run.

    Formats are detected from bytes, not extensions. Exit 0: nothing at or above
    --fail-on; 1: findings; 2: usage or operational error.
    """
    from mlverify._internal.report import RenderOptions, reporter
    from mlverify._internal.report.text import scan_summary
    from mlverify._internal.scan.model import Limits, Severity
    from mlverify._internal.scan.policy import allow_entry_problem

    for a in allow:
        problem = allow_entry_problem(a)
        if problem:
            raise UsageError(problem, setting="allow")
    from mlverify._internal.api import scan
    from mlverify._internal.sources import SourceSettings

    settings = SourceSettings.from_environment()
    limits = Limits(extra_allow=frozenset(allow))
    reports = [f for p in paths for f in scan(p, limits=limits, settings=settings).files]
    doc = reporter(output_format).scan(reports, RenderOptions(show_all=show_all))
    if output is not None:
        from mlverify._internal.cli.output import write_atomically

        write_atomically(output, doc.encode())
    else:
        click.echo(doc, nl=False)
    threshold = Severity.parse(fail_on)
    bad = [r for r in reports if any(f.severity >= threshold for f in r.findings)]
    click.echo(
        f"mlverify scan: {scan_summary(reports)}; {len(bad)} with findings at or above {fail_on}",
        err=True,
    )
    if bad:
        sys.exit(1)
