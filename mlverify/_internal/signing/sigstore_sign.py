"""Sigstore keyless signing through sigstore-python (needs network and an OIDC identity).

The flow is sigstore-python's own: the signing configuration and trusted root
come from Sigstore's TUF repository, Fulcio issues a short-lived certificate
for the OIDC identity, Rekor logs the DSSE envelope. Nothing here is mocked;
on machines without network the first step fails with one clear line (exit 2).
The trust configuration is fetched *before* the model is hashed, so a missing
network or identity is reported before any long work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlverify._internal.errors import MlverifyError, Remedy, UsageError
from mlverify._internal.manifest.manifest import Manifest
from mlverify._internal.signing.bundle import BUNDLE_MEDIA_TYPE_V03
from mlverify._internal.signing.sigstore_verify import require_sigstore
from mlverify._internal.signing.statement import statement_bytes


class SigstoreUnavailableError(MlverifyError):
    """Sigstore could not be reached or refused the request (operational, exit 2)."""

    code = "sigstore-unavailable"


def describe_exception(e: BaseException) -> str:
    """One line: the message, and the underlying cause's type and message."""
    text = " ".join(str(e).split()) or type(e).__name__
    cause = e.__cause__ or e.__context__
    if cause is not None:
        inner = " ".join(str(cause).split())[:160]
        text += f" ({type(cause).__name__}{': ' + inner if inner else ''})"
    return text[:300]


@dataclass
class SigstoreSession:
    """A signing context (trust configuration loaded) and a parsed identity token."""

    context: Any
    token: Any
    instance: str


def identity_token_text(identity_token: str | None) -> str:
    """The token given, else ambient credentials (e.g. GitHub Actions), else an error."""
    if identity_token:
        return identity_token.strip()
    from sigstore.oidc import IdentityError, detect_credential

    try:
        ambient = detect_credential()
    except IdentityError as e:
        raise SigstoreUnavailableError(
            f"cannot get ambient OIDC credentials ({describe_exception(e)})",
            remedy=Remedy("give an OIDC identity token", "identity_token"),
        ) from None
    if not ambient:
        raise UsageError(
            "no OIDC identity for Sigstore signing: not in GitHub Actions (with "
            "'permissions: id-token: write') and no identity token given",
            remedy=Remedy("give an OIDC identity token", "identity_token"),
        )
    return str(ambient)


def start_sigstore_session(identity_token: str | None, *, staging: bool = False) -> SigstoreSession:
    """Parse the identity and load Sigstore's signing configuration (network: TUF)."""
    require_sigstore()
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken
    from sigstore.sign import SigningContext

    instance = "Sigstore staging" if staging else "Sigstore public-good instance"
    raw = identity_token_text(identity_token)
    try:
        token = IdentityToken(raw)
    except Exception as e:
        raise UsageError(
            f"the identity token is not a usable OIDC token ({describe_exception(e)}); "
            "get a fresh one from your identity provider"
        ) from None
    try:
        config = ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
        context = SigningContext.from_trust_config(config)
    except Exception as e:
        raise SigstoreUnavailableError(
            f"cannot reach the {instance} to get its signing configuration "
            f"({describe_exception(e)}); keyless signing needs network access to Sigstore "
            "(TUF, Fulcio, Rekor)",
            remedy=Remedy("sign with a key offline instead", "key"),
        ) from None
    return SigstoreSession(context=context, token=token, instance=instance)


def sign_manifest_sigstore(session: SigstoreSession, manifest: Manifest) -> bytes:
    """An OMS bundle (sigstore method) for ``manifest``: Fulcio certificate + Rekor entry."""
    return sign_statement_sigstore(session, statement_bytes(manifest))


def sign_statement_sigstore(session: SigstoreSession, payload: bytes) -> bytes:
    """A keyless bundle (DSSE) over any in-toto statement ``payload``."""
    from sigstore.dsse import Statement

    statement = Statement(payload)
    try:
        with session.context.signer(session.token, cache=True) as signer:
            bundle = signer.sign_dsse(statement)
    except Exception as e:
        raise SigstoreUnavailableError(
            f"Sigstore signing failed at the {session.instance} ({describe_exception(e)}); "
            "check network access and that the identity token is fresh"
        ) from None
    doc = json.loads(bundle.to_json())
    doc["mediaType"] = BUNDLE_MEDIA_TYPE_V03
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
