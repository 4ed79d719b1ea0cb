"""Several signatures, several trusted signers, and a threshold.

A model may carry several signature files, and one DSSE envelope may carry
several signatures. A *trust set* lists the signers a user accepts: public
keys, certificate identities under given roots, Sigstore identities. The
result is the set of distinct trusted signers with a valid signature; it must
reach the threshold (default 1: "any of these", e.g. key rotation). A signer
is counted once however many signatures it made.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlverify._internal.errors import (
    MlverifyError,
    Remedy,
    UntrustedSignerError,
    UsageError,
    VerificationError,
)
from mlverify._internal.signing.bundle import SignatureBundle
from mlverify._internal.signing.keys import PublicKey, key_fingerprint, verify_signature
from mlverify._internal.signing.oms import VerifiedStatement, verify_envelope_with_keys

if TYPE_CHECKING:
    from cryptography import x509

    from mlverify._internal.signing.sigstore_verify import SigstoreIdentity, SigstoreVerifier
    from mlverify._internal.signing.x509 import CertificateIdentity


@dataclass
class TrustSet:
    """The signers a user trusts, by method."""

    keys: Sequence[PublicKey] = ()
    cert_roots: Sequence[x509.Certificate] = ()
    cert_identity: CertificateIdentity | None = None
    at_time: dt.datetime | None = None
    sigstore_identity: SigstoreIdentity | None = None
    sigstore: SigstoreVerifier | None = None
    threshold: int = 1
    _described: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.keys or self.cert_identity or self.sigstore_identity):
            raise UsageError(
                "no trusted signer given; pass --key PUBLIC.pem, or --cert-chain ROOTS.pem "
                "with --identity, or --identity with --issuer (Sigstore)"
            )
        if self.threshold < 1:
            raise UsageError(f"must be at least 1, found {self.threshold}", setting="threshold")

    def describe(self) -> str:
        parts = [f"key {key_fingerprint(k)}" for k in self.keys]
        if self.cert_identity is not None:
            parts.append(f"certificate {self.cert_identity.describe()}")
        if self.sigstore_identity is not None:
            parts.append(f"sigstore {self.sigstore_identity.describe()}")
        return "; ".join(parts)


def _verify_keys(
    bundle: SignatureBundle, keys: Sequence[PublicKey], trust_description: str = ""
) -> list[VerifiedStatement]:
    """Every trusted key with a valid signature in the envelope (one entry per key)."""
    if bundle.material.kind == "publicKey" and not keys:
        raise UntrustedSignerError(
            f"{bundle.source}: signed with a key, but no key is trusted (trusted: "
            f"{trust_description}); pass --key PUBLIC.pem"
        )
    if bundle.material.kind != "publicKey":
        return [verify_envelope_with_keys(bundle, keys)]  # raises the precise error
    pae = bundle.envelope.pae()
    found = [
        VerifiedStatement(
            source=bundle.source,
            method="key",
            signer=f"key {key_fingerprint(k)}",
            statement_payload=bundle.envelope.payload,
            anchor=f"key {key_fingerprint(k)}",
        )
        for k in keys
        if any(verify_signature(k, s.sig, pae) for s in bundle.envelope.signatures)
    ]
    return found or [verify_envelope_with_keys(bundle, keys)]


def verify_bundle(bundle: SignatureBundle, trust: TrustSet) -> list[VerifiedStatement]:
    """The trusted signers that signed ``bundle``; raise when there are none."""
    kind = bundle.material.kind
    if kind == "publicKey":
        return _verify_keys(bundle, trust.keys, trust.describe())
    keyless_chain = (
        kind == "x509CertificateChain"
        and bundle.material.has_tlog_entries
        and trust.cert_identity is None
        and trust.sigstore_identity is not None
    )
    if kind == "x509CertificateChain" and not keyless_chain:
        from mlverify._internal.signing.x509 import verify_envelope_with_certificates

        if trust.cert_identity is None:
            raise UntrustedSignerError(
                f"{bundle.source}: signed with an X.509 certificate chain, but no certificate "
                "signer is trusted; pass --cert-chain ROOTS.pem and --identity SAN"
            )
        return [
            verify_envelope_with_certificates(
                bundle, trust.cert_roots, trust.cert_identity, at_time=trust.at_time
            )
        ]
    from mlverify._internal.signing.sigstore_verify import verify_envelope_with_sigstore

    if trust.sigstore_identity is None:
        raise UntrustedSignerError(
            f"{bundle.source}: signed keyless with Sigstore, but no Sigstore signer is "
            "trusted; pass --identity and --issuer"
        )
    return [verify_envelope_with_sigstore(bundle, trust.sigstore_identity, trust.sigstore)]


def verify_threshold(
    bundles: Sequence[SignatureBundle], trust: TrustSet
) -> list[VerifiedStatement]:
    """Valid signatures by at least ``trust.threshold`` distinct trusted signers.

    Returns one statement per distinct signer. With one bundle and threshold 1
    the error of that bundle is raised unchanged (the precise message).
    """
    verified: dict[str, VerifiedStatement] = {}
    failures: list[MlverifyError] = []
    for bundle in bundles:
        try:
            for v in verify_bundle(bundle, trust):
                verified.setdefault(v.signer, v)
        except VerificationError as e:
            failures.append(e)
    if len(verified) >= trust.threshold:
        return list(verified.values())
    if not verified and len(failures) == 1:
        raise failures[0]
    found = ", ".join(verified) or "none"
    why = " | ".join(str(f) for f in failures)
    raise UntrustedSignerError(
        f"{len(verified)} distinct trusted signer(s) found ({found}), {trust.threshold} required "
        f"(trusted: {trust.describe()})" + (f"; failures: {why}" if why else ""),
        remedy=Remedy(
            "add signatures by other trusted signers or lower the threshold", "threshold"
        ),
    )
