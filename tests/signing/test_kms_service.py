"""KMS keys (``awskms:``) end to end: sign through securesystemslib's AWSSigner against an AWS
KMS API on loopback, verify in mlverify and in model_signing.

AWS KMS cannot run here (no cloud, no network): the service is moto's KMS server, started
by this module as a process on 127.0.0.1 (tests/signing/moto_kms.py; it fills moto's one gap,
``MessageType=DIGEST``, and keeps moto's behaviour for keys described ``HASHES-DIGESTS`` to
play a service whose signatures are over other bytes). Everything on mlverify's side is the
real path: URI parsing, boto3 through securesystemslib, the public key fetched from the
service, each signature checked locally before it is written.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from mlverify._internal.signing.keys import key_fingerprint
from tests.signing.helpers import make_model, run
from tests.signing.moto_kms import WRONG

ROOT = Path(__file__).resolve().parents[2]
MODEL_SIGNING = Path(sys.executable).parent / "model_signing"


@dataclass
class Kms:
    endpoint: str
    env: dict[str, str]

    def client(self) -> Any:
        import boto3

        return boto3.client("kms", endpoint_url=self.endpoint, region_name="us-east-1")

    def create_key(self, spec: str = "ECC_NIST_P256", description: str = "") -> str:
        meta = self.client().create_key(
            KeySpec=spec, KeyUsage="SIGN_VERIFY", Description=description
        )["KeyMetadata"]
        return str(meta["KeyId"])

    def public_pem(self, key_id: str, out: Path) -> Path:
        der = self.client().get_public_key(KeyId=key_id)["PublicKey"]
        key = serialization.load_der_public_key(der)
        out.write_bytes(
            key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return out


def _free_port() -> int:
    from tests.integrations.conftest import free_port

    return free_port()


@pytest.fixture(scope="module")
def kms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kms]:
    for module in ("boto3", "moto", "flask"):
        pytest.importorskip(module, reason=f"{module} is needed for the KMS API on loopback")
    port = _free_port()
    log = tmp_path_factory.mktemp("kms") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.signing.moto_kms", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    try:
        from tests.integrations.conftest import wait_http

        try:
            wait_http(endpoint, timeout=30)
        except OSError:
            pytest.fail(f"the KMS API did not start: {log.read_text(errors='replace')[-2000:]}")
        yield Kms(endpoint, env)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def kms(kms_server: Kms, monkeypatch: pytest.MonkeyPatch) -> Kms:
    for k, v in kms_server.env.items():
        monkeypatch.setenv(k, v)
    return kms_server


def _model_signing(kms: Kms, *args: object) -> subprocess.CompletedProcess[str]:
    if not MODEL_SIGNING.exists():
        pytest.skip("the model_signing CLI is not installed (pip install model-signing)")
    return subprocess.run(
        [str(MODEL_SIGNING), *map(str, args)],
        env={**os.environ, **kms.env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("spec", ["ECC_NIST_P256", "ECC_NIST_P384"])
def test_a_kms_signature_verifies_in_mlverify_and_model_signing(
    kms: Kms, tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str
) -> None:
    key_id = kms.create_key(spec)
    model = make_model(tmp_path)
    pub = kms.public_pem(key_id, tmp_path / "kms.pub")
    r = run(capsys, "sign", model, "--key", f"awskms:{key_id}")
    assert r.code == 0, r.err
    fingerprint = key_fingerprint(serialization.load_pem_public_key(pub.read_bytes()))  # type: ignore[arg-type]
    assert f"key {fingerprint}" in r.err  # the signer is named by the service's public key
    r = run(capsys, "verify", model, "--key", pub, "--format", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["signer"] == f"key {fingerprint}"
    done = _model_signing(
        kms, "verify", "key", "--signature", model / "model.sig", "--public_key", pub, model
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (model / "config.json").write_text('{"layers": 3}\n')
    r = run(capsys, "verify", model, "--key", pub)
    assert r.code == 1 and "changed: config.json" in r.err


def test_a_kms_key_by_alias_and_by_arn(
    kms: Kms, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_id = kms.create_key()
    kms.client().create_alias(AliasName="alias/release", TargetKeyId=key_id)
    arn = kms.client().describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    pub = kms.public_pem(key_id, tmp_path / "kms.pub")
    for i, uri in enumerate(("awskms:alias/release", f"awskms:{arn}")):
        model = make_model(tmp_path / str(i))
        assert run(capsys, "sign", model, "--key", uri).code == 0
        assert run(capsys, "verify", model, "--key", pub).code == 0


def test_a_signature_over_other_bytes_is_refused_before_it_is_written(
    kms: Kms, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A service (compromised, buggy, or a key swapped behind the URI) returns a signature
    that does not verify with the public key it announced: nothing is written."""
    key_id = kms.create_key(description=WRONG)
    model = make_model(tmp_path)
    r = run(capsys, "sign", model, "--key", f"awskms:{key_id}")
    assert r.code == 2
    assert "does not verify with the key's public key" in r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    assert not (model / "model.sig").exists()


def test_rsa_unknown_and_unreachable_keys_fail_in_one_line(
    kms: Kms, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(tmp_path)
    rsa = kms.create_key("RSA_2048")
    for uri, expected in [
        (f"awskms:{rsa}", "RSA"),
        ("awskms:alias/no-such-key", "cannot fetch the public key at AWS KMS"),
    ]:
        r = run(capsys, "sign", model, "--key", uri)
        assert r.code == 2, r.err
        assert expected in r.err and "Traceback" not in r.err, r.err
        assert len(r.err.strip().splitlines()) == 1
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nobody there
    started = time.monotonic()
    r = run(capsys, "sign", model, "--key", f"awskms:{rsa}")
    assert r.code == 2 and "cannot fetch the public key at AWS KMS" in r.err
    assert time.monotonic() - started < 60
    assert not (model / "model.sig").exists()


def test_a_kms_key_is_trusted_by_its_exported_public_key_never_by_uri(
    kms: Kms, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Verification is offline: a KMS URI as a trusted key would contact the service."""
    key_id = kms.create_key()
    model = make_model(tmp_path)
    assert run(capsys, "sign", model, "--key", f"awskms:{key_id}").code == 0
    r = run(capsys, "verify", model, "--key", f"awskms:{key_id}")
    assert r.code == 2 and "cannot be trusted by its URI" in r.err
    assert "export the key's public key to a PEM file" in r.err
    # the exported key, inline in a policy with its fingerprint, as any public key
    pub = kms.public_pem(key_id, tmp_path / "kms.pub")
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata: {name: kms}\nspec:\n"
        f"  signatures:\n    required: true\n    trusted: [{{key: {pub}}}]\n"
    )
    r = run(capsys, "check", model, "--policy", policy)
    assert r.code == 0, r.out + r.err
    policy.write_text(policy.read_text().replace(str(pub), f"awskms:{key_id}"))
    lint = run(capsys, "policy", "lint", policy)
    assert lint.code != 0 and "cannot be trusted by its URI" in lint.out + lint.err
    # and the signature's bytes are an ordinary OMS bundle: the DSSE signature is base64 DER
    bundle = json.loads((model / "model.sig").read_text())
    assert base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"])[:1] == b"\x30"
