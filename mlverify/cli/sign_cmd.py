"""`mlverify sign`: hash a model and sign the manifest into an OMS bundle."""

from __future__ import annotations

from pathlib import Path

import click

from mlverify.cli.options import ignore_options, model_path_argument, serialization_options
from mlverify.cli.output import write_atomically
from mlverify.cli.secrets import password_source


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
    required=True,
    metavar="KEY",
    help="Private key: a PEM file (EC P-256/P-384/P-521 or Ed25519) or file:PATH.",
)
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
    key_uri: str,
    signature_path: Path | None,
    password_env: str,
    ignore: tuple[str, ...],
    allow_symlinks: bool,
    mode: str,
    shard_size: int,
    hash_type: str,
    use_cache: bool,
) -> None:
    """Sign the model at PATH with a private key (OMS format, Sigstore bundle v0.3).

    The signature file is never hashed, nor is any other known signature file.
    """
    from mlverify.manifest.build import hash_model
    from mlverify.signing.keys import load_signer
    from mlverify.signing.oms import sign_manifest

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
    write_atomically(out, sign_manifest(manifest, signer))
    click.echo(
        f"signed {path} ({len(manifest.resources)} resources, root sha256:{manifest.root_digest})"
        f" -> {out}",
        err=True,
    )
