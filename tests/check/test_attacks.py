"""Issue 12: the ways a review, working as an attacker, got `check` to say yes.

Each test reproduces one attack and asserts it is refused now.
"""

from __future__ import annotations

import json
import mmap
import os
import textwrap
from pathlib import Path

import pytest

from tests.core.helpers import Result, evil_pickle, run, safetensors, write_key_pair

SYSTEM_PICKLE = b"cos\nsystem\n(S'true'\ntR."


def policy(tmp: Path, body: str, name: str = "p.yaml") -> Path:
    p = tmp / name
    p.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: test\n"
        + textwrap.dedent(body)
    )
    return p


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


# ------------------------------------------------------------------ 1: no decision cache


def test_exemption_for_one_path_does_not_admit_the_same_bytes_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = tmp_path / "a"
    (a / "tests" / "fixtures").mkdir(parents=True)
    (a / "tests" / "fixtures" / "s.pkl").write_bytes(SYSTEM_PICKLE)
    b = tmp_path / "b"
    b.mkdir()
    (b / "pytorch_model.bin").write_bytes(SYSTEM_PICKLE)
    p = policy(
        tmp_path,
        """
        spec:
          scan: {max_severity: low}
          exemptions:
            - {rule: MLV101, file: "tests/fixtures/*", owner: qa, reason: fixture,
               expires: 2099-01-01}
        """,
    )
    first = run(capsys, "check", "--cache", "--policy", p, a)
    assert first.code == 0, first.out + first.err
    second = run(capsys, "check", "--cache", "--policy", p, b)
    assert second.code == 1, second.out
    assert "DENIED" in second.out and "cached" not in second.out


def test_a_dev_verdict_does_not_admit_the_prod_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for env in ("dev", "prod"):
        (tmp_path / env).mkdir()
        evil_pickle(tmp_path / env / "model.bin")
    pols = tmp_path / "pols"
    pols.mkdir()
    policy(pols, 'spec:\n  mode: warn\n  match: {paths: ["*/dev/*", "*/dev"]}\n', "dev.yaml")
    policy(pols, 'spec:\n  match: {paths: ["*/prod/*", "*/prod"]}\n', "prod.yaml")
    assert run(capsys, "check", "--cache", "--policy", pols, tmp_path / "dev").code == 0
    prod = run(capsys, "check", "--cache", "--policy", pols, tmp_path / "prod")
    assert prod.code == 1 and "DENIED" in prod.out


# ------------------------------------------------------------------ 2: hash every byte


def _rewrite_through_mapping(path: Path, check_between: object, new: bytes) -> None:
    """Change bytes through a shared mapping whose page is already dirty: the kernel
    updates neither mtime nor ctime, and the size stays the same."""
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 0)
        m[0:1] = m[0:1]  # dirty the page once (this write may touch the timestamps)
        assert callable(check_between)
        check_between()
        before = os.stat(path)
        m[:] = new  # now the same page changes without a fault
        m.flush()
        m.close()
    finally:
        os.close(fd)
    after = os.stat(path)
    if (before.st_mtime_ns, before.st_ctime_ns) != (after.st_mtime_ns, after.st_ctime_ns):
        pytest.skip("this kernel updated the timestamps of a dirty shared mapping")


def test_bytes_changed_with_timestamps_kept_are_seen_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    target = model / "weights.bin"
    target.write_bytes(b"\x00" * 4096)
    private, public = write_key_pair(tmp_path, "p256")
    assert run(capsys, "sign", model, "--key", private).code == 0
    p = policy(
        tmp_path,
        f"spec:\n  signatures:\n    required: true\n    trusted: [{{key: {public}}}]\n",
    )
    results: list[Result] = []

    def tamper() -> None:
        results.append(run(capsys, "check", "--policy", p, model))

    _rewrite_through_mapping(target, tamper, b"\x01" * 4096)
    assert results[0].code == 0, results[0].out + results[0].err
    again = run(capsys, "check", "--policy", p, model)
    assert again.code == 1 and "differ" in again.out, again.out
    assert run(capsys, "verify", model, "--key", public).code == 1


# ------------------------------------------------------------------ 3: one signer, once


