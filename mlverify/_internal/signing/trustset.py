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
    UntrustedSignerError,
    UsageError,
    VerificationError,
)
from mlverify._internal.signing.bundle import MaterialKind, SignatureBundle
from mlverify._internal.signing.keys import PublicKey
from mlverify._internal.signing.oms import VerifiedStatement

if TYPE_CHECKING:
    from cryptography import x509

    from mlverify._internal.signing.methods import Verifier
    from mlverify._internal.signing.sigstore_verify import SigstoreIdentity, SigstoreVerifier
    from mlverify._internal.signing.x509 import CertificateIdentity


@dataclass
class TrustSet:
    """The signers a user trusts, by method, compiled into one verifier per method.

    Built from typed trusted signers by :func:`mlverify._internal.signing.trust.compile_trust`
    (policies and command lines alike); the fields are the compiled material.
    """

    keys: Sequence[PublicKey] = ()
    cert_roots: Sequence[x509.Certificate] = ()
    cert_identity: CertificateIdentity | None = None
    at_time: dt.datetime | None = None
    sigstore_identity: SigstoreIdentity | None = None
    sigstore: SigstoreVerifier | None = None
    threshold: int = 1
    verifiers: tuple[Verifier, ...] = field(default=(), repr=False)

    @classmethod
    def of(
        cls,
        verifiers: tuple[Verifier, ...],
        *,
        threshold: int = 1,
        at_time: dt.datetime | None = None,
    ) -> TrustSet:
        """A trust set of compiled verifiers (see ``trust.compile_trust``)."""
        return cls(threshold=threshold, at_time=at_time, verifiers=verifiers)

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise UsageError(f"the threshold must be at least 1, found {self.threshold}")
        if self.verifiers:
            return
        if not (self.keys or self.cert_identity or self.sigstore_identity):
            raise UsageError(
                "no trusted signer given: trust a public key, a certificate identity under "
                "root certificates, or a Sigstore identity and issuer"
            )
        verifiers: list[Verifier] = []
        if self.keys:
            from mlverify._internal.signing.methods.key import KeyVerifier

            verifiers.append(KeyVerifier(tuple(self.keys)))
        if self.cert_identity is not None:
            from mlverify._internal.signing.methods.x509 import CertificateVerifier

            verifiers.append(
                CertificateVerifier(tuple(self.cert_roots), self.cert_identity, self.at_time)
            )
        if self.sigstore_identity is not None:
            from mlverify._internal.signing.methods.sigstore import KeylessVerifier
            from mlverify._internal.signing.sigstore_verify import SigstoreVerifier

            verifiers.append(
                KeylessVerifier(self.sigstore_identity, self.sigstore or SigstoreVerifier())
            )
        self.verifiers = tuple(verifiers)

    def describe(self) -> str:
        return "; ".join(v.describe() for v in self.verifiers)


class NoVerifierError(UntrustedSignerError):
    """A signature of a method no trusted signer uses (``kind`` names the material)."""

    def __init__(self, message: str, *, kind: MaterialKind, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind: MaterialKind = kind


_MATERIAL = {
    "publicKey": "a key",
    "x509CertificateChain": "an X.509 certificate chain",
    "certificate": "a Sigstore (keyless) certificate",
}
_REMEDY = {
    "publicKey": "trust the signer's public key",
    "x509CertificateChain": "trust root certificates and the signer's certificate identity",
    "certificate": "trust the signer's Sigstore identity and OIDC issuer",
}


def verify_bundle(bundle: SignatureBundle, trust: TrustSet) -> list[VerifiedStatement]:
    """The trusted signers that signed ``bundle``; raise when there are none.

    Every verifier of the bundle's method is tried (e.g. a certificate chain with a
    log entry by both the certificate and the Sigstore verifier); the first one's
    error is raised when none accepts the signature.
    """
    candidates = [v for v in trust.verifiers if v.accepts(bundle)]
    if not candidates:
        kind = bundle.material.kind
        raise NoVerifierError(
            f"{bundle.source}: signed with {_MATERIAL[kind]}, but no signer of that kind is "
            f"trusted (trusted: {trust.describe()})",
            kind=kind,
            hint=_REMEDY[kind],
        )
    errors: list[VerificationError] = []
    for verifier in candidates:
        try:
            return verifier.verify(bundle)
        except VerificationError as e:
            errors.append(e)
    raise errors[0]


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
        hint="add signatures by other trusted signers or lower the threshold",
    )
