"""`mlverify verify`: check a model against its OMS signature."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from mlverify._internal.background import BackgroundCall
from mlverify._internal.cli.options import text_or_json_option
from mlverify._internal.cli.sign_cmd import default_signature_path
from mlverify._internal.cli.trust_options import TrustArgs, build_trust_set, trust_options
from mlverify._internal.errors import UsageError
from mlverify._internal.refs import reference_path_argument
from mlverify._internal.text import shown


@click.command("verify")
@reference_path_argument  # a path, oci:// or hf:// (mlverify/_internal/refs.py)
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
    help="Trusted public key (PEM file or file:PATH); repeat to trust any of several "
    "keys (rotation).",
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
    from mlverify._internal.artifact import normalize_ignore
    from mlverify._internal.manifest.cache import DigestCache
    from mlverify._internal.signing.bundle import read_bundle
    from mlverify._internal.signing.keys import load_public_key
    from mlverify._internal.signing.oms import (
        ModelVerification,
        VerifiedStatement,
        require_match,
        signed_manifest,
        verify_model,
    )
    from mlverify._internal.signing.trustset import verify_threshold

    ignore = tuple(normalize_ignore(p) for p in ignore)
    keys = [load_public_key(uri) for uri in key_uris]
    trust = build_trust_set(keys, TrustArgs.from_kwargs(trust_args))
    sig_paths = list(signature_paths) or [default_signature_path(path)]
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory; check the model path")
    bundles = [read_bundle(p, model=path) for p in sig_paths]
    for bundle in bundles:
        signed_manifest(bundle)
    cache = DigestCache() if use_cache else None
    if len(sig_paths) > 1 and path.is_dir():
        # every signature file inside the model is left out, not only the first
        root = path.resolve()
        inside = [p.resolve() for p in sig_paths if root in p.resolve().parents]
        ignore = (*ignore, *(p.relative_to(root).as_posix() for p in inside))

    def rehash(statement: VerifiedStatement) -> ModelVerification:
        return verify_model(
            path,
            statement,
            ignore=ignore,
            ignore_unsigned_files=ignore_unsigned_files,
            signature_path=sig_paths[0] if len(sig_paths) == 1 else None,
            cache=cache,
        )

    # Hash while the signature is checked (Sigstore verification is mostly Python,
    # hashing releases the GIL): verifying then costs about what hashing costs. The
    # speculative result is used only for the payload bytes the signature verifies.
    first = bundles[0]
    pending = VerifiedStatement(first.source, "key", "(not yet verified)", first.envelope.payload)
    speculative = BackgroundCall(rehash, pending)
    signers = verify_threshold(bundles, trust)
    if trust.at_time is not None and any(s.method == "certificate" for s in signers):
        click.echo(
            "mlverify: warning: certificate validity judged at user-supplied time "
            f"{trust.at_time.isoformat()} (--at-time), not at the current time",
            err=True,
        )
    results: dict[bytes, ModelVerification] = {}
    for signer in signers:  # hash once per distinct signed payload
        if signer.statement_payload in results:
            continue
        if signer.statement_payload == pending.statement_payload:
            results[signer.statement_payload] = dataclasses.replace(
                speculative.result(), signature=signer
            )
        else:
            results[signer.statement_payload] = rehash(signer)
    result = next(iter(results.values()))
    if output_format == "json":
        diff = result.diff
        doc = {
            "verified": all(r.diff.ok for r in results.values()),
            "path": str(path),
            "signature": str(sig_paths[0]),
            "signatures": [str(p) for p in sig_paths],
            "signer": result.signature.signer,
            "signers": [
                {"signer": s.signer, "method": s.method, "source": s.source} for s in signers
            ],
            "threshold": trust.threshold,
            "method": result.signature.method,
            "root_digest": result.manifest.root_digest,
            "serialization": result.manifest.serialization.to_json(),
            "checked_files": result.checked_files,
            "changed": [{"name": n, "expected": e, "found": f} for n, e, f in diff.changed],
            "missing": list(diff.missing),
            "extra": list(diff.extra),
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    for each in results.values():
        require_match(each, path)
    if output_format == "text":
        by = "; ".join(
            s.signer + (f", judged at {s.judged_at}" if s.judged_at else "") for s in signers
        )
        name = click.get_current_context().meta.get("mlverify.reference", path)
        ser = result.manifest.serialization
        click.echo(
            shown(
                f"verified: {name} ({result.checked_files} files, "
                f"{ser.method}/{ser.hash_type}, signed by {by})"
            )
        )
