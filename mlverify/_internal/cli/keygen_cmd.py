"""`mlverify keygen`: make a signing key pair in one command."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mlverify._internal.cli.output import write_atomically
from mlverify._internal.errors import UsageError

KEY_TYPES = ("ec-p256", "ec-p384", "ec-p521", "ed25519")


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
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from mlverify._internal.signing.keys import PrivateKey, key_fingerprint, public_key_pem

    private_path = prefix.with_name(prefix.name + ".key")
    public_path = prefix.with_name(prefix.name + ".pub")
    for p in (private_path, public_path):
        if p.exists() and not force:
            raise UsageError(f"{p}: already exists; choose another --out or pass --force")
    key: PrivateKey
    if key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        curves: dict[str, ec.EllipticCurve] = {
            "ec-p256": ec.SECP256R1(),
            "ec-p384": ec.SECP384R1(),
            "ec-p521": ec.SECP521R1(),
        }
        key = ec.generate_private_key(curves[key_type])
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if password_env:
        secret = os.environ.get(password_env)
        if not secret:
            raise UsageError(f"--password-env {password_env}: the variable is unset or empty")
        encryption = serialization.BestAvailableEncryption(secret.encode())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_atomically(private_path, pem, mode=0o600)
    write_atomically(public_path, public_key_pem(key.public_key()))
    click.echo(f"private key: {private_path} (keep it secret)")
    click.echo(f"public key:  {public_path} ({key_fingerprint(key.public_key())})")
