"""Options naming trusted signers beyond keys: certificates and Sigstore identities."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mlverify._internal.errors import UsageError

if TYPE_CHECKING:
    from mlverify._internal.signing.trust import Trust
    from mlverify._internal.signing.trustset import TrustSet

F = TypeVar("F", bound=Callable[..., Any])


def identity_options(f: F) -> F:
    """--identity, --identity-regex, --issuer, GitHub claims, --trust-root."""
    for decorator in reversed(
        [
            click.option(
                "--identity",
                "identities",
                multiple=True,
                metavar="SAN",
                help="Trusted signer identity: the signing certificate's subjectAltName "
                "(email or URI), matched exactly; repeat to trust several.",
            ),
            click.option(
                "--identity-regex",
                metavar="RX",
                help="Trusted identities as a Python regex that must match the whole SAN.",
            ),
            click.option(
                "--issuer",
                metavar="URL",
                help="Sigstore: the OIDC issuer that must have vouched for the identity "
                "(e.g. https://token.actions.githubusercontent.com).",
            ),
            click.option(
                "--source-repo",
                metavar="OWNER/REPO",
                help="Sigstore/GitHub: required source repository (OWNER/REPO or full URL).",
            ),
            click.option(
                "--source-ref",
                metavar="REF",
                help="Sigstore/GitHub: required source ref, e.g. refs/tags/v1.0.",
            ),
            click.option(
                "--workflow",
                metavar="PATH",
                help="Sigstore/GitHub: required workflow file, e.g. .github/workflows/release.yml.",
            ),
            click.option(
                "--trust-root",
                type=click.Path(path_type=Path, dir_okay=False),
                metavar="FILE",
                help="Sigstore trusted_root.json to verify against [default: the Sigstore "
                "public-good root shipped with mlverify, or one refreshed by "
                "'mlverify trust update'].",
            ),
        ]
    ):
        f = decorator(f)
    return f


def trust_options(f: F) -> F:
    """Identity options plus the certificate method's and the threshold."""
    f = identity_options(f)
    for decorator in reversed(
        [
            click.option(
                "--cert-chain",
                "cert_roots",
                multiple=True,
                type=click.Path(path_type=Path, dir_okay=False),
                metavar="ROOTS.pem",
                help="Certificate method: trusted root certificate(s), PEM; chains are built "
                "to these only (never to system roots). Use with --identity.",
            ),
            click.option(
                "--cert-subject",
                metavar="DN",
                help="Certificate method: accept a leaf whose subject DN (RFC 4514, e.g. "
                "'CN=signer') equals DN; only for PKIs that issue no subjectAltName.",
            ),
            click.option(
                "--at-time",
                metavar="ISO8601",
                help="HISTORICAL VERIFICATION: judge certificate validity at this "
                "user-supplied time instead of now (e.g. 2025-06-01T00:00:00Z). You vouch "
                "that the signature was made then; the output says so.",
            ),
            click.option(
                "--threshold",
                type=click.IntRange(min=1),
                default=1,
                show_default=True,
                help="At least N distinct trusted signers must have signed (a signer counts "
                "once); 1 means any of them.",
            ),
        ]
    ):
        f = decorator(f)
    return f


@dataclass(frozen=True)
class TrustArgs:
    identities: tuple[str, ...] = ()
    identity_regex: str | None = None
    issuer: str | None = None
    source_repo: str | None = None
    source_ref: str | None = None
    workflow: str | None = None
    trust_root: Path | None = None
    cert_roots: tuple[Path, ...] = ()
    cert_subject: str | None = None
    at_time: str | None = None
    threshold: int = 1

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, object]) -> TrustArgs:
        return cls(**kwargs)  # type: ignore[arg-type]

    @property
    def wants_identity(self) -> bool:
        return bool(self.identities or self.identity_regex)


def sigstore_identity(args: TrustArgs) -> Any:
    from mlverify._internal.signing.sigstore_verify import identity_from_options

    return identity_from_options(
        args.identities,
        args.identity_regex,
        args.issuer,
        source_repo=args.source_repo,
        source_ref=args.source_ref,
        workflow=args.workflow,
    )


