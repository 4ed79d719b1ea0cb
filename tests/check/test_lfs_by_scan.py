"""Git LFS pointers found by check's own scan (no second walk of the tree): exactly the
files that are pointers themselves, in every place check walks, and nothing else."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from mlverify._internal.scan import workers
from tests.core.helpers import run

POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 12345\n"
)
EVIL_PICKLE = b"cos\nsystem\n(S'true'\ntR."  # built from bytes, never loaded


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


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
