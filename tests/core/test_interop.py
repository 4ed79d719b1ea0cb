"""Interoperability with the OMS reference tool, model_signing 1.1.1, both ways."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.helpers import make_model, run, write_key_pair

model_signing = pytest.importorskip("model_signing", reason="model-signing is a test dependency")
MS_CLI = Path(sys.executable).parent / "model_signing"


def _ms_sign(model: Path, private: Path, sig: Path, mode: str, hash_type: str) -> None:
    config = model_signing.hashing.Config()
    if mode == "files":
        config.use_file_serialization(hashing_algorithm=hash_type)
    else:
        config.use_shard_serialization(hashing_algorithm=hash_type, shard_size=10_000)
    (
        model_signing.signing.Config()
        .use_elliptic_key_signer(private_key=private)
        .set_hashing_config(config)
        .sign(model, sig)
    )


def _ms_verify_cli(model: Path, sig: Path, public: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(MS_CLI),
            "verify",
            "key",
            str(model),
            "--signature",
            str(sig),
            "--public_key",
            str(public),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tamper(model: Path, how: str) -> None:
    if how == "byte":
        data = bytearray((model / "weights.bin").read_bytes())
        data[-1] ^= 0x01
        (model / "weights.bin").write_bytes(bytes(data))
    elif how == "extra":
        (model / "payload.py").write_text("print('hi')\n")
    elif how == "missing":
        (model / "sub" / "tokenizer.txt").unlink()
    elif how == "renamed":
        (model / "config.json").rename(model / "config.yaml")


@pytest.mark.parametrize(
    ("mode", "hash_type"),
    [("files", "sha256"), ("files", "blake3"), ("shards", "sha256"), ("shards", "blake3")],
)
def test_model_signing_signs_mlverify_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str, hash_type: str
) -> None:
    model = make_model(tmp_path)
    private, public = write_key_pair(tmp_path, "p256")
    sig = tmp_path / "ms.sig"
    _ms_sign(model, private, sig, mode, hash_type)
    r = run(capsys, "verify", model, "--signature", sig, "--key", public)
    assert r.code == 0, r.err
    # model_signing 1.1.1 quietly falls back to whole files for blake3 shards.
    expected_mode = "files" if hash_type == "blake3" else mode
    assert f"{expected_mode}/{hash_type}" in r.out


@pytest.mark.parametrize("how", ["byte", "extra", "missing", "renamed"])
def test_tampering_rejected_on_model_signing_signatures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    model = make_model(tmp_path)
    private, public = write_key_pair(tmp_path, "p256")
    sig = tmp_path / "ms.sig"
    _ms_sign(model, private, sig, "files", "sha256")
    _tamper(model, how)
    r = run(capsys, "verify", model, "--signature", sig, "--key", public)
    assert r.code == 1, r.err


@pytest.mark.skipif(not MS_CLI.exists(), reason="model_signing CLI not installed in this venv")
@pytest.mark.parametrize("kind", ["p256", "p384"])
def test_mlverify_signs_model_signing_cli_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    model = make_model(tmp_path)
    private, public = write_key_pair(tmp_path, kind)
    sig = tmp_path / "ours.sig"
    assert run(capsys, "sign", model, "--key", private, "--signature", sig).code == 0
    done = _ms_verify_cli(model, sig, public)
    assert done.returncode == 0, done.stdout + done.stderr
    # Signature inside the model at the default path: model_signing excludes it too.
    assert run(capsys, "sign", model, "--key", private).code == 0
    done = _ms_verify_cli(model, model / "model.sig", public)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not MS_CLI.exists(), reason="model_signing CLI not installed in this venv")
def test_single_file_signature_accepted_by_model_signing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"\x00" * 4096)
    private, public = write_key_pair(tmp_path, "p256")
    assert run(capsys, "sign", f, "--key", private).code == 0
    done = _ms_verify_cli(f, tmp_path / "model.safetensors.sig", public)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not MS_CLI.exists(), reason="model_signing CLI not installed in this venv")
@pytest.mark.parametrize("how", ["byte", "extra", "missing", "renamed"])
def test_tampering_rejected_by_both_on_mlverify_signatures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    model = make_model(tmp_path)
    private, public = write_key_pair(tmp_path, "p256")
    sig = tmp_path / "ours.sig"
    assert run(capsys, "sign", model, "--key", private, "--signature", sig).code == 0
    _tamper(model, how)
    assert run(capsys, "verify", model, "--signature", sig, "--key", public).code == 1
    done = _ms_verify_cli(model, sig, public)
    assert done.returncode != 0


def test_model_signing_cli_present_when_package_is() -> None:
    """The interop tests above must not all skip silently in CI."""
    assert MS_CLI.exists() or shutil.which("model_signing"), "model_signing CLI missing"
