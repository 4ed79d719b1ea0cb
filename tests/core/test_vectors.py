"""Public vectors: model-transparency golden key signatures, OMS spec vectors and schemas."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.core.helpers import make_model, run, write_key_pair

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

# (folder, path to verify inside it, extra args) for each golden key signature.
GOLDEN_KEY = [
    ("v0.3.1-elliptic-key", "signme-1", []),
    ("v1.0.0-elliptic-key", "signme-1", []),
    ("v1.0.1-elliptic-key", ".", ["--ignore", "ignore-me"]),
    ("v1.1.0-elliptic-key", ".", []),
]


@pytest.mark.parametrize(("folder", "target", "extra"), GOLDEN_KEY)
def test_golden_key_signatures_verify(
    shared: Path, capsys: pytest.CaptureFixture[str], folder: str, target: str, extra: list[str]
) -> None:
    base = shared / "vectors" / "model-transparency"
    model = base / folder / target if target != "." else base / folder
    public = base / "keys" / "certificate" / "signing-key-pub.pem"
    r = run(
        capsys, "verify", model, "--signature", base / folder / "model.sig", "--key", public, *extra
    )
    assert r.code == 0, r.err


def test_golden_signature_without_its_ignore_reports_the_unsigned_file(
    shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = shared / "vectors" / "model-transparency"
    r = run(
        capsys,
        "verify",
        base / "v1.0.1-elliptic-key",
        "--key",
        base / "keys" / "certificate" / "signing-key-pub.pem",
    )
    assert r.code == 1 and "extra (unsigned): ignore-me" in r.err


def test_oms_valid_key_vector(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = shared / "vectors"
    bundle = base / "oms-spec" / "test-vectors" / "v1.0" / "valid" / "key.bundle.json"
    model = base / "model-transparency" / "v1.1.0-elliptic-key"
    public = base / "model-transparency" / "keys" / "certificate" / "signing-key-pub.pem"
    r = run(capsys, "verify", model, "--signature", bundle, "--key", public)
    assert r.code == 0, r.err


INVALID = {
    "invalid/empty.bundle.json": "signature file is empty",
    "invalid/missing-envelope.bundle.json": "no 'dsseEnvelope'",
    "invalid/missing-tlog-entries.bundle.json": "without 'tlogEntries'",
    "invalid/missing-verification-material.bundle.json": "no 'verificationMaterial'",
    "invalid-payload/wrong-predicate.bundle.json": "predicateType is 'https://example.com/wrong-predicate/v1.0'",
}


def test_every_invalid_vector_is_listed(shared: Path) -> None:
    root = shared / "vectors" / "oms-spec" / "test-vectors" / "v1.0"
    found = {str(p.relative_to(root)) for p in root.glob("invalid*/*.json")}
    assert found == set(INVALID)


@pytest.mark.parametrize(("vector", "reason"), sorted(INVALID.items()))
def test_oms_invalid_vectors_rejected_with_their_defect(
    shared: Path, capsys: pytest.CaptureFixture[str], vector: str, reason: str
) -> None:
    base = shared / "vectors"
    bundle = base / "oms-spec" / "test-vectors" / "v1.0" / vector
    model = base / "model-transparency" / "v1.1.0-elliptic-key"
    public = base / "model-transparency" / "keys" / "certificate" / "signing-key-pub.pem"
    r = run(capsys, "verify", model, "--signature", bundle, "--key", public)
    assert r.code == 2, r.err
    assert reason in r.err


def _validators(shared: Path) -> dict[str, jsonschema.Draft202012Validator]:
    schema_dir = shared / "vectors" / "oms-spec" / "schemas" / "v1.0"
    schemas = {p.stem.split(".")[0]: json.loads(p.read_text()) for p in schema_dir.glob("*.json")}
    registry = referencing.Registry().with_resources(
        (s["$id"], referencing.Resource.from_contents(s)) for s in schemas.values()
    )
    return {
        name: jsonschema.Draft202012Validator(schema, registry=registry)
        for name, schema in schemas.items()
    }


@pytest.mark.parametrize("mode", ["files", "shards"])
@pytest.mark.parametrize("hash_type", ["sha256", "blake2b", "blake3"])
def test_our_bundles_validate_against_oms_schemas(
    shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str, hash_type: str
) -> None:
    validators = _validators(shared)
    model = make_model(tmp_path)
    private, _ = write_key_pair(tmp_path, "p256")
    r = run(capsys, "sign", model, "--key", private, "--mode", mode, "--hash", hash_type)
    assert r.code == 0, r.err
    bundle = json.loads((model / "model.sig").read_text())
    validators["bundle"].validate(bundle)
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    validators["statement"].validate(statement)
    validators["predicate"].validate(statement["predicate"])


def test_schemas_reject_reference_tool_shards(shared: Path, tmp_path: Path) -> None:
    """Sanity check of the validator: the reference tool's shard style fails the schema."""
    validators = _validators(shared)
    predicate = {
        "resources": [{"name": "a:0:1", "algorithm": "sha256-sharded-1000", "digest": "00"}],
        "serialization": {
            "method": "shards",
            "hash_type": "sha256",
            "allow_symlinks": False,
            "shard_size": 1000.0,
        },
    }
    assert not validators["predicate"].is_valid(predicate)
