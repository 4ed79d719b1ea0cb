"""`mlverify hf upload`: check, sign, then publish a model to the Hugging Face Hub.

``HfApi.upload_folder`` has no pre-upload hook, so this wraps it: the model is
signed (optional), checked against the policy (a denied model is never uploaded),
and uploaded with ``parent_commit`` set to the revision's head read just before,
so a concurrent push makes the upload fail instead of being silently built upon.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from mlverify._internal.errors import InputError, UsageError


@click.group("hf")
def hf_group() -> None:
    """Models on the Hugging Face Hub (check them with `mlverify check hf://...`)."""


@hf_group.command("upload")
@click.argument("model", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo_id", metavar="ORG/NAME")
@click.option(
    "--policy",
    "policy_refs",
    multiple=True,
    metavar="FILE|DIR|builtin:NAME",
    help="Policy the model must pass [default: $MLVERIFY_POLICY, else builtin:default].",
)
@click.option("--key", "key_uri", metavar="KEY", help="Sign with this private key first.")
@click.option("--sigstore", "use_sigstore", is_flag=True, help="Sign keyless first.")
@click.option("--revision", default="main", show_default=True, help="Branch to commit to.")
@click.option("--message", default=None, help="Commit message.")
def upload_command(
    model: Path,
    repo_id: str,
    policy_refs: tuple[str, ...],
    key_uri: str | None,
    use_sigstore: bool,
    revision: str,
    message: str | None,
) -> None:
    """Sign (with --key or --sigstore), check MODEL against the policy, and upload it to
    ORG/NAME on the Hub with parent_commit. Needs network and huggingface_hub; the
    token comes from huggingface_hub (HF_TOKEN or `hf auth login`).

    Prints the pinned reference hf://ORG/NAME@COMMIT. Exit 1 if the policy denies
    the model (nothing is uploaded).
    """
    from mlverify._internal.policy.model import load_policies
    from mlverify._internal.report import RenderOptions, ReportFormat, reporter

    if "/" not in repo_id or repo_id.count("/") != 1:
        raise UsageError(f"{repo_id}: expected ORG/NAME")
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise UsageError(
            "mlverify hf upload needs huggingface_hub: pip install huggingface_hub"
        ) from None
    from mlverify._internal.api import check, load_signer, sign

    if key_uri and use_sigstore:
        raise UsageError("--key and --sigstore are two ways to sign: choose one")
    if key_uri or use_sigstore:
        from mlverify._internal.cli.secrets import password_source

        signer = load_signer(
            "sigstore:" if use_sigstore else str(key_uri),
            password=password_source("MLVERIFY_KEY_PASSWORD"),
        )
        click.echo(f"signed: {sign(model, signer)}", err=True)
    refs = list(policy_refs) or [os.environ.get("MLVERIFY_POLICY") or "builtin:default"]
    # the signature just written is found where check looks (model.sig), as any reader's
    result = check(model, policy=load_policies(refs))
    click.echo(reporter(ReportFormat.TEXT).check([result], RenderOptions()), nl=False, err=True)
    if not result.allowed:
        click.echo(f"mlverify hf upload: {model} denied by the policy; nothing uploaded", err=True)
        raise SystemExit(1)
    api = HfApi()
    try:
        parent = api.repo_info(repo_id, revision=revision).sha
        info = api.upload_folder(
            folder_path=str(model),
            repo_id=repo_id,
            revision=revision,
            commit_message=message or f"Upload {model.name} (checked and signed by mlverify)",
            parent_commit=parent,
        )
    except Exception as e:  # huggingface_hub raises many kinds: one line each
        raise InputError(f"{repo_id}: upload failed ({type(e).__name__}: {e})") from None
    commit = getattr(info, "oid", "") or ""
    click.echo(f"hf://{repo_id}@{commit}" if commit else f"hf://{repo_id}")
    click.echo(f"mlverify hf upload: uploaded {model} to {repo_id} ({revision})", err=True)