def _sign(capsys: pytest.CaptureFixture[str], model: Path, key: Path, sig: Path) -> None:
    assert run(capsys, "sign", model, "--key", key, "--signature", sig).code == 0


def test_one_person_with_old_and_new_key_is_one_signer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped two-party example: Bob's two keys under rotation are one owner."""
    import shutil

    import yaml

    model = tmp_path / "model"
    model.mkdir()
    safetensors(model / "w.safetensors")
    keys = tmp_path / "keys"
    for who in ("alice", "bob-2025", "bob-2026"):
        (keys / who).mkdir(parents=True)
        private, public = write_key_pair(keys / who, "p256")
        shutil.copy(public, keys / f"{who}.pub")
        shutil.copy(private, keys / f"{who}.key")
    example = Path(__file__).resolve().parents[2] / "policies" / "examples" / "two-party.yaml"
    doc = yaml.safe_load(example.read_text())
    doc["spec"]["signatures"]["trusted"][2]["not_after"] = "2099-12-31"  # both bob keys valid
    doc["spec"]["signatures"]["trusted"][1]["not_before"] = "2000-01-01"
    p = tmp_path / "two-party.yaml"
    p.write_text(yaml.safe_dump(doc))
    _sign(capsys, model, keys / "bob-2025.key", tmp_path / "model.sig")
    _sign(capsys, model, keys / "bob-2026.key", tmp_path / "model-2.sig")
    args = ["check", "--policy", p, model]
    sigs = ["--signature", tmp_path / "model.sig", "--signature", tmp_path / "model-2.sig"]
    r = run(capsys, *args, *sigs)
    assert r.code == 1 and "1 distinct trusted signer(s) (bob), 2 required" in r.out, r.out
    _sign(capsys, model, keys / "alice.key", tmp_path / "model-3.sig")
    r = run(capsys, *args, *sigs, "--signature", tmp_path / "model-3.sig")
    assert r.code == 0, r.out


def test_the_same_signature_twice_is_one_signer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    safetensors(model / "w.safetensors")
    private, public = write_key_pair(tmp_path, "p256")
    sig = tmp_path / "model.sig"
    _sign(capsys, model, private, sig)
    copy = tmp_path / "copy.sig"
    copy.write_bytes(sig.read_bytes())
    p = policy(
        tmp_path,
        f"""
        spec:
          signatures:
            required: true
            threshold: 2
            trusted: [{{key: {public}, owner: alice}}]
        """,
    )
    r = run(capsys, "check", "--policy", p, model, "--signature", sig, "--signature", copy)
    assert r.code == 1 and "1 distinct trusted signer(s)" in r.out, r.out
    r = run(capsys, "verify", model, "--key", public, "--signature", sig, "--signature", copy,
            "--threshold", "2")  # fmt: skip
    assert r.code == 1 and "1 distinct trusted signer(s)" in r.err, r.err


