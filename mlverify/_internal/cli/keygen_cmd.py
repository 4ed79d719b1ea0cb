"""`mlverify keygen`: make a signing key pair in one command."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mlverify._internal.errors import UsageError
from mlverify._internal.signing.keygen import KEY_TYPES


@click.command("keygen")
@click.option(
    "--type",
    "key_type",
    type=click.Choice(KEY_TYPES),
    default="ec-p256",
    show_default=True,
    help="Key algorithm.",
)
@click.option(
    "--out",
    "prefix",
    type=click.Path(path_type=Path),
    default=Path("mlverify"),
    show_default=True,
    help="Writes PREFIX.key (private, mode 0600) and PREFIX.pub.",
)
@click.option(
    "--password-env",
    metavar="VAR",
    help="Encrypt the private key with the password in this environment variable.",
)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def keygen_command(key_type: str, prefix: Path, password_env: str | None, force: bool) -> None:
    """Write a new key pair for `mlverify sign --key` / `verify --key`."""
    from mlverify._internal.api import keygen

    password = None
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise UsageError(f"--password-env {password_env}: the variable is unset or empty")
    pair = keygen(prefix, key_type=key_type, password=password, overwrite=force)
    click.echo(f"private key: {pair.private_key} (keep it secret)")
    click.echo(f"public key:  {pair.public_key} ({pair.fingerprint})")
