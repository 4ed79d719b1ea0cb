"""`mlverify verdicts`: what a verdict store holds."""

from __future__ import annotations

import json

import click


@click.command("verdicts")
@click.option("--store", "store_url", required=True, metavar="postgresql://...|sqlite:///PATH")
@click.option("--denied", is_flag=True, help="Only verdicts that deny.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--limit", type=click.IntRange(1, 10_000_000), default=100_000, show_default=True)
def verdicts_command(store_url: str, denied: bool, fmt: str, limit: int) -> None:
    """List verdicts (oldest first): reference, digest, allowed, when, and why.

    JSON: a list of objects with ref, digest, allowed, kind, decided_at, valid_until,
    reasons, key and decided_by.
    """
    from mlverify._internal.serve.store import open_store
    from mlverify._internal.text import shown

    store = open_store(store_url)
    try:
        found = store.verdicts(denied=denied, limit=limit)
    finally:
        store.close()
    if fmt == "json":
        click.echo(json.dumps([v.to_json() for v in found], indent=2))
        return
    for v in found:
        doc = v.to_json()
        word = "allowed" if v.allowed else "denied"
        click.echo(f"{doc['decided_at']}  {word:7}  {shown(v.ref)}  {v.digest}")
        for r in v.reasons:
            click.echo(f"    {shown(r)}")
    click.echo(f"{len(found)} verdict(s)", err=True)
