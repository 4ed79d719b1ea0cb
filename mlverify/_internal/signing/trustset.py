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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlverify._internal.errors import (
    MlverifyError,
    Remedy,
    UntrustedSignerError,
    UsageError,
    VerificationError,
)
from mlverify._internal.signing.bundle import MaterialKind, SignatureBundle
from mlverify._internal.signing.oms import VerifiedStatement

if TYPE_CHECKING:
    from mlverify._internal.signing.methods import Verifier


@dataclass(frozen=True)
class TrustSet:
    """Compiled trust: one verifier per trusted method, and the threshold.

    Made by :func:`mlverify._internal.signing.trust.compile_trust` from typed trusted
    signers (policies and command lines alike).
    """

    verifiers: tuple[Verifier, ...]
    threshold: int = 1
    #: certificates: validity judged at this user-supplied time instead of now
    at_time: dt.datetime | None = None

    def __post_init__(self) -> None:
        if not self.verifiers:
            raise UsageError("no trusted signer given")
        if self.threshold < 1:
            raise UsageError(f"must be at least 1, found {self.threshold}", setting="threshold")

    def describe(self) -> str:
        return "; ".join(v.describe() for v in self.verifiers)


class NoVerifierError(UntrustedSignerError):
    """A signature of a method no trusted signer uses (``kind`` names the material)."""

    def __init__(
        self, message: str, *, kind: MaterialKind, remedy: Remedy | str | None = None
    ) -> None:
        super().__init__(message, remedy=remedy)
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
            remedy=_REMEDY[kind],
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
        remedy=Remedy(
            "add signatures by other trusted signers or lower the threshold", "threshold"
        ),
    )
