"""Trusted signers, modelled once: parsed from policies and command lines alike.

Three kinds, each a frozen value validated when it is made (so a bad identity
regex fails when a policy is loaded or linted, not halfway through a check):

* :class:`TrustedKey`: a public key, held as its canonical PEM and fingerprint.
  It is read once, from a file, a ``pkcs11:`` token, a KMS or inline PEM; an
  optional pinned fingerprint must match. Nothing re-reads the file later.
* :class:`TrustedCertificate`: root certificates (held as DER) and the signer's
  identity (SANs, a regex, or an explicit subject DN).
* :class:`TrustedSigstore`: an identity and OIDC issuer (plus GitHub claims)
  under a Sigstore trusted root.

:func:`compile_trust` turns a :class:`Trust` into verifiers once (cached per
value), e.g. a Sigstore trusted root is loaded once per policy, not per check.
Messages are neutral: they name the value, never a command-line flag.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from mlverify._internal.errors import InputError, MlverifyError, UsageError
from mlverify._internal.signing.identity import compile_identity_regex

if TYPE_CHECKING:
    from cryptography import x509

    from mlverify._internal.signing.keys import PublicKey
    from mlverify._internal.signing.trustset import TrustSet

_FINGERPRINT = re.compile(r"(?i)sha256:([0-9a-f]{64})")


def normalize_fingerprint(text: str) -> str:
    """``sha256:<64 hex>`` (either case) as mlverify prints it, or a neutral error."""
    m = _FINGERPRINT.fullmatch(text.strip())
    if m is None:
        raise UsageError(
            f"fingerprint {text!r} is not sha256:<64 hex digits> (as 'mlverify keygen' prints it)"
        )
    return "sha256:" + m.group(1).lower()


@dataclass(frozen=True)
class TrustedKey:
    """A trusted public key: its canonical PEM, fingerprint, rotation window and owner.

    A key that could not be read when its policy was loaded has no PEM and says
    why in ``problem``: ``policy lint`` reports it, and a check that needs it stops
    with that error (it never counts as a signer).
    """

    public_key_pem: bytes
    fingerprint: str
    source: str = ""  #: where it was read from (a path or URI), for messages
    path: Path | None = None  #: the file it was read from, if it was one
    not_before: dt.date | None = None
    not_after: dt.date | None = None
    owner: str = ""  #: the person or team; thresholds count owners, not keys
    problem: str = ""  #: why the key could not be read (then it has no PEM)

    def public_key(self) -> PublicKey:
        from mlverify._internal.signing.keys import load_public_key_pem

        if self.problem or not self.public_key_pem:
            raise InputError(self.problem or f"{self.source}: no public key")
        return load_public_key_pem(self.public_key_pem, where=self.source or self.fingerprint)

    @property
    def signer(self) -> str:
        """The identity verification gives this key's signatures."""
        return f"key {self.fingerprint}"

    def valid_on(self, day: dt.date) -> bool:
        return (self.not_before is None or self.not_before <= day) and (
            self.not_after is None or day <= self.not_after
        )


def _key_value(
    key: PublicKey,
    *,
    source: str,
    path: Path | None,
    fingerprint: str | None,
    not_before: dt.date | None,
    not_after: dt.date | None,
    owner: str,
) -> TrustedKey:
    from mlverify._internal.signing.keys import key_fingerprint, public_key_pem

    found = key_fingerprint(key)
    if fingerprint is not None and normalize_fingerprint(fingerprint) != found:
        raise UsageError(
            f"{source}: the key's fingerprint is {found}, not the pinned "
            f"{normalize_fingerprint(fingerprint)}; the key was replaced or the pin is wrong"
        )
    if not_before and not_after and not_after < not_before:
        raise UsageError(f"{source}: not_after {not_after} is before not_before {not_before}")
    return TrustedKey(public_key_pem(key), found, source, path, not_before, not_after, owner)


def trusted_key(
    uri: str,
    *,
    base: Path | None = None,
    fingerprint: str | None = None,
    not_before: dt.date | None = None,
    not_after: dt.date | None = None,
    owner: str = "",
    defer_errors: bool = False,
) -> TrustedKey:
    """A trusted key read now from ``uri`` (a path relative to ``base``, or a key URI).

    ``defer_errors`` (policies): a key that cannot be read gives a key value that
    records the error (see :class:`TrustedKey`) instead of raising it.
    """
    from mlverify._internal.signing.methods import load_public_key, redact, scheme_of

    path: Path | None = None
    if scheme_of(uri) == "file":
        from mlverify._internal.signing.methods.file import key_path

        path = key_path(uri).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        uri = str(path)
    shown = redact(uri)
    try:
        key = load_public_key(uri)
    except UsageError:
        raise  # a malformed URI or a missing extra: the policy itself must change
    except MlverifyError as e:  # unreadable now (no file, no token, no service)
        if not defer_errors:
            raise
        return TrustedKey(b"", "", shown, path, not_before, not_after, owner, problem=str(e))
    return _key_value(
        key,
        source=shown,
        path=path,
        fingerprint=fingerprint,
        not_before=not_before,
        not_after=not_after,
        owner=owner,
    )


def trusted_key_pem(
    pem: bytes,
    *,
    source: str = "inline public key",
    fingerprint: str | None = None,
    not_before: dt.date | None = None,
    not_after: dt.date | None = None,
    owner: str = "",
) -> TrustedKey:
    """A trusted key given as PEM text (e.g. inline in a policy)."""
    from mlverify._internal.signing.keys import load_public_key_pem

    key = load_public_key_pem(pem, where=source)
    return _key_value(
        key,
        source=source,
        path=None,
        fingerprint=fingerprint,
        not_before=not_before,
        not_after=not_after,
        owner=owner,
    )


