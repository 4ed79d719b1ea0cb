"""Certificate method: the time a leaf is judged at comes only from its own signature.

Red-team r4 finding 4: an attacker holding the key of an expired leaf signed a new model
and grafted into the envelope a second "signature" (any bytes) with a genuine RFC 3161
timestamp over those bytes from inside the leaf's validity; validity was then judged at
that old time. Also: the model_signing 0.2.0 PAE was enabled by a substring search for
the legacy predicate, not by the parsed predicate type.

Timestamps are made here from bytes: a TSTInfo with the wanted ``genTime`` (asn1crypto),
signed as a CMS ``id-ct-TSTInfo`` by ``openssl cms`` with a TSA certificate under the
test PKI's root; the same structure ``openssl ts -reply`` writes, at a chosen time.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mlverify._internal.signing.statement import LEGACY_PREDICATE_TYPE, STATEMENT_TYPE
from mlverify._internal.signing.x509 import MAX_SIGNATURES, MAX_TIMESTAMPS, legacy_pae_v020
from tests.signing.helpers import (
    UTC,
    Pki,
    Result,
    make_model,
    make_pki,
    pem,
    run,
    write_private_key,
)

EMAIL = "release@example.com"
NOW = dt.datetime.now(UTC)
#: inside the expired leaf's validity (NOW-20d .. NOW-10d)
THEN = NOW - dt.timedelta(days=15)


@dataclass(frozen=True)
class Tsa:
    key: Path
    cert: Path
    directory: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tsa(pki: Pki, tmp_path: Path) -> Tsa:
    """A timestamp authority under the PKI's root, valid for 60 days either side of now."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to sign RFC 3161 timestamps)")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "r4-tsa")]))
        .issuer_name(pki.root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=60))
        .not_valid_after(NOW + dt.timedelta(days=60))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
        .sign(pki.root_key, hashes.SHA256())
    )
    directory = tmp_path / "tsa"
    directory.mkdir()
    (directory / "tsa.pem").write_bytes(pem(cert))
    return Tsa(write_private_key(directory / "tsa.key", key), directory / "tsa.pem", directory)


def _timestamp(tsa: Tsa, message: bytes, when: dt.datetime) -> bytes:
    """A DER TimeStampResp granting a timestamp over ``message`` at ``when``."""
    tsp = pytest.importorskip("asn1crypto.tsp")
    cms = pytest.importorskip("asn1crypto.cms")
    info = tsp.TSTInfo(
        {
            "version": "v1",
            "policy": "1.2.3.4.1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": hashlib.sha256(message).digest(),
            },
            "serial_number": int.from_bytes(hashlib.sha256(message).digest()[:8], "big"),
            "gen_time": when.replace(microsecond=0),
        }
    )
    tst, token = tsa.directory / "tst.der", tsa.directory / "token.der"
    tst.write_bytes(info.dump())
    subprocess.run(
        [
            "openssl",
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-in",
            str(tst),
            "-econtent_type",
            "id-smime-ct-TSTInfo",
            "-signer",
            str(tsa.cert),
            "-inkey",
            str(tsa.key),
            "-md",
            "sha256",
            "-nosmimecap",
            "-outform",
            "DER",
            "-out",
            str(token),
        ],
        check=True,
        capture_output=True,
    )
    content = cms.ContentInfo.load(token.read_bytes())
    response = tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": content})
    der: bytes = response.dump()
    return der


def _sign(capsys: pytest.CaptureFixture[str], pki: Pki, model: Path, key: Path, cert: Path) -> Path:
    r = run(capsys, "sign", model, "--key", key, "--cert", cert, "--cert-chain", pki.inter_pem)
    assert r.code == 0, r.err
    return model / "model.sig"


def _expired_leaf(pki: Pki) -> tuple[Path, Path]:
    """A leaf for EMAIL valid from 20 to 10 days ago."""
    return pki.leaf(
        "release",
        [x509.RFC822Name(EMAIL)],
        not_before=NOW - dt.timedelta(days=20),
        not_after=NOW - dt.timedelta(days=10),
    )


