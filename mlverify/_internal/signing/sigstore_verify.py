"""Sigstore keyless signatures: offline verification against a pinned trusted root.

Verification goes through sigstore-python's :class:`sigstore.verify.Verifier`
built from a trusted-root file (default: the Sigstore public-good root shipped
in ``mlverify/_internal/data``); nothing here opens a network connection. The signer is
named by an identity (certificate SAN) and the OIDC issuer that vouched for it,
optionally narrowed by GitHub Actions claims.

sigstore is imported only inside the functions that need it (it is slow to
import and an optional extra: ``pip install mlverify[sigstore]``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlverify._internal.errors import (
    InputError,
    MlverifyError,
    Remedy,
    UntrustedSignerError,
    UsageError,
)
from mlverify._internal.files import read_bounded
from mlverify._internal.signing.bundle import SignatureBundle
from mlverify._internal.signing.identity import compile_identity_regex, matching_identity
from mlverify._internal.signing.oms import VerifiedStatement

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

#: OIDC issuer, Fulcio extension v2 (DER UTF8String) and v1 (raw bytes)
OID_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"
OID_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
OID_OTHERNAME = "1.3.6.1.4.1.57264.1.7"
OID_SOURCE_REPOSITORY_URI = "1.3.6.1.4.1.57264.1.12"
OID_SOURCE_REPOSITORY_REF = "1.3.6.1.4.1.57264.1.14"
OID_BUILD_CONFIG_URI = "1.3.6.1.4.1.57264.1.18"

PRODUCTION_ROOT_NAME = "production_trusted_root.json"
MAX_TRUST_ROOT_BYTES = 4 * 1024 * 1024


def require_sigstore() -> None:
    """Fail with one line when the optional extra is missing; keep sigstore's logs quiet."""
    try:
        import sigstore  # noqa: F401
    except ImportError:
        raise UsageError(
            "Sigstore support is not installed; run 'pip install \"mlverify[sigstore]\"'"
        ) from None
    # sigstore-python logs warnings (e.g. "bundle contains a root CA") that would
    # break the one-line error discipline; our own messages carry the verdicts.
    logging.getLogger("sigstore").setLevel(logging.ERROR)


def shipped_trust_root_path() -> Path:
    """The Sigstore public-good trusted root shipped with mlverify."""
    return Path(str(resources.files("mlverify._internal") / "data" / PRODUCTION_ROOT_NAME))


def refreshed_trust_root_path() -> Path:
    """Where ``mlverify trust update`` writes a refreshed public-good root."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mlverify" / "trusted_root.json"


def default_trust_root_path() -> Path:
    """The root used without --trust-root: a refreshed one if present, else the shipped one."""
    refreshed = refreshed_trust_root_path()
    return refreshed if refreshed.is_file() else shipped_trust_root_path()


def load_trusted_root(path: Path | None) -> Any:
    """A ``sigstore.models.TrustedRoot`` from ``path`` (default: the shipped root)."""
    require_sigstore()
    from sigstore.models import TrustedRoot

    path = path or default_trust_root_path()
    data = read_bounded(path, what="Sigstore trusted root", limit=MAX_TRUST_ROOT_BYTES)
    try:
        del data  # size-checked above; sigstore reads the file itself
        return TrustedRoot.from_file(str(path))
    except Exception as e:  # pydantic / protobuf / JSON errors of many types
        first = " ".join(str(e).split())[:200]
        raise InputError(
            f"{path}: not a Sigstore trusted root ({type(e).__name__}: {first}); "
            "expected a trusted_root.json (mediaType application/vnd.dev.sigstore.trustedroot+json)"
        ) from None


def der_utf8(value: bytes) -> str:
    """Decode a DER UTF8String (or IA5/printable string) extension value."""
    if len(value) < 2 or value[0] not in (0x0C, 0x16, 0x13):
        raise ValueError("not a DER string")
    length = value[1]
    offset = 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(value[2 : 2 + n], "big")
        offset = 2 + n
    if offset + length != len(value):
        raise ValueError("bad DER string length")
    return value[offset:].decode()


def _extension_text(cert: Certificate, oid: str, *, der: bool = True) -> str | None:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
    except x509.ExtensionNotFound:
        return None
    raw = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else None
    if raw is None:
        return None
    try:
        return der_utf8(raw) if der else raw.decode()
    except (ValueError, UnicodeDecodeError):
        return None


def certificate_issuer(cert: Certificate) -> str | None:
    """The OIDC issuer Fulcio recorded in ``cert`` (v2 extension, else v1)."""
    return _extension_text(cert, OID_ISSUER_V2) or _extension_text(cert, OID_ISSUER_V1, der=False)


def certificate_identities(cert: Certificate) -> list[str]:
    """Email, URI and Sigstore otherName SANs of ``cert``."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    values = [
        *san.get_values_for_type(x509.RFC822Name),
        *san.get_values_for_type(x509.UniformResourceIdentifier),
    ]
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id.dotted_string == OID_OTHERNAME:
            try:
                values.append(der_utf8(other.value))
            except (ValueError, UnicodeDecodeError):
                continue
    return values