#: how to trust a signer of each method, on the command line
TRUST_REMEDIES = {
    "publicKey": "pass --key PUBLIC.pem",
    "x509CertificateChain": "pass --cert-chain ROOTS.pem and --identity SAN",
    "certificate": "pass --identity and --issuer (Sigstore keyless)",
}


@contextmanager
def cli_remedies() -> Iterator[None]:
    """Render the library's remedies as the options that apply them."""
    from mlverify._internal.signing.trustset import NoVerifierError

    try:
        yield
    except NoVerifierError as e:
        raise NoVerifierError(e.message, kind=e.kind, remedy=TRUST_REMEDIES[e.kind]) from None


def _option_error(e: UsageError) -> UsageError:
    """A library error with the option that caused it named."""
    from mlverify._internal.signing.identity import IdentityRegexError

    if isinstance(e, IdentityRegexError):
        return UsageError(f"--identity-regex: {e.message}")
    return e


def trust_from_options(key_uris: Sequence[str], args: TrustArgs) -> Trust:
    """The typed trust (as a policy would give it) from command-line options.

    Refuses option combinations that mean nothing.
    """
    from mlverify._internal.signing.trust import (
        Trust,
        TrustedSigner,
        TrustedSigstore,
        trusted_certificate,
        trusted_key,
    )

    github = args.source_repo or args.source_ref or args.workflow
    if (args.wants_identity or github) and not (args.issuer or args.cert_roots):
        raise UsageError(
            "--identity needs --issuer (Sigstore keyless) or --cert-chain ROOTS.pem "
            "(certificate); say which kind of signer you trust"
        )
    if args.issuer and not args.wants_identity:
        raise UsageError("--issuer needs --identity or --identity-regex")
    if github and not args.issuer:
        raise UsageError("--source-repo/--source-ref/--workflow apply to Sigstore: add --issuer")
    if args.cert_subject and not args.cert_roots:
        raise UsageError("--cert-subject needs --cert-chain ROOTS.pem")
    if args.trust_root and not args.issuer:
        raise UsageError("--trust-root applies to Sigstore signatures: add --identity and --issuer")
    if args.at_time and not args.cert_roots:
        raise UsageError("--at-time applies to certificate signatures: add --cert-chain")
    if not (key_uris or args.cert_roots or args.issuer):
        raise UsageError(
            "no trusted signer given; pass --key PUBLIC.pem, or --cert-chain ROOTS.pem "
            "with --identity, or --identity with --issuer (Sigstore)"
        )
    signers: list[TrustedSigner] = [trusted_key(uri) for uri in key_uris]
    at_time = None
    try:
        if args.cert_roots:
            from mlverify._internal.signing.x509 import parse_at_time

            if not (args.wants_identity or args.cert_subject):
                raise UsageError(
                    "--cert-chain needs --identity SAN (email or URI of the signing "
                    "certificate), --identity-regex RX or --cert-subject DN"
                )
            signers.append(
                trusted_certificate(
                    args.cert_roots,
                    identities=args.identities,
                    identity_regex=args.identity_regex,
                    subject=args.cert_subject,
                )
            )
            at_time = parse_at_time(args.at_time) if args.at_time else None
        if args.issuer:
            signers.append(
                TrustedSigstore(
                    issuer=args.issuer,
                    identities=args.identities,
                    identity_regex=args.identity_regex,
                    source_repo=args.source_repo,
                    source_ref=args.source_ref,
                    workflow=args.workflow,
                    trust_root=args.trust_root,
                )
            )
    except UsageError as e:
        raise _option_error(e) from None
    return Trust(tuple(signers), threshold=args.threshold, at_time=at_time)


def build_trust_set(key_uris: Sequence[str], args: TrustArgs) -> TrustSet:
    """The compiled trust set of command-line options."""
    from mlverify._internal.signing.trust import compile_trust

    return compile_trust(trust_from_options(key_uris, args))
