"""Sigstore keyless: ``sigstore:`` (public-good instance) or ``sigstore:staging``.

Signing is sigstore-python's real flow (OIDC identity, Fulcio, Rekor; network
needed; the session starts when the signer is loaded, before any hashing).
Verification is offline against a pinned trusted root
(:mod:`mlverify._internal.signing.sigstore_verify`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlverify._internal.errors import UsageError
from mlverify._internal.signing.bundle import SignatureBundle
from mlverify._internal.signing.methods import SignerOptions
from mlverify._internal.signing.oms import VerifiedStatement

if TYPE_CHECKING:
    from mlverify._internal.signing.keys import PublicKey
    from mlverify._internal.signing.sigstore_sign import SigstoreSession
    from mlverify._internal.signing.sigstore_verify import SigstoreIdentity, SigstoreVerifier

INSTANCES = {"": False, "public-good": False, "production": False, "staging": True}


@dataclass(frozen=True)
class SigstoreSigner:
    session: SigstoreSession

    @property
    def name(self) -> str:
        return f"sigstore (identity of the OIDC token, {self.session.instance})"

    def sign_statement(self, payload: bytes) -> bytes:
        from mlverify._internal.signing.sigstore_sign import sign_statement_sigstore

        return sign_statement_sigstore(self.session, payload)


def load_signer(uri: str, options: SignerOptions) -> SigstoreSigner:
    instance = uri.split(":", 1)[1].strip("/").lower()
    if instance not in INSTANCES:
        raise UsageError(
            f"{uri!r}: unknown Sigstore instance {instance!r}; use sigstore: (public-good) "
            "or sigstore:staging"
        )
    from mlverify._internal.signing.sigstore_sign import start_sigstore_session

    return SigstoreSigner(
        start_sigstore_session(options.identity_token, staging=INSTANCES[instance])
    )


def load_public_key(uri: str) -> PublicKey:
    raise UsageError(
        f"{uri!r}: a Sigstore keyless signer has no long-lived public key; trust its "
        "identity and OIDC issuer instead"
    )


@dataclass(frozen=True)
class KeylessVerifier:
    """A Sigstore identity (and issuer, GitHub claims) under one trusted root."""

    identity: SigstoreIdentity
    verifier: SigstoreVerifier

    def accepts(self, bundle: SignatureBundle) -> bool:
        kind = bundle.material.kind
        # Sigstore bundles before v0.3 carry the Fulcio certificate as a one-element chain.
        return kind == "certificate" or (
            kind == "x509CertificateChain" and bundle.material.has_tlog_entries
        )

    def describe(self) -> str:
        return f"sigstore {self.identity.describe()}"

    def verify(self, bundle: SignatureBundle) -> list[VerifiedStatement]:
        from mlverify._internal.signing.sigstore_verify import verify_envelope_with_sigstore

        return [verify_envelope_with_sigstore(bundle, self.identity, self.verifier)]
