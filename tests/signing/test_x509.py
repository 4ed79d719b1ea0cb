"""The certificate method: sign with key + chain, verify to own roots with identity and time."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.signing.helpers import UTC, Pki, Result, make_model, make_pki, run, vectors_dir

EMAIL = "release@example.com"
URI = "https://ci.example.com/pipelines/release"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def _sign(capsys: pytest.CaptureFixture[str], pki: Pki, model: Path, key: Path, cert: Path) -> None:
    r = run(capsys, "sign", model, "--key", key, "--cert", cert, "--cert-chain", pki.inter_pem)
    assert r.code == 0, r.err


def _signed_model(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    pki: Pki,
    name: str = "signer",
    **leaf_options: Any,
) -> Path:
    """A fresh model signed with key, certificate and intermediate of a leaf for EMAIL.

    The leaf is issued by ``pki.leaf(name, [EMAIL], **leaf_options)``.
    """
    model = make_model(tmp_path)
    key, cert = pki.leaf(name, [x509.RFC822Name(EMAIL)], **leaf_options)
    _sign(capsys, pki, model, key, cert)
    return model


def _verify(capsys: pytest.CaptureFixture[str], model: Path, chain: Path, *extra: object) -> Result:
    """``mlverify verify MODEL --cert-chain CHAIN --identity EMAIL EXTRA...``."""
    return run(capsys, "verify", model, "--cert-chain", chain, "--identity", EMAIL, *extra)


def test_sign_and_verify_email_identity(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _signed_model(capsys, tmp_path, pki)
    doc = json.loads((model / "model.sig").read_text())
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    chain = doc["verificationMaterial"]["x509CertificateChain"]["certificates"]
    assert len(chain) == 2  # leaf first, then the intermediate
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 0, r.err
    assert f"certificate {EMAIL}" in r.out and "current time" in r.out


def test_uri_identity_and_regex(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    key, cert = pki.leaf("ci", [x509.UniformResourceIdentifier(URI)])
    _sign(capsys, pki, model, key, cert)
    assert run(capsys, "verify", model, "--cert-chain", pki.root_pem, "--identity", URI).code == 0
    rx = r"https://ci\.example\.com/pipelines/.*"
    assert (
        run(capsys, "verify", model, "--cert-chain", pki.root_pem, "--identity-regex", rx).code == 0
    )
    # the regex must match the whole SAN, not a prefix
    r = run(capsys, "verify", model, "--cert-chain", pki.root_pem, "--identity-regex", "https://ci")
    assert r.code == 1 and URI in r.err


def test_wrong_identity_names_found_and_allowed(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _signed_model(capsys, tmp_path, pki)
    r = run(capsys, "verify", model, "--cert-chain", pki.root_pem, "--identity", "eve@example.com")
    assert r.code == 1
    assert EMAIL in r.err and "eve@example.com" in r.err and "not a trusted identity" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_identity_is_required(tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    model = _signed_model(capsys, tmp_path, pki)
    r = run(capsys, "verify", model, "--cert-chain", pki.root_pem)
    assert r.code == 2 and "--identity" in r.err


def test_foreign_root_rejected(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _signed_model(capsys, tmp_path, pki)
    other = make_pki(tmp_path / "other", prefix="other-")
    r = _verify(capsys, model, other.root_pem)
    assert r.code == 1
    assert "does not chain to a trusted root" in r.err and "other-root-ca" in r.err
    # the intermediate alone is not a trust anchor either unless given as one
    r = _verify(capsys, model, pki.inter_pem)
    assert r.code == 0  # explicitly trusting the intermediate is the user's choice


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"code_signing": False}, "codeSigning"),
        ({"digital_signature": False}, "digitalSignature"),
    ],
)
def test_leaf_usage_required(
    tmp_path: Path,
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
    kwargs: dict[str, bool],
    reason: str,
) -> None:
    model = _signed_model(capsys, tmp_path, pki, **kwargs)
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1 and reason in r.err


def test_expired_leaf_and_at_time(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = dt.datetime(2024, 1, 1, tzinfo=UTC)
    na = dt.datetime(2024, 12, 31, tzinfo=UTC)
    model = _signed_model(capsys, tmp_path, pki, "old", not_before=nb, not_after=na)
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1
    assert "expired on 2024-12-31T00:00:00Z" in r.err
    assert "valid 2024-01-01T00:00:00Z to 2024-12-31T00:00:00Z" in r.err
    assert "(current time)" in r.err and "--at-time" in r.err
    r = _verify(capsys, model, pki.root_pem, "--at-time", "2024-06-01T00:00:00Z")
    assert r.code == 0, r.err
    assert "user-supplied time" in r.err and "user-supplied verification time" in r.out
    r = _verify(capsys, model, pki.root_pem, "--at-time", "2023-06-01")
    assert r.code == 1 and "not valid before 2024-01-01T00:00:00Z" in r.err


def test_not_yet_valid_leaf(tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    nb = dt.datetime.now(UTC) + dt.timedelta(days=10)
    na = nb + dt.timedelta(days=5)
    model = _signed_model(capsys, tmp_path, pki, "future", not_before=nb, not_after=na)
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1 and "not valid before" in r.err


def test_bad_at_time(tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    model = _signed_model(capsys, tmp_path, pki)
    r = _verify(capsys, model, pki.root_pem, "--at-time", "yesterday")
    assert r.code == 2 and "ISO 8601" in r.err


def test_tampered_model_and_signature(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _signed_model(capsys, tmp_path, pki)
    (model / "config.json").write_text('{"layers": 3}\n')
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1 and "config.json" in r.err and "is valid, but" in r.err
    (model / "config.json").write_text('{"layers": 2}\n')
    sig = model / "model.sig"
    doc = json.loads(sig.read_text())
    _, other_cert = pki.leaf("other", [x509.RFC822Name(EMAIL)])
    # swap in another certificate for the same identity: the signature no longer matches
    other = x509.load_pem_x509_certificate(other_cert.read_bytes())
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding

    doc["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"] = (
        base64.b64encode(other.public_bytes(Encoding.DER)).decode()
    )
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1 and "does not verify with the key" in r.err


def test_cert_must_match_key(tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_model(tmp_path)
    key, _ = pki.leaf("a", [x509.RFC822Name(EMAIL)])
    _, cert = pki.leaf("b", [x509.RFC822Name(EMAIL)])
    r = run(capsys, "sign", model, "--key", key, "--cert", cert)
    assert r.code == 2 and "not the signing key" in r.err
    assert not (model / "model.sig").exists()


def test_model_signing_accepts_our_certificate_bundle(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    exe = shutil.which("model_signing", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("model_signing CLI (test dependency) is not installed")
    model = _signed_model(capsys, tmp_path, pki)
    sig = tmp_path / "model.sig"
    shutil.move(model / "model.sig", sig)
    proc = subprocess.run(
        [
            exe,
            "verify",
            "certificate",
            str(model),
            "--signature",
            str(sig),
            "--certificate_chain",
            str(pki.root_pem),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- golden vectors --------------------------------------------------------------

GOLDEN = ["v0.2.0", "v0.3.1", "v1.0.0", "v1.0.1", "v1.1.0"]


def _golden_roots() -> Path:
    return vectors_dir() / "model-transparency" / "keys" / "certificate" / "ca-cert.pem"


@pytest.mark.parametrize("version", GOLDEN)
def test_golden_certificate_vectors(version: str, capsys: pytest.CaptureFixture[str]) -> None:
    model = vectors_dir() / "model-transparency" / f"{version}-certificate"
    roots = _golden_roots()
    golden = ["verify", model, "--cert-chain", roots]
    # The golden leaf has no subjectAltName: its subject DN is the only identity.
    r = run(capsys, *golden, "--cert-subject", "CN=intermediate-ca", "--ignore", "ignore-me")
    assert r.code == 0, r.err
    r = run(capsys, *golden, "--identity", "someone@example.com", "--ignore", "ignore-me")
    assert r.code == 1 and "no SAN, subject CN=intermediate-ca" in r.err


def test_golden_oms_certificate_vector_and_expiry(capsys: pytest.CaptureFixture[str]) -> None:
    v = vectors_dir()
    sig = v / "oms-spec" / "test-vectors" / "v1.0" / "valid" / "certificate.bundle.json"
    # the OMS vector signs the model files of the elliptic-key golden folder
    model = v / "model-transparency" / "v1.1.0-elliptic-key"
    args = [
        "verify",
        model,
        "--signature",
        sig,
        "--cert-chain",
        _golden_roots(),
        "--cert-subject",
        "CN=intermediate-ca",
        "--ignore-unsigned-files",
    ]
    r = run(capsys, *args)
    assert r.code == 0, r.err
    # valid until 2035-04-30: judged after that, it says exactly that it expired, and when
    r = run(capsys, *args, "--at-time", "2036-01-01T00:00:00Z")
    assert r.code == 1
    assert "expired on 2035-04-30T23:36:28Z" in r.err
    assert "judged at 2036-01-01T00:00:00Z (user-supplied verification time)" in r.err
    r = run(capsys, *args, "--at-time", "2025-06-01T00:00:00Z")
    assert r.code == 0 and "user-supplied time" in r.err


def test_golden_chain_to_wrong_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = vectors_dir() / "model-transparency" / "v1.1.0-certificate"
    other = make_pki(tmp_path / "pki")
    r = run(
        capsys,
        "verify",
        model,
        "--cert-chain",
        other.root_pem,
        "--cert-subject",
        "CN=intermediate-ca",
    )
    assert r.code == 1 and "does not chain" in r.err


# -- RFC 3161 timestamps (made with `openssl ts`) -----------------------------------


def _tsa(pki: Pki, directory: Path) -> tuple[Path, Path]:
    """A timestamping certificate issued by the PKI's root."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from tests.signing.helpers import pem, write_private_key

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-tsa")]))
        .issuer_name(pki.root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
        .sign(pki.root_key, hashes.SHA256())
    )
    key_path = write_private_key(directory / "tsa.key", key)
    cert_path = directory / "tsa.pem"
    cert_path.write_bytes(pem(cert))
    return key_path, cert_path


