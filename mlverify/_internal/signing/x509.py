"""The certificate method: sign with a key plus its X.509 chain, verify against own roots.

Stricter than ``model_signing`` 1.1.1 on purpose:

* the chain is built with :mod:`cryptography.x509.verification` to the roots the
  user passes, never to web-PKI roots;
* the leaf must carry key usage ``digitalSignature`` and EKU ``codeSigning``;
* the signer's identity is required: a subjectAltName (email or URI) equal to
  ``--identity`` or fully matching ``--identity-regex``, or, for PKIs that issue
  no SAN, an explicitly requested subject DN (``--cert-subject``);
* validity is judged at a stated time (``--at-time`` given by the user, else
  an RFC 3161 timestamp over the very signature bytes that verified with the
  leaf, else now), never at the leaf's own notBefore;
* a certificate bundle has one leaf, so every signature in its envelope must be
  that leaf's: one that does not verify refuses the bundle (it was altered or
  assembled from parts), and is never a source of time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from mlverify._internal.errors import InputError, Remedy, UntrustedSignerError, UsageError
from mlverify._internal.files import read_bounded
from mlverify._internal.manifest.manifest import Manifest
from mlverify._internal.signing.bundle import SignatureBundle, bundle_json
from mlverify._internal.signing.dsse import (
    INTOTO_PAYLOAD_TYPE,
    DsseSignature,
    Envelope,
    b64decode_strict,
    b64encode,
)
from mlverify._internal.signing.identity import compile_identity_regex, matching_identity
from mlverify._internal.signing.keys import (
    MAX_KEY_FILE,
    PublicKey,
    RawSigner,
    key_fingerprint,
    verify_signature,
)
from mlverify._internal.signing.oms import VerifiedStatement
from mlverify._internal.signing.statement import (
    LEGACY_PREDICATE_TYPE,
    load_statement,
    statement_bytes,
)

#: RFC 3161 timestamps a bundle may carry (sigstore-python's limit too); each is checked
#: against each signature of the envelope
MAX_TIMESTAMPS = 32
#: signatures a certificate envelope may carry (all must be the leaf's; each is verified)
MAX_SIGNATURES = 32


def legacy_pae_v020(payload: bytes) -> bytes:
    """The malformed PAE model_signing 0.2.0 signed (``DSSEV1`` and a bytes repr).

    Accepted only for statements with the legacy predicate type, which are
    the only ones that version wrote.
    """
    t = INTOTO_PAYLOAD_TYPE
    return f"DSSEV1 {len(t)} {t} {len(payload)} {payload!r}".encode()


def is_legacy_statement(payload: bytes, *, where: str) -> bool:
    """Whether ``payload`` parses as a statement whose ``predicateType`` is exactly the legacy one.

    The parsed field, not a substring: a current statement that merely mentions the
    legacy predicate (in a file name, say) never enables the legacy PAE. (The
    substring test only spares parsing a payload that cannot qualify.)
    """
    if LEGACY_PREDICATE_TYPE.encode() not in payload:
        return False
    try:
        statement = load_statement(payload, where=where, compact=True)
    except InputError:
        return False
    return statement.get("predicateType") == LEGACY_PREDICATE_TYPE


def _verify_legacy_v020(key: PublicKey, signature: bytes, payload: bytes) -> bool:
    """model_signing 0.2.0 also hashed with SHA-256 whatever the curve."""
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, legacy_pae_v020(payload), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def load_certificates(path: Path, *, what: str = "certificate") -> list[x509.Certificate]:
    """All PEM certificates in ``path`` (in file order)."""
    data = read_bounded(path, what=what, limit=MAX_KEY_FILE)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise InputError(
            f"{path}: no PEM certificate found (expected '-----BEGIN CERTIFICATE-----'); "
            "convert DER with 'openssl x509 -inform der'"
        ) from None
    return certs


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 over the certificate's DER: a stable name for a trust anchor."""
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def _spki(key: Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def sign_manifest_with_certificate(
    manifest: Manifest,
    signer: RawSigner,
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    *,
    leaf_source: str = "leaf certificate",
) -> bytes:
    """An OMS bundle (certificate method): leaf first, then the given chain."""
    return certificate_signed_bundle(
        statement_bytes(manifest), signer, leaf, chain, leaf_source=leaf_source
    )


def check_leaf_matches(leaf: x509.Certificate, signer: RawSigner, leaf_source: str) -> None:
    if _spki(leaf.public_key()) != _spki(signer.public_key):
        raise UsageError(
            f"{leaf_source}: the certificate's public key is not the signing key's "
            f"(certificate {_subject(leaf)}, key {key_fingerprint(signer.public_key)}); "
            "pass the certificate issued for the signing key"
        )


def certificate_signed_bundle(
    payload: bytes,
    signer: RawSigner,
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    *,
    leaf_source: str = "leaf certificate",
) -> bytes:
    """A bundle (certificate method) over an in-toto ``payload``: leaf, then the chain."""
    check_leaf_matches(leaf, signer, leaf_source)
    unsigned = Envelope(INTOTO_PAYLOAD_TYPE, payload, ())
    signature = signer.sign(unsigned.pae())
    envelope = Envelope(INTOTO_PAYLOAD_TYPE, payload, (DsseSignature(signature, ""),))
    certs = [leaf, *(c for c in chain if _der(c) != _der(leaf))]
    material = {
        "x509CertificateChain": {"certificates": [{"rawBytes": b64encode(_der(c))} for c in certs]},
        "tlogEntries": [],
    }
    return bundle_json(envelope, material)


@dataclass(frozen=True)
class CertificateIdentity:
    """Who may have signed: SAN values, a SAN regex, or (explicitly) a subject DN."""

    identities: tuple[str, ...] = ()
    regex: str | None = None
    subject: str | None = None

    def __post_init__(self) -> None:
        if not (self.identities or self.regex or self.subject):
            raise UsageError(
                "no signer identity given: the SAN (email or URI) of the signing certificate, "
                "or a regex over it",
                setting="identity",
            )
        if self.regex is not None:
            compile_identity_regex(self.regex)

    def describe(self) -> str:
        parts = [repr(i) for i in self.identities]
        if self.regex is not None:
            parts.append(f"regex {self.regex!r}")
        if self.subject is not None:
            parts.append(f"subject {self.subject!r}")
        return " or ".join(parts)

    def match(self, sans: Sequence[str], subject: str) -> str | None:
        """The SAN (or subject) that satisfies this identity, if any."""
        matched = matching_identity(sans, self.identities, self.regex)
        if matched is not None:
            return matched
        if self.subject is not None and subject == self.subject:
            return f"subject {subject}"
        return None


def certificate_sans(cert: x509.Certificate) -> list[str]:
    """The email and URI subjectAltNames of ``cert``."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        *ext.get_values_for_type(x509.RFC822Name),
        *ext.get_values_for_type(x509.UniformResourceIdentifier),
    ]


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class JudgementTime:
    """The time at which certificate validity is judged, and where it came from."""

    time: dt.datetime
    source: str  #: "current time", "user-supplied verification time", ...

    def describe(self) -> str:
        return f"{_iso(self.time)} ({self.source})"


def judgement_time(
    at_time: dt.datetime | None, timestamp: JudgementTime | None = None
) -> JudgementTime:
    """--at-time if given, else a verified RFC 3161 timestamp, else now."""
    if at_time is not None:
        return JudgementTime(at_time, "user-supplied verification time")
    if timestamp is not None:
        return timestamp
    return JudgementTime(dt.datetime.now(dt.timezone.utc), "current time")


def bundle_timestamps(bundle: SignatureBundle) -> list[bytes]:
    """The DER RFC 3161 responses a bundle carries (unverified)."""
    vm = bundle.raw.get("verificationMaterial")
    tvd = vm.get("timestampVerificationData") if isinstance(vm, dict) else None
    items = tvd.get("rfc3161Timestamps") if isinstance(tvd, dict) else None
    if not isinstance(items, list):
        return []
    if len(items) > MAX_TIMESTAMPS:
        raise InputError(
            f"{bundle.source}: the bundle carries {len(items)} RFC 3161 timestamps, more "
            f"than the {MAX_TIMESTAMPS} a signature can need; it was assembled from parts"
        )
    found = []
    for item in items:
        raw = item.get("signedTimestamp") if isinstance(item, dict) else None
        found.append(b64decode_strict(raw, what="RFC 3161 timestamp", where=bundle.source))
    return found


def signature_timestamps(
    bundle: SignatureBundle, roots: Sequence[x509.Certificate], signatures: Sequence[bytes]
) -> list[tuple[JudgementTime | None, str | None]]:
    """For each of ``signatures``: the earliest RFC 3161 time over exactly its bytes.

    Only a timestamp whose message imprint is that signature, by a TSA chaining to
    ``roots``, is a source of time for it: a timestamp over other bytes (another
    signature, an old bundle's) proves nothing about this one. Each entry is (time,
    None), (None, None) when the bundle has no timestamps, or (None, why none of the
    bundle's timestamps was usable for that signature).
    """
    responses = bundle_timestamps(bundle)
    if not responses:
        return [(None, None) for _ in signatures]
    try:
        from rfc3161_client import VerificationError as TimestampError
        from rfc3161_client import VerifierBuilder, decode_timestamp_response
    except ImportError:
        missing = "checking it needs the sigstore extra (pip install 'mlverify[sigstore]')"
        return [(None, missing) for _ in signatures]

    decoded = []
    malformed = []
    for raw in responses:
        try:
            decoded.append(decode_timestamp_response(raw))
        except ValueError:
            malformed.append("malformed timestamp")
    builder = VerifierBuilder()
    for root in {_der(r): r for r in roots}.values():
        builder = builder.add_root_certificate(root)
    verifier = builder.build()
    found: list[tuple[JudgementTime | None, str | None]] = []
    for signature in signatures:
        best: JudgementTime | None = None
        reasons = list(malformed)
        for response in decoded:
            try:
                verifier.verify_message(response, signature)
            except (TimestampError, ValueError) as e:
                reasons.append(str(e))
                continue
            when = response.tst_info.gen_time.astimezone(dt.timezone.utc)
            if best is None or when < best.time:
                best = JudgementTime(when, f"RFC 3161 timestamp by {_tsa_name(response)}")
        if best is not None:
            found.append((best, None))
        else:
            found.append((None, "; ".join(dict.fromkeys(reasons)) or "no timestamp verified"))
    return found


def _tsa_name(response: Any) -> str:
    for der in response.signed_data.certificates:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            continue
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.TIME_STAMPING in eku:
            return _subject(cert)
    return "a trusted timestamp authority"


def parse_at_time(text: str) -> dt.datetime:
    """Parse an ISO 8601 time (a date means its midnight UTC; no zone means UTC)."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is not an ISO 8601 time; use e.g. 2025-06-01T12:00:00Z", setting="at_time"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _require_digital_signature(policy: Any, cert: x509.Certificate, ext: Any) -> None:
    if ext is None or not ext.digital_signature:
        raise ValueError("key usage lacks digitalSignature")


def _require_code_signing(policy: Any, cert: x509.Certificate, ext: Any) -> None:
    if ext is None or ExtendedKeyUsageOID.CODE_SIGNING not in ext:
        raise ValueError("extended key usage lacks codeSigning")


def build_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    when: dt.datetime,
) -> list[x509.Certificate]:
    """The verified chain leaf .. root, or raise ``x509.verification.VerificationError``.

    CA certificates follow the web-PKI profile of ``cryptography``; the leaf
    must have KU digitalSignature and EKU codeSigning (other leaf extensions
    are tolerated: the reference tool's own test leaf is marked CA:TRUE).
    """
    from cryptography.x509.verification import (
        Criticality,
        ExtensionPolicy,
        PolicyBuilder,
        Store,
    )

    ee_policy = (
        ExtensionPolicy.permit_all()
        .require_present(x509.KeyUsage, Criticality.AGNOSTIC, _require_digital_signature)
        .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _require_code_signing)
    )
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(when)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    return list(verifier.verify(leaf, list(intermediates)).chain)


