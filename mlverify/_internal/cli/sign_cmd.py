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
from mlverify._internal.cli.output import write_atomically
from mlverify._internal.cli.secrets import password_source
from mlverify._internal.errors import UsageError
from mlverify._internal.text import shown


def default_signature_path(model: Path) -> Path:
    """``model.sig`` inside a model directory, ``FILE.sig`` beside a single file."""
    if model.is_dir():
        return model / "model.sig"
    return model.with_name(model.name + ".sig")


@click.command("sign")
@model_path_argument
@click.option(
    "--key",
    "key_uri",
    metavar="KEY",
    help="Private key: a PEM file (EC P-256/P-384/P-521 or Ed25519) or file:PATH.",
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
    from mlverify._internal.manifest.build import hash_model

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
    session = None
    if use_sigstore:  # network and identity first: fail before hashing a large model
        from mlverify._internal.signing.sigstore_sign import start_sigstore_session

        session = start_sigstore_session(identity_token, staging=staging)
    signer = None
    if key_uri:
        from mlverify._internal.signing.keys import load_signer

        signer = load_signer(key_uri, password=password_source(password_env))
    out = signature_path or default_signature_path(path)
    manifest = hash_model(
        path,
        ignore=ignore,
        allow_symlinks=allow_symlinks,
        method=mode,
        hash_type=hash_type,
        shard_size=shard_size,
        use_cache=use_cache,
        extra_excluded=[out],
    )
    if session is not None:
        from mlverify._internal.signing.sigstore_sign import sign_manifest_sigstore

        assert session is not None
        data = sign_manifest_sigstore(session, manifest)
    elif cert_path is not None:
        from mlverify._internal.signing.x509 import (
            load_certificates,
            sign_manifest_with_certificate,
        )

        assert signer is not None
        leaf = load_certificates(cert_path, what="signing certificate")
        chain = [c for p in cert_chain for c in load_certificates(p, what="certificate chain")]
        data = sign_manifest_with_certificate(
            manifest, signer, leaf[0], [*leaf[1:], *chain], leaf_source=str(cert_path)
        )
    else:
        from mlverify._internal.signing.oms import sign_manifest

        assert signer is not None
        data = sign_manifest(manifest, signer)
    write_atomically(out, data)
    click.echo(
        shown(
            f"signed {path} ({len(manifest.resources)} resources, "
            f"root sha256:{manifest.root_digest}) -> {out}"
        ),
        err=True,
    )