@dataclass(frozen=True)
class SigstoreIdentity:
    """Who may have signed: identity (exact or regex), issuer, optional GitHub claims."""

    identities: tuple[str, ...] = ()
    regex: str | None = None
    issuer: str | None = None
    source_repo: str | None = None  #: "owner/repo" or a full repository URL
    source_ref: str | None = None  #: e.g. "refs/tags/v1.0"
    workflow: str | None = None  #: e.g. ".github/workflows/release.yml"

    def __post_init__(self) -> None:
        if not (self.identities or self.regex):
            raise UsageError(
                "no signer identity given: a certificate SAN (email or URI) or a regex over "
                "it, with the OIDC issuer",
                setting="identity",
            )
        if not self.issuer:
            raise UsageError(
                "no OIDC issuer given (e.g. https://token.actions.githubusercontent.com)",
                setting="issuer",
            )
        if self.regex is not None:
            compile_identity_regex(self.regex)

    @property
    def repository_uri(self) -> str | None:
        repo = self.source_repo
        if repo is None:
            return None
        return repo if "://" in repo else f"https://github.com/{repo.strip('/')}"

    def describe(self) -> str:
        who = [repr(i) for i in self.identities]
        if self.regex is not None:
            who.append(f"regex {self.regex!r}")
        text = f"{' or '.join(who)} from issuer {self.issuer!r}"
        for label, value in (
            ("repository", self.repository_uri),
            ("ref", self.source_ref),
            ("workflow", self.workflow),
        ):
            if value is not None:
                text += f", {label} {value!r}"
        return text

    def problems(self, cert: Certificate) -> list[str]:
        """Why ``cert`` is not this signer (empty when it is)."""
        found: list[str] = []
        sans = certificate_identities(cert)
        if matching_identity(sans, self.identities, self.regex) is None:
            found.append(f"identity {', '.join(sans) or '(none)'}")
        issuer = certificate_issuer(cert)
        if issuer != self.issuer:
            found.append(f"issuer {issuer or '(none)'}")
        repo = self.repository_uri
        if repo is not None:
            value = _extension_text(cert, OID_SOURCE_REPOSITORY_URI)
            if value != repo:
                found.append(f"repository {value or '(none)'}")
        if self.source_ref is not None:
            value = _extension_text(cert, OID_SOURCE_REPOSITORY_REF)
            if value != self.source_ref:
                found.append(f"ref {value or '(none)'}")
        if self.workflow is not None:
            value = _extension_text(cert, OID_BUILD_CONFIG_URI)
            path = (value or "").split("@", 1)[0]
            wanted = self.workflow.lstrip("/")
            if not path.endswith("/" + wanted):
                found.append(f"workflow {value or '(none)'}")
        return found


def signer_name(cert: Certificate) -> str:
    sans = certificate_identities(cert)
    return f"{', '.join(sans) or '(no identity)'} (issuer {certificate_issuer(cert) or '(none)'})"


class IdentityPolicy:
    """A sigstore-python verification policy (any object with ``verify(cert)``)."""

    def __init__(self, identity: SigstoreIdentity) -> None:
        self.identity = identity
        self.rejected: Certificate | None = None
        self.problems: list[str] = []

    def verify(self, cert: Certificate) -> None:
        from sigstore.errors import VerificationError

        problems = self.identity.problems(cert)
        if problems:
            self.rejected = cert
            self.problems = problems
            raise VerificationError("certificate does not match the policy: " + "; ".join(problems))


