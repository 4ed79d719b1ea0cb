"""`mlverify verify-bundle`: the sigstore-conformance suite and real sigstore-python bundles."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mlverify._internal.errors import InputError, MlverifyError
from mlverify._internal.signing.generic import UnsupportedBundleError, verify_any_bundle
from mlverify._internal.signing.methods import load_public_key
from mlverify._internal.signing.sigstore_verify import SigstoreIdentity
from tests.signing.helpers import VECTORS, Result, run, vectors_dir, write_public_key

CONFORMANCE = VECTORS / "sigstore-conformance-bundle-verify"
DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"
CASES = sorted(p.name for p in CONFORMANCE.iterdir() if p.is_dir()) if CONFORMANCE.is_dir() else []


def conformance_verdict(case: Path) -> tuple[str, str]:
    """("valid" | "invalid" | "unsupported", message) for one conformance case."""
    base = case.parent
    artifact = case / "artifact" if (case / "artifact").exists() else base / "a.txt"
    root = case / "trusted_root.json"
    trust_root = root if root.exists() else base.parent / "production_trusted_root.json"
    try:
        if (case / "key.pub").exists():
            key = load_public_key(str(case / "key.pub"))
            verify_any_bundle(
                artifact, case / "bundle.sigstore.json", key=key, trust_root=trust_root
            )
        else:
            ident = case / "identity"
            iss = case / "issuer"
            identity = SigstoreIdentity(
                identities=(ident.read_text().strip() if ident.exists() else DEFAULT_IDENTITY,),
                issuer=iss.read_text().strip() if iss.exists() else DEFAULT_ISSUER,
            )
            verify_any_bundle(
                artifact, case / "bundle.sigstore.json", identity=identity, trust_root=trust_root
            )
    except UnsupportedBundleError as e:
        return "unsupported", str(e)
    except MlverifyError as e:
        return "invalid", str(e)
    return "valid", ""


@pytest.mark.parametrize("name", CASES or ["(vectors absent)"])
def test_conformance_case(name: str) -> None:
    vectors_dir()
    verdict, message = conformance_verdict(CONFORMANCE / name)
    assert verdict != "unsupported", message  # none left; would be listed in docs
    expected = "invalid" if name.endswith("_fail") else "valid"
    assert verdict == expected, message


def test_conformance_table() -> None:
    """Print the table quoted in docs/signatures.md (pytest -s, or see the -rA summary)."""
    vectors_dir()
    counts: Counter[str] = Counter()
    wrong = []
    for name in CASES:
        verdict, _ = conformance_verdict(CONFORMANCE / name)
        expected = "invalid" if name.endswith("_fail") else "valid"
        if verdict == "unsupported":
            counts["unsupported"] += 1
        elif verdict == expected == "valid":
            counts["passed"] += 1
        elif verdict == expected == "invalid":
            counts["failed as expected"] += 1
        else:
            counts["WRONG"] += 1
            wrong.append(name)
    table = (
        "sigstore-conformance bundle-verify "
        f"({len(CASES)} cases): passed {counts['passed']} | failed as expected "
        f"{counts['failed as expected']} | unsupported {counts['unsupported']} | "
        f"wrong {counts['WRONG']}"
    )
    print(table)
    assert counts["passed"] + counts["failed as expected"] + counts["unsupported"] == len(CASES)
    assert not wrong, wrong
    assert len(CASES) == 70


# -- real bundles from sigstore-python's test assets ---------------------------------

REAL = [
    (
        "bundle_v3_github.whl",
        "production",
        "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2",
        DEFAULT_ISSUER,
    ),
    ("bundle.txt", "staging", "a@tny.town", "https://github.com/login/oauth"),
    ("bundle_v3.txt", "staging", "william@yossarian.net", "https://github.com/login/oauth"),
    ("bundle_v3_alt.txt", "staging", "william@yossarian.net", "https://github.com/login/oauth"),
    ("staging-rekor-v2.txt", "staging", "jku@goto.fi", "https://github.com/login/oauth"),
]


def _bundle_for(artifact: Path) -> Path:
    for suffix in (".sigstore.json", ".sigstore"):
        candidate = artifact.with_name(artifact.name + suffix)
        if candidate.exists():
            return candidate
    raise AssertionError(f"no bundle for {artifact}")


def _verify_real(
    capsys: pytest.CaptureFixture[str], artifact: Path, identity: list[str], root: Path
) -> Result:
    """``mlverify verify-bundle ARTIFACT --bundle BUNDLE IDENTITY... --trust-root ROOT``.

    BUNDLE is the one stored beside the artifact (see ``_bundle_for``).
    """
    bundle = ["--bundle", _bundle_for(artifact)]
    return run(capsys, "verify-bundle", artifact, *bundle, *identity, "--trust-root", root)


@pytest.mark.parametrize(("name", "instance", "identity", "issuer"), REAL)
def test_real_sigstore_python_bundles(
    name: str, instance: str, identity: str, issuer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    v = vectors_dir()
    artifact = v / "sigstore-python" / name
    root = v / f"{instance}_trusted_root.json"
    signer = ["--identity", identity, "--issuer", issuer]
    r = _verify_real(capsys, artifact, signer, root)
    assert r.code == 0, r.err
    assert f"signed by sigstore {identity}" in r.out
    other = "staging" if instance == "production" else "production"
    r = _verify_real(capsys, artifact, signer, v / f"{other}_trusted_root.json")
    assert r.code == 1


def test_real_staging_dsse_bundle(capsys: pytest.CaptureFixture[str]) -> None:
    v = vectors_dir()
    bundle = v / "sigstore-python" / "a.dsse.staging-rekor-v2.txt.sigstore.json"
    root = v / "staging_trusted_root.json"
    # The statement's subject is the conformance a.txt (sha256 a0cfc712...), not the file
    # named like the bundle: verify-bundle checks the subject digest.
    subject = v / "sigstore-conformance-bundle-verify" / "a.txt"
    args = [
        "--bundle",
        bundle,
        "--identity",
        DEFAULT_IDENTITY,
        "--issuer",
        DEFAULT_ISSUER,
        "--trust-root",
        root,
    ]
    r = run(capsys, "verify-bundle", subject, *args)
    assert r.code == 0, r.err
    assert "DSSE application/vnd.in-toto+json" in r.out
    r = run(capsys, "verify-bundle", v / "sigstore-python" / "a.dsse.staging-rekor-v2.txt", *args)
    assert r.code == 1 and "statement names sha256 a0cfc712" in r.err


def test_cve_2022_36056_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    v = vectors_dir()
    artifact = v / "sigstore-python" / "bundle_cve_2022_36056.txt"
    signer = ["--identity-regex", ".*", "--issuer", "https://github.com/login/oauth"]
    for root in ("staging", "production"):
        r = _verify_real(capsys, artifact, signer, v / f"{root}_trusted_root.json")
        assert r.code == 1, r.err
    assert "inconsistent" in r.err or "failed" in r.err


def test_managed_key_cli_and_wrong_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = vectors_dir() / "sigstore-conformance-bundle-verify" / "managed-key-happy-path"
    artifact = case.parent / "a.txt"
    r = run(
        capsys,
        "verify-bundle",
        artifact,
        "--bundle",
        case / "bundle.sigstore.json",
        "--key",
        case / "key.pub",
        "--format",
        "json",
    )
    assert r.code == 0, r.err
    assert json.loads(r.out)["signer"].startswith("key sha256:")
    other = write_public_key(tmp_path / "other.pub", ec.generate_private_key(ec.SECP256R1()))
    r = run(
        capsys, "verify-bundle", artifact, "--bundle", case / "bundle.sigstore.json", "--key", other
    )
    assert r.code == 1 and "does not verify" in r.err
    r = run(
        capsys,
        "verify-bundle",
        case / "README",
        "--bundle",
        case / "bundle.sigstore.json",
        "--key",
        case / "key.pub",
    )
    assert r.code == 1 and "the artifact has" in r.err


def test_verify_bundle_usage(capsys: pytest.CaptureFixture[str]) -> None:
    case = vectors_dir() / "sigstore-conformance-bundle-verify" / "happy-path-v0.3"
    r = run(
        capsys, "verify-bundle", case.parent / "a.txt", "--bundle", case / "bundle.sigstore.json"
    )
    assert r.code == 2 and "no trusted signer" in r.err
    r = run(
        capsys,
        "verify-bundle",
        case.parent / "missing",
        "--bundle",
        case / "bundle.sigstore.json",
        "--identity",
        "x",
        "--issuer",
        "y",
    )
    assert r.code == 2 and "artifact not found" in r.err


def test_unsupported_is_never_valid(tmp_path: Path) -> None:
    """A DSSE payload that is not an in-toto statement cannot be tied to the artifact."""
    from mlverify._internal.signing.generic import _check_statement_subject

    with pytest.raises(UnsupportedBundleError):
        _check_statement_subject("text/plain", b"hello", b"\x00" * 32, "b.json")
    with pytest.raises(InputError):
        _check_statement_subject("application/vnd.in-toto+json", b"{", b"\x00" * 32, "b.json")
