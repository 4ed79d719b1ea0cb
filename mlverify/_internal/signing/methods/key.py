"""The key method: a DSSE envelope signed by a key the verifier trusts by its public key.

The bundle names the key only by its hint (SHA-256 of the PEM SubjectPublicKeyInfo,
as model_signing writes it); the hint is never trusted, the signature is checked
with every trusted key. Key files, PKCS#11 token keys and KMS keys all sign
through :class:`KeyBundleSigner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlverify._internal.errors import InputError, UntrustedSignerError
from mlverify._internal.signing.bundle import SignatureBundle, key_signed_bundle
from mlverify._internal.signing.keys import (
    PublicKey,
    RawSigner,
    fingerprint_of_hint,
    key_fingerprint,
    load_public_key_pem,
    public_key_hint,
    verify_signature,
)
from mlverify._internal.signing.oms import VerifiedStatement


@dataclass(frozen=True)
class KeyBundleSigner:
    """Signs statements into key-method bundles with any :class:`RawSigner`."""

    key: RawSigner

    @property
    def name(self) -> str:
        return f"key {key_fingerprint(self.key.public_key)}"

    def sign_statement(self, payload: bytes) -> bytes:
        return key_signed_bundle(payload, self.key)


def describe_bundle_key(bundle: SignatureBundle) -> str:
    """The key a bundle says it was signed with (untrusted: for messages only)."""
    m = bundle.material
    if m.key_pem:
        try:
            return f"key {key_fingerprint(load_public_key_pem(m.key_pem, where=bundle.source))}"
        except InputError:
            pass
    fingerprint = fingerprint_of_hint(m.key_hint)
    if fingerprint is not None:
        return f"key {fingerprint}"
    return "a key it does not name"


@dataclass(frozen=True)
class KeyVerifier:
    """Trusted public keys (any of them; each that signed counts)."""

    keys: tuple[PublicKey, ...]

    def accepts(self, bundle: SignatureBundle) -> bool:
        return bundle.material.kind == "publicKey"

    def describe(self) -> str:
        return ", ".join(f"key {key_fingerprint(k)}" for k in self.keys)

    def verify(self, bundle: SignatureBundle) -> list[VerifiedStatement]:
        return verify_with_keys(bundle, self.keys)


def verify_with_keys(
    bundle: SignatureBundle, trusted: Sequence[PublicKey]
) -> list[VerifiedStatement]:
    """One statement per trusted key with a valid signature in the envelope.

    Judged signature by signature: each signature counts for the one trusted key it
    verifies with, or for nothing (a signature by a key not trusted is ignored: it
    may be a co-signer's). Nothing else in the bundle (hints, keys it embeds,
    timestamps) names or counts a signer.
    """
    pae = bundle.envelope.pae()
    signers: dict[str, VerifiedStatement] = {}
    for s in bundle.envelope.signatures:
        k = next((k for k in trusted if verify_signature(k, s.sig, pae)), None)
        if k is not None:
            name = f"key {key_fingerprint(k)}"
            signers.setdefault(
                name,
                VerifiedStatement(
                    source=bundle.source,
                    method="key",
                    signer=name,
                    statement_payload=bundle.envelope.payload,
                    anchor=name,
                ),
            )
    if signers:
        return list(signers.values())
    by_hint = [k for k in trusted if public_key_hint(k) == bundle.material.key_hint]
    if by_hint:
        raise UntrustedSignerError(
            f"{bundle.source}: the signature names trusted key {key_fingerprint(by_hint[0])} "
            "but does not verify over the signed payload; the signature file was altered"
        )
    allowed = ", ".join(key_fingerprint(k) for k in trusted)
    raise UntrustedSignerError(
        f"{bundle.source}: no valid signature by a trusted key (signature made by "
        f"{describe_bundle_key(bundle)}; trusted: {allowed})",
        remedy="check you have the right public key",
    )
