"""Provenance and dataset attestations: produce, verify, and every rejection."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mlverify._internal.attest.provenance import builder_matches, github_defaults, ref_matches
from tests.core.helpers import Result, make_model, run, write_key_pair


@pytest.fixture
def setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    model = make_model(tmp_path)
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "train.csv").write_text("x,y\n1,2\n")
    (data / "test.csv").write_text("x,y\n3,4\n")
    keys = tmp_path / "keys"
    keys.mkdir()
    private, public = write_key_pair(keys, "p256")
    r = run(
        capsys,
        "attest",
        "provenance",
        model,
        "--builder-id",
        "https://github.com/acme/train/.github/workflows/train.yml@refs/tags/v1.2.0",
        "--source-repo",
        "https://github.com/acme/train",
        "--source-ref",
        "refs/tags/v1.2.0",
        "--source-commit",
        "a" * 40,
        "--dataset",
        data,
        "--base-model",
        "hf://bert-base-uncased@sha256:" + "b" * 64,
        "--param",
        "epochs=3",
        "--param",
        "lr=0.001",
        "--key",
        private,
    )
    assert r.code == 0, r.err
    return {
        "model": model,
        "data": data,
        "private": private,
        "public": public,
        "att": tmp_path / "model.provenance.sigstore.json",
    }


def _verify(capsys: pytest.CaptureFixture[str], s: dict[str, Path], *args: object) -> Result:
    return run(capsys, "verify-attestation", s["model"], "--key", s["public"], *args)


def _statement(att: Path) -> dict:  # type: ignore[type-arg]
    bundle = json.loads(att.read_text())
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))  # type: ignore[no-any-return]


def test_provenance_content(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    st = _statement(setup["att"])
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    root = run(capsys, "hash", setup["model"]).out.split()[0].removeprefix("sha256:")
    assert st["subject"] == [{"name": "model", "digest": {"sha256": root}}]
    bd = st["predicate"]["buildDefinition"]
    assert bd["externalParameters"] == {
        "source": {"repository": "https://github.com/acme/train", "ref": "refs/tags/v1.2.0"},
        "parameters": {"epochs": "3", "lr": "0.001"},
    }
    kinds = [(d["annotations"]["kind"], d["name"]) for d in bd["resolvedDependencies"]]
    assert kinds == [
        ("source", "train"),
        ("dataset", "dataset"),
        ("base-model", "bert-base-uncased"),
    ]
    data_root = run(capsys, "hash", setup["data"]).out.split()[0].removeprefix("sha256:")
    assert bd["resolvedDependencies"][1]["digest"] == {"sha256": data_root}
    assert bd["resolvedDependencies"][0]["digest"] == {"gitCommit": "a" * 40}


def test_valid_provenance_passes_every_check(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    r = _verify(
        capsys,
        setup,
        "--builder-id",
        "https://github.com/acme/train/.github/workflows/train.yml",
        "--source-repo",
        "acme/train",
        "--source-ref",
        "semver:>=1.0.0,<2.0.0",
        "--param",
        "epochs=3",
        "--param",
        "lr=0.001",
        "--reject-unknown-params",
        "--dataset",
        setup["data"],
        "--base-model",
        "hf://bert-base-uncased@sha256:" + "b" * 64,
    )
    assert r.code == 0, r.err
    assert "SLSA provenance" in r.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--builder-id", "https://github.com/evil/x"], "is not an allowed builder"),
        (["--source-repo", "acme/other"], "source repository is 'https://github.com/acme/train'"),
        (["--source-ref", "refs/heads/main"], "source ref is 'refs/tags/v1.2.0'"),
        (["--source-ref", "semver:>=2.0.0"], "source ref is 'refs/tags/v1.2.0'"),
        (["--param", "epochs=5"], "external parameter 'epochs' is '3', expected '5'"),
        (["--param", "epochs=3", "--reject-unknown-params"], "unexpected external parameters: lr"),
        (["--type", "vulns"], "predicateType is 'https://slsa.dev/provenance/v1'"),
    ],
)
def test_each_rule_rejects_with_its_own_message(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    r = _verify(capsys, setup, "--attestation", setup["att"], *args)
    assert r.code == 1, r.err
    assert message in r.err


def test_all_rule_failures_reported_at_once(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    r = _verify(capsys, setup, "--builder-id", "x", "--source-repo", "y/z", "--param", "a=b")
    assert r.code == 1
    assert "not an allowed builder" in r.err and "source repository" in r.err
    assert "'a' is missing" in r.err and r.err.count("\n") == 1


def test_dataset_missing_and_digest_mismatch(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    other = tmp_path / "other-data"
    other.mkdir()
    (other / "x.csv").write_text("unrelated")
    r = _verify(capsys, setup, "--dataset", other)
    assert r.code == 1 and "required dataset 'other-data'" in r.err and "is not among" in r.err
    (setup["data"] / "train.csv").write_text("x,y\n1,999\n")  # poisoned after training
    r = _verify(capsys, setup, "--dataset", setup["data"])
    assert r.code == 1 and "dataset 'dataset': digest mismatch" in r.err


def test_statement_about_other_bytes_names_both_digests(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (setup["model"] / "weights.bin").write_bytes(b"swapped weights")
    r = _verify(capsys, setup)
    assert r.code == 1 and "the statement is about other bytes" in r.err
    assert r.err.count("sha256:") >= 2


def test_untrusted_signer(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    d = tmp_path / "k2"
    d.mkdir()
    _, other = write_key_pair(d, "p256")
    r = run(capsys, "verify-attestation", setup["model"], "--key", other)
    assert r.code == 1 and "no valid signature by a trusted key" in r.err


def _rewrite(att: Path, fn: object) -> None:
    doc = json.loads(att.read_text())
    fn(doc)  # type: ignore[operator]
    att.write_text(json.dumps(doc))


def test_unsigned_statement_rejected(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _rewrite(setup["att"], lambda d: d["dsseEnvelope"].update(signatures=[]))
    r = _verify(capsys, setup, "--attestation", setup["att"])
    assert r.code != 0 and "carries no signatures" in r.err


def test_forged_payload_rejected(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    st = _statement(setup["att"])
    st["predicate"]["runDetails"]["builder"]["id"] = "https://github.com/evil/builder"
    payload = base64.b64encode(json.dumps(st).encode()).decode()
    _rewrite(setup["att"], lambda d: d["dsseEnvelope"].update(payload=payload))
    r = _verify(capsys, setup, "--attestation", setup["att"])
    assert r.code == 1 and "signature file was altered" in r.err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not JSON nor JSON lines"),
        (b"", "attestation file is empty"),
        (b'{"hello": 1}', "neither a Sigstore bundle"),
    ],
)
def test_malformed_files(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    setup["att"].write_bytes(content)
    r = _verify(capsys, setup, "--attestation", setup["att"])
    assert r.code == 2 and message in r.err and r.err.count("\n") == 1


def test_truncated_base64_and_oversize(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _rewrite(
        setup["att"],
        lambda d: d["dsseEnvelope"].update(payload=d["dsseEnvelope"]["payload"][:-5]),
    )
    r = _verify(capsys, setup, "--attestation", setup["att"])
    assert r.code == 2 and "not valid base64" in r.err
    setup["att"].write_bytes(b" " * (17 * 1024 * 1024))
    r = _verify(capsys, setup, "--attestation", setup["att"])
    assert r.code == 2 and "oversize envelope" in r.err


def test_intoto_jsonl_bare_envelopes(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    envelope = json.loads(setup["att"].read_text())["dsseEnvelope"]
    jsonl = tmp_path / "model.intoto.jsonl"
    jsonl.write_text(json.dumps(envelope) + "\n" + json.dumps(envelope) + "\n")
    setup["att"].unlink()
    r = _verify(capsys, setup)  # found by convention beside the model
    assert r.code == 0, r.err
    assert r.out.count("verified:") == 2


def test_no_attestation_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_model(tmp_path)
    _, public = write_key_pair(tmp_path, "p256")
    r = run(capsys, "verify-attestation", model, "--key", public)
    assert r.code == 1 and "no attestation found" in r.err


def test_dataset_attestation_round_trip(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(capsys, "attest", "dataset", setup["data"], "--key", setup["private"])
    assert r.code == 0, r.err
    att = setup["data"].parent / "dataset.dataset.sigstore.json"
    assert att.is_file()
    r = run(capsys, "verify-attestation", setup["data"], "--type", "oms", "--key", setup["public"])
    assert r.code == 0, r.err
    (setup["data"] / "train.csv").write_text("poisoned")
    r = run(capsys, "verify-attestation", setup["data"], "--type", "oms", "--key", setup["public"])
    assert r.code == 1 and "changed: train.csv" in r.err


def test_single_file_subject_is_the_file_sha256(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    f = tmp_path / "model.pt"
    f.write_bytes(b"weights")
    private, public = write_key_pair(tmp_path, "ed25519")
    r = run(
        capsys, "attest", "provenance", f, "--builder-id", "b", "--source-repo", "r/s",
        "--source-ref", "refs/heads/main", "--key", private,
    )  # fmt: skip
    assert r.code == 0, r.err
    st = _statement(tmp_path / "model.pt.provenance.sigstore.json")
    assert st["subject"][0]["digest"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert run(capsys, "verify-attestation", f, "--key", public).code == 0


def test_provenance_needs_builder_and_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    model = make_model(tmp_path)
    private, _ = write_key_pair(tmp_path, "p256")
    r = run(capsys, "attest", "provenance", model, "--key", private)
    assert r.code == 2 and "--builder-id, --source-repo, --source-ref" in r.err


def test_github_actions_defaults() -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/train",
        "GITHUB_WORKFLOW_REF": "acme/train/.github/workflows/train.yml@refs/heads/main",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_SHA": "c" * 40,
        "GITHUB_RUN_ID": "42",
        "GITHUB_RUN_ATTEMPT": "2",
    }
    d = github_defaults(env)
    assert d == {
        "builder_id": "https://github.com/acme/train/.github/workflows/train.yml@refs/heads/main",
        "source_repo": "https://github.com/acme/train",
        "source_ref": "refs/heads/main",
        "source_commit": "c" * 40,
        "invocation_id": "https://github.com/acme/train/actions/runs/42/attempts/2",
    }
    assert github_defaults({}) == {}


@pytest.mark.parametrize(
    ("ref", "expected", "ok"),
    [
        ("refs/tags/v1.2.3", "refs/tags/v1.2.3", True),
        ("refs/tags/v1.2.3", "refs/tags/v1.*", True),
        ("refs/tags/v2.0.0", "refs/tags/v1.*", False),
        ("refs/tags/v1.2.3", "semver:>=1.2.0,<1.3.0", True),
        ("refs/tags/v1.3.0-rc1", "semver:<1.3.0", True),
        ("refs/tags/v1.3.0", "semver:<1.3.0", False),
        ("refs/heads/v1.2.3", "semver:>=1.0.0", False),
        ("refs/tags/latest", "semver:>=1.0.0", False),
    ],
)
def test_ref_matching(ref: str, expected: str, ok: bool) -> None:
    assert ref_matches(ref, expected) is ok


@pytest.mark.parametrize(
    ("builder", "allowed", "ok"),
    [
        ("https://b/x@v1", "https://b/x@v1", True),
        ("https://b/x@v1", "https://b/x", True),
        ("https://b/x@v1", "https://b/x@v2", False),
        ("https://b/xy@v1", "https://b/x", False),
        ("https://b/x/y", "https://b/x/*", True),
    ],
)
def test_builder_matching(builder: str, allowed: str, ok: bool) -> None:
    assert builder_matches(builder, allowed) is ok


def test_scan_attestation_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import struct

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"\x80\x02cos\nsystem\nX" + struct.pack("<I", 4) + b"true\x85R.")
    private, public = write_key_pair(tmp_path, "p256")
    r = run(capsys, "attest", "scan", evil, "--key", private)
    assert r.code == 0, r.err
    st = _statement(tmp_path / "evil.pkl.scan.sigstore.json")
    assert st["predicateType"] == "https://in-toto.io/attestation/vulns/v0.2"
    result = st["predicate"]["scanner"]["result"]
    assert result[0]["id"] == "MLV101"
    assert result[0]["annotations"][0]["subject"] == "os.system"
    r = run(capsys, "verify-attestation", evil, "--type", "vulns", "--key", public)
    assert r.code == 0, r.err
    evil.write_bytes(b"\x80\x04K\x01.")  # other bytes: the scan no longer applies
    r = run(capsys, "verify-attestation", evil, "--type", "vulns", "--key", public)
    assert r.code == 1 and "about other bytes" in r.err


@pytest.mark.parametrize("pin", [None, "", "ab", "g" * 64, "ab" * 33])
def test_a_dataset_requirement_without_a_digest_fails_lint_not_every_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pin: str | None
) -> None:
    """A dataset named but not pinned proves nothing and could never pass: it is a policy
    error at load (lint and check both refuse the policy), never a silent deny later."""

    def policy_with(sha: str | None) -> Path:
        policy = tmp_path / "p.yaml"
        policy.write_text(
            "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n"
            "  attestations:\n    provenance:\n      required: true\n      datasets:\n"
            "        - name: corpus\n" + ("" if sha is None else f"          sha256: '{sha}'\n")
        )
        return policy

    policy = policy_with(pin)
    lint = run(capsys, "policy", "lint", policy)
    assert lint.code == 1 and "dataset requirement 'corpus' needs 'sha256'" in lint.out
    assert str(policy) in lint.out and "Traceback" not in lint.out + lint.err
    check = run(capsys, "check", make_model(tmp_path), "--policy", policy)
    assert check.code == 2 and "needs 'sha256'" in check.err
    assert run(capsys, "policy", "lint", policy_with("AB" * 32)).code == 0  # hex, any case


def test_a_requirement_without_a_digest_is_never_met_by_an_unpinned_dependency() -> None:
    """Red-team r4 (a2): the required digest '' equalled a dependency's missing digest ''."""
    from mlverify._internal.attest.provenance import (
        Dependency,
        ProvenanceFacts,
        _check_dependency,
    )

    facts = ProvenanceFacts(
        "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
        "https://github.com/acme/train",
        "https://github.com/acme/models",
        "refs/tags/v1",
        {},
        ({"uri": "git+https://github.com/acme/models", "digest": {"gitCommit": "ab" * 20}},),
    )
    for digest in ({}, {"sha256": ""}):
        problems = _check_dependency(facts, Dependency("dataset", "curated", "", digest))
        assert problems and "names no sha256 digest" in problems[0]
    pinned = Dependency("dataset", "curated", "", {"sha256": "cd" * 32})
    assert _check_dependency(facts, pinned)  # not there: a problem too
