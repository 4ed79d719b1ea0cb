"""`mlverify oci push`: publish a model to an OCI registry with its signature attached."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("oci")
def oci_group() -> None:
    """Models in OCI registries (pull with `mlverify check oci://...`)."""


@oci_group.command("push")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.argument("ref", metavar="oci://HOST/REPO:TAG")
@click.option(
    "--signature",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="OMS signature to attach [default: model.sig in the directory, MODEL.sig beside "
    "a file, when present].",
)
@click.option(
    "--attestation",
    "attestations",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Signed attestation (e.g. from `mlverify attest provenance`) to attach; repeatable.",
)
@click.option(
    "--plain-http", is_flag=True, help="Talk HTTP, not HTTPS (loopback registries always do)."
)
def push_command(
    model: Path,
    ref: str,
    signature: Path | None,
    attestations: tuple[Path, ...],
    plain_http: bool,
) -> None:
    """Push MODEL (one ModelPack layer per file) to REF and attach its signature.

    The signature and attestations are attached as referrers (OCI manifests whose
    subject is the model), listed under the tag sha256-<hex> for registries without
    the referrers API; `check oci://...` finds them.
    Prints the manifest digest: pin it (REF@sha256:...) where the model is used.
    """
    import dataclasses

    from mlverify._internal.check import signature_candidates
    from mlverify._internal.sources import SourceSettings
    from mlverify._internal.sources.oci import parse_ref, push

    if signature is None:
        found = signature_candidates(model)
        signature = found[0] if found else None
    settings = SourceSettings.from_environment().oci
    if plain_http:
        settings = dataclasses.replace(settings, plain_http=True)
    digest, sig = push(model, ref, settings, signature=signature, attestations=attestations)
    r = parse_ref(ref)
    click.echo(f"oci://{r.host}/{r.repository}@{digest}")
    click.echo(
        f"mlverify oci push: pushed {ref} ({digest})"
        + (f", signature attached ({sig})" if sig else ", no signature attached")
        + (f", {len(attestations)} attestation(s) attached" if attestations else ""),
        err=True,
    )
