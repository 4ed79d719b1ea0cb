"""`mlverify bom`: a CycloneDX 1.6 ML-BOM of an artifact, from a check of it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from mlverify._internal.cli.output import write_atomically
from mlverify._internal.errors import InputError, UsageError
from mlverify._internal.text import shown


def needs(module: str, package: str, command: str) -> None:
    """A one-line usage error when an optional library a command needs is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UsageError(
            f"{command} needs {package}, which is not installed: pip install 'mlverify[reports]'"
        )


@click.command("bom")
@click.argument("paths", nargs=-1, metavar="PATH|oci://REF|hf://REF")
@click.option(
    "--policy",
    "policy_refs",
    multiple=True,
    metavar="FILE|DIR|builtin:NAME",
    help="Policy for the decision the BOM records [default: $MLVERIFY_POLICY, else "
    "builtin:default].",
)
@click.option(
    "--signature",
    "signatures",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Signature file [default: model.sig inside a directory, PATH.sig beside it].",
)
@click.option(
    "--from-json",
    "from_json",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Build the BOM from a saved `mlverify check --format json` document instead.",
)
@click.option(
    "--output", type=click.Path(path_type=Path, dir_okay=False), help="Write the BOM here."
)
def bom_command(
    paths: tuple[str, ...],
    policy_refs: tuple[str, ...],
    signatures: tuple[Path, ...],
    from_json: Path | None,
    output: Path | None,
) -> None:
    """Write a CycloneDX 1.6 ML-BOM (ATLAS AML.M0023) of the artifacts at PATHS: every
    file with its hash, formats, signatures, provenance (builder, source, datasets with
    their digests), scan findings and the policy decision.

    The artifacts are checked as by `mlverify check`, and the exit code is check's: 0
    allowed, 1 denied, 2 usage or operational error (the BOM is written either way).
    """
    from mlverify._internal.report.cyclonedx import render_cyclonedx

    needs("cyclonedx", "cyclonedx-python-lib", "mlverify bom")
    if bool(paths) == bool(from_json):
        raise UsageError("give artifact PATHS or --from-json FILE (one of them)")
    if from_json is not None:
        from mlverify._internal.files import read_bounded

        raw = read_bounded(
            from_json,
            what="check JSON document",
            limit=256 * 1024 * 1024,
            missing=InputError,
            missing_text="not found; write it with mlverify check --format json",
            too_big_text="is this a check result?",
        )
        from mlverify._internal.atlas import check_results

        try:
            doc = json.loads(raw)
            statuses = {str(r.get("status")) for r in check_results(doc)}
            text = render_cyclonedx(doc)
        except (ValueError, RecursionError) as e:
            raise InputError(
                f"{from_json}: expected a `mlverify check --format json` document: {e}"
            ) from None
        # the recorded verdicts, read the way check set them: anything not allowed or
        # skipped is a failure
        code = 2 if "error" in statuses else 1 if statuses - {"allowed", "skipped"} else 0
    else:
        import mlverify
        from mlverify._internal.policy.model import load_policies
        from mlverify._internal.sources import SourceSettings

        if signatures and len(paths) > 1:
            raise UsageError("--signature applies to one artifact; check artifacts one at a time")
        refs = list(policy_refs) or [os.environ.get("MLVERIFY_POLICY") or "builtin:default"]
        policies = load_policies(refs)
        settings = SourceSettings.from_environment()
        # every reference gets a result, in order (an error is a result: never an exception)
        results = [
            mlverify.check(
                p, policy=policies, signatures=signatures, list_files=True, settings=settings
            )
            for p in paths
        ]
        for r in results:
            if r.outcome:
                click.echo(f"mlverify bom: {shown(r.message)} ({r.status})", err=True)
        code = max((r.exit_code for r in results), default=0)
        text = render_cyclonedx({"results": [r.to_json() for r in results]})
    if output:
        write_atomically(output, text.encode())
    else:
        click.echo(text, nl=False)
    if code:
        raise SystemExit(code)