def _timestamp(signature: bytes, tsa_key: Path, tsa_cert: Path, directory: Path) -> bytes:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (needed to make RFC 3161 timestamps)")
    (directory / "sig.bin").write_bytes(signature)
    (directory / "serial").write_text("01\n")
    (directory / "tsa.cnf").write_text(
        "[ tsa ]\ndefault_tsa = t\n[ t ]\n"
        f"serial = {directory / 'serial'}\nsigner_digest = sha256\n"
        "default_policy = 1.2.3.4.1\ndigests = sha256\ness_cert_id_alg = sha256\n"
    )
    req, resp = directory / "req.tsq", directory / "resp.tsr"
    subprocess.run(
        [
            openssl,
            "ts",
            "-query",
            "-data",
            str(directory / "sig.bin"),
            "-sha256",
            "-cert",
            "-no_nonce",
            "-out",
            str(req),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            openssl,
            "ts",
            "-reply",
            "-queryfile",
            str(req),
            "-inkey",
            str(tsa_key),
            "-signer",
            str(tsa_cert),
            "-out",
            str(resp),
            "-config",
            str(directory / "tsa.cnf"),
        ],
        check=True,
        capture_output=True,
    )
    return resp.read_bytes()


def _add_timestamp(sig: Path, pki: Pki, tmp_path: Path) -> None:
    import base64

    doc = json.loads(sig.read_text())
    signature = base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"])
    tsa_key, tsa_cert = _tsa(pki, tmp_path)
    tsr = _timestamp(signature, tsa_key, tsa_cert, tmp_path)
    doc["verificationMaterial"]["timestampVerificationData"] = {
        "rfc3161Timestamps": [{"signedTimestamp": base64.b64encode(tsr).decode()}]
    }
    sig.write_text(json.dumps(doc))


def test_rfc3161_timestamp_sets_the_time(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _signed_model(capsys, tmp_path, pki)
    _add_timestamp(model / "model.sig", pki, tmp_path)
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 0, r.err
    assert "RFC 3161 timestamp by CN=test-tsa" in r.out


def test_rfc3161_timestamp_after_expiry_fails(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    now = dt.datetime.now(UTC)
    model = _signed_model(
        capsys,
        tmp_path,
        pki,
        "old",
        not_before=now - dt.timedelta(days=2),
        not_after=now - dt.timedelta(days=1),
    )
    _add_timestamp(model / "model.sig", pki, tmp_path)
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1
    assert "expired on" in r.err and "(RFC 3161 timestamp by CN=test-tsa)" in r.err


def test_rfc3161_timestamp_from_untrusted_tsa_is_ignored(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _signed_model(capsys, tmp_path, pki)
    other = make_pki(tmp_path / "other", prefix="other-")
    _add_timestamp(model / "model.sig", other, tmp_path)
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 0, r.err
    assert "current time; the bundle's timestamp was ignored" in r.out
