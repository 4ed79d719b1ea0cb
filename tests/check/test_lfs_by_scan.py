"""Git LFS pointers found by check's own scan (no second walk of the tree): exactly the
files that are pointers themselves, in every place check walks, and nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlverify._internal.scan import workers
from tests.core.helpers import run
from tests.scan.format_samples import _zip

POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 12345\n"
)
EVIL_PICKLE = b"cos\nsystem\n(S'true'\ntR."  # built from bytes, never loaded


@pytest.fixture(params=[1, 2], ids=["in-process", "workers"])
def scan_workers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    if request.param == 1:
        monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 10**9)
    else:
        monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 1)
        monkeypatch.setattr(workers, "_cores", lambda: 2)
    return int(request.param)


def test_pointers_anywhere_in_the_tree_are_not_fetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scan_workers: int
) -> None:
    d = tmp_path / "model"
    (d / "a" / "b").mkdir(parents=True)
    (d / "a" / "b" / "weights.bin").write_bytes(POINTER)
    (d / "config.json").write_text('{"x": 1}\n')
    r = run(capsys, "check", "--no-cache", d)
    assert r.code == 1 and "not fetched" in r.out + r.err and "a/b/weights.bin" in r.out + r.err


def test_a_single_pointer_file_is_not_fetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "model.safetensors"
    p.write_bytes(POINTER)
    r = run(capsys, "check", "--no-cache", p)
    assert r.code == 1 and "is a Git LFS pointer" in r.out + r.err


def test_a_pointer_inside_an_archive_is_content_not_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scan_workers: int
) -> None:
    """The scanner reports a pointer inside a zip too; the zip itself is content and is
    judged (here: a pickle beside the pointer denies it as a finding, not "not fetched")."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "bundle.zip").write_bytes(_zip({"w.bin": POINTER, "m.pkl": EVIL_PICKLE}))
    r = run(capsys, "check", "--no-cache", d)
    assert r.code == 1 and "not fetched" not in r.out + r.err, r.out + r.err
    assert "MLV" in r.out


def test_pointers_in_gits_own_store_are_not_the_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "model"
    (d / ".git" / "lfs").mkdir(parents=True)
    (d / ".git" / "lfs" / "x").write_bytes(POINTER)
    (d / "config.json").write_text('{"x": 1}\n')
    r = run(capsys, "check", "--no-cache", d)
    assert "not fetched" not in r.out + r.err, r.out + r.err


def test_a_pointer_lookalike_is_content(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "model"
    d.mkdir()
    (d / "weights.bin").write_bytes(POINTER + b"extra\n")
    r = run(capsys, "check", "--no-cache", d)
    assert "not fetched" not in r.out + r.err, r.out + r.err


def _hf_cache(root: Path, content: dict[str, bytes]) -> str:
    """An offline Hugging Face cache holding one snapshot (links into its blobs)."""
    import hashlib

    repo = root / "hub" / "models--org--name"
    commit = "a" * 40
    snap = repo / "snapshots" / commit
    for name, data in content.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return f"hf://org/name@{commit}"


def test_the_files_besides_pointers_are_those_resolved_not_the_reference_as_a_path(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """red-team r7: an hf:// snapshot holding a pointer and a malicious pickle, and a benign
    local folder named like the reference (hf:/org/name@...): skipping the pointers must
    scan the snapshot's files, never the folder."""
    ref = _hf_cache(tmp_path, {"w.bin": POINTER, "evil.pkl": EVIL_PICKLE})
    decoy = tmp_path / ref.replace("hf://", "hf:/")
    decoy.mkdir(parents=True)
    (decoy / "config.json").write_text('{"a": 1}\n')
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    r = run(capsys, "check", "--no-cache", "--allow-not-fetched", ref)
    assert r.code == 1 and "evil.pkl" in r.out + r.err, r.out + r.err


def test_a_reference_through_a_link_and_dotdot_scans_what_the_check_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """red-team r7: ``link/../m`` names ``m`` (read as written); the files besides its
    pointer are m's, not those of the link's parent's ``m``."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(POINTER)
    (tmp_path / "m" / "evil.pkl").write_bytes(EVIL_PICKLE)
    (tmp_path / "elsewhere" / "m").mkdir(parents=True)
    (tmp_path / "elsewhere" / "m" / "config.json").write_text('{"a": 1}\n')
    (tmp_path / "elsewhere" / "sub").mkdir()
    (tmp_path / "link").symlink_to("elsewhere/sub")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRE_COMMIT", "1")
    r = run(capsys, "check", "--no-cache", "link/../m")
    assert r.code == 1 and "evil.pkl" in r.out + r.err, r.out + r.err


@pytest.mark.parametrize("allow_globals", [False, True], ids=["scan-reused", "rescanned"])
def test_skipping_pointers_judges_the_other_files_from_the_scan_or_again(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    allow_globals: bool,
) -> None:
    """The files besides the pointers are judged from check's own scan when it used the
    built-in lists only, else scanned again with them: a malicious pickle denies both."""
    from tests.check.test_attacks import policy

    d = tmp_path / "model"
    d.mkdir()
    (d / "w.bin").write_bytes(POINTER)
    (d / "evil.pkl").write_bytes(EVIL_PICKLE)
    (d / "ok.json").write_text('{"a": 1}\n')
    body = 'spec:\n  scan:\n    allow_globals: ["mycorp.layers.Residual"]\n'
    p = policy(tmp_path, body if allow_globals else "spec: {}\n")
    monkeypatch.setenv("PRE_COMMIT", "1")
    r = run(capsys, "check", "--no-cache", "--policy", p, d)
    assert r.code == 1 and "evil.pkl" in r.out + r.err and "2 other file(s)" in r.out + r.err
    (d / "evil.pkl").unlink()
    r = run(capsys, "check", "--no-cache", "--policy", p, d)
    assert r.code == 0 and "1 other file(s) were scanned: no findings" in r.out + r.err
