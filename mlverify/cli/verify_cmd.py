"""`mlverify verify`: check a model against its OMS signature."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlverify.cli.options import model_path_argument
from mlverify.cli.sign_cmd import default_signature_path
from mlverify.errors import UsageError


@click.command("verify")
@model_path_argument
@click.option(
    "--signature",
    "signature_path",
    type=click.Path(path_type=Path),
    help="Signature file [default: model.sig in a model directory, FILE.sig beside a file].",
)
@click.option(
    "--key",
    "key_uris",
    multiple=True,
    metavar="PUBLIC_KEY",
    help="Trusted public key (PEM file or file:PATH); repeat to trust any of several "
    "keys (rotation).",
)
@click.option(
    "--ignore",
    "ignore",
    multiple=True,
    metavar="PATTERN",
    help="Also leave out files matching PATTERN (relative to the model root), on top of "
    "the ignore paths recorded in the signature.",
)
@click.option(
    "--ignore-unsigned-files",
    is_flag=True,
    help="Tolerate files present in the model but not covered by the signature.",
)
@click.option(
    "--cache/--no-cache",
    "use_cache",
    default=False,
    help="Reuse digests of unchanged files (see docs/digest-cache.md).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
def verify_command(
    path: Path,
    signature_path: Path | None,
    key_uris: tuple[str, ...],
    ignore: tuple[str, ...],
    ignore_unsigned_files: bool,
    use_cache: bool,
    output_format: str,
) -> None:
    """Verify the model at PATH against its signature.

    Re-hashes with the serialization recorded in the signature and reports,
    all at once, changed, missing and extra files. Exit 0 verified, 1
    verification failed, 2 usage or input error.
    """
    from mlverify.artifact import normalize_ignore
    from mlverify.manifest.cache import DigestCache
    from mlverify.signing.bundle import read_bundle
    from mlverify.signing.keys import load_public_key
    from mlverify.signing.oms import (
        require_match,
        signed_manifest,
        verify_envelope_with_keys,
        verify_model,
    )

    if not key_uris:
        raise UsageError("no trusted signer given; pass --key PUBLIC.pem")
    ignore = tuple(normalize_ignore(p) for p in ignore)
    keys = [load_public_key(uri) for uri in key_uris]
    sig_path = signature_path or default_signature_path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory; check the model path")
    bundle = read_bundle(sig_path)
    signed_manifest(bundle)
    verified = verify_envelope_with_keys(bundle, keys)
    result = verify_model(
        path,
        verified,
        ignore=ignore,
        ignore_unsigned_files=ignore_unsigned_files,
        signature_path=sig_path,
        cache=DigestCache() if use_cache else None,
    )
    if output_format == "json":
        diff = result.diff
        doc = {
            "verified": diff.ok,
            "path": str(path),
            "signature": str(sig_path),
            "signer": result.signature.signer,
            "method": result.signature.method,
            "root_digest": result.manifest.root_digest,
            "serialization": result.manifest.serialization.to_json(),
            "checked_files": result.checked_files,
            "changed": [{"name": n, "expected": e, "found": f} for n, e, f in diff.changed],
            "missing": list(diff.missing),
            "extra": list(diff.extra),
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    require_match(result, path)
    if output_format == "text":
        click.echo(
            f"verified: {path} ({result.checked_files} files, "
            f"{result.manifest.serialization.method}/{result.manifest.serialization.hash_type}, "
            f"signed by {result.signature.signer})"
        )