def _read(sig: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(sig.read_text())
    return doc


def _signatures(doc: dict[str, Any]) -> list[dict[str, str]]:
    sigs: list[dict[str, str]] = doc["dsseEnvelope"]["signatures"]
    return sigs


def _set_timestamps(doc: dict[str, Any], *responses: bytes) -> None:
    doc["verificationMaterial"]["timestampVerificationData"] = {
        "rfc3161Timestamps": [{"signedTimestamp": base64.b64encode(r).decode()} for r in responses]
    }


def _verify(capsys: pytest.CaptureFixture[str], model: Path, roots: Path) -> Result:
    return run(capsys, "verify", model, "--cert-chain", roots, "--identity", EMAIL)


def _one_line(r: Result) -> str:
    text = r.err.strip()
    assert "\n" not in text and "Traceback" not in text, text
    return text


def test_grafted_signature_with_an_old_timestamp_is_refused(
    tmp_path: Path, pki: Pki, tsa: Tsa, capsys: pytest.CaptureFixture[str]
) -> None:
    """The r4 reproducer: any bytes as a second signature, an old timestamp over them."""
    key, cert = _expired_leaf(pki)
    model = make_model(tmp_path)
    model.joinpath("weights.bin").write_bytes(b"tampered after the leaf expired")
    sig = _sign(capsys, pki, model, key, cert)
    assert "expired on" in _verify(capsys, model, pki.root_pem).err  # control: no timestamp

    old = b"an old signature from some other bundle"
    doc = _read(sig)
    # a timestamp over bytes that are not in the envelope is no source of time
    _set_timestamps(doc, _timestamp(tsa, old, THEN))
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1
    assert "expired on" in r.err and "(current time; the bundle's timestamp was ignored" in r.err

    _signatures(doc).append({"sig": base64.b64encode(old).decode(), "keyid": ""})
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1
    line = _one_line(r)
    assert "signature 2 of 2 does not verify with the key of the leaf certificate" in line
    assert "RFC 3161" not in line and "judged at" not in line

    # the policy path (check) refuses it too
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata: {name: release-pki}\n"
        "spec:\n  signatures:\n    required: true\n    trusted:\n"
        f"      - certificate: {{roots: [{pki.root_pem}], identities: [{EMAIL}]}}\n"
        "  scan: {max_severity: critical}\n"
    )
    r = run(capsys, "check", model, "--policy", policy, "--format", "json")
    assert r.code == 1, r.out
    assert "signature 2 of 2 does not verify" in r.out


