"""`mlverify check`: the decision table over real artifacts, and every fail-closed rule."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest

from tests.core.helpers import Result, evil_pickle, make_model, run, safetensors, write_key_pair

REPO = Path(__file__).resolve().parents[2]


def policy(tmp: Path, body: str, name: str = "p.yaml") -> Path:
    p = tmp / name
    p.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: test\n"
        + textwrap.dedent(body)
    )
    return p


def check(capsys: pytest.CaptureFixture[str], *args: object) -> Result:
    return run(capsys, "check", "--no-cache", *args)


@pytest.fixture
def signed_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    model = make_model(tmp_path)
    safetensors(model / "weights.safetensors")
    keys = tmp_path / "keys"
    keys.mkdir()
    private, public = write_key_pair(keys, "p256")
    assert run(capsys, "sign", model, "--key", private).code == 0
    return {"model": model, "private": private, "public": public}


def _signed_policy(tmp: Path, public: Path, extra: dict[str, object] | None = None) -> Path:
    import yaml

    spec = {"signatures": {"required": True, "trusted": [{"key": str(public)}]}, **(extra or {})}
    doc = {"apiVersion": "mlverify.dev/v1", "kind": "Policy", "metadata": {"name": "signed"}}
    p = tmp / "signed.yaml"
    p.write_text(yaml.safe_dump({**doc, "spec": spec}))
    return p


# ------------------------------------------------------------------ the decision table


def test_clean_unsigned_model_allowed_with_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = check(capsys, REPO / "fixtures" / "models" / "tiny-classifier")
    assert r.code == 0, r.out + r.err
    assert r.out.startswith("ALLOWED:") and "unsigned" in r.out
    assert "1 allowed, 0 denied" in r.err


def test_malicious_pickle_denied_with_the_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = check(capsys, evil_pickle(tmp_path / "model.bin"))
    assert r.code == 1
    assert "DENIED" in r.out and "os.system" in r.out and "via REDUCE" in r.out


def test_signed_model_allowed_by_trusted_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signed_model: dict[str, Path]
) -> None:
    p = _signed_policy(tmp_path, signed_model["public"])
    r = check(capsys, signed_model["model"], "--policy", p)
    assert r.code == 0, r.out
    assert "signed by key sha256:" in r.out


def test_unsigned_denied_when_signature_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signed_model: dict[str, Path]
) -> None:
    (signed_model["model"] / "model.sig").unlink()
    p = _signed_policy(tmp_path, signed_model["public"])
    r = check(capsys, signed_model["model"], "--policy", p)
    assert r.code == 1 and "missing evidence: signature" in r.out


def test_tampered_signed_model_denied_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signed_model: dict[str, Path]
) -> None:
    (signed_model["model"] / "config.json").write_text('{"layers": 3}\n')
    for p in (_signed_policy(tmp_path, signed_model["public"]), "builtin:default"):
        r = check(capsys, signed_model["model"], "--policy", p)
        assert r.code == 1, r.out
        assert "changed: config.json" in r.out


def test_untrusted_signer_denied_when_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signed_model: dict[str, Path]
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    _, other_public = write_key_pair(other, "p256")
    r = check(capsys, signed_model["model"], "--policy", _signed_policy(tmp_path, other_public))
    assert r.code == 1 and "no valid signature by a trusted key" in r.out


def test_key_rotation_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signed_model: dict[str, Path]
) -> None:
    expired = policy(
        tmp_path,
        f"""\
        spec:
          signatures:
            required: true
            trusted:
              - key: {signed_model["public"]}
                not_after: 2020-01-01
        """,
    )
    r = check(capsys, signed_model["model"], "--policy", expired)
    assert r.code == 1 and "trusts no signer" in r.out


def test_threshold_two_distinct_signers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signed_model: dict[str, Path]
) -> None:
    second = tmp_path / "second"
    second.mkdir()
    private2, public2 = write_key_pair(second, "ed25519")
    p = policy(
        tmp_path,
        f"""\
        spec:
          signatures:
            required: true
            threshold: 2
            trusted:
              - key: {signed_model["public"]}
                owner: alice
              - key: {public2}
                owner: bob
        """,
    )
    r = check(capsys, signed_model["model"], "--policy", p)
    assert r.code == 1 and "1 distinct trusted signer(s) (alice), 2 required" in r.out
    sig2 = tmp_path / "model.sig"  # beside the model: found by convention
    assert (
        run(capsys, "sign", signed_model["model"], "--key", private2, "--signature", sig2).code == 0
    )
    r = check(capsys, signed_model["model"], "--policy", p)
    assert r.code == 0, r.out


def test_formats_allow_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = policy(tmp_path, "spec:\n  formats:\n    allow: [safetensors]\n")
    st = safetensors(tmp_path / "model.safetensors")
    assert check(capsys, st, "--policy", p).code == 0
    pkl = tmp_path / "benign.pkl"
    pkl.write_bytes(b"\x80\x04K\x01.")  # the integer 1: no imports at all
    r = check(capsys, pkl, "--policy", p)
    assert r.code == 1 and "not allowed (allowed: safetensors)" in r.out


def test_exemption_valid_and_expired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = evil_pickle(tmp_path / "evil.pkl")
    today = dt.date.today()
    for expires, code, text in (
        (today + dt.timedelta(days=30), 0, "exempted by alice@example.com"),
        (today - dt.timedelta(days=1), 1, "exemption by alice@example.com expired"),
    ):
        p = policy(
            tmp_path,
            f"""\
            spec:
              exemptions:
                - rule: MLV101
                  subject: os.system
                  owner: alice@example.com
                  reason: vendor model under review
                  expires: {expires}
            """,
        )
        r = check(capsys, evil, "--policy", p)
        assert r.code == code, r.out
        assert text in r.out


def test_provenance_required_good_and_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signed_model: dict[str, Path]
) -> None:
    p = _signed_policy(
        tmp_path,
        signed_model["public"],
        {
            "attestations": {
                "provenance": {"required": True, "builder_ids": ["https://ci.example/train"]}
            }
        },
    )
    r = check(capsys, signed_model["model"], "--policy", p)
    assert r.code == 1 and "missing evidence: verified SLSA provenance" in r.out
    base = [
        "attest", "provenance", signed_model["model"], "--source-repo", "acme/m",
        "--source-ref", "refs/heads/main", "--key", signed_model["private"],
    ]  # fmt: skip
    assert run(capsys, *base, "--builder-id", "https://evil.example/x").code == 0
    r = check(capsys, signed_model["model"], "--policy", p)
    assert r.code == 1 and "is not an allowed builder" in r.out
    assert run(capsys, *base, "--builder-id", "https://ci.example/train").code == 0
    r = check(capsys, signed_model["model"], "--policy", p)
    assert r.code == 0, r.out
    assert "provenance by key" in r.out


def test_no_matching_policy_denies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = policy(tmp_path, "spec:\n  match:\n    paths: ['nothing/*']\n")
    r = check(capsys, safetensors(tmp_path / "m.safetensors"), "--policy", p)
    assert r.code == 1 and "no policy governs this artifact" in r.out


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("spec:\n  sigantures: {}\n", "unknown key(s) in 'policy.spec': sigantures"),
        ("spec:\n  mode: maybe\n", "must be enforce or warn"),
        ("spec:\n  scan:\n    max_severity: 7\n", "must be str"),
        ("spec: [\n", "not valid YAML"),
        ("spec:\n  signatures:\n    required: true\n", "no trusted signer is listed"),
        ("spec:\n  exemptions:\n    - rule: X\n", "needs owner, reason, expires"),
    ],
)
def test_broken_policy_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    p = policy(tmp_path, body)
    r = check(capsys, safetensors(tmp_path / "m.safetensors"), "--policy", p)
    assert r.code == 2 and message in r.err and r.err.count("\n") == 1


def test_cel_rule_false_error_and_true(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = safetensors(tmp_path / "m.safetensors")
    for expr, code, text in (
        ("evidence.artifact.size < 10", 1, "too-big: artifact too large"),
        ("evidence.artifact.no_such_key == 1", 1, "could not be evaluated"),
        ("evidence.artifact.size", 1, "not a boolean"),
        ("evidence.artifact.size < 1000000", 0, "ALLOWED"),
    ):
        p = policy(
            tmp_path,
            f"""\
            spec:
              rules:
                - name: too-big
                  expr: "{expr}"
                  message: artifact too large
            """,
        )
        r = check(capsys, st, "--policy", p)
        assert r.code == code, (expr, r.out)
        assert text in r.out


def test_warn_mode_exits_zero_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = policy(tmp_path, "spec:\n  mode: warn\n")
    r = check(capsys, evil_pickle(tmp_path / "evil.pkl"), "--policy", p)
    assert r.code == 0
    assert "ALLOWED (warn mode; would be DENIED)" in r.out and "warn mode" in r.err


def test_json_output_has_evidence_and_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = check(capsys, evil_pickle(tmp_path / "evil.pkl"), "--format", "json")
    doc = json.loads(r.out)
    res = doc["results"][0]
    assert res["schema_version"] == "mlverify.dev/check-result/v1"
    ev = res["evidence"]
    assert ev["schema_version"] == "mlverify.dev/evidence/v1"
    assert ev["artifact"]["formats"] == ["pickle"] and ev["artifact"]["kind"] == "file"
    assert ev["findings"][0]["subject"] == "os.system" and ev["findings"][0]["offset"] == 2
    assert ev["time"] and ev["environment"] in ("cli", "ci", "pre-commit")


def test_sarif_output_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = check(capsys, evil_pickle(tmp_path / "evil.pkl"), "--format", "sarif")
    doc = json.loads(r.out)
    results = doc["runs"][0]["results"]
    assert doc["version"] == "2.1.0" and results
    for res in results:
        loc = res["locations"][0]["physicalLocation"]
        assert not loc["artifactLocation"]["uri"].startswith("/")
        assert loc["region"]["startLine"] == 1 and res["partialFingerprints"]


def test_digest_cache_reuses_evidence_never_a_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = make_model(tmp_path)
    first = run(capsys, "check", "--cache", model)
    assert first.code == 0 and (tmp_path / "cache" / "mlverify" / "digests.sqlite3").exists()
    second = run(capsys, "check", "--cache", model)
    assert second.code == 0 and second.out == first.out
    evil_pickle(model / "extra.bin")
    third = run(capsys, "check", "--cache", model)
    assert third.code == 1


def test_file_changing_during_check_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlverify._internal.scan.engine as engine

    model = make_model(tmp_path)
    real = engine.scan_context

    def scan_and_modify(path: Path | str, *args: object, **kw: object):  # type: ignore[no-untyped-def]
        report = real(path, *args, **kw)  # type: ignore[arg-type]
        if Path(path).name == "config.json":  # (the batch scan passes locations as text)
            Path(path).write_text('{"layers": 99}\n')
        return report

    monkeypatch.setattr(engine, "scan_context", scan_and_modify)
    r = check(capsys, model)
    assert r.code == 2 and "changed while being checked" in r.err


def test_missing_artifact_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = check(capsys, tmp_path / "nope")
    assert r.code == 2 and "no such file or directory" in r.err


def test_shipped_policies_lint_and_tests(capsys: pytest.CaptureFixture[str]) -> None:
    r = run(capsys, "policy", "lint", REPO / "policies" / "default.yaml")
    assert r.code == 0, r.out
    r = run(capsys, "policy", "test", REPO / "policies" / "tests")
    assert r.code == 0, r.out + r.err
    assert "FAIL" not in r.out and "passed, 0 failed" in r.err


def test_lint_finds_vacuous_all_and_unknown_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = policy(
        tmp_path,
        """\
        spec:
          rules:
            - name: all-verified
              expr: "evidence.signatures.all(s, s.verified)"
            - name: guarded
              expr: "size(evidence.signatures) > 0 && evidence.signatures.all(s, s.verified)"
            - name: typo
              expr: "evidence.artefact.size > 0"
            - name: broken
              expr: "evidence.artifact.size >"
        """,
    )
    r = run(capsys, "policy", "lint", p)
    assert r.code == 1
    assert "all-verified: evidence.signatures.all(...) is true when" in r.out
    assert "guarded:" not in r.out
    assert "unknown evidence field 'artefact'" in r.out
    assert "broken: does not compile" in r.out


def test_evidence_names_the_trust_anchor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signed_model: dict[str, Path]
) -> None:
    p = _signed_policy(tmp_path, signed_model["public"])
    r = check(capsys, signed_model["model"], "--policy", p, "--format", "json")
    assert r.code == 0, r.out
    sig = json.loads(r.out)["results"][0]["evidence"]["signatures"][0]
    assert sig["status"] == "verified" and sig["method"] == "key"
    assert sig["anchor"] == sig["signer"] and sig["anchor"].startswith("key sha256:")
