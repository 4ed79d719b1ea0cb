"""`mlverify atlas`: which ATLAS techniques a set of policies covers, and how."""

from __future__ import annotations

import json
import os

import click

from mlverify._internal.text import shown_lines

FORMATS = ("text", "json", "markdown")


@click.command("atlas")
@click.option(
    "--policy",
    "policy_refs",
    multiple=True,
    metavar="FILE|DIR|builtin:NAME",
    help="Policy file(s) or a directory of them [default: $MLVERIFY_POLICY, else builtin:default].",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
def atlas_command(policy_refs: tuple[str, ...], fmt: str) -> None:
    """Print the MITRE ATLAS coverage of the policies: for each technique mlverify defends
    against, the mitigations the policies enforce, only warn on, or leave absent, with the
    policy lines responsible."""
    from mlverify._internal.atlas.coverage import coverage_json, render_markdown, render_text
    from mlverify._internal.policy.model import load_policies

    refs = list(policy_refs) or [os.environ.get("MLVERIFY_POLICY") or "builtin:default"]
    doc = coverage_json(load_policies(refs))
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    elif fmt == "markdown":
        click.echo(shown_lines(render_markdown(doc)), nl=False)
    else:
        click.echo(shown_lines(render_text(doc)), nl=False)
