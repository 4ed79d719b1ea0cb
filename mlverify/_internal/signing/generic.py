"""Verify any Sigstore bundle over any file (``mlverify verify-bundle``), offline.

Keyless bundles (a Fulcio certificate) go through sigstore-python's verifier
(with TSA validity periods read as closed intervals, see
:func:`~mlverify._internal.signing.sigstore_verify.make_verifier`). Managed-key bundles
(``publicKey`` material), which sigstore-python cannot load, are checked here:
the signature with the given key, and every transparency-log entry (inclusion
proof, signed checkpoint and SET against the trusted root's Rekor keys; body
consistent with the key, signature and artifact). For DSSE bundles the
statement's subject must name the artifact's SHA-256.

Anything this code cannot judge raises :class:`UnsupportedBundleError`: it is
never reported as valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlverify._internal.errors import (
    ArtifactMismatchError,
    InputError,
    MlverifyError,
    Remedy,
    UntrustedSignerError,
    UsageError,
)
from mlverify._internal.files import read_bounded
from mlverify._internal.signing.dsse import INTOTO_PAYLOAD_TYPE, pae
from mlverify._internal.signing.keys import PublicKey, key_fingerprint, verify_signature
from mlverify._internal.signing.sigstore_verify import (
    IdentityPolicy,
    SigstoreIdentity,
    SigstoreVerifier,
    load_sigstore_bundle,
    signer_name,
)

MAX_BUNDLE = 16 * 1024 * 1024


class UnsupportedBundleError(MlverifyError):
    """A bundle this version cannot judge (never reported as valid; exit 2)."""

    code = "unsupported-bundle"


@dataclass(frozen=True)
class BundleVerification:
    artifact: str
    bundle: str
    signer: str
    content: str  #: "message signature" or "DSSE <payloadType>"
    sha256: str


def file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        raise InputError(f"{path}: artifact not found; check the path") from None
    except IsADirectoryError:
        raise InputError(
            f"{path}: is a directory; verify-bundle checks one file (use 'verify' for models)"
        ) from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the artifact ({e.strerror})") from None
    return h.digest()


def _b64(value: object, what: str, source: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{source}: {what} is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{source}: {what} is not valid base64") from None


def read_bundle_json(path: Path) -> dict[str, Any]:
    data = read_bounded(path, what="Sigstore bundle", limit=MAX_BUNDLE)
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: the bundle is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object (Sigstore bundle)")
    return doc


def _check_statement_subject(payload_type: str, payload: bytes, digest: bytes, where: str) -> None:
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise UnsupportedBundleError(
            f"{where}: DSSE payloadType {payload_type!r} is not an in-toto statement; "
            "cannot tell which artifact it covers"
        )
    try:
        statement = json.loads(payload)
        subjects = statement["subject"]
        digests = [s.get("digest", {}).get("sha256") for s in subjects if isinstance(s, dict)]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        raise InputError(f"{where}: the signed in-toto statement is malformed") from None
    if digest.hex() not in digests:
        raise ArtifactMismatchError(
            f"{where}: the signature is valid but its statement names sha256 "
            f"{', '.join(str(d) for d in digests) or '(none)'}, the artifact has {digest.hex()}"
        )


def verify_keyless(
    doc: dict[str, Any],
    digest: bytes,
    identity: SigstoreIdentity,
    verifier: SigstoreVerifier,
    *,
    source: str,
) -> tuple[str, str]:
    """(signer, content) of a certificate bundle; raise on any failure."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.hashes import Hashed
    from sigstore_models.common.v1 import HashAlgorithm

    bundle = load_sigstore_bundle(json.dumps(doc).encode(), source=source)
    policy = IdentityPolicy(identity)
    try:
        if "dsseEnvelope" in doc:
            payload_type, payload = verifier.get().verify_dsse(bundle, policy)
            content = f"DSSE {payload_type}"
        else:
            hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest)
            verifier.get().verify_artifact(hashed, bundle, policy)
            content = "message signature"
    except (SigstoreError, ValueError) as e:
        detail = " ".join(str(e).split())
        if "Unsupported DSSE log entry type" in detail or "only supported for dsse" in detail:
            raise UnsupportedBundleError(
                f"{source}: unsupported transparency-log entry type ({detail})"
            ) from None
        if policy.rejected is not None:
            raise UntrustedSignerError(
                f"{source}: signed by {signer_name(policy.rejected)}, not a trusted signer "
                f"(allowed: {identity.describe()})",
                remedy=Remedy("check the trusted identity and issuer", "identity"),
            ) from None
        if "digest mismatch" in detail or "invalid for input" in detail:
            raise ArtifactMismatchError(
                f"{source}: the bundle does not sign this artifact (sha256 {digest.hex()}): "
                f"{detail}"
            ) from None
        raise UntrustedSignerError(
            f"{source}: Sigstore verification against the {verifier.root_name} failed: {detail}"
        ) from None
    if "dsseEnvelope" in doc:
        _check_statement_subject(payload_type, payload, digest, source)
    return f"sigstore {signer_name(bundle.signing_certificate)}", content


