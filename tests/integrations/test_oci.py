"""``oci://`` references and ``mlverify oci push`` against the real CNCF distribution
registry (Debian docker-registry) on loopback; models also pushed with oras-py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlverify._internal.sources.oci import parse_ref
from tests.core.helpers import run, write_key_pair
from tests.integrations.conftest import (
    Registry as RegistryProc,
)
from tests.integrations.conftest import (
    make_clean_model,
    make_evil_model,
    write_key_policy,
)
from tests.integrations.conftest import oci_registry as Registry


def oras_push(registry: RegistryProc, model: Path, target: str) -> str:
    """Push ``model`` with oras-py; the manifest digest the registry answered."""
    oras_client = pytest.importorskip("oras.client")
    client = oras_client.OrasClient(hostname=registry.host, insecure=True)
    cwd = os.getcwd()
    os.chdir(model)  # oras-py names layers after the paths given
    try:
        files = sorted(p.name for p in model.iterdir())
        resp = client.push(files=files, target=f"{registry.host}/{target}")
    finally:
        os.chdir(cwd)
    assert resp.status_code in (200, 201)
    return str(resp.headers.get("Docker-Content-Digest", ""))


@pytest.fixture(scope="module")
def pushed(registry: RegistryProc, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A signed model (pushed by the tests that need it), a clean unsigned and a
    malicious one pushed by oras-py."""
    import subprocess
    import sys

    d = tmp_path_factory.mktemp("oci")
    keys = d / "keys"
    keys.mkdir()
    priv, pub = write_key_pair(keys)
    signed = make_clean_model(d, "signed")
    subprocess.run(
        [sys.executable, "-m", "mlverify", "sign", str(signed), "--key", str(priv)],
        check=True,
        capture_output=True,
    )
    oras_push(registry, make_clean_model(d, "clean"), "models/clean:v1")
    oras_push(registry, make_evil_model(d), "models/evil:v1")
    return {"dir": d, "pub": pub, "signed": signed, "policy": write_key_policy(d, pub)}


