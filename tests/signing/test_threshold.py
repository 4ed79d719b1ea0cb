"""Several signatures, a trust set and a threshold of distinct signers."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mlverify._internal.manifest.build import hash_model
from mlverify._internal.signing.dsse import pae
from mlverify._internal.signing.keys import KeySigner
from mlverify._internal.signing.statement import statement_bytes
from tests.signing.helpers import Result, make_model, run, write_private_key, write_public_key
from tests.signing.virtual_sigstore import VirtualSigstore


class Party:
    def __init__(self, directory: Path, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.private = write_private_key(directory / f"{name}.key", self.key)
        self.public = write_public_key(directory / f"{name}.pub", self.key)


@pytest.fixture
def parties(tmp_path: Path) -> tuple[Party, Party, Party]:
    return Party(tmp_path, "alice"), Party(tmp_path, "bob"), Party(tmp_path, "mallory")


def _sign(capsys: pytest.CaptureFixture[str], model: Path, party: Party, out: Path) -> Path:
    r = run(capsys, "sign", model, "--key", party.private, "--signature", out)
    assert r.code == 0, r.err
    return out


def _verify(
    capsys: pytest.CaptureFixture[str],
    model: Path,
    signatures: Sequence[Path],
    keys: Sequence[Party],
    *extra: object,
) -> Result:
    """``mlverify verify MODEL --signature SIG... --key PUBLIC... EXTRA...``."""
    args: list[object] = ["verify", model]
    for sig in signatures:
        args += ["--signature", sig]
    for party in keys:
        args += ["--key", party.public]
    return run(capsys, *args, *extra)


def test_any_of_rotation(
    tmp_path: Path, parties: tuple[Party, Party, Party], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob, _ = parties
    model = make_model(tmp_path)
    sig = _sign(capsys, model, bob, tmp_path / "bob.sig")
    r = _verify(capsys, model, [sig], [alice, bob])
    assert r.code == 0, r.err


def test_two_of_two_distinct_signers(
    tmp_path: Path, parties: tuple[Party, Party, Party], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob, _ = parties
    model = make_model(tmp_path)
    a = _sign(capsys, model, alice, tmp_path / "alice.sig")
    b = _sign(capsys, model, bob, tmp_path / "bob.sig")
    r = _verify(capsys, model, [a, b], [alice, bob], "--threshold", 2)
    assert r.code == 0, r.err
    assert r.out.count("key sha256:") == 2
    r = _verify(capsys, model, [a, b], [alice, bob], "--threshold", 2, "--format", "json")
    assert len(json.loads(r.out)["signers"]) == 2
    # one signer twice is still one signer
    a2 = _sign(capsys, model, alice, tmp_path / "alice2.sig")
    r = _verify(capsys, model, [a, a2], [alice, bob], "--threshold", 2)
    assert r.code == 1
    assert "1 distinct trusted signer(s) found" in r.err and "2 required" in r.err


def test_untrusted_second_signature_does_not_count(
    tmp_path: Path, parties: tuple[Party, Party, Party], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob, mallory = parties
    model = make_model(tmp_path)
    a = _sign(capsys, model, alice, tmp_path / "alice.sig")
    m = _sign(capsys, model, mallory, tmp_path / "mallory.sig")
    r = _verify(capsys, model, [a, m], [alice, bob], "--threshold", 2)
    assert r.code == 1
    assert "mallory.sig" in r.err and "no valid signature by a trusted key" in r.err
    # threshold 1: the valid trusted signature is enough, the other is ignored
    r = _verify(capsys, model, [a, m], [alice, bob])
    assert r.code == 0, r.err


def test_several_signatures_in_one_envelope(
    tmp_path: Path, parties: tuple[Party, Party, Party], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob, _ = parties
    model = make_model(tmp_path)
    sig = _sign(capsys, model, alice, tmp_path / "both.sig")
    doc = json.loads(sig.read_text())
    env = doc["dsseEnvelope"]
    signed = pae(env["payloadType"], base64.b64decode(env["payload"]))
    extra = KeySigner(bob.key).sign(signed)
    env["signatures"].append({"sig": base64.b64encode(extra).decode(), "keyid": ""})
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, [sig], [alice, bob], "--threshold", 2)
    assert r.code == 0, r.err
    # the same signer twice in one envelope counts once
    env["signatures"][1] = {
        "sig": base64.b64encode(KeySigner(alice.key).sign(signed)).decode(),
        "keyid": "",
    }
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, [sig], [alice, bob], "--threshold", 2)
    assert r.code == 1 and "1 distinct trusted signer(s) found" in r.err


def test_mixed_methods_key_and_sigstore(
    tmp_path: Path, parties: tuple[Party, Party, Party], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, _, _ = parties
    model = make_model(tmp_path)
    key_sig = _sign(capsys, model, alice, tmp_path / "alice.sig")
    vs = VirtualSigstore()
    bundle = vs.sign_dsse(statement_bytes(hash_model(model)), "ci@example.com", "https://idp.test")
    keyless = tmp_path / "ci.sig"
    keyless.write_bytes(bundle)
    root = vs.write_trusted_root(tmp_path / "root.json")
    r = _verify(
        capsys,
        model,
        [key_sig, keyless],
        [alice],
        "--identity",
        "ci@example.com",
        "--issuer",
        "https://idp.test",
        "--trust-root",
        root,
        "--threshold",
        2,
    )
    assert r.code == 0, r.err
    assert "sigstore ci@example.com" in r.out and "key sha256:" in r.out


def test_threshold_bounds(
    tmp_path: Path, parties: tuple[Party, Party, Party], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, _, _ = parties
    model = make_model(tmp_path)
    sig = _sign(capsys, model, alice, tmp_path / "a.sig")
    r = _verify(capsys, model, [sig], [alice], "--threshold", 0)
    assert r.code == 2
    r = _verify(capsys, model, [tmp_path / "none.sig"], [alice])
    assert r.code == 1 and "no signature found" in r.err


def test_several_signature_files_inside_the_model(
    tmp_path: Path, parties: tuple[Party, Party, Party], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob, _ = parties
    model = make_model(tmp_path)
    a = _sign(capsys, model, alice, model / "alice.sig")
    b = _sign(capsys, model, bob, model / "bob.sig")
    r = _verify(capsys, model, [a, b], [alice, bob], "--threshold", 2)
    assert r.code == 0, r.err