def _check_identity(identities: tuple[str, ...], regex: str | None, what: str) -> None:
    if any(not i for i in identities):
        raise UsageError(f"{what}: an identity is empty")
    if regex is not None:
        compile_identity_regex(regex)


@dataclass(frozen=True)
class TrustedCertificate:
    """Signers certified under given roots, by identity (SAN, regex, or subject DN)."""

    roots: tuple[Path, ...]  #: the files the roots were read from (for messages)
    root_certificates_der: tuple[bytes, ...]
    identities: tuple[str, ...] = ()
    identity_regex: str | None = None
    subject: str | None = None  #: RFC 4514 subject DN, only for PKIs without SANs
    owner: str = ""

    def __post_init__(self) -> None:
        if not self.root_certificates_der:
            raise UsageError("a certificate signer needs at least one root certificate")
        if not (self.identities or self.identity_regex or self.subject):
            raise UsageError(
                "a certificate signer needs identities or an identity regex (a chain to a "
                "root proves nothing about who signed)"
            )
        _check_identity(self.identities, self.identity_regex, "certificate signer")

    def root_certificates(self) -> list[x509.Certificate]:
        from cryptography import x509

        return [x509.load_der_x509_certificate(d) for d in self.root_certificates_der]


def trusted_certificate(
    roots: tuple[Path, ...],
    *,
    identities: tuple[str, ...] = (),
    identity_regex: str | None = None,
    subject: str | None = None,
    owner: str = "",
) -> TrustedCertificate:
    """A certificate signer whose roots are read now from ``roots`` (PEM files)."""
    from cryptography.hazmat.primitives import serialization

    from mlverify._internal.signing.x509 import load_certificates

    ders = tuple(
        c.public_bytes(serialization.Encoding.DER)
        for p in roots
        for c in load_certificates(p, what="root certificate")
    )
    return TrustedCertificate(roots, ders, identities, identity_regex, subject, owner)


@dataclass(frozen=True)
class TrustedSigstore:
    """A Sigstore keyless signer: identity, OIDC issuer, optional GitHub claims."""

    issuer: str
    identities: tuple[str, ...] = ()
    identity_regex: str | None = None
    source_repo: str | None = None
    source_ref: str | None = None
    workflow: str | None = None
    trust_root: Path | None = None  #: a Sigstore trusted_root.json; None: the shipped one
    owner: str = ""

    def __post_init__(self) -> None:
        if not self.issuer:
            raise UsageError("a Sigstore signer needs an OIDC issuer")
        if not (self.identities or self.identity_regex):
            raise UsageError("a Sigstore signer needs identities or an identity regex")
        _check_identity(self.identities, self.identity_regex, "Sigstore signer")


TrustedSigner = TrustedKey | TrustedCertificate | TrustedSigstore


@dataclass(frozen=True)
class Trust:
    """Who may have signed, and how many distinct signers must have."""

    signers: tuple[TrustedSigner, ...]
    threshold: int = 1
    #: certificates: judge validity at this user-supplied time instead of now
    at_time: dt.datetime | None = None

    @classmethod
    def of(
        cls,
        *signers: TrustedSigner | str,
        threshold: int = 1,
        at_time: dt.datetime | None = None,
    ) -> Trust:
        """Trust these signers; a string is a public key's path or URI (read now)."""
        return cls(
            tuple(trusted_key(s) if isinstance(s, str) else s for s in signers),
            threshold=threshold,
            at_time=at_time,
        )

    def __post_init__(self) -> None:
        if not self.signers:
            raise UsageError(
                "no trusted signer given: trust a public key, a certificate identity under "
                "root certificates, or a Sigstore identity and issuer"
            )
        if self.threshold < 1:
            raise UsageError(f"must be at least 1, found {self.threshold}", setting="threshold")


@lru_cache(maxsize=64)
def compile_trust(trust: Trust) -> TrustSet:
    """One verifier per trusted certificate or Sigstore signer, one for all keys (cached)."""
    from mlverify._internal.signing.methods import Verifier
    from mlverify._internal.signing.methods.key import KeyVerifier
    from mlverify._internal.signing.trustset import TrustSet

    verifiers: list[Verifier] = []
    keys = tuple(s.public_key() for s in trust.signers if isinstance(s, TrustedKey))
    if keys:
        verifiers.append(KeyVerifier(keys))
    for s in trust.signers:
        if isinstance(s, TrustedCertificate):
            from mlverify._internal.signing.methods.x509 import CertificateVerifier
            from mlverify._internal.signing.x509 import CertificateIdentity

            identity = CertificateIdentity(s.identities, s.identity_regex, s.subject)
            verifiers.append(
                CertificateVerifier(tuple(s.root_certificates()), identity, trust.at_time)
            )
        elif isinstance(s, TrustedSigstore):
            from mlverify._internal.signing.methods.sigstore import KeylessVerifier
            from mlverify._internal.signing.sigstore_verify import (
                SigstoreIdentity,
                SigstoreVerifier,
            )

            ident = SigstoreIdentity(
                s.identities, s.identity_regex, s.issuer, s.source_repo, s.source_ref, s.workflow
            )
            verifiers.append(KeylessVerifier(ident, SigstoreVerifier(s.trust_root)))
    return TrustSet(tuple(verifiers), threshold=trust.threshold, at_time=trust.at_time)