def test_push_and_check_signed(
    registry: RegistryProc, pushed: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    ref = f"oci://{registry.host}/models/signed:v1"
    r = run(capsys, "oci", "push", pushed["signed"], ref)
    assert r.code == 0, r.err
    pinned = r.out.strip()
    assert pinned.startswith(f"oci://{registry.host}/models/signed@sha256:")
    assert "signature attached" in r.err
    # the signature is attached by the tag fallback (distribution 2.8 has no referrers API)
    digest = pinned.split("@", 1)[1]
    reg = Registry(registry.host)
    (att,) = reg.referrers("models/signed", digest)
    assert att["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    # by tag: resolved to the digest and reported
    r = run(capsys, "check", "--no-cache", "--policy", pushed["policy"], "--format", "json", ref)
    assert r.code == 0, r.out + r.err
    (res,) = json.loads(r.out)["results"]
    assert res["artifact"] == f"{ref}@{digest}"
    assert res["evidence"]["reference"]["manifest_digest"] == digest
    assert res["evidence"]["reference"]["pinned"] is False
    assert [s["status"] for s in res["evidence"]["signatures"]] == ["verified"]
    # pinned by digest
    r = run(capsys, "check", "--no-cache", "--policy", pushed["policy"], pinned)
    assert r.code == 0 and "signed by key" in r.out


def test_oras_pushed_models(
    registry: RegistryProc, pushed: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(capsys, "check", "--no-cache", f"oci://{registry.host}/models/clean:v1")
    assert r.code == 0, r.out + r.err
    r = run(capsys, "check", "--no-cache", f"oci://{registry.host}/models/evil:v1")
    assert r.code == 1 and "os.system" in r.out
    # unsigned, so a policy requiring a signature denies even the clean one
    r = run(
        capsys, "check", "--no-cache", "--policy", pushed["policy"],
        f"oci://{registry.host}/models/clean:v1",
    )  # fmt: skip
    assert r.code == 1
    r = run(capsys, "scan", "--format", "json", f"oci://{registry.host}/models/evil:v1")
    assert r.code == 1 and f"oci://{registry.host}/models/evil:v1/model.pkl" in r.out


def test_tampered_layer_is_refused(
    registry: RegistryProc, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_clean_model(tmp_path, "victim")
    (model / "weights.bin").write_bytes(os.urandom(4096))  # a blob no other test shares
    oras_push(registry, model, "models/victim:v1")
    reg = Registry(registry.host)
    data, _, _ = reg.get_manifest("models/victim", "v1")
    layer = next(
        x for x in json.loads(data)["layers"]
        if x["annotations"]["org.opencontainers.image.title"] == "weights.bin"
    )  # fmt: skip
    blob = registry.blob_file(layer["digest"])
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x01")  # same size, other bytes
    r = run(capsys, "check", "--no-cache", f"oci://{registry.host}/models/victim:v1")
    assert r.code == 1 and "does not match its digest" in r.err


def test_errors(registry: RegistryProc, capsys: pytest.CaptureFixture[str]) -> None:
    r = run(capsys, "check", "--no-cache", f"oci://{registry.host}/models/absent:v1")
    assert r.code == 2 and "HTTP 404" in r.err and "MANIFEST_UNKNOWN" in r.err
    r = run(capsys, "check", "--no-cache", f"oci://{registry.host}/models/clean@sha256:{'0' * 64}")
    assert r.code == 2
    r = run(capsys, "check", "--no-cache", "oci://127.0.0.1:9/x:v1")
    assert r.code == 2 and "unreachable" in r.err
    r = run(capsys, "check", "oci://Bad Host/x")
    assert r.code == 2 and "expected oci://" in r.err
    assert parse_ref("oci://h:5000/a/b:t@sha256:" + "a" * 64).digest.endswith("a" * 64)


def test_verify_by_reference(
    registry: RegistryProc, pushed: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """`verify` takes the same references: the attached signature is found."""
    ref = f"oci://{registry.host}/models/signed-v:v1"
    assert run(capsys, "oci", "push", pushed["signed"], ref).code == 0
    r = run(capsys, "verify", ref, "--key", pushed["pub"])
    assert r.code == 0 and r.out.startswith("verified:"), r.err
    _, other_pub = write_key_pair(pushed["dir"], "ed25519")  # type: ignore[arg-type]
    r = run(capsys, "verify", ref, "--key", other_pub)
    assert r.code == 1


def test_provenance_attached_and_required(
    registry: RegistryProc,
    pushed: dict[str, object],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Signature and SLSA provenance both attached; a policy requiring provenance from
    one builder admits it, and denies the same model pushed without provenance."""
    signed = pushed["signed"]
    keys = Path(str(pushed["pub"])).parent
    prov = tmp_path / "provenance.sigstore.json"
    r = run(
        capsys, "attest", "provenance", signed, "--key", keys / "p256.key",
        "--builder-id", "https://ci.example.com/training/nightly",
        "--source-repo", "https://github.com/acme/models", "--source-ref", "refs/tags/v1.0.0",
        "--source-commit", "0" * 40, "--output", prov,
    )  # fmt: skip
    assert r.code == 0, r.err
    policy = tmp_path / "prov.yaml"
    policy.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: prov\nspec:\n"
        f"  signatures:\n    required: true\n    trusted:\n      - key: {pushed['pub']}\n"
        "  attestations:\n    provenance:\n      required: true\n"
        '      builder_ids: ["https://ci.example.com/training/*"]\n'
    )
    with_prov = f"oci://{registry.host}/models/with-prov:v1"
    r = run(capsys, "oci", "push", signed, with_prov, "--attestation", prov)
    assert r.code == 0 and "1 attestation(s) attached" in r.err, r.err
    digest = r.out.strip().split("@", 1)[1]
    assert len(Registry(registry.host).referrers("models/with-prov", digest)) == 2
    r = run(capsys, "check", "--no-cache", "--policy", policy, "--format", "json", with_prov)
    assert r.code == 0, r.out + r.err
    (res,) = json.loads(r.out)["results"]
    assert [a["predicate_type"] for a in res["evidence"]["attestations"]] == [
        "https://slsa.dev/provenance/v1"
    ]
    without = f"oci://{registry.host}/models/without-prov:v1"
    assert run(capsys, "oci", "push", signed, without).code == 0
    r = run(capsys, "check", "--no-cache", "--policy", policy, without)
    assert r.code == 1 and "provenance" in r.out
