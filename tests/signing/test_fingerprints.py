"""One fingerprint everywhere: keygen, verify, verify-attestation, verify-bundle, sha256sum."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.signing.helpers import make_model, run

FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")


def keygen(capsys: pytest.CaptureFixture[str], prefix: Path, key_type: str = "ec-p256") -> str:
    r = run(capsys, "keygen", "--out", prefix, "--type", key_type)
    assert r.code == 0, r.err
    found = FINGERPRINT.findall(r.out)
    assert len(found) == 1, r.out
    return found[0]


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "ed25519"])
def test_keygen_fingerprint_is_sha256sum_of_the_public_key_and_the_bundle_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key_type: str
) -> None:
    fp = keygen(capsys, tmp_path / "alice", key_type)
    pub = (tmp_path / "alice.pub").read_bytes()
    assert fp == "sha256:" + hashlib.sha256(pub).hexdigest()
    model = make_model(tmp_path)
    assert run(capsys, "sign", model, "--key", tmp_path / "alice.key").code == 0
    bundle = json.loads((model / "model.sig").read_text())
    assert "sha256:" + bundle["verificationMaterial"]["publicKey"]["hint"] == fp
    r = run(capsys, "verify", model, "--key", tmp_path / "alice.pub")
    assert r.code == 0 and f"signed by key {fp}" in r.out


def test_wrong_key_messages_name_both_keys_by_the_keygen_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = keygen(capsys, tmp_path / "alice")
    mallory = keygen(capsys, tmp_path / "mallory")
    model = make_model(tmp_path)
    assert run(capsys, "sign", model, "--key", tmp_path / "mallory.key").code == 0
    r = run(capsys, "verify", model, "--key", tmp_path / "alice.pub")
    assert r.code == 1
    assert f"signature made by key {mallory}" in r.err and f"trusted: {alice}" in r.err
    assert set(FINGERPRINT.findall(r.err)) == {alice, mallory}

    f = tmp_path / "weights.bin"
    f.write_bytes(b"weights")
    r = run(
        capsys, "attest", "provenance", f, "--builder-id", "b", "--source-repo", "r/s",
        "--source-ref", "refs/heads/main", "--key", tmp_path / "mallory.key",
    )  # fmt: skip
    assert r.code == 0, r.err
    r = run(capsys, "verify-attestation", f, "--key", tmp_path / "alice.pub")
    assert r.code == 1
    assert f"signature made by key {mallory}" in r.err and f"trusted: {alice}" in r.err


def test_verify_bundle_key_verifies_mlverify_key_signed_attestations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = keygen(capsys, tmp_path / "alice")
    keygen(capsys, tmp_path / "bob")
    f = tmp_path / "weights.bin"
    f.write_bytes(b"weights")
    r = run(
        capsys, "attest", "provenance", f, "--builder-id", "b", "--source-repo", "r/s",
        "--source-ref", "refs/heads/main", "--key", tmp_path / "alice.key",
    )  # fmt: skip
    assert r.code == 0, r.err
    bundle = tmp_path / "weights.bin.provenance.sigstore.json"
    r = run(capsys, "verify-bundle", f, "--bundle", bundle, "--key", tmp_path / "alice.pub")
    assert r.code == 0, r.err
    assert f"signed by key {alice}" in r.out and "not in a transparency log" in r.out
    r = run(capsys, "verify-bundle", f, "--bundle", bundle, "--key", tmp_path / "bob.pub")
    assert r.code == 1 and "does not verify" in r.err
    f.write_bytes(b"poisoned")
    r = run(capsys, "verify-bundle", f, "--bundle", bundle, "--key", tmp_path / "alice.pub")
    assert r.code == 1 and "the artifact has" in r.err
