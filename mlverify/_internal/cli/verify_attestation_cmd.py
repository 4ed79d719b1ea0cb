"""`mlverify verify-attestation`: check a signed in-toto statement about an artifact."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from mlverify._internal.cli.options import parse_key_values, text_or_json_option
from mlverify._internal.cli.trust_options import (
    TrustArgs,
    build_trust_set,
    cli_remedies,
    trust_options,
)
from mlverify._internal.errors import SignatureNotFoundError
from mlverify._internal.text import shown


@click.command("verify-attestation")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--attestation",
    "attestations",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Attestation file (Sigstore bundle, DSSE envelope or .intoto.jsonl); repeatable "
    "[default: found by convention next to PATH].",
)
@click.option(
    "--type",
    "predicate_type",
    default="slsa",
    show_default=True,
    metavar="slsa|oms|vulns|URI",
    help="Required predicate type.",
)
@click.option("--key", "key_uris", multiple=True, metavar="PUBLIC_KEY", help="Trusted key.")
@trust_options
@click.option(
    "--builder-id",
    "builder_ids",
    multiple=True,
    metavar="ID",
    help="Allowed builder: exact, ID without @version (any version), or PREFIX*; repeatable.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="K=V",
    help="Required external parameter value; repeatable.",
)
@click.option(
    "--reject-unknown-params",
    is_flag=True,
    help="Fail when the provenance has external parameters not named by --param.",
)
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    metavar="PATH_OR_URI@sha256:HEX",
    help="Required training dataset; a local path is hashed now; repeatable.",
)
@click.option(
    "--base-model",
    "base_models",
    multiple=True,
    metavar="PATH_OR_URI@sha256:HEX",
    help="Required base model; a local path is hashed now; repeatable.",
)
@text_or_json_option
def verify_attestation_command(
    path: Path,
    attestations: tuple[Path, ...],
    predicate_type: str,
    key_uris: tuple[str, ...],
    builder_ids: tuple[str, ...],
    params: tuple[str, ...],
    reject_unknown_params: bool,
    datasets: tuple[str, ...],
    base_models: tuple[str, ...],
    output_format: str,
    **trust_kwargs: object,
) -> None:
    """Verify attestations about the artifact at PATH (file or directory).

    In order: the signature is valid and by a trusted signer; the subject digest
    is PATH's digest recomputed now; the predicate type is the one required; for
    SLSA provenance, builder, source repository, ref (exact, glob, or
    semver:>=1.2,<2 over tags), parameters and datasets. --source-repo and
    --source-ref check the provenance, and, for Sigstore signers (--issuer),
    the certificate's claims too: a field the certificate does not vouch for
    proves nothing.
    """
    from mlverify._internal.attest.intoto import (
        discover_attestations,
        read_attestations,
        resolve_predicate_type,
    )
    from mlverify._internal.attest.provenance import ProvenanceRequirements, dependency_from_arg
    from mlverify._internal.attest.verify import artifact_digests, as_bundle, verify_attestation
    from mlverify._internal.signing.bundle import SignatureBundle
    from mlverify._internal.signing.oms import VerifiedStatement
    from mlverify._internal.signing.trustset import verify_bundle

    trust_args = TrustArgs.from_kwargs(trust_kwargs)
    source_repo, source_ref = trust_args.source_repo, trust_args.source_ref
    if not trust_args.issuer:  # keys and certificates vouch for no source: check the statement
        trust_args = dataclasses.replace(trust_args, source_repo=None, source_ref=None)
    trust = build_trust_set(key_uris, trust_args)

    parameters = parse_key_values(params)
    requirements = ProvenanceRequirements(
        builder_ids=builder_ids,
        source_repo=source_repo,
        source_ref=source_ref,
        parameters=parameters,
        reject_unknown_parameters=reject_unknown_params,
        datasets=[dependency_from_arg("dataset", d) for d in datasets],
        base_models=[dependency_from_arg("base-model", b) for b in base_models],
    )
    files = list(attestations) or list(discover_attestations(path))
    if not files:
        raise SignatureNotFoundError(
            f"{path}: no attestation found (looked for attestations/, *.sigstore.json, "
            "*.intoto.jsonl, model.sig beside and inside it); pass --attestation FILE"
        )
    wanted = resolve_predicate_type(predicate_type)
    import functools

    digests = functools.cache(lambda: artifact_digests(path))  # not for OMS manifests

    def check(bundle: SignatureBundle) -> VerifiedStatement:
        with cli_remedies():
            return verify_bundle(bundle, trust)[0]

    from mlverify._internal.attest.intoto import parse_statement
    from mlverify._internal.errors import MlverifyError, VerificationError

    results = []
    failures: list[str] = []
    for f in files:
        for item in read_attestations(f, artifact=path):
            bundle = as_bundle(item, str(f))
            if not attestations:
                # Found by convention: only statements of the wanted type are considered.
                try:
                    if (
                        parse_statement(bundle.envelope.payload, where=str(f)).predicate_type
                        != wanted
                    ):
                        continue
                except MlverifyError:
                    pass  # a malformed one is reported by the full check below
            try:
                results.append(
                    verify_attestation(
                        path,
                        bundle,
                        check,
                        predicate_type=wanted,
                        requirements=requirements,
                        digests=digests,
                    )
                )
            except MlverifyError as e:
                failures.append(str(e))
    if failures:
        raise VerificationError(" | ".join(failures))
    if not results:
        raise SignatureNotFoundError(
            f"{path}: no {wanted} attestation among {', '.join(map(str, files))}; "
            "pass --attestation FILE"
        )
    if output_format == "json":
        doc = [
            {
                "source": r.source,
                "signer": r.signer,
                "method": r.method,
                "predicateType": r.statement.predicate_type,
                "predicate": r.statement.predicate,
                "unvouched": list(r.unvouched),
            }
            for r in results
        ]
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        for r in results:
            what = r.statement.predicate_type
            if r.provenance:
                what = f"SLSA provenance, builder {r.provenance.builder_id}"
            click.echo(shown(f"verified: {path}: {what} ({r.source}, signed by {r.signer})"))
            for note in r.unvouched:
                click.echo(shown(f"  note: not vouched for by the certificate: {note}"))