def test_grafted_genuine_old_signature_is_refused(
    tmp_path: Path, pki: Pki, tsa: Tsa, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real, timestamped signature by the same leaf over an OLD model, grafted into a new one."""
    key, cert = _expired_leaf(pki)
    old_model = make_model(tmp_path, "old")
    old_doc = _read(_sign(capsys, pki, old_model, key, cert))
    old_sig = base64.b64decode(_signatures(old_doc)[0]["sig"])
    old_ts = _timestamp(tsa, old_sig, THEN)

    model = make_model(tmp_path, "new")
    sig = _sign(capsys, pki, model, key, cert)
    doc = _read(sig)
    _signatures(doc).append(_signatures(old_doc)[0])
    _set_timestamps(doc, old_ts)
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1
    assert "signature 2 of 2 does not verify" in _one_line(r)
    # the grafted signature first: the same
    _signatures(doc).reverse()
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1 and "signature 1 of 2 does not verify" in _one_line(r)


def test_timestamp_over_the_verified_signature_judges_an_expired_leaf_then(
    tmp_path: Path, pki: Pki, tsa: Tsa, capsys: pytest.CaptureFixture[str]
) -> None:
    """The legitimate case still verifies (also with the root listed twice, which crashed)."""
    key, cert = _expired_leaf(pki)
    model = make_model(tmp_path)
    sig = _sign(capsys, pki, model, key, cert)
    doc = _read(sig)
    signature = base64.b64decode(_signatures(doc)[0]["sig"])
    _set_timestamps(doc, _timestamp(tsa, b"other bytes", THEN), _timestamp(tsa, signature, THEN))
    sig.write_text(json.dumps(doc))
    twice = tmp_path / "roots.pem"
    twice.write_bytes(pki.root_pem.read_bytes() * 2)
    for roots in (pki.root_pem, twice):
        r = _verify(capsys, model, roots)
        assert r.code == 0, r.err
        assert f"{THEN:%Y-%m-%dT%H:%M}" in r.out and "(RFC 3161 timestamp by CN=r4-tsa)" in r.out

    # two signatures by the leaf: each is judged at its own time; the timestamped one holds
    again = base64.b64encode(_leaf_key(key).sign(_pae(doc), ec.ECDSA(hashes.SHA256()))).decode()
    _signatures(doc).insert(0, {"sig": again, "keyid": ""})
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 0, r.err
    assert "(RFC 3161 timestamp by CN=r4-tsa)" in r.out

    # a timestamp outside the leaf's validity: expired at the timestamp's time
    _signatures(doc).pop(0)
    _set_timestamps(doc, _timestamp(tsa, signature, NOW - dt.timedelta(days=5)))
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1 and "expired on" in r.err and "RFC 3161 timestamp by CN=r4-tsa" in r.err


def _leaf_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _payload(doc: dict[str, Any]) -> bytes:
    return base64.b64decode(doc["dsseEnvelope"]["payload"])


def _pae(doc: dict[str, Any]) -> bytes:
    from mlverify._internal.signing.dsse import pae

    return pae(doc["dsseEnvelope"]["payloadType"], _payload(doc))


def _legacy_signed(doc: dict[str, Any], payload: bytes, key: ec.EllipticCurvePrivateKey) -> None:
    """Replace the envelope: ``payload`` signed with model_signing 0.2.0's malformed PAE."""
    signature = key.sign(legacy_pae_v020(payload), ec.ECDSA(hashes.SHA256()))
    doc["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    doc["dsseEnvelope"]["signatures"] = [{"sig": base64.b64encode(signature).decode()}]


def test_legacy_pae_needs_the_exact_predicate_type(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    key, cert = pki.leaf("release", [x509.RFC822Name(EMAIL)])
    model = make_model(tmp_path)
    sig = _sign(capsys, pki, model, key, cert)
    doc = _read(sig)
    statement = json.loads(_payload(doc))

    # a current statement that merely mentions the legacy predicate: the legacy PAE is refused
    mention = {**statement, "comment": LEGACY_PREDICATE_TYPE}
    _legacy_signed(doc, json.dumps(mention).encode(), _leaf_key(key))
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 1
    assert "the signature does not verify with the key of the leaf" in _one_line(r)

    # a statement whose predicateType is exactly the legacy one: the 0.2.0 PAE verifies
    names = ("config.json", "sub/tokenizer.txt", "weights.bin")
    digests = {n: hashlib.sha256((model / n).read_bytes()).hexdigest() for n in names}
    subjects = [{"name": n, "digest": {"sha256": d}} for n, d in digests.items()]
    legacy = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": LEGACY_PREDICATE_TYPE,
        "predicate": {},
    }
    _legacy_signed(doc, json.dumps(legacy).encode(), _leaf_key(key))
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 0, r.err


def test_too_many_signatures_or_timestamps_are_refused(
    tmp_path: Path, pki: Pki, tsa: Tsa, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each costs a verification: their number is bounded, not only the file's size."""
    key, cert = pki.leaf("release", [x509.RFC822Name(EMAIL)])
    model = make_model(tmp_path)
    sig = _sign(capsys, pki, model, key, cert)
    doc = _read(sig)
    one = _signatures(doc)[0]
    doc["dsseEnvelope"]["signatures"] = [one] * (MAX_SIGNATURES + 1)
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 2
    assert f"carries {MAX_SIGNATURES + 1} signatures, more than" in _one_line(r)

    doc["dsseEnvelope"]["signatures"] = [one]
    ts = _timestamp(tsa, base64.b64decode(one["sig"]), NOW - dt.timedelta(minutes=1))
    _set_timestamps(doc, *[ts] * (MAX_TIMESTAMPS + 1))
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 2
    assert f"carries {MAX_TIMESTAMPS + 1} RFC 3161 timestamps" in _one_line(r)
    _set_timestamps(doc, *[ts] * MAX_TIMESTAMPS)
    sig.write_text(json.dumps(doc))
    r = _verify(capsys, model, pki.root_pem)
    assert r.code == 0, r.err


def test_keyless_envelope_with_a_grafted_signature_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same class for Sigstore: only the one logged signature counts (sigstore-python).

    A guard, not a fix: a keyless envelope with a second signature is refused, so nothing
    but the verified signature can be dated or named.
    """
    from mlverify._internal.manifest.build import hash_model
    from mlverify._internal.signing.statement import statement_bytes
    from tests.signing.virtual_sigstore import VirtualSigstore

    model = make_model(tmp_path)
    vs = VirtualSigstore()
    sig = tmp_path / "ci.sig"
    sig.write_bytes(
        vs.sign_dsse(statement_bytes(hash_model(model)), "ci@example.com", "https://idp.test")
    )
    root = vs.write_trusted_root(tmp_path / "root.json")
    args = ["verify", model, "--signature", sig, "--identity", "ci@example.com"]
    args += ["--issuer", "https://idp.test", "--trust-root", root]
    assert run(capsys, *args).code == 0
    doc = _read(sig)
    _signatures(doc).append({"sig": base64.b64encode(b"grafted").decode(), "keyid": ""})
    sig.write_text(json.dumps(doc))
    r = run(capsys, *args)
    assert r.code in (1, 2) and "exactly one signature" in _one_line(r), r.err
