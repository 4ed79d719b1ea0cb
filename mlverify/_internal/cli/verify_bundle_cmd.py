"""`mlverify verify-bundle`: verify any Sigstore-signed file against its bundle, offline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlverify._internal.cli.options import text_or_json_option
from mlverify._internal.cli.trust_options import TrustArgs, identity_options, sigstore_identity
from mlverify._internal.errors import UsageError
from mlverify._internal.text import shown


@click.command("verify-bundle")
@click.argument("artifact", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--bundle",
    "bundle_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="B.sigstore.json",
    help="The Sigstore bundle (message signature or DSSE) for ARTIFACT.",
)
@click.option(
    "--key",
    "key_uri",
    metavar="PUBLIC_KEY",
    help="Managed key: the trusted public key (PEM), instead of --identity/--issuer.",
)
@identity_options
@text_or_json_option
def verify_bundle_command(
    artifact: Path,
    bundle_path: Path,
    key_uri: str | None,
    output_format: str,
    **identity_args: object,
) -> None:
    """Verify ARTIFACT against a Sigstore bundle, offline, with a pinned trusted root.

    Keyless bundles need --identity (or --identity-regex) and --issuer;
    managed-key bundles need --key. For DSSE bundles the in-toto statement's
    subject must carry ARTIFACT's SHA-256. Exit 0 verified, 1 verification
    failed, 2 usage error or a bundle this version cannot judge.
    """
    from mlverify._internal.signing.generic import verify_any_bundle

    args = TrustArgs.from_kwargs(identity_args)
    key = None
    identity = None
    if key_uri:
        from mlverify._internal.signing.methods import load_public_key

        if args.wants_identity or args.issuer:
            raise UsageError("pass either --key or --identity/--issuer, not both")
        key = load_public_key(key_uri)
    else:
        if not (args.wants_identity and args.issuer):
            raise UsageError("no trusted signer; pass --identity and --issuer, or --key PUBLIC.pem")
        identity = sigstore_identity(args)
    result = verify_any_bundle(
        artifact, bundle_path, identity=identity, key=key, trust_root=args.trust_root
    )
    if output_format == "json":
        doc = {
            "verified": True,
            "artifact": result.artifact,
            "bundle": result.bundle,
            "signer": result.signer,
            "content": result.content,
            "sha256": result.sha256,
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        click.echo(
            shown(
                f"verified: {artifact} (sha256 {result.sha256}, {result.content}, "
                f"signed by {result.signer})"
            )
        )