def _leaf_key(leaf: x509.Certificate, source: str) -> PublicKey:
    key = leaf.public_key()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        return key
    raise InputError(
        f"{source}: the signing certificate has a {type(key).__name__} key; "
        "only EC P-256/P-384/P-521 and Ed25519 certificates are supported"
    )


def leaf_signatures(bundle: SignatureBundle, key: PublicKey, leaf_name: str) -> list[bytes]:
    """Every signature of the envelope, each verified with the leaf's key; refuse otherwise.

    A certificate bundle names one signer, its leaf: a signature in it that does not
    verify with that key is not some other signer's, it is a part that does not belong
    (the r4 graft carried one to hang an old timestamp on). The legacy PAE is tried
    only for a statement whose parsed predicateType is the legacy one.
    """
    envelope = bundle.envelope
    pae = envelope.pae()
    legacy: bool | None = None  # parsed only if a signature needs it
    count = len(envelope.signatures)
    if count > MAX_SIGNATURES:
        raise InputError(
            f"{bundle.source}: the DSSE envelope carries {count} signatures, more than the "
            f"{MAX_SIGNATURES} a certificate bundle (one signer) can need"
        )
    for i, s in enumerate(envelope.signatures):
        if verify_signature(key, s.sig, pae):
            continue
        if legacy is None:
            legacy = is_legacy_statement(envelope.payload, where=bundle.source)
        if legacy and _verify_legacy_v020(key, s.sig, envelope.payload):
            continue
        which = "the signature" if count == 1 else f"signature {i + 1} of {count}"
        raise UntrustedSignerError(
            f"{bundle.source}: {which} does not verify with the key of the {leaf_name}; "
            "the signature file was altered or assembled from parts (every signature in a "
            "certificate bundle must be its leaf's)"
        )
    return [s.sig for s in envelope.signatures]


