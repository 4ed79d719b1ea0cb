"""The certificate method: a key plus its X.509 chain; verified against the user's own roots.

Signing wraps any key signer (a file, a token, a KMS key): the leaf's public key
must be the signing key's. Verification (:func:`~mlverify._internal.signing.x509.\
verify_envelope_with_certificates`) builds the chain to the given roots only and
requires the signer's identity (see docs/signatures.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from mlverify._internal.errors import UsageError
from mlverify._internal.signing.bundle import SignatureBundle
from mlverify._internal.signing.methods import Signer
from mlverify._internal.signing.methods.key import KeyBundleSigner
from mlverify._internal.signing.oms import VerifiedStatement
from mlverify._internal.signing.x509 import (
    CertificateIdentity,
    certificate_sans,
    certificate_signed_bundle,
    check_leaf_matches,
    verify_envelope_with_certificates,
)


@dataclass(frozen=True)
class CertificateSigner:
    """Signs with a key and embeds its certificate (leaf first, then the chain)."""

    key: KeyBundleSigner
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    leaf_source: str = "leaf certificate"

    @property
    def name(self) -> str:
        sans = certificate_sans(self.leaf)
        return f"certificate {', '.join(sans) or self.leaf.subject.rfc4514_string()}"

    def sign_statement(self, payload: bytes) -> bytes:
        return certificate_signed_bundle(
            payload, self.key.key, self.leaf, self.chain, leaf_source=self.leaf_source
        )


def with_certificate(
    signer: Signer,
    leaf: Sequence[x509.Certificate],
    chain: Sequence[x509.Certificate] = (),
    *,
    leaf_source: str = "leaf certificate",
) -> CertificateSigner:
    """``signer``'s key with a certificate: ``leaf`` is the leaf (and any chain after it)."""
    if not isinstance(signer, KeyBundleSigner):
        raise UsageError(f"a certificate needs a key signer, not {signer.name}")
    if not leaf:
        raise UsageError(f"{leaf_source}: holds no certificate")
    check_leaf_matches(leaf[0], signer.key, leaf_source)
    return CertificateSigner(signer, leaf[0], (*leaf[1:], *chain), leaf_source)


@dataclass(frozen=True)
class CertificateVerifier:
    """Certificates chaining to ``roots`` whose identity matches, judged at a time."""

    roots: tuple[x509.Certificate, ...]
    identity: CertificateIdentity
    at_time: dt.datetime | None = None

    def accepts(self, bundle: SignatureBundle) -> bool:
        return bundle.material.kind == "x509CertificateChain"

    def describe(self) -> str:
        return f"certificate {self.identity.describe()}"

    def verify(self, bundle: SignatureBundle) -> list[VerifiedStatement]:
        return [
            verify_envelope_with_certificates(
                bundle, self.roots, self.identity, at_time=self.at_time
            )
        ]
