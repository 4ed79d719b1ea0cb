"""`mlverify attest ...`: write signed in-toto attestations about models and datasets."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from mlverify._internal.cli import ui
from mlverify._internal.cli.options import parse_key_values, sigstore_signing_options
from mlverify._internal.cli.output import write_atomically
from mlverify._internal.cli.secrets import password_source
from mlverify._internal.errors import UsageError


def default_attestation_path(artifact: Path, kind: str) -> Path:
    """``<name>.<kind>.sigstore.json`` beside the artifact (never inside a model)."""
    return artifact.parent / f"{artifact.resolve().name}.{kind}.sigstore.json"


F = TypeVar("F", bound=Callable[..., Any])


def _signer_options(body: F) -> F:
    """The signer options, handed to the command as one ``signer: SignerChoice``."""

    @functools.wraps(body)
    def command(
        *args: Any,
        key_uri: str | None,
        password_env: str,
        use_sigstore: bool,
        identity_token: str | None,
        staging: bool,
        **kwargs: Any,
    ) -> Any:
        signer = SignerChoice(key_uri, password_env, use_sigstore, identity_token, staging)
        return body(*args, signer=signer, **kwargs)

    f = sigstore_signing_options(command)
    f = click.option(
        "--password-env",
        default="MLVERIFY_KEY_PASSWORD",
        show_default=True,
        metavar="VAR",
        help="Environment variable holding the password of an encrypted key.",
    )(f)
    f = click.option(
        "--key",
        "key_uri",
        metavar="KEY",
        help="Private key (PEM file or file:PATH) that signs the attestation.",
    )(f)
    f = click.option(
        "--output",
        "output",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Where to write the attestation [default: beside the artifact, "
        "<name>.<kind>.sigstore.json].",
    )(f)
    return f  # type: ignore[return-value]


@dataclass(frozen=True)
class SignerChoice:
    """How the attestation is signed: a key, or Sigstore keyless."""

    key_uri: str | None
    password_env: str
    use_sigstore: bool
    identity_token: str | None
    staging: bool

    def prepare(self) -> Callable[[bytes], bytes]:
        """Check the choice and get ready (Sigstore: network first, before any hashing)."""
        if self.use_sigstore and self.key_uri:
            raise UsageError("--sigstore signs keyless: drop --key")
        if not self.use_sigstore and (self.identity_token or self.staging):
            raise UsageError("--identity-token and --staging apply to --sigstore only")
        if not (self.key_uri or self.use_sigstore):
            raise UsageError("no signer given; pass --key PRIVATE.pem or --sigstore")
        from mlverify._internal.signing.methods import SignerOptions, load_signer

        uri = self.key_uri or ("sigstore:staging" if self.staging else "sigstore:")
        options = SignerOptions(
            password=password_source(self.password_env), identity_token=self.identity_token
        )
        return load_signer(uri, options).sign_statement


def _write(out: Path, data: bytes) -> None:
    write_atomically(out, data)
    ui.note(f"wrote {out}")


@click.group("attest")
def attest_group() -> None:
    """Write signed in-toto attestations (provenance, dataset manifests)."""


@attest_group.command("provenance")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@click.option("--builder-id", metavar="URI", help="Who ran the training (a URI).")
@click.option("--source-repo", metavar="URI", help="Source repository of the training code.")
@click.option("--source-ref", metavar="REF", help="Source ref, e.g. refs/tags/v1.0.")
@click.option("--source-commit", metavar="SHA", help="Source commit (git SHA).")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    metavar="PATH_OR_URI",
    help="Training dataset: a local file or directory (hashed now) or URI@sha256:HEX; repeatable.",
)
@click.option(
    "--base-model",
    "base_models",
    multiple=True,
    metavar="PATH_OR_URI",
    help="Base model fine-tuned from: a local path (hashed now) or URI@sha256:HEX; repeatable.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="K=V",
    help="External parameter of the training run (e.g. epochs=3); repeatable.",
)
@_signer_options
def provenance_command(
    path: Path,
    builder_id: str | None,
    source_repo: str | None,
    source_ref: str | None,
    source_commit: str | None,
    datasets: tuple[str, ...],
    base_models: tuple[str, ...],
    params: tuple[str, ...],
    output: Path | None,
    signer: SignerChoice,
) -> None:
    """Write SLSA Provenance v1 for the model at PATH, signed (DSSE, Sigstore bundle).

    The subject is the model's digest: its OMS root digest for a directory, the
    SHA-256 of its bytes for a single file. In GitHub Actions the builder id,
    source repository, ref, commit and run id default from the environment.
    """
    from mlverify._internal.attest.intoto import SLSA_PROVENANCE_V1, statement_json
    from mlverify._internal.attest.provenance import (
        BuildInfo,
        artifact_digest,
        dependency_from_arg,
        github_defaults,
        provenance_predicate,
    )

    sign = signer.prepare()
    defaults = github_defaults()
    builder_id = builder_id or defaults.get("builder_id")
    source_repo = source_repo or defaults.get("source_repo")
    source_ref = source_ref or defaults.get("source_ref")
    missing = [
        name
        for name, value in (
            ("--builder-id", builder_id),
            ("--source-repo", source_repo),
            ("--source-ref", source_ref),
        )
        if not value
    ]
    if missing:
        raise UsageError(
            f"provenance needs {', '.join(missing)} (defaults come from GitHub Actions only)"
        )
    parameters = parse_key_values(params)
    deps = [dependency_from_arg("dataset", d) for d in datasets]
    deps += [dependency_from_arg("base-model", b) for b in base_models]
    info = BuildInfo(
        builder_id=str(builder_id),
        source_repo=str(source_repo),
        source_ref=str(source_ref),
        source_commit=source_commit or defaults.get("source_commit"),
        invocation_id=defaults.get("invocation_id"),
        parameters=parameters,
        dependencies=deps,
    )
    subject = {"name": path.resolve().name, "digest": {"sha256": artifact_digest(path)}}
    payload = statement_json([subject], SLSA_PROVENANCE_V1, provenance_predicate(info))
    _write(output or default_attestation_path(path, "provenance"), sign(payload))


@attest_group.command("dataset")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@_signer_options
def dataset_command(
    path: Path,
    output: Path | None,
    signer: SignerChoice,
) -> None:
    """Sign the dataset at PATH (file or directory) as an OMS manifest.

    A curator's signature over the exact bytes: a policy can then require that a
    model's training data was itself signed by a trusted curator.
    """
    from mlverify._internal.manifest.build import hash_model
    from mlverify._internal.signing.statement import statement_bytes

    sign = signer.prepare()
    out = output or default_attestation_path(path, "dataset")
    manifest = hash_model(path, extra_excluded=[out])
    _write(out, sign(statement_bytes(manifest)))


@attest_group.command("scan")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@_signer_options
def scan_command(
    path: Path,
    output: Path | None,
    signer: SignerChoice,
) -> None:
    """Scan the artifact at PATH and sign the findings as an in-toto vulns/v0.2 statement.

    A registry can then trust a scan made in CI (by a signer it trusts) without
    scanning again; the subject binds the findings to these exact bytes.
    """
    import datetime as dt

    from mlverify._internal.artifact import walk_model
    from mlverify._internal.attest.intoto import VULNS_V02, statement_json
    from mlverify._internal.attest.provenance import artifact_digest
    from mlverify._internal.scan.engine import scan_file
    from mlverify._internal.scan.policy import data_version
    from mlverify._internal.version import __version__

    sign = signer.prepare()
    out = output or default_attestation_path(path, "scan")
    started = dt.datetime.now(dt.timezone.utc)
    tree = walk_model(path, extra_excluded=[out])
    results = []
    for f in tree.files:
        report = scan_file(f.path, display=f.name)
        for x in report.findings:
            results.append(
                {
                    "id": x.rule_id,
                    "severity": [{"method": "mlverify", "score": x.severity.label}],
                    "annotations": [
                        {
                            "file": x.path,
                            "member": x.member,
                            "offset": x.offset,
                            "subject": x.subject,
                            "message": x.message,
                            "chain": x.chain,
                        }
                    ],
                }
            )
    finished = dt.datetime.now(dt.timezone.utc)
    predicate = {
        "scanner": {
            "uri": "https://github.com/mlverify/mlverify",
            "version": __version__,
            "db": {
                "uri": "mlverify:scan/allowlist",
                "version": data_version(),
            },
            "result": results,
        },
        "metadata": {
            "scanStartedOn": started.isoformat(timespec="seconds"),
            "scanFinishedOn": finished.isoformat(timespec="seconds"),
        },
    }
    subject = {"name": path.resolve().name, "digest": {"sha256": artifact_digest(path)}}
    _write(out, sign(statement_json([subject], VULNS_V02, predicate)))
    ui.note(f"{len(results)} finding(s) recorded")