def verify_envelope_with_certificates(
    bundle: SignatureBundle,
    roots: Sequence[x509.Certificate],
    identity: CertificateIdentity,
    *,
    at_time: dt.datetime | None = None,
) -> VerifiedStatement:
    """Check a certificate-method OMS signature (``x509CertificateChain``); raise on any doubt.

    Every envelope signature must verify with the leaf; then each is judged on its
    own: validity and chain at that signature's time (``at_time``, else a timestamp
    over its bytes, else now). The first signature that passes is the result; when
    none does, the first one's failure is raised.
    """
    if bundle.material.kind != "x509CertificateChain" or not roots:
        raise UsageError(f"{bundle.source}: not a certificate signature, or no trusted roots")
    try:
        certs = [x509.load_der_x509_certificate(d) for d in bundle.material.certificates]
    except ValueError:
        raise InputError(
            f"{bundle.source}: a certificate in 'x509CertificateChain' is not DER X.509"
        ) from None
    leaf, intermediates = certs[0], certs[1:]
    sans = certificate_sans(leaf)
    leaf_name = f"leaf certificate {_subject(leaf)}" + (
        f" (SAN {', '.join(sans)})" if sans else " (no subjectAltName)"
    )
    key = _leaf_key(leaf, bundle.source)
    signatures = leaf_signatures(bundle, key, leaf_name)
    if at_time is not None:
        times = [judgement_time(at_time) for _ in signatures]
    else:
        times = []
        for timestamp, ignored in signature_timestamps(bundle, roots, signatures):
            when = judgement_time(None, timestamp)
            if ignored is not None:
                when = JudgementTime(
                    when.time, f"{when.source}; the bundle's timestamp was ignored: {ignored}"
                )
            times.append(when)
    first_error: UntrustedSignerError | None = None
    for when in dict.fromkeys(times):  # distinct times, in signature order
        try:
            chain = _valid_chain_at(bundle, leaf, leaf_name, intermediates, roots, when)
        except UntrustedSignerError as e:
            first_error = first_error or e
            continue
        return _identified(bundle, leaf, sans, identity, chain, when)
    assert first_error is not None  # an envelope has at least one signature
    raise first_error