def _same_key(pem_b64: object, key: PublicKey) -> bool:
    from cryptography.hazmat.primitives import serialization

    try:
        pem = base64.b64decode(str(pem_b64))
        other = serialization.load_pem_public_key(pem)
    except (ValueError, binascii.Error, TypeError):
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return other.public_bytes(*fmt) == key.public_bytes(*fmt)


def _check_entry_body(
    entry: Any, key: PublicKey, signature: bytes, digest: bytes, doc: dict[str, Any], source: str
) -> None:
    """The log entry must record this key, this signature and this artifact."""
    kind = entry._inner.kind_version.kind
    version = entry._inner.kind_version.version
    body = json.loads(entry._inner.canonicalized_body)
    spec = body.get("spec", {})
    if kind == "hashedrekord" and version == "0.0.1":
        ok = (
            spec.get("signature", {}).get("content") == base64.b64encode(signature).decode()
            and _same_key(spec.get("signature", {}).get("publicKey", {}).get("content"), key)
            and spec.get("data", {}).get("hash", {}).get("algorithm") == "sha256"
            and spec.get("data", {}).get("hash", {}).get("value") == digest.hex()
        )
    elif kind == "dsse" and version == "0.0.1":
        payload = base64.b64decode(doc["dsseEnvelope"]["payload"])
        sigs = doc["dsseEnvelope"]["signatures"]
        ok = spec.get("payloadHash", {}).get("value") == hashlib.sha256(payload).hexdigest() and [
            s.get("signature") for s in spec.get("signatures", [])
        ] == [s.get("sig") for s in sigs]
        ok = ok and all(_same_key(s.get("verifier"), key) for s in spec.get("signatures", []))
    else:
        raise UnsupportedBundleError(
            f"{source}: managed-key bundles with {kind}/{version} log entries are not supported"
        )
    if not ok:
        raise UntrustedSignerError(
            f"{source}: the transparency-log entry does not record this key, signature and "
            "artifact; the bundle was assembled from parts"
        )