def make_verifier(trusted_root: Any) -> Any:
    """sigstore-python's Verifier, with TSA validity periods read as closed intervals.

    sigstore-python 4.5.1 treats a timestamp authority's ``validFor.end`` as
    exclusive; the trusted-root specification (TimeRange) makes it inclusive
    (conformance case ``trust-root-tsa-validity-end-inclusive``). The override
    differs from the upstream method only in ``<=`` at the end of the period.
    """
    import datetime as dt

    from rfc3161_client import VerificationError as Rfc3161VerificationError
    from rfc3161_client import VerifierBuilder
    from sigstore import dsse
    from sigstore._internal.timestamp import TimestampSource, TimestampVerificationResult
    from sigstore.errors import VerificationError
    from sigstore.verify import Verifier

    class _Verifier(Verifier):
        """Also accepts Rekor ``intoto/0.0.2`` entries for DSSE bundles (older cosign)."""

        def _establish_time(self, bundle: Any) -> Any:
            inner = bundle.log_entry._inner
            kv = inner.kind_version
            if not (kv.kind == "intoto" and kv.version == "0.0.2"):
                return super()._establish_time(bundle)
            verified = []
            if bundle.verification_material.timestamp_verification_data:
                if not self._trusted_root.get_timestamp_authorities():
                    raise VerificationError("signed timestamp but no timestamp authority trusted")
                verified.extend(self._verify_timestamp_authority(bundle))
            if inner.integrated_time and inner.inclusion_promise:
                verified.append(
                    TimestampVerificationResult(
                        source=TimestampSource.TRANSPARENCY_SERVICE,
                        time=dt.datetime.fromtimestamp(inner.integrated_time, tz=dt.timezone.utc),
                    )
                )
            return verified

        def verify_dsse(self, bundle: Any, policy: Any) -> tuple[str, bytes]:
            kv = bundle.log_entry._inner.kind_version
            if not (kv.kind == "intoto" and kv.version == "0.0.2"):
                result: tuple[str, bytes] = super().verify_dsse(bundle, policy)
                return result
            self._verify_common_signing_cert(bundle, policy)
            envelope = bundle._dsse_envelope
            if envelope is None:
                raise VerificationError("DSSE verification of a bundle without a DSSE envelope")
            dsse._verify(bundle.signing_certificate.public_key(), envelope)
            _validate_intoto_v002_entry_body(bundle)
            return (envelope._inner.payload_type, envelope._inner.payload)

        def _verify_signed_timestamp(self, response: Any, message: bytes) -> Any:
            for authority in self._trusted_root.get_timestamp_authorities():
                certificates = authority.certificates(allow_expired=True)
                if len(certificates) < 2:
                    continue
                builder = (
                    VerifierBuilder()
                    .tsa_certificate(certificates[0])
                    .add_root_certificate(certificates[-1])
                )
                for certificate in certificates[1:-1]:
                    builder = builder.add_intermediate_certificate(certificate)
                try:
                    builder.build().verify_message(response, message)
                except Rfc3161VerificationError:
                    continue
                gen_time = response.tst_info.gen_time
                end = authority.validity_period_end
                if authority.validity_period_start <= gen_time and (end is None or gen_time <= end):
                    return TimestampVerificationResult(
                        source=TimestampSource.TIMESTAMP_AUTHORITY, time=gen_time
                    )
            return None

    return _Verifier(trusted_root=trusted_root)


def _validate_intoto_v002_entry_body(bundle: Any) -> None:
    """The intoto/0.0.2 log entry must record this envelope's payload and signatures.

    In these entries the payload and signatures are base64 twice over and the
    verifier is the PEM certificate, base64-encoded. The envelope hash cannot
    be checked (the envelope JSON is not canonical), as for dsse/0.0.1.
    """
    import base64
    import hashlib

    from sigstore.errors import VerificationError

    envelope = bundle._dsse_envelope._inner
    try:
        body = json.loads(bundle.log_entry._inner.canonicalized_body)
        content = body["spec"]["content"]
        logged = content["envelope"]
        payload_hash = content["payloadHash"]
        logged_sigs = [
            (base64.b64decode(base64.b64decode(s["sig"])), s.get("publicKey"))
            for s in logged["signatures"]
        ]
        logged_payload = logged.get("payload")
    except (KeyError, TypeError, ValueError) as e:
        raise VerificationError(f"invalid intoto/0.0.2 log entry ({e})") from None
    if payload_hash.get("algorithm") != "sha256" or payload_hash.get("value") != (
        hashlib.sha256(envelope.payload).hexdigest()
    ):
        raise VerificationError("log entry payload hash does not match bundle")
    if logged_payload is not None and base64.b64decode(base64.b64decode(logged_payload)) != (
        envelope.payload
    ):
        raise VerificationError("log entry payload does not match bundle")
    from cryptography import x509

    signing_cert = bundle.signing_certificate

    def same_cert(value: object) -> bool:
        try:
            logged = x509.load_pem_x509_certificate(base64.b64decode(str(value)))
            return bool(logged == signing_cert)
        except ValueError:
            return False

    if [sig for sig, _ in logged_sigs] != [s.sig for s in envelope.signatures] or not all(
        same_cert(verifier) for _, verifier in logged_sigs
    ):
        raise VerificationError("log entry signatures do not match bundle")


