"""`mlverify verify`: check a model against its OMS signature."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlverify._internal.cli.options import text_or_json_option
from mlverify._internal.cli.reference import reference_path_argument
from mlverify._internal.cli.trust_options import (
    TrustArgs,
    cli_remedies,
    trust_from_options,
    trust_options,
)
from mlverify._internal.text import shown


@click.command("verify")
@reference_path_argument  # a path, oci:// or hf:// (mlverify/_internal/sources/)
@click.option(
    "--signature",
    "signature_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Signature file; repeat for several signatures [default: model.sig in a model "
    "directory, FILE.sig beside a file].",
)
@click.option(
    "--key",
    "key_uris",
    multiple=True,
    metavar="PUBLIC_KEY",
    help="Trusted public key: a PEM file, file:PATH, or a key URI (pkcs11:, awskms:, ...: "
    "its public key is read once); repeat to trust any of several keys (rotation).",
)
@trust_options
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
@text_or_json_option
def verify_command(
    path: Path,
    signature_paths: tuple[Path, ...],
    key_uris: tuple[str, ...],
    ignore: tuple[str, ...],
    ignore_unsigned_files: bool,
    use_cache: bool,
    output_format: str,
    **trust_args: object,
) -> None:
    """Verify the model at PATH against its signature(s).

    Trusted signers: public keys (--key), certificates under your own roots
    (--cert-chain with --identity), Sigstore keyless identities (--identity
    with --issuer, offline against a pinned trusted root). With several
    --signature files, at least --threshold distinct trusted signers must have
    signed (default 1: any of them).

    Re-hashes with the serialization recorded in the signature and reports,
    all at once, changed, missing and extra files. Exit 0 verified, 1
    verification failed, 2 usage or input error.
    """
    import mlverify
    from mlverify._internal.errors import ArtifactMismatchError

    trust = trust_from_options(key_uris, TrustArgs.from_kwargs(trust_args))
    mismatch: ArtifactMismatchError | None = None
    with cli_remedies():
        try:
            v = mlverify.verify(
                path,
                trust,
                signature=list(signature_paths),
                ignore=ignore,
                ignore_unsigned_files=ignore_unsigned_files,
                use_cache=use_cache,
            )
        except ArtifactMismatchError as e:
            if output_format != "json" or e.verification is None:
                raise
            mismatch, v = e, e.verification
    if v.at_time is not None:
        click.echo(
            "mlverify: warning: certificate validity judged at user-supplied time "
            f"{v.at_time.isoformat()} (--at-time), not at the current time",
            err=True,
        )
    if output_format == "json":
        diff = mismatch.diff if mismatch is not None else None
        doc = {
            "verified": mismatch is None,
            "path": str(path),
            "signature": str(v.signatures[0]),
            "signatures": [str(p) for p in v.signatures],
            "signer": v.signer,
            "signers": [
                {"signer": s.signer, "method": s.method, "source": s.source} for s in v.signers
            ],
            "threshold": v.threshold,
            "method": v.method,
            "root_digest": v.manifest.root_digest,
            "serialization": v.serialization.to_json(),
            "checked_files": v.checked_files,
            "changed": [{"name": n, "expected": e, "found": f} for n, e, f in diff.changed]
            if diff
            else [],
            "missing": list(diff.missing) if diff else [],
            "extra": list(diff.extra) if diff else [],
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    if mismatch is not None:
        raise mismatch
    if output_format == "text":
        by = "; ".join(
            s.signer + (f", judged at {s.judged_at}" if s.judged_at else "") for s in v.signers
        )
        name = click.get_current_context().meta.get("mlverify.reference", path)
        ser = v.serialization
        click.echo(
            shown(
                f"verified: {name} ({v.checked_files} files, "
                f"{ser.method}/{ser.hash_type}, signed by {by})"
            )
        )
