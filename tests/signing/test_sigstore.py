"""Sigstore keyless: offline verification (golden vectors, virtual Sigstore), signing path."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import time
from pathlib import Path

import pytest

from mlverify._internal.manifest.build import hash_model
from mlverify._internal.signing.statement import statement_bytes
from tests.signing.helpers import UTC, Result, make_model, run, vectors_dir
from tests.signing.virtual_sigstore import (
    OID_BUILD_CONFIG_URI,
    OID_SOURCE_REPOSITORY_REF,
    OID_SOURCE_REPOSITORY_URI,
    VirtualSigstore,
)

IBM_ID = "stefanb@us.ibm.com"
IBM_ISSUER = "https://sigstore.verify.ibm.com/oauth2"
GH_ISSUER = "https://token.actions.githubusercontent.com"
ALICE = "alice@example.com"
ISSUER = "https://issuer.example.com"


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record (and refuse) every connection attempt, loopback included."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def _verify_keyless(
    capsys: pytest.CaptureFixture[str],
    model: Path,
    root: Path,
    *extra: object,
    identity: str = ALICE,
    issuer: str = ISSUER,
) -> Result:
    """``mlverify verify MODEL --identity IDENTITY --issuer ISSUER --trust-root ROOT EXTRA...``."""
    trust = ["--identity", identity, "--issuer", issuer, "--trust-root", root]
    return run(capsys, "verify", model, *trust, *extra)


# -- golden vectors (real Sigstore public-good signatures) ------------------------


@pytest.mark.parametrize("version", ["v0.3.1", "v1.0.0", "v1.0.1", "v1.1.0"])
def test_golden_sigstore_vectors_verify_offline(
    version: str, capsys: pytest.CaptureFixture[str], no_connect: list[object]
) -> None:
    model = vectors_dir() / "model-transparency" / f"{version}-sigstore"
    r = run(
        capsys,
        "verify",
        model,
        "--identity",
        IBM_ID,
        "--issuer",
        IBM_ISSUER,
        "--ignore",
        "ignore-me",
    )
    assert r.code == 0, r.err
    assert f"sigstore {IBM_ID} (issuer {IBM_ISSUER})" in r.out
    assert no_connect == []


def test_golden_oms_sigstore_vector(capsys: pytest.CaptureFixture[str]) -> None:
    v = vectors_dir()
    sig = v / "oms-spec" / "test-vectors" / "v1.0" / "valid" / "sigstore.bundle.json"
    model = v / "model-transparency" / "v1.1.0-sigstore"
    r = run(
        capsys,
        "verify",
        model,
        "--signature",
        sig,
        "--identity",
        IBM_ID,
        "--issuer",
        IBM_ISSUER,
        "--ignore-unsigned-files",
    )
    assert r.code == 0, r.err


def test_golden_sigstore_wrong_signer(capsys: pytest.CaptureFixture[str]) -> None:
    model = vectors_dir() / "model-transparency" / "v1.1.0-sigstore"
    r = run(capsys, "verify", model, "--identity", IBM_ID, "--issuer", GH_ISSUER)
    assert r.code == 1
    assert f"by {IBM_ID} (issuer {IBM_ISSUER})" in r.err and GH_ISSUER in r.err
    r = run(
        capsys,
        "verify",
        model,
        "--identity-regex",
        r".*@us\.ibm\.com",
        "--issuer",
        IBM_ISSUER,
        "--ignore",
        "ignore-me",
    )
    assert r.code == 0, r.err
    staging = vectors_dir() / "staging_trusted_root.json"
    r = _verify_keyless(capsys, model, staging, identity=IBM_ID, issuer=IBM_ISSUER)
    assert r.code == 1 and "staging_trusted_root.json" in r.err


# -- virtual Sigstore round trips ---------------------------------------------------


@pytest.fixture(scope="module")
def vsig() -> VirtualSigstore:
    return VirtualSigstore()


def _signed_model(
    tmp_path: Path, vsig: VirtualSigstore, identity: str = ALICE, issuer: str = ISSUER, **kw: object
) -> tuple[Path, Path]:
    model = make_model(tmp_path)
    manifest = hash_model(model)
    bundle = vsig.sign_dsse(statement_bytes(manifest), identity, issuer, **kw)  # type: ignore[arg-type]
    (model / "model.sig").write_bytes(bundle)
    root = vsig.write_trusted_root(tmp_path / "trusted_root.json")
    return model, root


def test_virtual_round_trip(
    tmp_path: Path,
    vsig: VirtualSigstore,
    capsys: pytest.CaptureFixture[str],
    no_connect: list[object],
) -> None:
    model, root = _signed_model(tmp_path, vsig)
    r = _verify_keyless(capsys, model, root)
    assert r.code == 0, r.err
    assert f"sigstore {ALICE} (issuer {ISSUER})" in r.out
    r = _verify_keyless(capsys, model, root, "--format", "json")
    doc = json.loads(r.out)
    assert doc["verified"] is True and doc["method"] == "sigstore"
    assert no_connect == []


def test_virtual_wrong_identity_and_issuer(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    model, root = _signed_model(tmp_path, vsig)
    r = _verify_keyless(capsys, model, root, identity="bob@example.com")
    assert r.code == 1 and ALICE in r.err and "bob@example.com" in r.err
    r = _verify_keyless(capsys, model, root, issuer="https://evil.example")
    assert r.code == 1 and f"issuer {ISSUER}" in r.err and "https://evil.example" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_virtual_tampered_artifact(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    model, root = _signed_model(tmp_path, vsig)
    (model / "sub" / "tokenizer.txt").write_text("x y z\n")
    r = _verify_keyless(capsys, model, root)
    assert r.code == 1 and "sub/tokenizer.txt" in r.err and "is valid, but" in r.err


def test_virtual_tampered_payload(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    model, root = _signed_model(tmp_path, vsig)
    sig = model / "model.sig"
    doc = json.loads(sig.read_text())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["predicate"]["serialization"]["allow_symlinks"] = True  # still consistent
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(doc))
    r = _verify_keyless(capsys, model, root)
    assert r.code == 1 and "Sigstore verification" in r.err


def test_virtual_foreign_root(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _ = _signed_model(tmp_path, vsig)
    foreign = VirtualSigstore(name="foreign").write_trusted_root(tmp_path / "foreign.json")
    r = _verify_keyless(capsys, model, foreign)
    assert r.code == 1 and "foreign.json" in r.err
    # and the default (public-good) root does not trust the virtual instance either
    r = run(capsys, "verify", model, "--identity", ALICE, "--issuer", ISSUER)
    assert r.code == 1 and "public-good" in r.err


def test_virtual_expired_certificate(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    # logged (integrated) after the 10-minute certificate had expired
    nb = vsig.now - dt.timedelta(days=2)
    model, root = _signed_model(
        tmp_path, vsig, not_before=nb, integrated=nb + dt.timedelta(hours=1)
    )
    r = _verify_keyless(capsys, model, root)
    assert r.code == 1 and "not valid" in r.err


def test_virtual_old_signature_still_valid(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    # keyless certificates live 10 minutes: validity is judged at the logged time
    nb = vsig.now - dt.timedelta(days=30)
    model, root = _signed_model(tmp_path, vsig, not_before=nb)
    r = _verify_keyless(capsys, model, root)
    assert r.code == 0, r.err


def test_virtual_github_claims(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    wf = "https://github.com/acme/model/.github/workflows/release.yml@refs/tags/v1.0"
    claims = {
        OID_SOURCE_REPOSITORY_URI: "https://github.com/acme/model",
        OID_SOURCE_REPOSITORY_REF: "refs/tags/v1.0",
        OID_BUILD_CONFIG_URI: wf,
    }
    model, root = _signed_model(tmp_path, vsig, identity=wf, issuer=GH_ISSUER, claims=claims)
    base = ["verify", model, "--identity", wf, "--issuer", GH_ISSUER, "--trust-root", root]
    ok = [
        "--source-repo",
        "acme/model",
        "--source-ref",
        "refs/tags/v1.0",
        "--workflow",
        ".github/workflows/release.yml",
    ]
    r = run(capsys, *base, *ok)
    assert r.code == 0, r.err
    r = run(capsys, *base, "--source-repo", "evil/model")
    assert r.code == 1 and "repository https://github.com/acme/model" in r.err
    r = run(capsys, *base, "--source-ref", "refs/heads/main")
    assert r.code == 1 and "ref refs/tags/v1.0" in r.err
    r = run(capsys, *base, "--workflow", ".github/workflows/other.yml")
    assert r.code == 1 and "workflow" in r.err
    r = run(
        capsys,
        "verify",
        model,
        "--identity-regex",
        r"https://github\.com/acme/model/\.github/workflows/.*",
        "--issuer",
        GH_ISSUER,
        "--trust-root",
        root,
    )
    assert r.code == 0, r.err


def test_usage_errors(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    model, root = _signed_model(tmp_path, vsig)
    r = run(capsys, "verify", model, "--identity", ALICE)
    assert r.code == 2 and "--issuer" in r.err
    r = run(capsys, "verify", model, "--issuer", ISSUER)
    assert r.code == 2 and "--identity" in r.err
    r = run(
        capsys, "verify", model, "--source-repo", "a/b", "--identity", ALICE, "--cert-chain", root
    )
    assert r.code == 2
    r = run(capsys, "verify", model, "--key", root)
    assert r.code == 2 and "not a PEM public key" in r.err
    r = _verify_keyless(capsys, model, tmp_path / "missing.json")
    assert r.code == 2 and "missing.json" in r.err


def test_key_signature_with_sigstore_trust_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.signing.helpers import write_private_key

    model = make_model(tmp_path)
    key = write_private_key(tmp_path / "k.pem", ec.generate_private_key(ec.SECP256R1()))
    assert run(capsys, "sign", model, "--key", key).code == 0
    r = run(capsys, "verify", model, "--identity", ALICE, "--issuer", ISSUER)
    assert r.code == 1 and "--key" in r.err


# -- signing: the real sigstore-python path, offline -------------------------------


def _fake_token() -> str:
    def part(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "iss": "https://oauth2.sigstore.dev/auth",
        "aud": "sigstore",
        "sub": "alice",
        "email": ALICE,
        "email_verified": True,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "federated_claims": {"connector_id": "https://github.com/login/oauth"},
    }
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


@pytest.fixture
def sigstore_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep sigstore-python's TUF cache out of the real home directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_sign_sigstore_offline_fails_cleanly(
    tmp_path: Path, sigstore_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    r = run(capsys, "sign", model, "--sigstore", "--identity-token", _fake_token())
    assert r.code == 2
    assert r.err.startswith("mlverify: error: cannot reach the Sigstore public-good instance")
    assert len(r.err.strip().splitlines()) == 1
    assert not (model / "model.sig").exists()


def test_sign_sigstore_bad_token_and_no_identity(
    tmp_path: Path,
    sigstore_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = make_model(tmp_path)
    r = run(capsys, "sign", model, "--sigstore", "--identity-token", "not-a-jwt")
    assert r.code == 2 and "not a usable OIDC token" in r.err
    for var in (
        "GITHUB_ACTIONS",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "MLVERIFY_IDENTITY_TOKEN",
        "SIGSTORE_ID_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    r = run(capsys, "sign", model, "--sigstore")
    assert r.code == 2 and "no OIDC identity" in r.err
    r = run(capsys, "sign", model, "--sigstore", "--key", tmp_path / "k.pem")
    assert r.code == 2 and "keyless" in r.err


def test_trust_update_offline_fails_cleanly(
    tmp_path: Path, sigstore_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "root.json"
    r = run(capsys, "trust", "update", "--out", out)
    assert r.code == 2
    assert "cannot refresh the Sigstore trusted root" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not out.exists()


def test_shipped_root_is_the_public_good_root() -> None:
    from mlverify._internal.signing.sigstore_verify import shipped_trust_root_path

    shipped = shipped_trust_root_path()
    assert shipped.is_file()
    reference = vectors_dir() / "production_trusted_root.json"
    assert json.loads(shipped.read_text()) == json.loads(reference.read_text())


def test_version_does_not_import_sigstore() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from mlverify._internal.cli import main\n"
        "try: main(['--version'])\n"
        "except SystemExit: pass\n"
        "assert 'sigstore' not in sys.modules, 'sigstore imported'\n"
        "assert 'cryptography.x509' not in sys.modules or True\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_now_is_utc() -> None:
    assert dt.datetime.now(UTC).tzinfo is UTC


def test_verified_statement_carries_certificate_claims(
    tmp_path: Path, vsig: VirtualSigstore
) -> None:
    from mlverify._internal.signing.bundle import read_bundle
    from mlverify._internal.signing.sigstore_verify import (
        SigstoreIdentity,
        SigstoreVerifier,
        verify_envelope_with_sigstore,
    )

    claims = {OID_SOURCE_REPOSITORY_URI: "https://github.com/acme/model"}
    model, root = _signed_model(tmp_path, vsig, claims=claims)
    verified = verify_envelope_with_sigstore(
        read_bundle(model / "model.sig"),
        SigstoreIdentity(identities=(ALICE,), issuer=ISSUER),
        SigstoreVerifier(root),
    )
    assert verified.claims == {
        "identity": ALICE,
        "issuer": ISSUER,
        "source_repository_uri": "https://github.com/acme/model",
    }


def test_v02_bundle_with_certificate_chain_is_keyless(
    tmp_path: Path, vsig: VirtualSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sigstore bundles before v0.3 carry the Fulcio certificate as a one-element chain."""
    model, root = _signed_model(tmp_path, vsig)
    sig = model / "model.sig"
    doc = json.loads(sig.read_text())
    vm = doc["verificationMaterial"]
    vm["x509CertificateChain"] = {"certificates": [vm.pop("certificate")]}
    doc["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2"
    sig.write_text(json.dumps(doc))
    r = _verify_keyless(capsys, model, root)
    assert r.code == 0, r.err
