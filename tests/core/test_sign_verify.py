"""Key signing and verification: round trips, tampering, every error path."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from mlverify._internal.manifest.manifest import Manifest, Resource, Serialization
from mlverify._internal.signing.keys import KeySigner, load_private_key_pem
from mlverify._internal.signing.oms import sign_manifest
from tests.core.helpers import Result, make_model, run, write_key_pair


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "keys"
    d.mkdir()
    return write_key_pair(d, "p256")


@pytest.mark.parametrize("kind", ["p256", "p384", "p521", "ed25519"])
@pytest.mark.parametrize("mode", ["files", "shards"])
def test_round_trip_every_key_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, mode: str
) -> None:
    model = make_model(tmp_path)
    private, public = write_key_pair(tmp_path, kind)
    r = run(capsys, "sign", model, "--key", private, "--mode", mode, "--shard-size", "4096")
    assert r.code == 0, r.err
    assert (model / "model.sig").is_file()
    r = run(capsys, "verify", model, "--key", public)
    assert r.code == 0, r.err
    assert r.out.startswith(f"verified: {model}")


def test_single_file_signature_lands_beside_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(os.urandom(5000))
    assert run(capsys, "sign", f, "--key", keys[0]).code == 0
    assert (tmp_path / "model.bin.sig").is_file()
    assert run(capsys, "verify", f, "--key", keys[1]).code == 0
    f.write_bytes(b"other bytes")
    r = run(capsys, "verify", f, "--key", keys[1])
    assert r.code == 1 and "changed: ." in r.err


def test_signature_bytes_are_deterministic_for_ed25519(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    private, _ = write_key_pair(tmp_path, "ed25519")
    run(capsys, "sign", model, "--key", private, "--signature", tmp_path / "a.sig")
    run(capsys, "sign", model, "--key", private, "--signature", tmp_path / "b.sig")
    assert (tmp_path / "a.sig").read_bytes() == (tmp_path / "b.sig").read_bytes()


def test_encrypted_key_password_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(tmp_path)
    private, public = write_key_pair(tmp_path, "p384", password=b"s3cret")
    monkeypatch.delenv("MLVERIFY_KEY_PASSWORD", raising=False)
    r = run(capsys, "sign", model, "--key", private)
    assert r.code == 2 and "encrypted" in r.err and "MLVERIFY_KEY_PASSWORD" in r.err
    monkeypatch.setenv("MLVERIFY_KEY_PASSWORD", "wrong")
    r = run(capsys, "sign", model, "--key", private)
    assert r.code == 2 and "wrong password" in r.err
    monkeypatch.setenv("MLVERIFY_KEY_PASSWORD", "s3cret")
    assert run(capsys, "sign", model, "--key", private).code == 0
    assert run(capsys, "verify", model, "--key", public).code == 0


def test_keygen_then_sign_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_model(tmp_path)
    prefix = tmp_path / "release"
    r = run(capsys, "keygen", "--out", prefix)
    assert r.code == 0, r.err
    assert oct((tmp_path / "release.key").stat().st_mode & 0o777) == "0o600"
    assert run(capsys, "keygen", "--out", prefix).code == 2  # never overwrites silently
    assert run(capsys, "sign", model, "--key", "file:" + str(tmp_path / "release.key")).code == 0
    assert run(capsys, "verify", model, "--key", tmp_path / "release.pub").code == 0


def _signed(tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]) -> Path:
    model = make_model(tmp_path)
    assert run(capsys, "sign", model, "--key", keys[0]).code == 0
    return model


def _verify(
    capsys: pytest.CaptureFixture[str], model: Path, public: Path, *extra: object
) -> Result:
    return run(capsys, "verify", model, "--key", public, *extra)


def test_all_differences_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    model = _signed(tmp_path, capsys, keys)
    data = bytearray((model / "weights.bin").read_bytes())
    data[123] ^= 1
    (model / "weights.bin").write_bytes(bytes(data))  # changed byte
    (model / "new.bin").write_bytes(b"x")  # extra file
    (model / "sub" / "tokenizer.txt").unlink()  # missing file
    (model / "config.json").rename(model / "config2.json")  # renamed: missing + extra
    r = _verify(capsys, model, keys[1])
    assert r.code == 1
    line = r.err.strip()
    assert "\n" not in line
    assert "changed: weights.bin (expected " in line and ", found " in line
    assert "missing: config.json, sub/tokenizer.txt" in line
    assert "extra (unsigned): config2.json, new.bin" in line


def test_ignore_unsigned_files_tolerates_extras_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    model = _signed(tmp_path, capsys, keys)
    (model / "notes.md").write_text("added later")
    assert _verify(capsys, model, keys[1]).code == 1
    assert _verify(capsys, model, keys[1], "--ignore-unsigned-files").code == 0
    (model / "config.json").write_text("{}")
    assert _verify(capsys, model, keys[1], "--ignore-unsigned-files").code == 1


def test_verify_ignore_leaves_out_extra_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    model = _signed(tmp_path, capsys, keys)
    (model / "logs").mkdir()
    (model / "logs" / "run.txt").write_text("log")
    assert _verify(capsys, model, keys[1], "--ignore", "logs").code == 0


def test_signature_kept_elsewhere_and_stale_signature_inside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    model = make_model(tmp_path)
    (model / "model.sig").write_text("stale signature from an earlier release")
    out = tmp_path / "release.sig"
    assert run(capsys, "sign", model, "--key", keys[0], "--signature", out).code == 0
    assert _verify(capsys, model, keys[1], "--signature", out).code == 0


def test_wrong_key_is_an_untrusted_signer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    model = _signed(tmp_path, capsys, keys)
    other = tmp_path / "other"
    other.mkdir()
    _, other_public = write_key_pair(other, "p256")
    r = _verify(capsys, model, other_public)
    assert r.code == 1
    assert "no valid signature by a trusted key" in r.err and "trusted: sha256:" in r.err
    # Rotation: any of several trusted keys will do.
    assert _verify(capsys, model, other_public, "--key", keys[1]).code == 0


def test_missing_signature_is_its_own_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    model = make_model(tmp_path)
    r = _verify(capsys, model, keys[1])
    assert r.code == 1 and "no signature found" in r.err and "model.sig" in r.err


def _rewrite_bundle(sig: Path, fn: object) -> None:
    doc = json.loads(sig.read_text())
    fn(doc)  # type: ignore[operator]
    sig.write_text(json.dumps(doc))


def test_tampered_payload_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    model = _signed(tmp_path, capsys, keys)
    sig = model / "model.sig"

    def tamper(doc: dict) -> None:  # type: ignore[type-arg]
        statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
        statement["predicate"]["resources"][0]["digest"] = "00" * 32
        resources = statement["predicate"]["resources"]
        import hashlib

        root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources))
        statement["subject"][0]["digest"]["sha256"] = root.hexdigest()
        doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()

    _rewrite_bundle(sig, tamper)
    r = _verify(capsys, model, keys[1])
    assert r.code == 1 and "signature file was altered" in r.err


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("dsseEnvelope"), "no 'dsseEnvelope'"),
        (lambda d: d.pop("verificationMaterial"), "no 'verificationMaterial'"),
        (lambda d: d.update(mediaType="text/plain"), "unknown bundle mediaType"),
        (
            lambda d: d["dsseEnvelope"].update(payload=d["dsseEnvelope"]["payload"][:-7]),
            "not valid base64",
        ),
        (lambda d: d["dsseEnvelope"].update(signatures=[]), "carries no signatures"),
        (lambda d: d["dsseEnvelope"].update(payloadType="text/plain"), "payloadType"),
    ],
)
def test_malformed_bundles_name_the_defect(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    keys: tuple[Path, Path],
    mutate: object,
    message: str,
) -> None:
    model = _signed(tmp_path, capsys, keys)
    _rewrite_bundle(model / "model.sig", mutate)
    r = _verify(capsys, model, keys[1])
    assert r.code == 2, r.err
    assert message in r.err and "model.sig" in r.err and r.err.count("\n") == 1


@pytest.mark.parametrize("content", [b"", b"{not json", b"[]", b"x" * (17 * 1024 * 1024)])
def test_garbage_signature_files(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    keys: tuple[Path, Path],
    content: bytes,
) -> None:
    model = make_model(tmp_path)
    (model / "model.sig").write_bytes(content)
    r = _verify(capsys, model, keys[1])
    assert r.code == 2 and r.err.startswith("mlverify: error: ") and r.err.count("\n") == 1


@pytest.mark.parametrize(
    "name", ["../outside.txt", "/etc/hostname", "sub/../../outside.txt", "a//b", "./config.json"]
)
def test_escaping_resource_names_rejected_before_any_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path], name: str
) -> None:
    """A validly signed manifest naming a path outside the model is refused.

    model_signing 1.1.1 reads ``../outside.txt`` with --ignore_unsigned_files.
    """
    model = make_model(tmp_path)
    (tmp_path / "outside.txt").write_text("outside the model")
    signer = KeySigner(
        load_private_key_pem(keys[0].read_bytes(), where="test", password=lambda: None)
    )
    import hashlib

    manifest = Manifest(
        subject_name="model",
        serialization=Serialization(),
        resources=(Resource(path=name, digest=hashlib.sha256(b"outside the model").hexdigest()),),
    )
    (model / "model.sig").write_bytes(sign_manifest(manifest, signer))
    r = _verify(capsys, model, keys[1], "--ignore-unsigned-files")
    assert r.code == 2
    assert repr(name) in r.err and "model root" in r.err


def test_single_file_signature_against_directory_and_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    model = _signed(tmp_path, capsys, keys)
    f = model / "config.json"
    assert run(capsys, "sign", f, "--key", keys[0], "--signature", tmp_path / "one.sig").code == 0
    r = _verify(capsys, model, keys[1], "--signature", tmp_path / "one.sig")
    assert r.code == 1 and "covers a single file" in r.err
    r = _verify(capsys, f, keys[1], "--signature", model / "model.sig")
    assert r.code == 1 and "single file was given" in r.err


def test_verify_json_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    model = _signed(tmp_path, capsys, keys)
    (model / "weights.bin").write_bytes(b"changed")
    r = _verify(capsys, model, keys[1], "--format", "json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["verified"] is False
    assert [c["name"] for c in doc["changed"]] == ["weights.bin"]
    assert doc["method"] == "key" and doc["signer"].startswith("key sha256:")


def test_unsupported_key_scheme_and_bad_key_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    model = make_model(tmp_path)
    r = run(capsys, "sign", model, "--key", "gpgcard:token=x")
    assert r.code == 2 and "'gpgcard:' is not supported" in r.err and "pkcs11:" in r.err
    r = run(capsys, "sign", model, "--key", "pkcs11:token=x")  # names no key object
    assert r.code == 2 and "object=LABEL or id=" in r.err
    (tmp_path / "junk.pem").write_text("not a key")
    r = run(capsys, "sign", model, "--key", tmp_path / "junk.pem")
    assert r.code == 2 and "not a PEM private key" in r.err
    r = run(capsys, "verify", model, "--key", keys[0])  # a private key where a public is expected
    assert r.code == 2 and "not a PEM public key" in r.err
    r = run(capsys, "verify", model)
    assert r.code == 2 and "--key" in r.err


def test_signed_name_through_an_escaping_symlink_is_never_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]
) -> None:
    """A signed path that reaches outside the root through a symlink counts as missing."""
    import hashlib

    model = make_model(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (model / "link").symlink_to(outside)
    signer = KeySigner(
        load_private_key_pem(keys[0].read_bytes(), where="test", password=lambda: None)
    )
    manifest = Manifest(
        subject_name="model",
        serialization=Serialization(ignore_paths=("link",)),
        resources=(Resource(path="link/secret.txt", digest=hashlib.sha256(b"secret").hexdigest()),),
    )
    (model / "model.sig").write_bytes(sign_manifest(manifest, signer))
    r = _verify(capsys, model, keys[1], "--ignore-unsigned-files")
    assert r.code == 1 and "missing: link/secret.txt" in r.err