def _valid_chain_at(
    bundle: SignatureBundle,
    leaf: x509.Certificate,
    leaf_name: str,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    when: JudgementTime,
) -> list[x509.Certificate]:
    """The chain leaf .. root, the leaf valid at ``when``; raise otherwise."""
    nb, na = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if when.time > na or when.time < nb:
        state = f"expired on {_iso(na)}" if when.time > na else f"not valid before {_iso(nb)}"
        raise UntrustedSignerError(
            f"{bundle.source}: the {leaf_name} {state} (valid {_iso(nb)} to {_iso(na)}), "
            f"judged at {when.describe()}",
            remedy=Remedy(
                "to check a historical signature, give a verification time inside that validity "
                "you trust the signature was made at",
                "at_time",
            ),
        )
    from cryptography.x509.verification import VerificationError as X509Error

    try:
        return build_chain(leaf, intermediates, roots, when.time)
    except X509Error as e:
        allowed = "; ".join(_subject(r) for r in roots)
        detail = str(e).split(" (encountered", 1)[0]
        raise UntrustedSignerError(
            f"{bundle.source}: the {leaf_name} does not chain to a trusted root at "
            f"{when.describe()} ({detail}); trusted roots: {allowed}"
        ) from None


def _identified(
    bundle: SignatureBundle,
    leaf: x509.Certificate,
    sans: Sequence[str],
    identity: CertificateIdentity,
    chain: Sequence[x509.Certificate],
    when: JudgementTime,
) -> VerifiedStatement:
    matched = identity.match(sans, leaf.subject.rfc4514_string())
    if matched is None:
        found = ", ".join(sans) if sans else f"no SAN, subject {_subject(leaf)}"
        raise UntrustedSignerError(
            f"{bundle.source}: certificate signature by {found} is valid, but that is not "
            f"a trusted identity (allowed: {identity.describe()})",
            remedy=Remedy("check the trusted identity", "identity"),
        )
    root_fp = certificate_fingerprint(chain[-1])
    return VerifiedStatement(
        source=bundle.source,
        method="certificate",
        signer=f"certificate {matched} (root {root_fp})",
        statement_payload=bundle.envelope.payload,
        anchor=f"root certificate {_subject(chain[-1])} ({root_fp})",
        judged_at=when.describe(),
    )
