"""`mlverify hash`: print a model's root digest or its OMS manifest."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlverify._internal.cli.options import (
    ignore_options,
    model_path_argument,
    serialization_options,
)
from mlverify._internal.text import shown


@click.command("hash")
@model_path_argument
@ignore_options
@serialization_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: the root digest; json: subject plus OMS predicate (resources, serialization).",
)
def hash_command(
    path: Path,
    ignore: tuple[str, ...],
    allow_symlinks: bool,
    mode: str,
    shard_size: int,
    hash_type: str,
    use_cache: bool,
    output_format: str,
) -> None:
    """Hash the model at PATH (a file or a directory) into a manifest.

    Every regular file is covered, dotfiles included; git metadata, signature
    files and --ignore patterns are left out and recorded. The output is
    deterministic: the same tree gives the same bytes.
    """
    import mlverify

    manifest = mlverify.hash(
        path,
        hash=hash_type,
        mode=mode,
        shard_size=shard_size,
        ignore=ignore,
        allow_symlinks=allow_symlinks,
        use_cache=use_cache,
    )
    if output_format == "json":
        doc = {"subject": manifest.subject(), "predicate": manifest.predicate()}
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        click.echo(f"sha256:{manifest.root_digest}  {shown(path)}")