def verify_managed_key(
    doc: dict[str, Any],
    digest: bytes,
    key: PublicKey,
    verifier: SigstoreVerifier,
    *,
    source: str,
) -> tuple[str, str]:
    """(signer, content) of a publicKey bundle: signature, then every log entry."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from sigstore._internal.trust import KeyringPurpose
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TransparencyLogEntry
    from sigstore_models.rekor.v1 import TransparencyLogEntry as RawEntry

    signer = f"key {key_fingerprint(key)}"
    if "messageSignature" in doc:
        ms = doc["messageSignature"]
        signature = _b64(ms.get("signature"), "messageSignature.signature", source)
        md = ms.get("messageDigest")
        if md is not None and _b64(md.get("digest"), "messageDigest", source) != digest:
            raise ArtifactMismatchError(
                f"{source}: the bundle signs sha256 {_b64(md.get('digest'), 'd', source).hex()}, "
                f"the artifact has {digest.hex()}"
            )
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise UnsupportedBundleError(f"{source}: only EC keys are supported for messages")
        try:
            key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        except InvalidSignature:
            raise UntrustedSignerError(
                f"{source}: the signature does not verify with {signer} over the artifact "
                f"(sha256 {digest.hex()}); wrong key or wrong artifact"
            ) from None
        content = "message signature"
    elif "dsseEnvelope" in doc:
        env = doc["dsseEnvelope"]
        payload = _b64(env.get("payload"), "DSSE payload", source)
        payload_type = str(env.get("payloadType"))
        sigs = [_b64(s.get("sig"), "DSSE signature", source) for s in env.get("signatures", [])]
        if len(sigs) != 1:
            raise UnsupportedBundleError(
                f"{source}: expected one DSSE signature, found {len(sigs)}"
            )
        signature = sigs[0]
        if not verify_signature(key, signature, pae(payload_type, payload)):
            raise UntrustedSignerError(
                f"{source}: the DSSE signature does not verify with {signer}"
            )
        _check_statement_subject(payload_type, payload, digest, source)
        content = f"DSSE {payload_type}"
    else:
        raise InputError(f"{source}: the bundle has neither messageSignature nor dsseEnvelope")

    vm = doc.get("verificationMaterial", {})
    entries = vm.get("tlogEntries") or []
    if not entries:
        # A DSSE statement signed by a key the user trusts, outside any log: what
        # mlverify attest --key and model_signing write. The key is the trust anchor;
        # the output says it was not logged. Message signatures (cosign, sigstore-python)
        # are always logged, so one without an entry is refused.
        if "dsseEnvelope" not in doc or vm.get("timestampVerificationData"):
            raise UntrustedSignerError(
                f"{source}: no transparency-log entry; a managed-key message signature "
                "(or one with timestamps) must carry one"
            )
        return signer, f"{content}, key-signed, not in a transparency log"
    keyring = verifier.trusted_root().rekor_keyring(KeyringPurpose.VERIFY)
    for raw in entries:
        try:
            entry = TransparencyLogEntry(RawEntry.from_json(json.dumps(raw)))
            entry._verify(keyring)
        except (SigstoreError, ValueError) as e:
            raise UntrustedSignerError(
                f"{source}: invalid transparency-log entry ({' '.join(str(e).split())})"
            ) from None
        _check_entry_body(entry, key, signature, digest, doc, source)
    return signer, content


def verify_any_bundle(
    artifact: Path,
    bundle_path: Path,
    *,
    identity: SigstoreIdentity | None = None,
    key: PublicKey | None = None,
    trust_root: Path | None = None,
) -> BundleVerification:
    """Verify ``bundle_path`` over ``artifact``; raise on failure or doubt."""
    if (identity is None) == (key is None):
        raise UsageError(
            "trust either a Sigstore identity and issuer (keyless) or a public key, not both "
            "and not neither"
        )
    doc = read_bundle_json(bundle_path)
    digest = file_sha256(artifact)
    source = str(bundle_path)
    verifier = SigstoreVerifier(trust_root)
    vm = doc.get("verificationMaterial")
    if not isinstance(vm, dict):
        raise InputError(f"{source}: the bundle has no 'verificationMaterial'")
    if "publicKey" in vm:
        if key is None:
            raise UntrustedSignerError(
                f"{source}: signed with a managed key, but only a Sigstore identity is trusted",
                remedy=Remedy("trust the signer's public key", "key"),
            )
        signer, content = verify_managed_key(doc, digest, key, verifier, source=source)
    else:
        if identity is None:
            raise UntrustedSignerError(
                f"{source}: signed keyless with a certificate, but only a key is trusted",
                remedy=Remedy("trust the signer's Sigstore identity and issuer", "identity"),
            )
        signer, content = verify_keyless(doc, digest, identity, verifier, source=source)
    return BundleVerification(
        artifact=str(artifact), bundle=source, signer=signer, content=content, sha256=digest.hex()
    )
