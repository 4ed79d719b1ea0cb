"""`mlverify check` with a policy that trusts a Sigstore (keyless) identity, offline.

Bundles come from the test-only virtual Sigstore (own Fulcio, CT log and Rekor keys
and a matching trusted root), so the real sigstore-python verifier runs unmodified.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlverify._internal.attest.intoto import SLSA_PROVENANCE_V1, statement_json
from mlverify._internal.attest.provenance import BuildInfo, artifact_digest, provenance_predicate
from mlverify._internal.manifest.build import hash_model
from mlverify._internal.signing.statement import statement_bytes
from tests.core.helpers import make_model, run, safetensors
from tests.signing.virtual_sigstore import (
    OID_BUILD_CONFIG_URI,
    OID_SOURCE_REPOSITORY_REF,
    OID_SOURCE_REPOSITORY_URI,
    VirtualSigstore,
)

ISSUER = "https://token.actions.githubusercontent.com"
WORKFLOW = "https://github.com/acme/models/.github/workflows/release.yml@refs/tags/v1.2.0"
REPO = "https://github.com/acme/models"
CLAIMS = {
    OID_SOURCE_REPOSITORY_URI: REPO,
    OID_SOURCE_REPOSITORY_REF: "refs/tags/v1.2.0",
    OID_BUILD_CONFIG_URI: WORKFLOW,
}


@pytest.fixture(scope="module")
def vsig() -> VirtualSigstore:
    return VirtualSigstore()


def _policy(tmp: Path, root: Path, provenance: bool) -> Path:
    spec: dict[str, object] = {
        "signatures": {
            "required": True,
            "trusted": [
                {
                    "sigstore": {
                        "issuer": ISSUER,
                        "identity_regex": r"^https://github\.com/acme/models/\.github/workflows/"
                        r"release\.yml@refs/tags/v.*$",
                        "source_repo": "acme/models",
                        "trust_root": str(root),
                    }
                }
            ],
        },
        "formats": {"allow": ["safetensors"]},
    }
    if provenance:
        spec["attestations"] = {
            "provenance": {
                "required": True,
                "builder_ids": ["https://github.com/acme/models/.github/workflows/release.yml"],
                "source_ref": "semver:>=1.0.0",
            }
        }
    doc = {"apiVersion": "mlverify.dev/v1", "kind": "Policy", "metadata": {"name": "keyless"}}
    p = tmp / "keyless.yaml"
    p.write_text(yaml.safe_dump({**doc, "spec": spec}))
    return p


def _released_model(tmp: Path, vsig: VirtualSigstore, builder: str = WORKFLOW) -> Path:
    model = make_model(tmp)
    for name in ("weights.bin", "sub/deep/extra.bin"):
        (model / name).unlink()
    safetensors(model / "model.safetensors")
    manifest = hash_model(model, extra_excluded=[model / "model.sig"])
    (model / "model.sig").write_bytes(
        vsig.sign_dsse(statement_bytes(manifest), WORKFLOW, ISSUER, claims=CLAIMS)
    )
    subject = {"name": model.name, "digest": {"sha256": artifact_digest(model)}}
    info = BuildInfo(builder_id=builder, source_repo=REPO, source_ref="refs/tags/v1.2.0")
    payload = statement_json([subject], SLSA_PROVENANCE_V1, provenance_predicate(info))
    (tmp / "model.provenance.sigstore.json").write_bytes(
        vsig.sign_dsse(payload, WORKFLOW, ISSUER, claims=CLAIMS)
    )
    return model


def test_keyless_release_admitted(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    root = vsig.write_trusted_root(tmp_path / "trusted_root.json")
    model = _released_model(tmp_path, vsig)
    r = run(capsys, "check", "--no-cache", model, "--policy", _policy(tmp_path, root, True))
    assert r.code == 0, r.out + r.err
    assert f"signed by sigstore {WORKFLOW}" in r.out
    assert "provenance by sigstore" in r.out


def test_forged_builder_in_keyless_provenance_denied(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    root = vsig.write_trusted_root(tmp_path / "trusted_root.json")
    forged = "https://github.com/acme/models/.github/workflows/release.yml@refs/tags/v9"
    model = _released_model(tmp_path, vsig, builder=forged)
    r = run(capsys, "check", "--no-cache", model, "--policy", _policy(tmp_path, root, True))
    assert r.code == 1
    assert "missing evidence: verified SLSA provenance" in r.out and "forged builder" in r.out


def test_foreign_root_and_tampering_denied(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = VirtualSigstore(name="foreign").write_trusted_root(tmp_path / "foreign.json")
    model = _released_model(tmp_path, vsig)
    r = run(capsys, "check", "--no-cache", model, "--policy", _policy(tmp_path, foreign, False))
    assert r.code == 1 and "missing evidence" not in r.out
    assert "Sigstore" in r.out  # names the failed keyless verification
    root = vsig.write_trusted_root(tmp_path / "trusted_root.json")
    (model / "config.json").write_text('{"layers": 5}\n')
    r = run(capsys, "check", "--no-cache", model, "--policy", _policy(tmp_path, root, False))
    assert r.code == 1 and "changed: config.json" in r.out


def test_keyless_evidence_names_the_trusted_root(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    root = vsig.write_trusted_root(tmp_path / "trusted_root.json")
    model = _released_model(tmp_path, vsig)
    policy = _policy(tmp_path, root, False)
    r = run(capsys, "check", "--no-cache", model, "--policy", policy, "--format", "json")
    assert r.code == 0, r.out + r.err
    sig = json.loads(r.out)["results"][0]["evidence"]["signatures"][0]
    assert sig["method"] == "sigstore" and sig["anchor"] == f"Sigstore trusted root {root}"
