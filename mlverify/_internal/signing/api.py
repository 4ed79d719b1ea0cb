"""Sign and verify models: the library functions behind ``mlverify.sign`` / ``mlverify.verify``.

Front ends (the CLI, ``hf upload``, the service) call these; they print nothing
and name no command-line flag. Outcomes are typed: :class:`Verification` on
success; on failure the errors of :mod:`mlverify._internal.errors`
(``SignatureNotFoundError``, ``UntrustedSignerError``, ``ArtifactMismatchError``,
``InputError``, ``UsageError``), compared by type, never by message.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mlverify._internal.errors import ArtifactMismatchError, InputError
from mlverify._internal.manifest.build import ManifestDiff
from mlverify._internal.manifest.manifest import Manifest, Serialization
from mlverify._internal.signing.methods import Signer, SignerOptions
from mlverify._internal.signing.methods import load_signer as _load_signer
from mlverify._internal.signing.oms import ModelVerification, VerifiedStatement
from mlverify._internal.signing.trust import Trust

__all__ = [
    "CheckedModel",
    "Verification",
    "default_signature_path",
    "load_signer",
    "sign_artifact",
    "verify_artifact",
]


def load_signer(uri: str, options: SignerOptions | None = None) -> Signer:
    """The signer a URI names: a key file (bare path or ``file:``), ``pkcs11:``,
    ``awskms:``/``gcpkms:``/``azurekms:``/``hv:``, or ``sigstore:`` (keyless)."""
    return _load_signer(uri, options)


def default_signature_path(model: Path) -> Path:
    """``model.sig`` inside a model directory, ``FILE.sig`` beside a single file."""
    if model.is_dir():
        return model / "model.sig"
    return model.with_name(model.name + ".sig")


def sign_artifact(
    path: Path,
    signer: Signer,
    *,
    signature: Path | None = None,
    mode: Literal["files", "shards"] = "files",
    hash: str = "sha256",
    shard_size: int | None = None,
    ignore: Sequence[str] = (),
    allow_symlinks: bool = False,
    use_cache: bool = False,
) -> Path:
    """Sign the model (a directory or one file) at ``path``; return the signature's path.

    The signature file (and any other known signature file) is never hashed.
    """
    from mlverify._internal.files import write_atomically
    from mlverify._internal.manifest.build import hash_model
    from mlverify._internal.signing.statement import statement_bytes

    out = signature or default_signature_path(path)
    manifest = hash_model(
        path,
        ignore=ignore,
        allow_symlinks=allow_symlinks,
        method=mode,
        hash_type=hash,
        shard_size=shard_size,
        use_cache=use_cache,
        extra_excluded=[out],
    )
    write_atomically(out, signer.sign_statement(statement_bytes(manifest)))
    return out


@dataclass(frozen=True)
class Verification:
    """A model whose bytes match what enough trusted signers signed."""

    path: Path
    signatures: tuple[Path, ...]
    #: one entry per distinct trusted signer (its stable identity in ``.signer``)
    signers: tuple[VerifiedStatement, ...]
    threshold: int
    manifest: Manifest
    checked_files: int
    #: certificates: validity judged at this user-supplied time (None: a verified
    #: timestamp or now); a front end should say so
    at_time: dt.datetime | None = None

    @property
    def signer(self) -> str:
        return self.signers[0].signer

    @property
    def method(self) -> str:
        return self.signers[0].method

    @property
    def serialization(self) -> Serialization:
        return self.manifest.serialization


@dataclass(frozen=True)
class CheckedModel:
    """A verification and the comparison of each distinct signed manifest with the bytes."""

    verification: Verification
    results: tuple[ModelVerification, ...]

    @property
    def diff(self) -> ManifestDiff:
        return self.results[0].diff

    @property
    def ok(self) -> bool:
        return all(r.diff.ok for r in self.results)


def check_model(
    path: Path,
    trust: Trust,
    *,
    signature: Path | Sequence[Path] | None = None,
    ignore: Sequence[str] = (),
    ignore_unsigned_files: bool = False,
    use_cache: bool = False,
) -> CheckedModel:
    """Verify the signatures and re-hash the model; the diffs are returned, not raised."""
    from mlverify._internal.artifact import normalize_ignore
    from mlverify._internal.background import BackgroundCall
    from mlverify._internal.manifest.cache import DigestCache
    from mlverify._internal.signing.bundle import read_bundle
    from mlverify._internal.signing.oms import signed_manifest, verify_model
    from mlverify._internal.signing.trust import compile_trust
    from mlverify._internal.signing.trustset import verify_threshold

    compiled = compile_trust(trust)
    ignore = tuple(normalize_ignore(p) for p in ignore)
    if signature is None:
        sig_paths = [default_signature_path(path)]
    elif isinstance(signature, Path):
        sig_paths = [signature]
    else:
        sig_paths = list(signature) or [default_signature_path(path)]
    if not path.exists():
        raise InputError(f"{path}: no such file or directory; check the model path")
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
    signers = verify_threshold(bundles, compiled)
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
    uses_at_time = trust.at_time is not None and any(s.method == "certificate" for s in signers)
    verification = Verification(
        path=path,
        signatures=tuple(sig_paths),
        signers=tuple(signers),
        threshold=trust.threshold,
        manifest=result.manifest,
        checked_files=result.checked_files,
        at_time=trust.at_time if uses_at_time else None,
    )
    return CheckedModel(verification, tuple(results.values()))


def verify_artifact(
    path: Path,
    trust: Trust,
    *,
    signature: Path | Sequence[Path] | None = None,
    ignore: Sequence[str] = (),
    ignore_unsigned_files: bool = False,
    use_cache: bool = False,
) -> Verification:
    """Verify the model at ``path`` against its signature(s) and ``trust``.

    Raises ``SignatureNotFoundError`` (no signature), ``UntrustedSignerError``
    (no, or too few, trusted signers) or ``ArtifactMismatchError`` (a valid
    signature over other bytes: every changed, missing and extra file named).
    """
    from mlverify._internal.signing.oms import require_match

    checked = check_model(
        path,
        trust,
        signature=signature,
        ignore=ignore,
        ignore_unsigned_files=ignore_unsigned_files,
        use_cache=use_cache,
    )
    for result in checked.results:
        try:
            require_match(result, path)
        except ArtifactMismatchError as e:
            e.verification, e.diff = checked.verification, result.diff
            raise
    return checked.verification
