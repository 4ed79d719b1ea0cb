"""`mlverify trust update`: refresh the pinned Sigstore trusted root (networked)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("trust")
def trust_command() -> None:
    """Manage the pinned Sigstore trusted root used by offline verification."""


@trust_command.command("update")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the refreshed trusted_root.json [default: the per-user file "
    "that verify then uses instead of the root shipped with mlverify].",
)
@click.option("--staging", is_flag=True, help="Refresh the Sigstore staging root instead.")
def trust_update_command(out: Path | None, staging: bool) -> None:
    """Fetch the current Sigstore trusted root through TUF (network) and pin it.

    The TUF client checks the root's signatures from the keys embedded in
    sigstore-python; nothing else in mlverify touches the network.
    """
    from mlverify._internal.signing.trust_update import update_trusted_root

    path, summary = update_trusted_root(out, staging=staging)
    click.echo(f"updated: {path} ({summary})")
