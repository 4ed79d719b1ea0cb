"""Git LFS pointers ("not fetched") and the pre-commit hooks, run by the real pre-commit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlverify._internal.lfs import parse_pointer, pointers_in
from tests.core.helpers import run
from tests.integrations.conftest import EVIL_PICKLE, make_clean_model

REPO = Path(__file__).resolve().parents[2]
POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 12345\n"
)


def test_pointer_parsing() -> None:
    p = parse_pointer(POINTER)
    assert p is not None and p.size == 12345 and p.oid.startswith("4d7a2146")
    assert parse_pointer(b"version https://git-lfs.github.com/spec/v1\nsize 1\n") is None
    assert parse_pointer(POINTER + b"x" * 2000) is None  # too large to be a pointer
    assert parse_pointer(b"\x80\x04" + POINTER) is None


def test_scan_reports_pointer_as_not_fetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(POINTER)
    r = run(capsys, "scan", f)
    assert r.code == 0, r.err
    assert "Git LFS pointer" in r.out and "git lfs pull" in r.out
    assert "error" not in r.err


def test_unfetched_model_denied_outside_hooks_skipped_inside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_clean_model(tmp_path)
    (model / "model.safetensors").write_bytes(POINTER)
    assert pointers_in(model) == ["model.safetensors"]
    monkeypatch.delenv("PRE_COMMIT", raising=False)
    # Outside a commit hook, content that was not checked is never admitted.
    r = run(capsys, "check", "--no-cache", "--policy", "builtin:strict", model)
    assert r.code == 1, r.err
    assert "not fetched" in r.err and "model.safetensors" in r.err and "(denied)" in r.err
    r = run(capsys, "check", "--no-cache", "--allow-not-fetched", model)
    assert r.code == 0 and "(skipped)" in r.err
    # In pre-commit (PRE_COMMIT=1) it is skipped with a note; a fetched model is checked.
    monkeypatch.setenv("PRE_COMMIT", "1")
    other = make_clean_model(tmp_path, "fetched")
    r = run(capsys, "check", "--no-cache", model, other)
    assert r.code == 0 and "ALLOWED" in r.out and str(other) in r.out
    assert "1 allowed, 0 denied, 1 not fetched (skipped)" in r.err


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _local_config(repo: Path, check_args: list[str]) -> None:
    """Our .pre-commit-hooks.yaml as a `repo: local` config (language: system, so the
    hooks run the mlverify of this venv: offline, no hook environment to build)."""
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    for h in hooks:
        h["language"] = "system"
        h["entry"] = f"{sys.executable} -m mlverify {h['entry'].split(' ', 1)[1]}"
        if h["id"] == "mlverify-check":
            h["args"] = check_args
    (repo / ".pre-commit-config.yaml").write_text(
        yaml.safe_dump({"repos": [{"repo": "local", "hooks": hooks}]})
    )


def _pre_commit(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("pre-commit", path=str(Path(sys.executable).parent)) or shutil.which(
        "pre-commit"
    )
    if exe is None:
        pytest.skip("pre-commit is not installed (pip install pre-commit)")
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(repo.parent / "pc-home"),
        "XDG_CACHE_HOME": str(repo.parent / "cache"),
        "MLVERIFY_POLICY": "",
    }
    return subprocess.run(
        [exe, "run", *args], cwd=repo, capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / "models").mkdir()
    make_clean_model(repo / "models", "classifier")
    (repo / "models" / "embedder").mkdir()
    (repo / "models" / "embedder" / "model.safetensors").write_bytes(POINTER)  # LFS, not pulled
    (repo / "README.md").write_text("models\n")
    return repo


def test_hooks_file_shape() -> None:
    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"mlverify-scan", "mlverify-check"}
    assert hooks["mlverify-check"]["pass_filenames"] is False
    for h in hooks.values():
        assert h["language"] == "python" and h["entry"].startswith("mlverify ")
    import re

    files = re.compile(hooks["mlverify-scan"]["files"])
    for name in ("a.pkl", "m/b.PT", "c.safetensors", "d.gguf", "e.npz", "f.joblib", "g.onnx"):
        assert files.search(name), name
    assert not files.search("README.md") and not files.search("train.py")


def test_pre_commit_clean_repo_passes_with_lfs_pointer(git_repo: Path) -> None:
    _local_config(git_repo, ["--policy", "builtin:default", "models/classifier", "models/embedder"])
    _git(git_repo, "add", "-A")
    r = _pre_commit(git_repo, "--all-files")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mlverify scan (model files)" in r.stdout and "Passed" in r.stdout
    _git(git_repo, "commit", "-qm", "models")


def test_pre_commit_blocks_malicious_pickle(git_repo: Path) -> None:
    _local_config(git_repo, ["models/classifier"])
    (git_repo / "models" / "classifier" / "extra.pkl").write_bytes(EVIL_PICKLE)
    _git(git_repo, "add", "-A")
    r = _pre_commit(git_repo, "--all-files", "--verbose")
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "mlverify scan (model files)" in out and "Failed" in out
    assert "os.system" in out or "system" in out
    assert "DENIED" in out  # the check hook denies the directory under the default policy
    # only staged model files are scanned per file (README.md is not selected)
    assert "README.md" not in out.split("mlverify check")[0]
