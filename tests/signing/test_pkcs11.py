"""PKCS#11: RFC 7512 URIs, and signing on a real SoftHSM2 token, interoperating with model_signing.

The token lives in a temporary directory (SOFTHSM2_CONF), set up once per session
with softhsm2-util and keys made by pkcs11-tool (opensc). SoftHSM2 reads its
configuration once per process, so every test shares that one token directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mlverify._internal.errors import InputError, UsageError
from mlverify._internal.signing.methods.pkcs11 import parse_uri
from mlverify._internal.signing.trust import trusted_key
from tests.signing.helpers import make_model, make_pki, run

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
PIN = "4711"
TOKEN = "mlverify-test"
MODEL_SIGNING = Path(sys.executable).parent / "model_signing"


def _module() -> str | None:
    return next((m for m in MODULE_CANDIDATES if os.path.isfile(m)), None)


def _missing() -> str | None:
    for tool in ("softhsm2-util", "pkcs11-tool"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: softhsm2, opensc)"
    if _module() is None:
        return "libsofthsm2.so is not installed (Debian: softhsm2)"
    try:
        import PyKCS11  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return "PyKCS11 is not installed (pip install 'mlverify[pkcs11]')"
    return None


@dataclass(frozen=True)
class Token:
    module: str
    root: Path
    env: dict[str, str]

    def uri(self, label: str, *, pin: bool = True, extra: str = "") -> str:
        query = f"module-path={self.module}" + (f"&pin-value={PIN}" if pin else "")
        return f"pkcs11:token={TOKEN};object={label}{extra}?{query}"

    def tool(self, *args: str) -> str:
        done = subprocess.run(
            ["pkcs11-tool", "--module", self.module, "--token-label", TOKEN, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def public_pem(self, label: str, out: Path) -> Path:
        """The public key as pkcs11-tool lists it (its --read-object fails on P-384 here),
        converted to PEM with cryptography: independent of mlverify's token code."""
        listing = self.tool("--list-objects", "--type", "pubkey")
        for block in listing.split("Public Key Object")[1:]:
            fields = dict(
                (k.strip(), v.strip())
                for k, _, v in (line.partition(":") for line in block.splitlines()[1:])
            )
            if fields.get("label") != label:
                continue
            curve = {
                "06082a8648ce3d030107": ec.SECP256R1(),
                "06052b81040022": ec.SECP384R1(),
                "06052b81040023": ec.SECP521R1(),
            }
            point = bytes.fromhex(fields["EC_POINT"])
            point = point[3:] if point[1] == 0x81 else point[2:]  # the DER OCTET STRING
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve[fields["EC_PARAMS"]], point)
            out.write_bytes(
                key.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            return out
        raise AssertionError(f"no public key {label} on the token: {listing}")


@pytest.fixture(scope="session")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    why = _missing()
    if why:
        pytest.skip(why)
    module = _module()
    assert module is not None
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # this process's SoftHSM2 reads it once
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN,
         "--so-pin", "0000"],
        env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    t = Token(module, root, env)
    for label, key_id, curve in (
        ("p256", "01", "EC:prime256v1"),
        ("p384", "02", "EC:secp384r1"),
        ("p521", "05", "EC:secp521r1"),
        ("twin", "03", "EC:prime256v1"),
        ("twin", "04", "EC:prime256v1"),
    ):
        t.tool("--login", "--pin", PIN, "--keypairgen", "--key-type", curve, "--label", label,
               "--id", key_id)  # fmt: skip
    yield t
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


