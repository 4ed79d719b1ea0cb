"""`mlverify scan`: find code in model files without running it."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from mlverify._internal.errors import UsageError
from mlverify._internal.text import shown, shown_lines

_FAIL_ON = ["low", "medium", "high", "critical"]


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, metavar="PATH|oci://REF|hf://REF")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
    help="Report format (on stdout, or --output).",
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
    output: Path | None,
    fail_on: str,
    allow: tuple[str, ...],
) -> None:
    """Scan model files or directories (recursively) for code a loader would run.

    Formats are detected from bytes, not extensions. Exit 0: nothing at or above
    --fail-on; 1: findings; 2: usage or operational error.
    """
    from mlverify._internal.scan.model import Limits, Severity, Status
    from mlverify._internal.scan.policy import allow_entry_problem
    from mlverify._internal.scan.report import render_json, render_sarif, render_text

    for a in allow:
        problem = allow_entry_problem(a)
        if problem:
            raise UsageError(problem, setting="allow")
    from mlverify._internal.refs import (
        scan_refs,
    )  # local paths, oci://, hf:// (mlverify/_internal/refs.py)

    reports = scan_refs(paths, Limits(extra_allow=frozenset(allow)))
    render = {"text": render_text, "json": render_json, "sarif": render_sarif}[output_format]
    if output_format == "text":  # names from the artifact never reach a terminal raw
        reports = [dataclasses.replace(r, path=shown(r.path)) for r in reports]
    doc = render(reports)
    if output_format == "text":
        doc = shown_lines(doc)
    if output is not None:
        try:
            output.write_text(doc, encoding="utf-8")
        except OSError as e:
            raise UsageError(
                f"{output}: cannot write the report ({e.strerror}); check the path"
            ) from None
    else:
        click.echo(doc, nl=False)
    threshold = Severity.parse(fail_on)
    bad = [r for r in reports if any(f.severity >= threshold for f in r.findings)]
    counts = {s: 0 for s in Status}
    for r in reports:
        counts[r.status] += 1
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    click.echo(
        f"mlverify scan: {len(reports)} file(s): {summary or 'none'}; "
        f"{len(bad)} with findings at or above {fail_on}",
        err=True,
    )
    if bad:
        sys.exit(1)
