"""The public functions, re-exported by :mod:`mlverify`.

Each is a thin, typed front door over one pipeline stage; front ends (the CLI, ``serve``, the
MLflow plugin) call these and nothing below them for the work itself. Errors are
:class:`~mlverify._internal.errors.MlverifyError` subclasses with a stable ``code``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from mlverify._internal.errors import InputError

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.manifest.manifest import Manifest
    from mlverify._internal.policy.model import Policy
    from mlverify._internal.scan.model import Finding, Limits, Status
    from mlverify._internal.scan.model import ScanReport as FileReport
    from mlverify._internal.signing.api import Verification
    from mlverify._internal.signing.keygen import KeyPair
    from mlverify._internal.signing.methods import Signer
    from mlverify._internal.signing.trust import Trust, TrustedSigner
    from mlverify._internal.sources import SourceSettings
    from mlverify._internal.sources.settings import AdmissionRules

#: what names a policy: a file, a directory of ``*.yaml``, ``builtin:NAME`` or a bare
#: built-in name (``"default"``, ``"strict"``), or an already loaded :class:`Policy`
PolicyRef = Union[str, "os.PathLike[str]", "Policy"]

__all__ = [
    "ScanReport",
    "check",
    "hash",
    "keygen",
    "load_policy",
    "load_signer",
    "scan",
    "sign",
    "verify",
]


def load_policy(path_or_name: str | os.PathLike[str]) -> Policy:
    """The policy in a YAML file, or a built-in one by name (``default``, ``builtin:strict``).

    >>> load_policy("default").name
    'default'
    """
    from mlverify._internal.policy.model import builtin_policy_dir, load_policies

    ref = os.fspath(path_or_name)
    bare_name = not ref.startswith("builtin:") and not Path(ref).exists()
    if bare_name and (builtin_policy_dir() / f"{ref}.yaml").is_file():
        ref = f"builtin:{ref}"
    policies = load_policies([ref])
    if len(policies) != 1:
        raise InputError(
            f"{ref}: holds {len(policies)} policies, expected one",
            remedy="name one policy file",
        )
    return policies[0]


def _policies(policy: PolicyRef | Sequence[PolicyRef] | None) -> list[Policy]:
    from mlverify._internal.policy.model import Policy, load_policies

    if policy is None:
        return load_policies([os.environ.get("MLVERIFY_POLICY") or "builtin:default"])
    items: Sequence[PolicyRef] = (
        [policy] if isinstance(policy, (str, os.PathLike, Policy)) else policy
    )
    out: list[Policy] = []
    for item in items:
        if isinstance(item, Policy):
            out.append(item)
        elif os.fspath(item).startswith("builtin:") or Path(item).is_dir():
            out.extend(load_policies([os.fspath(item)]))
        else:
            out.append(load_policy(item))
    if not out:
        raise InputError("no policy given", remedy="name a policy file or a built-in policy")
    return out


def check(
    ref: str | os.PathLike[str],
    *,
    policy: PolicyRef | Sequence[PolicyRef] | None = None,
    signatures: Sequence[str | os.PathLike[str]] = (),
    use_cache: bool = False,
    allow_not_fetched: bool = False,
    list_files: bool = False,
    settings: SourceSettings | None = None,
    rules: AdmissionRules | None = None,
    environment: str | None = None,
    name: str | None = None,
) -> CheckResult:
    """Hash, scan, verify and decide one artifact (a path, ``oci://`` or ``hf://`` reference).

    Every governing policy decides; the result is allowed only if all allow. An artifact that
    cannot be checked is a result too (``status == "error"``, never allowed), so a caller
    always gets an answer. ``policy`` defaults to ``$MLVERIFY_POLICY`` or ``builtin:default``;
    ``settings`` (registries, caches, tracking servers) to what the environment says;
    ``list_files`` also lists every hashed file in the evidence (by default it counts them).
    A service passes ``rules`` (which references a caller may make it read) and its
    ``environment`` (policies may match on it); ``name`` is what policies match and the
    report names instead of the path (a downloaded copy checked under its registry name).
    """
    from mlverify._internal.sources import SourceSettings
    from mlverify._internal.sources.run import check_refs

    (result,) = check_refs(
        [ref if isinstance(ref, str) else Path(ref)],
        _policies(policy),
        settings or SourceSettings.from_environment(),
        signatures=[Path(s) for s in signatures],
        use_cache=use_cache,
        skip_not_fetched=allow_not_fetched,
        list_files=list_files,
        rules=rules,
        environment=environment,
        name=name,
    )
    return result


@dataclass(frozen=True)
class ScanReport:
    """What the scanner found in every file under a path (a file gives one entry)."""

    path: str
    files: tuple[FileReport, ...]

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for r in self.files for f in r.findings)

    @property
    def status(self) -> Status:
        """The worst file status: findings > unsupported > clean > data."""
        from mlverify._internal.scan.model import Status

        order = [Status.FINDINGS, Status.UNSUPPORTED, Status.CLEAN, Status.DATA]
        seen = {r.status for r in self.files}
        return next((s for s in order if s in seen), Status.DATA)

    @property
    def clean(self) -> bool:
        """No finding and nothing the scanner could not read."""
        from mlverify._internal.scan.model import Status

        return self.status in (Status.CLEAN, Status.DATA)


def scan(
    ref: str | os.PathLike[str],
    *,
    limits: Limits | None = None,
    settings: SourceSettings | None = None,
) -> ScanReport:
    """Scan a file, every file under a directory, or a reference (``oci://``, ``hf://``,
    ...) statically: nothing is loaded or run; files are named after the reference."""
    from mlverify._internal.sources import SourceSettings
    from mlverify._internal.sources.run import scan_refs

    target = ref if isinstance(ref, str) else Path(ref)  # a missing path: an InputError
    files = scan_refs([target], settings or SourceSettings.from_environment(), limits)
    return ScanReport(str(ref), tuple(files))


def _check_mode(mode: str) -> None:
    from mlverify._internal.errors import UsageError

    if mode not in ("files", "shards"):
        raise UsageError(f"{mode!r}: expected 'files' or 'shards'", setting="mode")


def hash(
    path: str | os.PathLike[str],
    *,
    hash: str = "sha256",
    mode: str = "files",
    shard_size: int | None = None,
    ignore: Sequence[str] = (),
    allow_symlinks: bool = False,
    use_cache: bool = False,
) -> Manifest:
    """The OMS manifest of a model file or directory: every file's digest, and the root."""
    from mlverify._internal.manifest.build import hash_model

    _check_mode(mode)
    return hash_model(
        Path(path),
        ignore=ignore,
        allow_symlinks=allow_symlinks,
        method=mode,
        hash_type=hash,
        shard_size=shard_size,
        use_cache=use_cache,
    )


def load_signer(
    uri: str,
    *,
    password: str | bytes | Callable[[], bytes | None] | None = None,
    identity_token: str | None = None,
    certificate: str | os.PathLike[str] | None = None,
    chain: Sequence[str | os.PathLike[str]] = (),
) -> Signer:
    """The signer a URI names: a private key file (a bare path or ``file:``), an HSM or token
    key (``pkcs11:`` RFC 7512), a cloud KMS or Vault key (``awskms:``, ``gcpkms:``,
    ``azurekms:``, ``hv:``) or Sigstore keyless (``sigstore:``).

    ``password`` unlocks an encrypted key file (a callable is asked only if the key turns out
    to be encrypted); ``identity_token`` is the OIDC token for keyless signing (else ambient
    credentials); ``certificate`` (PEM, with its ``chain``) makes a key sign as that X.509
    certificate.
    """
    from mlverify._internal.signing.api import load_signer as _load
    from mlverify._internal.signing.methods import SignerOptions

    if chain and certificate is None:
        raise InputError(
            "a certificate chain was given without the signing certificate",
            remedy="give the leaf certificate too",
        )
    if password is None or callable(password):
        asked: Callable[[], bytes | None] | None = password
    else:
        value = password.encode() if isinstance(password, str) else password
        asked = lambda: value  # noqa: E731 - a constant password
    options = SignerOptions(identity_token=identity_token)
    if asked is not None:
        options = SignerOptions(password=asked, identity_token=identity_token)
    signer = _load(uri, options)
    if certificate is not None:
        from mlverify._internal.signing.methods.x509 import with_certificate
        from mlverify._internal.signing.x509 import load_certificates

        leaf = load_certificates(Path(certificate), what="signing certificate")
        links = [c for p in chain for c in load_certificates(Path(p), what="certificate chain")]
        signer = with_certificate(signer, leaf, links, leaf_source=str(certificate))
    return signer


def sign(
    path: str | os.PathLike[str],
    signer: Signer | str,
    *,
    signature: str | os.PathLike[str] | None = None,
    mode: str = "files",
    hash: str = "sha256",
    shard_size: int | None = None,
    ignore: Sequence[str] = (),
    allow_symlinks: bool = False,
    use_cache: bool = False,
) -> Path:
    """Sign a model file or directory in the OMS format; return the signature's path
    (default ``model.sig`` inside a directory, ``FILE.sig`` beside a file).

    ``use_cache`` reuses digests of unchanged files from the local digest cache (opt-in:
    it trusts file metadata)."""
    from mlverify._internal.signing.api import sign_artifact

    _check_mode(mode)
    return sign_artifact(
        Path(path),
        load_signer(signer) if isinstance(signer, str) else signer,
        signature=Path(signature) if signature is not None else None,
        mode="shards" if mode == "shards" else "files",
        hash=hash,
        shard_size=shard_size,
        ignore=ignore,
        allow_symlinks=allow_symlinks,
        use_cache=use_cache,
    )


def verify(
    path: str | os.PathLike[str],
    trust: Trust | TrustedSigner | str | Sequence[TrustedSigner | str],
    *,
    signature: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    ignore: Sequence[str] = (),
    ignore_unsigned_files: bool = False,
    use_cache: bool = False,
) -> Verification:
    """Verify a model against its signature(s): raises ``SignatureNotFoundError``,
    ``UntrustedSignerError`` or ``ArtifactMismatchError`` (naming every changed file; its
    ``verification`` and ``diff`` say who signed and what differs).

    ``trust``: a :class:`Trust`, a trusted signer, or public keys by path or URI.
    ``ignore_unsigned_files`` accepts files the signature does not name (they are not
    verified); ``use_cache`` reuses digests of unchanged files (opt-in: it trusts metadata).
    """
    from mlverify._internal.signing.api import verify_artifact
    from mlverify._internal.signing.trust import Trust

    if not isinstance(trust, Trust):
        signers = [trust] if isinstance(trust, str) or not isinstance(trust, Sequence) else trust
        trust = Trust.of(*signers)
    sig: Path | list[Path] | None
    if signature is None:
        sig = None
    elif isinstance(signature, (str, os.PathLike)):
        sig = Path(signature)
    else:
        sig = [Path(s) for s in signature]
    return verify_artifact(
        Path(path),
        trust,
        signature=sig,
        ignore=ignore,
        ignore_unsigned_files=ignore_unsigned_files,
        use_cache=use_cache,
    )


def keygen(
    prefix: str | os.PathLike[str],
    *,
    key_type: str = "ec-p256",
    password: str | None = None,
    overwrite: bool = False,
) -> KeyPair:
    """Write a signing key pair, ``PREFIX.key`` (private, mode 0600) and ``PREFIX.pub``."""
    from mlverify._internal.signing.keygen import generate_key_pair

    return generate_key_pair(
        Path(prefix), key_type=key_type, password=password, overwrite=overwrite
    )