def model_signing(token: Token, *args: object) -> subprocess.CompletedProcess[str]:
    if not MODEL_SIGNING.exists():
        pytest.skip("the model_signing CLI is not installed (pip install 'model-signing[pkcs11]')")
    return subprocess.run(
        [str(MODEL_SIGNING), *map(str, args)],
        env=token.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- URI parsing: no token needed ------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("pkcs11:object=k;objct=x?module-path=/m.so", "unknown attribute 'objct'"),
        ("pkcs11:object=k;object=j?module-path=/m.so", "'object' is given twice"),
        ("pkcs11:token=t?module-path=/m.so", "names no key"),
        ("pkcs11:object=k", "names no PKCS#11 module"),
        ("pkcs11:object=k?module-path=lib.so", "module-path must be an absolute path"),
        ("pkcs11:object=k?module-path=/m.so&pin-value=1&pin-source=/p", "not both"),
        ("pkcs11:object=k;slot-id=x1?module-path=/m.so", "slot-id must be a decimal number"),
        ("pkcs11:object=k;type=cert?module-path=/m.so", "is not a key"),
        ("pkcs11:object?module-path=/m.so", "expected NAME=VALUE"),
        ("pkcs11:object=k?module-path=/m.so&pin=1", "unknown attribute 'pin'"),
    ],
)
def test_uri_defects_are_refused(uri: str, expected: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_uri(uri)
    assert expected in str(e.value)


def test_uri_attributes_are_decoded_and_the_pin_never_shown() -> None:
    u = parse_uri("pkcs11:token=My%20Token;id=%01%a2;x-vendor=1?module-path=/m.so&pin-value=s3cret")
    assert u.text_of("token") == "My Token" and u.get("id") == b"\x01\xa2"
    assert "s3cret" not in u.text and "pin-value=***" in u.text
    with pytest.raises(UsageError) as e:
        parse_uri("pkcs11:token=t;bogus=1?pin-value=s3cret&module-path=/m.so")
    assert "s3cret" not in str(e.value)
    # a policy key on an absent module: loadable, the problem named, the PIN never shown
    key = trusted_key(
        "pkcs11:object=k?module-path=/nonexistent/lib.so&pin-value=s3cret", defer_errors=True
    )
    assert "does not exist" in key.problem and "s3cret" not in key.problem + key.source
    with pytest.raises(InputError) as ie:
        key.public_key()
    assert "s3cret" not in str(ie.value)


def test_an_unknown_scheme_names_the_supported_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(capsys, "sign", make_model(tmp_path), "--key", "yubikey:slot=9c")
    assert r.code == 2 and "'yubikey:' is not supported" in r.err and "pkcs11:" in r.err


# -- a real SoftHSM2 token --------------------------------------------------------------


@pytest.mark.parametrize("label", ["p256", "p384", "p521"])
def test_token_signature_verifies_in_mlverify_and_model_signing(
    token: Token, tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str
) -> None:
    model = make_model(tmp_path)
    pub = token.public_pem(label, tmp_path / f"{label}.pub")
    r = run(capsys, "sign", model, "--key", token.uri(label))
    assert r.code == 0, r.err
    r = run(capsys, "verify", model, "--key", pub)
    assert r.code == 0, r.err
    assert "signed by key sha256:" in r.out
    # the trusted key may also be named by its URI: the token's public key object
    r = run(capsys, "verify", model, "--key", token.uri(label, pin=False))
    assert r.code == 0, r.err
    done = model_signing(
        token, "verify", "key", "--signature", model / "model.sig", "--public_key", pub, model
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (model / "config.json").write_text('{"layers": 3}\n')
    r = run(capsys, "verify", model, "--key", pub)
    assert r.code == 1 and "changed: config.json" in r.err
    done = model_signing(
        token, "verify", "key", "--signature", model / "model.sig", "--public_key", pub, model
    )
    assert done.returncode != 0


def test_model_signing_token_signature_verifies_in_mlverify(
    token: Token, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    pub = token.public_pem("p256", tmp_path / "p256.pub")
    sig = tmp_path / "ms.sig"
    done = model_signing(
        token, "sign", "pkcs11-key", "--signature", sig, "--pkcs11_uri", token.uri("p256"), model
    )
    assert done.returncode == 0, done.stdout + done.stderr
    r = run(capsys, "verify", model, "--signature", sig, "--key", pub)
    assert r.code == 0, r.err
    other = token.public_pem("p384", tmp_path / "p384.pub")
    r = run(capsys, "verify", model, "--signature", sig, "--key", other)
    assert r.code == 1 and "no valid signature by a trusted key" in r.err


def test_pin_source_file_and_wrong_pin(
    token: Token, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    uri = f"pkcs11:token={TOKEN};object=p256?module-path={token.module}&pin-source={pin_file}"
    r = run(capsys, "sign", model, "--key", uri)
    assert r.code == 0, r.err
    wrong = f"pkcs11:token={TOKEN};object=p256?module-path={token.module}&pin-value=9999"
    r = run(capsys, "sign", model, "--key", wrong)
    assert r.code == 2 and "login to the token failed" in r.err and "9999" not in r.err
    assert "Traceback" not in r.err and r.err.count("\n") == 1
    no_pin = token.uri("p256", pin=False)
    r = run(capsys, "sign", model, "--key", no_pin)
    assert r.code == 2 and "needs the token's user PIN" in r.err


def test_a_uri_that_could_mean_two_keys_or_none_is_refused(
    token: Token, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    r = run(capsys, "sign", model, "--key", token.uri("twin"))
    assert r.code == 2 and "2 public key object(s) match" in r.err
    r = run(capsys, "sign", model, "--key", token.uri("twin", extra=";id=%04"))
    assert r.code == 0, r.err
    r = run(capsys, "sign", model, "--key", token.uri("absent"))
    assert r.code == 2 and "no public key object(s) match" in r.err
    other = token.uri("p256").replace(f"token={TOKEN}", "token=other")
    r = run(capsys, "sign", model, "--key", other)
    assert r.code == 2 and "no token match(es)" in r.err


def test_policy_trusts_a_token_key_by_uri_and_pins_its_fingerprint(
    token: Token, tmp_path: Path
) -> None:
    from mlverify._internal.policy.model import PolicyError, load_policy

    pub = token.public_pem("p256", tmp_path / "p256.pub")
    by_file = trusted_key(str(pub))
    by_uri = trusted_key(token.uri("p256", pin=False))
    assert by_uri.fingerprint == by_file.fingerprint
    assert by_uri.public_key_pem == by_file.public_key_pem
    policy = tmp_path / "policy.yaml"
    body = {
        "apiVersion": "mlverify.dev/v1",
        "kind": "Policy",
        "metadata": {"name": "hsm"},
        "spec": {
            "signatures": {
                "required": True,
                "trusted": [
                    {"key": token.uri("p256", pin=False), "fingerprint": by_file.fingerprint}
                ],
            }
        },
    }
    policy.write_text(json.dumps(body))
    loaded = load_policy(policy)
    assert loaded.signatures.keys[0].fingerprint == by_file.fingerprint
    body["spec"]["signatures"]["trusted"][0]["fingerprint"] = "sha256:" + "0" * 64  # type: ignore[index]
    policy.write_text(json.dumps(body))
    with pytest.raises(PolicyError) as e:
        load_policy(policy)
    assert "not the pinned sha256:000" in str(e.value)


def test_certificate_method_with_a_token_key(
    token: Token, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Key sources and bundle methods compose: a token key signs with its certificate."""
    from cryptography import x509

    pki = make_pki(tmp_path)
    pub = token.public_pem("p384", tmp_path / "p384.pub")
    key = serialization.load_pem_public_key(pub.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    _, leaf = pki.leaf("hsm", [x509.RFC822Name("hsm@example.com")], public_key=key)
    model = make_model(tmp_path)
    sig = tmp_path / "model.sig"
    r = run(
        capsys, "sign", model, "--key", token.uri("p384"), "--cert", leaf,
        "--cert-chain", pki.inter_pem, "--signature", sig,
    )  # fmt: skip
    assert r.code == 0, r.err
    r = run(
        capsys, "verify", model, "--signature", sig, "--cert-chain", pki.root_pem,
        "--identity", "hsm@example.com",
    )  # fmt: skip
    assert r.code == 0 and "certificate hsm@example.com" in r.out, r.err
    done = model_signing(
        token, "verify", "certificate", model, "--signature", sig,
        "--certificate_chain", pki.root_pem,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # a certificate for another key is refused before anything is signed
    _, stranger = pki.leaf("stranger", [x509.RFC822Name("x@example.com")])
    r = run(capsys, "sign", model, "--key", token.uri("p384"), "--cert", stranger)
    assert r.code == 2 and "not the signing key's" in r.err


def test_attestations_signed_on_the_token(
    token: Token, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`attest --key pkcs11:...` goes through the same registry as `sign`."""
    pub = token.public_pem("p256", tmp_path / "p256.pub")
    f = tmp_path / "weights.bin"
    f.write_bytes(b"weights")
    r = run(
        capsys, "attest", "provenance", f, "--builder-id", "b", "--source-repo", "r/s",
        "--source-ref", "refs/heads/main", "--key", token.uri("p256"),
    )  # fmt: skip
    assert r.code == 0, r.err
    assert run(capsys, "verify-attestation", f, "--key", pub).code == 0
    bundle = tmp_path / "weights.bin.provenance.sigstore.json"
    r = run(capsys, "verify-bundle", f, "--bundle", bundle, "--key", pub)
    assert r.code == 0 and "not in a transparency log" in r.out, r.err