@dataclass
class SigstoreVerifier:
    """A reusable offline verifier: one trusted root, loaded once."""

    trust_root_path: Path | None = None
    _verifier: Any = field(default=None, init=False, repr=False)
    _root: Any = field(default=None, init=False, repr=False)

    def get(self) -> Any:
        if self._verifier is None:
            self._verifier = make_verifier(self.trusted_root())
        return self._verifier

    def trusted_root(self) -> Any:
        if self._root is None:
            self._root = load_trusted_root(self.trust_root_path)
        return self._root

    @property
    def root_name(self) -> str:
        if self.trust_root_path:
            return f"trusted root {self.trust_root_path}"
        return f"Sigstore public-good root ({default_trust_root_path()})"


def load_sigstore_bundle(raw: dict[str, Any] | bytes, *, source: str) -> Any:
    """A ``sigstore.models.Bundle`` (raises InputError on malformed bundles)."""
    require_sigstore()
    from sigstore.models import Bundle

    text = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    try:
        return Bundle.from_json(text)
    except Exception as e:
        first = " ".join(str(e).split())[:200]
        raise InputError(
            f"{source}: not a valid Sigstore keyless bundle ({type(e).__name__}: {first})"
        ) from None


def _untrusted(source: str, policy: IdentityPolicy, error: Exception, root: str) -> MlverifyError:
    if policy.rejected is not None:
        return UntrustedSignerError(
            f"{source}: Sigstore signature by {signer_name(policy.rejected)} is not by a trusted "
            f"signer (found {'; '.join(policy.problems)}; allowed: {policy.identity.describe()})",
            remedy=Remedy("check the trusted identity, issuer and GitHub claims", "identity"),
        )
    detail = " ".join(str(error).split())
    return UntrustedSignerError(
        f"{source}: Sigstore verification against the {root} failed: {detail}",
        remedy=Remedy(
            "the bundle was altered, or was made by another Sigstore instance "
            "(give that instance's trusted root)",
            "trust_root",
        ),
    )


def verify_envelope_with_sigstore(
    bundle: SignatureBundle,
    identity: SigstoreIdentity,
    verifier: SigstoreVerifier | None = None,
) -> VerifiedStatement:
    """Check a keyless OMS signature offline; the payload returned is the signed one.

    Which bundles are keyless is :class:`~mlverify._internal.signing.methods.sigstore.\
KeylessVerifier`'s to say; sigstore-python refuses any other material.
    """
    verifier = verifier or SigstoreVerifier()
    sbundle = load_sigstore_bundle(bundle.raw, source=bundle.source)
    from sigstore.errors import Error as SigstoreError

    policy = IdentityPolicy(identity)
    try:
        payload_type, payload = verifier.get().verify_dsse(sbundle, policy)
    except SigstoreError as e:
        raise _untrusted(bundle.source, policy, e, verifier.root_name) from None
    except ValueError as e:  # malformed inner structures surface as ValueError
        raise _untrusted(bundle.source, policy, e, verifier.root_name) from None
    if payload != bundle.envelope.payload or payload_type != bundle.envelope.payload_type:
        raise UntrustedSignerError(f"{bundle.source}: verified payload differs from the envelope")
    cert = sbundle.signing_certificate
    return VerifiedStatement(
        source=bundle.source,
        method="sigstore",
        signer=f"sigstore {signer_name(cert)}",
        statement_payload=payload,
        claims=certificate_claims(cert),
        anchor=f"Sigstore {verifier.root_name}",
    )


def certificate_claims(cert: Certificate) -> dict[str, str]:
    """What a verified Fulcio certificate vouches for (only the claims present)."""
    claims = {"identity": ", ".join(certificate_identities(cert))}
    for name, value in (
        ("issuer", certificate_issuer(cert)),
        ("source_repository_uri", _extension_text(cert, OID_SOURCE_REPOSITORY_URI)),
        ("source_repository_ref", _extension_text(cert, OID_SOURCE_REPOSITORY_REF)),
        ("build_config_uri", _extension_text(cert, OID_BUILD_CONFIG_URI)),
    ):
        if value:
            claims[name] = value
    return claims


def identity_from_options(
    identities: Sequence[str],
    regex: str | None,
    issuer: str | None,
    source_repo: str | None = None,
    source_ref: str | None = None,
    workflow: str | None = None,
) -> SigstoreIdentity:
    return SigstoreIdentity(
        identities=tuple(identities),
        regex=regex,
        issuer=issuer,
        source_repo=source_repo,
        source_ref=source_ref,
        workflow=workflow,
    )
