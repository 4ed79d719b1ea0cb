"""`mlverify sign`: hash a model and sign the manifest into an OMS bundle."""

from __future__ import annotations

from pathlib import Path

import click

from mlverify._internal.cli.options import (
    ignore_options,
    model_path_argument,
    serialization_options,
    sigstore_signing_options,
)
from mlverify._internal.cli.secrets import password_source
from mlverify._internal.errors import UsageError
from mlverify._internal.text import shown


@click.command("sign")
@model_path_argument
@click.option(
    "--key",
    "key_uri",
    metavar="KEY",
    help="Private key: a PEM file (EC P-256/P-384/P-521 or Ed25519), file:PATH, an "
    "RFC 7512 pkcs11: URI (HSM or token), or a KMS URI (awskms:, gcpkms:, azurekms:, hv:).",
)
@click.option(
    "--cert",
    "cert_path",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="LEAF.pem",
    help="Certificate method: the signing certificate issued for --key (PEM).",
)
@click.option(
    "--cert-chain",
    "cert_chain",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="CHAIN.pem",
    help="Certificate method: intermediate (and optionally root) certificates to embed "
    "after the leaf, PEM; repeatable.",
)
@sigstore_signing_options
@click.option(
    "--signature",
    "signature_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the signature [default: model.sig in a model directory, "
    "FILE.sig beside a single file].",
)
@click.option(
    "--password-env",
    default="MLVERIFY_KEY_PASSWORD",
    show_default=True,
    metavar="VAR",
    help="Environment variable holding the password of an encrypted key "
    "(prompted for on a terminal when unset).",
)
@ignore_options
@serialization_options
def sign_command(
    path: Path,
    key_uri: str | None,
    cert_path: Path | None,
    cert_chain: tuple[Path, ...],
    use_sigstore: bool,
    identity_token: str | None,
    staging: bool,
    signature_path: Path | None,
    password_env: str,
    ignore: tuple[str, ...],
    allow_symlinks: bool,
    mode: str,
    shard_size: int,
    hash_type: str,
    use_cache: bool,
) -> None:
    """Sign the model at PATH (OMS format, Sigstore bundle v0.3).

    Three methods: a private key (--key), a key with its X.509 certificate
    (--key with --cert [--cert-chain]), or Sigstore keyless (--sigstore).
    The signature file is never hashed, nor is any other known signature file.
    """
    import mlverify

    if use_sigstore and (key_uri or cert_path or cert_chain):
        raise UsageError("--sigstore signs keyless: drop --key, --cert and --cert-chain")
    if not use_sigstore and not key_uri:
        raise UsageError(
            "no signing method; pass --key KEY.pem (with --cert for a certificate) or --sigstore"
        )
    if cert_chain and not cert_path:
        raise UsageError("--cert-chain needs --cert LEAF.pem (the signing certificate)")
    if (identity_token or staging) and not use_sigstore:
        raise UsageError("--identity-token and --staging apply to --sigstore only")
    # keyless: network and identity first, to fail before hashing a large model
    uri = ("sigstore:staging" if staging else "sigstore:") if use_sigstore else key_uri
    assert uri is not None
    signer = mlverify.load_signer(
        uri,
        password=password_source(password_env),
        identity_token=identity_token,
        certificate=cert_path,
        chain=cert_chain,
    )
    signed = mlverify.sign(
        path,
        signer,
        signature=signature_path,
        mode=mode,
        hash=hash_type,
        shard_size=shard_size,
        ignore=ignore,
        allow_symlinks=allow_symlinks,
        use_cache=use_cache,
    )
    click.echo(shown(f"signed {path} as {signer.name} -> {signed}"), err=True)
