"""`mlverify check`: the one command: evidence, policy, decision, reasons."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mlverify._internal.cli import ui
from mlverify._internal.cli.output import write_atomically
from mlverify._internal.errors import UsageError
from mlverify._internal.report import ReportFormat
from mlverify._internal.text import shown


@click.command("check")
@click.argument("paths", nargs=-1, required=True, metavar="PATH|REFERENCE")
@click.option(
    "--policy",
    "policy_refs",
    multiple=True,
    metavar="FILE|DIR|builtin:NAME",
    help="Policy file(s) or a directory of them; every policy whose match block covers an "
    "artifact must allow it [default: $MLVERIFY_POLICY, else builtin:default].",
)
@click.option(
    "--signature",
    "signatures",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Signature file [default: model.sig inside a directory, PATH.sig beside it].",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(ReportFormat.names()),
    default=lambda: os.environ.get("MLVERIFY_FORMAT", "text"),
    show_default="text",
    help="Report format: text, json (the interchange `mlverify report` reads), sarif "
    "(code scanning), markdown (a PR comment) [default: $MLVERIFY_FORMAT, else text].",
)
@click.option(
    "--output", type=click.Path(path_type=Path, dir_okay=False), help="Write the report here."
)
@click.option(
    "--allow-not-fetched",
    is_flag=True,
    help="Do not deny artifacts whose Git LFS content is not fetched (skip them with a note; "
    "the default inside pre-commit hooks).",
)
@click.option("--explain", is_flag=True, help="Also print the evidence behind each decision.")
@click.option(
    "--cache/--no-cache",
    "use_cache",
    default=False,
    show_default=True,
    help="Developer loops only: reuse digests of files whose inode, size and timestamps are "
    "unchanged (a writer through a shared mapping keeps them; see docs/digest-cache.md). "
    "Default: hash every byte.",
)
@click.option(
    "--list-files",
    is_flag=True,
    help="List every hashed file with its SHA-256 in the evidence (always for cyclonedx; "
    "otherwise the evidence counts the files and digests the listing).",
)
def check_command(
    paths: tuple[str, ...],
    policy_refs: tuple[str, ...],
    signatures: tuple[Path, ...],
    output_format: str,
    output: Path | None,
    explain: bool,
    use_cache: bool,
    allow_not_fetched: bool,
    list_files: bool,
) -> None:
    """Decide whether each artifact at PATHS may be used: allow or deny, with every reason.

    For each artifact: hash once, scan the same files, verify every signature and
    attestation found, evaluate the policy. Exit 0 all allowed (or warn mode), 1
    any denied, 2 usage or operational error.
    """
    from mlverify._internal.policy.model import load_policies

    if output_format not in ReportFormat.names():  # $MLVERIFY_FORMAT is not validated by click
        raise UsageError(
            f"--format {output_format!r}: expected one of {', '.join(ReportFormat.names())}"
        )
    refs = list(policy_refs) or [os.environ.get("MLVERIFY_POLICY") or "builtin:default"]
    policies = load_policies(refs)
    if signatures and len(paths) > 1:
        raise UsageError("--signature applies to one artifact; check artifacts one at a time")
    from mlverify._internal.api import check
    from mlverify._internal.sources import SourceSettings

    # Unfetched Git LFS content was not checked: never admitted, except in a commit hook
    # (pre-commit sets PRE_COMMIT=1), where a developer need not have pulled every model.
    skip_unfetched = allow_not_fetched or os.environ.get("PRE_COMMIT") == "1"
    settings = SourceSettings.from_environment()
    # every reference gets a result, in order (an error is a result: never an exception)
    results = [
        check(
            p,
            policy=policies,
            signatures=signatures,
            use_cache=use_cache,
            allow_not_fetched=skip_unfetched,
            # an ML-BOM lists every file; other reports count them (a dataset has millions)
            list_files=list_files or output_format == ReportFormat.CYCLONEDX.value,
            settings=settings,
        )
        for p in paths
    ]
    for r in results:
        if r.outcome:
            click.echo(f"mlverify check: {shown(r.message)} ({r.status})", err=True)
    # the exit code, and the report's verdict, from the same results
    code = max((r.exit_code for r in results), default=0)

    from mlverify._internal.report import RenderOptions, reporter

    text = reporter(output_format).check(results, RenderOptions(explain=explain))
    if output:
        write_atomically(output, text.encode())
    else:
        ui.report(text)
    counts = {k: sum(r.status == k for r in results) for k in ("allowed", "denied")}
    summary = f"{counts['allowed']} allowed, {counts['denied']} denied"
    # each not-fetched artifact as it was counted: skipped (a hook) or denied
    for outcome, label in (("skipped", "skipped"), ("not-fetched", "denied")):
        unfetched = sum(r.outcome == outcome for r in results)
        if unfetched:
            summary += f", {unfetched} not fetched ({label})"
    errors = sum(r.outcome == "error" for r in results)
    if errors:
        summary += f", {errors} could not be checked"
    warned = [r for r in results if r.allowed and any(d.would_deny for d in r.decisions)]
    if warned:
        summary += f" ({len(warned)} allowed only because the policy is in warn mode)"
    click.echo(f"mlverify check: {summary}", err=True)
    if code:
        raise SystemExit(code)
