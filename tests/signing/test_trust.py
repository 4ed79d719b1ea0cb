"""Trusted signers are modelled once: policy YAML and CLI options give the same values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlverify._internal.cli.trust_options import TrustArgs, trust_from_options
from mlverify._internal.errors import UsageError
from mlverify._internal.policy.model import PolicyError, load_policy
from mlverify._internal.signing.api import sign_artifact, verify_artifact
from mlverify._internal.signing.methods import load_signer
from mlverify._internal.signing.trust import (
    Trust,
    TrustedCertificate,
    TrustedKey,
    TrustedSigstore,
    compile_trust,
    trusted_key,
)
from tests.core.helpers import write_key_pair
from tests.signing.helpers import make_model, make_pki, run

ISSUER = "https://token.actions.githubusercontent.com"


def write_policy(path: Path, trusted: list[dict[str, object]], **signatures: object) -> Path:
    doc = {
        "apiVersion": "mlverify.dev/v1",
        "kind": "Policy",
        "metadata": {"name": "t"},
        "spec": {"signatures": {"required": True, "trusted": trusted, **signatures}},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_policy_and_cli_give_the_same_trusted_signers(tmp_path: Path) -> None:
    _, public = write_key_pair(tmp_path, "p256")
    pki = make_pki(tmp_path)
    policy = write_policy(
        tmp_path / "p.yaml",
        [
            {"key": public.name},  # relative to the policy file
            {
                "certificate": {
                    "roots": [pki.root_pem.name],
                    "identities": ["alice@example.com"],
                    "identity_regex": r".*@example\.com",
                }
            },
            {
                "sigstore": {
                    "issuer": ISSUER,
                    "identity_regex": "https://github.com/acme/.*",
                    "source_repo": "acme/model",
                }
            },
        ],
    )
    rules = load_policy(policy).signatures
    key_cli = trust_from_options([str(public)], TrustArgs())
    cert_cli = trust_from_options(
        [],
        TrustArgs(
            identities=("alice@example.com",),
            identity_regex=r".*@example\.com",
            cert_roots=(pki.root_pem,),
        ),
    )
    store_cli = trust_from_options(
        [],
        TrustArgs(
            identity_regex="https://github.com/acme/.*", issuer=ISSUER, source_repo="acme/model"
        ),
    )
    assert key_cli.signers == rules.keys
    assert isinstance(rules.keys[0], TrustedKey) and rules.keys[0].path == public
    assert cert_cli.signers == rules.certificates
    assert isinstance(rules.certificates[0], TrustedCertificate)
    assert store_cli.signers == rules.sigstore
    assert isinstance(rules.sigstore[0], TrustedSigstore)


def test_a_bad_identity_regex_fails_at_policy_load_and_lint_not_mid_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(
        tmp_path / "p.yaml", [{"sigstore": {"issuer": ISSUER, "identity_regex": "(unclosed"}}]
    )
    with pytest.raises(PolicyError) as e:
        load_policy(policy)
    assert str(policy) in str(e.value) and "trusted[0]" in str(e.value)
    assert "identity regex '(unclosed' is not a valid regular expression" in str(e.value)
    assert "--identity-regex" not in str(e.value)  # neutral: no CLI flag in a policy error
    r = run(capsys, "policy", "lint", policy)
    assert r.code != 0 and "not a valid regular expression" in r.out + r.err
    # the command line names its option
    r = run(capsys, "verify", make_model(tmp_path), "--identity-regex", "(", "--issuer", ISSUER)
    assert r.code == 2 and "--identity-regex: identity regex '('" in r.err


def test_a_policy_key_is_read_once_never_again(tmp_path: Path) -> None:
    """Replacing the key file after the policy is loaded changes nothing."""
    private, public = write_key_pair(tmp_path, "p256")
    model = make_model(tmp_path)
    sign_artifact(model, load_signer(str(private)))
    rules = load_policy(write_policy(tmp_path / "p.yaml", [{"key": str(public)}])).signatures
    fingerprint = rules.keys[0].fingerprint
    other = tmp_path / "other"
    other.mkdir()
    _, other_public = write_key_pair(other, "p256")
    public.write_bytes(other_public.read_bytes())  # the file now holds another key
    trust = Trust(rules.keys)
    assert verify_artifact(model, trust).signer == f"key {fingerprint}"
    assert compile_trust(trust) is compile_trust(Trust(rules.keys))  # compiled once
    assert trusted_key(str(public)).fingerprint != fingerprint


def test_inline_public_key_with_pinned_fingerprint(tmp_path: Path) -> None:
    _, public = write_key_pair(tmp_path, "p384")
    fp = trusted_key(str(public)).fingerprint
    pem = public.read_text()
    rules = load_policy(
        write_policy(tmp_path / "p.yaml", [{"public_key": pem, "fingerprint": fp.upper()}])
    ).signatures
    assert rules.keys[0].fingerprint == fp and rules.keys[0].path is None
    with pytest.raises(PolicyError) as e:
        load_policy(
            write_policy(tmp_path / "q.yaml", [{"public_key": pem, "fingerprint": "sha256:ab"}])
        )
    assert "is not sha256:<64 hex digits>" in str(e.value)
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(tmp_path / "r.yaml", [{"public_key": "not pem"}]))
    assert "not a PEM public key" in str(e.value)


def test_a_missing_policy_key_is_a_lint_error_and_stops_a_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path / "p.yaml", [{"key": "keys/absent.pub"}])
    rules = load_policy(policy).signatures  # loads: `policy test` on evidence needs no key
    assert rules.keys[0].problem and "absent.pub" in rules.keys[0].problem
    r = run(capsys, "policy", "lint", policy)
    assert r.code != 0 and "absent.pub" in r.out + r.err
    private, _ = write_key_pair(tmp_path, "p256")
    model = make_model(tmp_path)
    sign_artifact(model, load_signer(str(private)))
    r = run(capsys, "check", model, "--policy", policy)
    assert r.code == 2 and "absent.pub" in r.err and "allow" not in r.out.lower()


def test_trust_values_validate_themselves() -> None:
    with pytest.raises(UsageError, match="no trusted signer"):
        Trust(())
    with pytest.raises(UsageError, match="needs an OIDC issuer"):
        TrustedSigstore(issuer="", identities=("a",))
    with pytest.raises(UsageError, match="identities or an identity regex"):
        TrustedSigstore(issuer=ISSUER)
    with pytest.raises(UsageError, match="at least one root"):
        TrustedCertificate((), (), identities=("a",))
