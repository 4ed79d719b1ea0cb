"""Keyless provenance: the certificate must vouch for the builder and source it claims."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlverify._internal.attest.intoto import SLSA_PROVENANCE_V1, statement_json
from mlverify._internal.attest.provenance import BuildInfo, provenance_predicate
from tests.core.helpers import make_model, run
from tests.signing.virtual_sigstore import (
    OID_BUILD_CONFIG_URI,
    OID_SOURCE_REPOSITORY_REF,
    OID_SOURCE_REPOSITORY_URI,
    VirtualSigstore,
)

ISSUER = "https://token.actions.githubusercontent.com"
WORKFLOW = "https://github.com/acme/train/.github/workflows/train.yml@refs/tags/v1.0.0"
REPO = "https://github.com/acme/train"


@pytest.fixture(scope="module")
def vsig() -> VirtualSigstore:
    return VirtualSigstore()


def _keyless_provenance(
    tmp_path: Path, vsig: VirtualSigstore, builder_id: str, source_repo: str = REPO
) -> tuple[Path, Path, Path]:
    model = make_model(tmp_path)
    from mlverify._internal.attest.provenance import artifact_digest

    subject = {"name": "model", "digest": {"sha256": artifact_digest(model)}}
    info = BuildInfo(builder_id=builder_id, source_repo=source_repo, source_ref="refs/tags/v1.0.0")
    payload = statement_json([subject], SLSA_PROVENANCE_V1, provenance_predicate(info))
    bundle = vsig.sign_dsse(
        payload,
        WORKFLOW,
        ISSUER,
        claims={
            OID_SOURCE_REPOSITORY_URI: REPO,
            OID_SOURCE_REPOSITORY_REF: "refs/tags/v1.0.0",
            OID_BUILD_CONFIG_URI: WORKFLOW,
        },
    )
    att = tmp_path / "model.provenance.sigstore.json"
    att.write_bytes(bundle)
    root = vsig.write_trusted_root(tmp_path / "trusted_root.json")
    return model, att, root


def _verify(capsys: pytest.CaptureFixture[str], model: Path, root: Path, *extra: object):  # type: ignore[no-untyped-def]
    return run(
        capsys,
        "verify-attestation",
        model,
        "--identity",
        WORKFLOW,
        "--issuer",
        ISSUER,
        "--trust-root",
        root,
        *extra,
    )


def test_keyless_provenance_from_the_certified_workflow_passes(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _, root = _keyless_provenance(tmp_path, vsig, WORKFLOW)
    r = _verify(
        capsys,
        model,
        root,
        "--builder-id",
        "https://github.com/acme/train/.github/workflows/train.yml",
        "--source-repo",
        "acme/train",
        "--source-ref",
        "refs/tags/v1.0.0",
    )
    assert r.code == 0, r.err
    assert "note:" not in r.out


def test_forged_builder_is_rejected(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    """The workflow's certificate signs a statement naming a trusted builder it is not."""
    forged = "https://github.com/acme/trusted-builder/.github/workflows/build.yml@refs/tags/v2"
    model, _, root = _keyless_provenance(tmp_path, vsig, forged)
    r = _verify(capsys, model, root, "--builder-id", forged)
    assert r.code == 1
    assert "forged builder" in r.err and WORKFLOW in r.err
    # Unconstrained, it still verifies, but the output says what is not vouched for.
    r = _verify(capsys, model, root)
    assert r.code == 0 and "not vouched for by the certificate" in r.out


def test_forged_source_repository_is_rejected(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _, root = _keyless_provenance(
        tmp_path, vsig, WORKFLOW, source_repo="https://github.com/acme/other"
    )
    r = _verify(capsys, model, root, "--source-repo", "acme/other")
    assert r.code == 1
    assert "is not the certificate's" in r.err or "source" in r.err


def test_real_staging_dsse_provenance_verifies(
    shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = shared / "vectors"
    artifact = base / "sigstore-conformance-bundle-verify" / "a.txt"
    bundle = base / "sigstore-python" / "a.dsse.staging-rekor-v2.txt.sigstore.json"
    identity = (
        "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
        ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
    )
    args = ["verify-attestation", artifact, "--attestation", bundle, "--identity", identity]
    args += ["--issuer", ISSUER]
    r = run(capsys, *args, "--trust-root", base / "staging_trusted_root.json")
    assert r.code == 0, r.err
    assert "SLSA provenance" in r.out
    statement = json.loads(
        __import__("base64").b64decode(json.loads(bundle.read_text())["dsseEnvelope"]["payload"])
    )
    assert (
        statement["subject"][0]["digest"]["sha256"]
        == hashlib.sha256(artifact.read_bytes()).hexdigest()
    )
    # Against the production root it is refused: another Sigstore instance signed it.
    r = run(capsys, *args)
    assert r.code == 1


def test_attest_with_sigstore_offline_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    r = run(
        capsys, "attest", "provenance", model, "--sigstore", "--identity-token", "not-a-jwt",
        "--builder-id", "b", "--source-repo", "r/s", "--source-ref", "refs/heads/main",
    )  # fmt: skip
    assert r.code == 2
    assert r.err.startswith("mlverify: error: ") and r.err.count("\n") == 1
    assert not (tmp_path / "model.provenance.sigstore.json").exists()