def test_a_threshold_policy_must_name_owners(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, public = write_key_pair(tmp_path, "p256")
    p = policy(
        tmp_path,
        f"spec:\n  signatures:\n    required: true\n    threshold: 2\n"
        f"    trusted: [{{key: {public}}}, {{key: {public}}}]\n",
    )
    r = run(capsys, "check", "--policy", p, tmp_path)
    assert r.code == 2 and "needs an 'owner' because threshold is 2" in r.err, r.err


def test_the_same_certificate_signature_twice_is_one_signer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate signer's identity once held the time it was judged at, so each
    copy of one signature looked like another signer."""
    from cryptography import x509

    from tests.signing.helpers import make_pki

    pki = make_pki(tmp_path / "pki")
    model = tmp_path / "model"
    model.mkdir()
    safetensors(model / "w.safetensors")
    key, cert = pki.leaf("signer", [x509.RFC822Name("rel@example.com")])
    sig = tmp_path / "model.sig"
    r = run(capsys, "sign", model, "--key", key, "--cert", cert, "--cert-chain", pki.inter_pem,
            "--signature", sig)  # fmt: skip
    assert r.code == 0, r.err
    copy = tmp_path / "copy.sig"
    copy.write_bytes(sig.read_bytes())
    r = run(capsys, "verify", model, "--cert-chain", pki.root_pem, "--identity", "rel@example.com",
            "--signature", sig, "--signature", copy, "--threshold", "2")  # fmt: skip
    assert r.code == 1 and "1 distinct trusted signer(s)" in r.err, r.err
    p = policy(
        tmp_path,
        f"""
        spec:
          signatures:
            required: true
            threshold: 2
            trusted:
              - certificate: {{roots: [{pki.root_pem}], identities: [rel@example.com]}}
                owner: release-team
        """,
    )
    r = run(capsys, "check", "--policy", p, model, "--signature", sig, "--signature", copy)
    assert r.code == 1 and "1 distinct trusted signer(s) (release-team)" in r.out, r.out


# ------------------------------------------------------------------ 4: excluded names

BENIGN_PICKLE = b"\x80\x04K\x01."  # the integer 1: no imports at all


@pytest.mark.parametrize(
    "planted", ["attestations/extra.bin", "adapter.sigstore", ".github/x.pkl", "model.sig/x.bin"]
)
def test_files_under_signature_names_do_not_ride_along(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], planted: str
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    safetensors(model / "w.safetensors")
    private, public = write_key_pair(tmp_path, "p256")
    sig = tmp_path / "model.sig"  # beside the model: found by convention
    _sign(capsys, model, private, sig)
    p = policy(
        tmp_path,
        f"""
        spec:
          signatures: {{required: true, trusted: [{{key: {public}}}]}}
          formats: {{allow: [safetensors]}}
        """,
    )
    assert run(capsys, "check", "--policy", p, model).code == 0
    target = model / planted
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(BENIGN_PICKLE)
    r = run(capsys, "check", "--policy", p, model, "--format", "json")
    assert r.code == 1, r.out
    doc = json.loads(r.out)
    assert planted in doc["results"][0]["evidence"]["scan_status"]
    assert "pickle" in doc["results"][0]["evidence"]["artifact"]["formats"]
    # also: a malicious one is found by the scan, whatever the policy
    target.write_bytes(SYSTEM_PICKLE)
    r = run(capsys, "check", model)
    assert r.code == 1 and "os.system" in r.out and planted in r.out, r.out


def test_unsigned_content_under_git_metadata_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    safetensors(model / "w.safetensors")
    private, public = write_key_pair(tmp_path, "p256")
    _sign(capsys, model, private, tmp_path / "model.sig")
    (model / ".github").mkdir()
    safetensors(model / ".github" / "shadow.safetensors")  # a loader can be pointed here
    p = policy(tmp_path, f"spec:\n  signatures: {{required: true, trusted: [{{key: {public}}}]}}\n")
    r = run(capsys, "check", "--policy", p, model)
    assert r.code == 1 and "unsigned content" in r.out and ".github/shadow.safetensors" in r.out


def test_a_real_signature_document_is_not_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    safetensors(model / "w.safetensors")
    private, public = write_key_pair(tmp_path, "p256")
    _sign(capsys, model, private, model / "model.sig")
    p = policy(
        tmp_path,
        f"""
        spec:
          signatures: {{required: true, trusted: [{{key: {public}}}]}}
          formats: {{allow: [safetensors]}}
        """,
    )
    r = run(capsys, "check", "--policy", p, model)
    assert r.code == 0, r.out


# ------------------------------------------------------------------ 6: allowlists vs data


def test_unrecognised_bytes_named_like_a_model_fail_a_format_allowlist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    safetensors(model / "w.safetensors")
    (model / "config.json").write_text('{"a": 1}')  # data without a model name: fine
    (model / "pytorch_model.bin").write_bytes(os.urandom(4096))  # the scanner: "data"
    p = policy(tmp_path, "spec:\n  formats: {allow: [safetensors]}\n")
    r = run(capsys, "check", "--policy", p, model)
    assert r.code == 1 and "pytorch_model.bin: named like a model file" in r.out, r.out
    p2 = policy(tmp_path, "spec:\n  formats: {allow: [safetensors], allow_data: ['*.bin']}\n", "q")
    r = run(capsys, "check", "--policy", p2, model)
    assert r.code == 0, r.out


# ------------------------------------------------------------------ 7: empty models


def test_a_signature_over_no_files_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlverify._internal.manifest.manifest import Manifest, Serialization
    from mlverify._internal.signing.keys import KeySigner, load_private_key_pem
    from mlverify._internal.signing.oms import sign_manifest

    private, public = write_key_pair(tmp_path, "p256")
    signer = KeySigner(load_private_key_pem(private.read_bytes(), where="t", password=None))
    sig = sign_manifest(Manifest("model", Serialization(), ()), signer)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "model.sig").write_bytes(sig)
    r = run(capsys, "verify", empty, "--key", public)
    assert r.code != 0 and "covers no files" in r.err, r.err
    full = tmp_path / "model"
    full.mkdir()
    evil_pickle(full / "model.bin")
    (full / "model.sig").write_bytes(sig)
    r = run(capsys, "verify", full, "--key", public, "--ignore-unsigned-files")
    assert r.code != 0 and "covers no files" in r.err, r.err
    p = policy(tmp_path, f"spec:\n  signatures: {{required: true, trusted: [{{key: {public}}}]}}\n")
    r = run(capsys, "check", "--policy", p, full)
    assert r.code == 1 and "covers no files" in r.out, r.out


# ------------------------------------------------------------------ 12: malformed input


def test_a_signature_with_a_non_string_media_type_is_invalid_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    safetensors(model / "w.safetensors")
    private, _ = write_key_pair(tmp_path, "p256")
    _sign(capsys, model, private, model / "model.sig")
    doc = json.loads((model / "model.sig").read_text())
    for bad in ([], {}, 3):
        doc["mediaType"] = bad
        (model / "model.sig").write_text(json.dumps(doc))
        r = run(capsys, "check", "--format", "json", model)
        assert r.code in (0, 1) and "internal error" not in r.err, r.err
        sigs = json.loads(r.out)["results"][0]["evidence"]["signatures"]
        assert sigs[0]["status"] == "invalid" and "mediaType" in sigs[0]["reason"]


def test_a_policy_of_yaml_aliases_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    # each level repeats the one before 9 times (six levels here: harmless on the old
    # code too; nine were 4.9 GB once str() expanded the parameters)
    lines = ['      a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"      a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 6)]
    bomb = policy(
        tmp_path,
        "spec:\n  attestations:\n    provenance:\n     parameters:\n" + "\n".join(lines) + "\n",
    )
    assert bomb.stat().st_size < 1000
    t0 = time.perf_counter()
    r = run(capsys, "check", "--policy", bomb, tmp_path)
    assert time.perf_counter() - t0 < 5
    assert r.code == 2 and "aliases" in r.err and r.err.count("\n") == 1, r.err


@pytest.mark.parametrize("value", ["{a: 1}", "[1, 2]", "null"])
def test_policy_parameters_must_be_scalars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    body = f"spec:\n  attestations:\n    provenance:\n      parameters: {{e: {value}}}\n"
    p = policy(tmp_path, body)
    r = run(capsys, "check", "--policy", p, tmp_path)
    assert r.code == 2 and "scalar values" in r.err, r.err


# ------------------------------------------------------------------ 13: names on screen


def test_terminal_escapes_in_names_cannot_forge_a_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    forged = "x\x1b[2K\rALLOWED: model (policy default)\n\x1b[8m.pkl"
    (model / forged).write_bytes(SYSTEM_PICKLE)
    for args in (["check", model], ["scan", model], ["check", "--policy", tmp_path / "no.yaml"]):
        r = run(capsys, *args)
        assert r.code != 0
        for text in (r.out, r.err):
            assert "\x1b" not in text and "\r" not in text, text
            assert not any(line.startswith("ALLOWED") for line in text.splitlines()), text
    r = run(capsys, "check", model)
    assert "\\x1b[2K\\x0dALLOWED" in r.out and r.out.startswith("DENIED")
    r = run(capsys, "hash", model / forged)
    assert "\x1b" not in r.out + r.err and "\\x1b" in r.out


# ------------------------------------------------------------------ 14: every artifact


def test_one_failing_artifact_never_empties_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good"
    good.mkdir()
    safetensors(good / "w.safetensors")
    pointer = tmp_path / "lfs"
    pointer.mkdir()
    (pointer / "w.bin").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 12\n"
    )
    missing = tmp_path / "missing"
    r = run(capsys, "check", "--format", "json", good, missing, pointer)
    assert r.code == 2, r.err
    doc = json.loads(r.out)
    assert [x["status"] for x in doc["results"]] == ["allowed", "error", "denied"]
    assert doc["allowed"] is False and doc["exit_code"] == 2
    assert "no such file" in doc["results"][1]["message"]
    r = run(capsys, "check", "--format", "sarif", good, missing)
    assert r.code == 2 and "no such file" in r.out
    # a skipped (not fetched) artifact in a hook: exit 0 and the report says so
    r = run(capsys, "check", "--format", "json", "--allow-not-fetched", good, pointer)
    doc = json.loads(r.out)
    assert r.code == 0 and doc["allowed"] is True
    assert [x["status"] for x in doc["results"]] == ["allowed", "skipped"]
    # not fetched outside a hook: denied, and the report agrees
    r = run(capsys, "check", "--format", "json", good, pointer)
    doc = json.loads(r.out)
    assert r.code == 1 and doc["allowed"] is False and doc["exit_code"] == 1
    assert "1 allowed, 1 denied, 1 not fetched (denied)" in r.err  # never "(skipped)"
    saved = tmp_path / "r.json"
    saved.write_text(r.out)
    r = run(capsys, "report", saved)
    assert r.code == 1 and "DENIED" in r.out


# ------------------------------------------------------------------ 15: smaller ones


def test_a_hugging_face_snapshot_path_suggests_its_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.integrations.test_hf import COMMIT, add_snapshot

    repo = add_snapshot(tmp_path / "hub", "acme/tiny", COMMIT, {"w.safetensors": b"x" * 10})
    r = run(capsys, "check", repo / "snapshots" / COMMIT)
    assert r.code == 2 and f"hf://acme/tiny@{COMMIT}" in r.err, r.err
    assert "--allow-symlinks" not in r.err.split("hash, sign")[0]


def test_provenance_names_a_local_dataset_without_the_signers_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64

    model = tmp_path / "model"
    model.mkdir()
    safetensors(model / "w.safetensors")
    data = tmp_path / "curated"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n1,2\n")
    private, _ = write_key_pair(tmp_path, "p256")
    r = run(capsys, "attest", "provenance", model, "--builder-id", "https://ci.example/b",
            "--source-repo", "https://github.com/acme/m", "--source-ref", "refs/tags/v1",
            "--dataset", data, "--key", private)  # fmt: skip
    assert r.code == 0, r.err
    bundle = json.loads((tmp_path / "model.provenance.sigstore.json").read_text())
    statement = base64.b64decode(bundle["dsseEnvelope"]["payload"]).decode()
    assert "file://" not in statement and str(tmp_path) not in statement
    deps = json.loads(statement)["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert [d["name"] for d in deps if d["annotations"]["kind"] == "dataset"] == ["curated"]


def test_admission_warnings_keep_the_reason() -> None:
    from mlverify._internal.serve.app import admission_warning

    ref = "oci://registry.example.com/" + "team/" * 30 + "model@sha256:" + "a" * 64
    w = admission_warning(ref, "unsigned: nothing proves who produced these bytes")
    assert w.startswith("unsigned: nothing proves who produced these bytes")
    assert len(w) <= 250 and "sha256:aaaaaaaaaaaa" in w


def test_writing_into_a_read_only_directory_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    safetensors(model / "w.safetensors")
    r = run(capsys, "check", model, "--output", "/proc/report.txt")
    assert r.code == 2 and "does not exist" not in r.err and "cannot write in /proc" in r.err


def test_report_of_a_binary_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "r.json"
    junk.write_bytes(b"\xff\xfe\x00binary")
    r = run(capsys, "report", junk)
    assert r.code == 2 and "UnicodeDecodeError(" not in r.err and "not text" in r.err
    assert r.err.count("\n") == 1
