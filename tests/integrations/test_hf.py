"""``hf://`` references from a Hugging Face cache built here (same layout as huggingface_hub)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import ClassVar

import pytest

from tests.core.helpers import run, write_key_pair
from tests.integrations.conftest import EVIL_PICKLE, FIXTURE_MODEL, write_key_policy

COMMIT = "a" * 40
COMMIT2 = "b" * 40


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_snapshot(
    cache: Path, repo_id: str, commit: str, files: dict[str, bytes], ref: str = "main"
) -> Path:
    """Write files the way huggingface_hub does: blobs by etag, snapshot symlinks."""
    org, name = repo_id.split("/")
    repo = cache / f"models--{org}--{name}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    snap = repo / "snapshots" / commit
    for rel, data in files.items():
        lfs = rel.endswith((".safetensors", ".bin", ".pkl"))
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data)
        (repo / "blobs" / etag).write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / etag, link.parent))
    return repo


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    files = {p.name: p.read_bytes() for p in FIXTURE_MODEL.iterdir()}
    add_snapshot(cache, "acme/tiny", COMMIT, files)
    add_snapshot(cache, "acme/evil", COMMIT2, {"config.json": b"{}", "model.pkl": EVIL_PICKLE})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return cache


def add_signed_copy(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], repo_id: str, commit: str
) -> Path:
    """Sign a copy of the fixture model with a fresh key and add it to the cache.

    The signed files (model.sig included) become ``repo_id`` at ``commit``; returns the
    public key that verifies them.
    """
    model = tmp_path / "pub" / "tiny"
    model.mkdir(parents=True)
    for p in FIXTURE_MODEL.iterdir():
        (model / p.name).write_bytes(p.read_bytes())
    priv, pub = write_key_pair(tmp_path)
    assert run(capsys, "sign", model, "--key", priv).code == 0
    add_snapshot(cache, repo_id, commit, {p.name: p.read_bytes() for p in model.iterdir()})
    return pub


def test_check_hf_reference(hf_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run(capsys, "check", "--no-cache", "--format", "json", "hf://acme/tiny")
    assert r.code == 0, r.err
    import json

    (res,) = json.loads(r.out)["results"]
    assert res["artifact"] == "hf://acme/tiny"
    ref = res["evidence"]["reference"]
    assert ref["commit"] == COMMIT and ref["kind"] == "hf"
    assert ref["blobs_checked"] == {"lfs-sha256": 1, "git-sha1": 3}
    # pinned by commit, a file inside, and the malicious one
    assert run(capsys, "check", "--no-cache", f"hf://acme/tiny@{COMMIT}/config.json").code == 0
    r = run(capsys, "check", "--no-cache", "hf://acme/evil")
    assert r.code == 1 and "DENIED: hf://acme/evil" in r.out


def test_tampered_blob_is_refused(hf_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blob = next(
        p for p in (hf_cache / "models--acme--tiny" / "blobs").iterdir() if len(p.name) == 64
    )
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    r = run(capsys, "check", "--no-cache", "hf://acme/tiny")
    assert r.code == 1
    assert "does not match its name" in r.err and "model.safetensors" in r.err
    r = run(capsys, "scan", "hf://acme/tiny")
    assert r.code == 1 and "tampered" in r.err


def test_signed_model_in_cache(
    hf_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A publisher's model.sig in the repository is found and verified."""
    pub = add_signed_copy(hf_cache, tmp_path, capsys, "acme/signed", "c" * 40)
    policy = write_key_policy(tmp_path, pub)
    r = run(capsys, "check", "--no-cache", "--policy", policy, "hf://acme/signed")
    assert r.code == 0 and "signed by key" in r.out, r.out + r.err
    r = run(capsys, "check", "--no-cache", "--policy", policy, "hf://acme/tiny")
    assert r.code == 1  # unsigned


def test_scan_hf_names_files_by_reference(
    hf_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(capsys, "scan", "--format", "json", "hf://acme/evil")
    assert r.code == 1
    assert "hf://acme/evil/model.pkl" in r.out


def test_missing_and_malformed(hf_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run(capsys, "check", "--no-cache", "hf://acme/absent")
    assert r.code == 2 and "not in the local Hugging Face cache" in r.err
    r = run(capsys, "check", "--no-cache", "hf://acme/tiny@v9")
    assert r.code == 2 and "revision 'v9'" in r.err
    r = run(capsys, "check", "--no-cache", "hf://acme/tiny/../evil")
    assert r.code == 2
    # a snapshot link pointing outside the cache's blobs is refused
    snap = hf_cache / "models--acme--tiny" / "snapshots" / COMMIT
    (snap / "escape.txt").symlink_to("/etc/hostname")
    r = run(capsys, "check", "--no-cache", "hf://acme/tiny")
    assert r.code == 2 and "outside the cache" in r.err


def test_verify_hf_reference(
    hf_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pub = add_signed_copy(hf_cache, tmp_path, capsys, "acme/signed", "d" * 40)
    r = run(capsys, "verify", "hf://acme/signed", "--key", pub)
    assert r.code == 0 and "verified" in r.out, r.err


class FakeHfApi:
    """Records what `mlverify hf upload` asks of huggingface_hub (no network here)."""

    calls: ClassVar[list[tuple[str, dict[str, object]]]] = []

    def repo_info(self, repo_id: str, revision: str) -> object:
        self.calls.append(("repo_info", {"repo_id": repo_id, "revision": revision}))
        return type("Info", (), {"sha": "e" * 40})()

    def upload_folder(self, **kwargs: object) -> object:
        self.calls.append(("upload_folder", kwargs))
        return type("Commit", (), {"oid": "f" * 40})()


def test_hf_upload_checks_signs_and_pins_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub, "HfApi", FakeHfApi)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    FakeHfApi.calls = []
    model = tmp_path / "tiny"
    model.mkdir()
    for p in FIXTURE_MODEL.iterdir():
        (model / p.name).write_bytes(p.read_bytes())
    priv, pub = write_key_pair(tmp_path)
    policy = write_key_policy(tmp_path, pub)
    r = run(capsys, "hf", "upload", model, "acme/tiny", "--key", priv, "--policy", policy)
    assert r.code == 0, r.err
    assert r.out.strip().endswith(f"hf://acme/tiny@{'f' * 40}")
    assert (model / "model.sig").is_file()  # signed before the upload
    ((_, kwargs),) = [c for c in FakeHfApi.calls if c[0] == "upload_folder"]
    assert kwargs["parent_commit"] == "e" * 40 and kwargs["repo_id"] == "acme/tiny"
    # a denied model is never uploaded
    FakeHfApi.calls = []
    (model / "extra.pkl").write_bytes(EVIL_PICKLE)
    r = run(capsys, "hf", "upload", model, "acme/tiny", "--key", priv, "--policy", policy)
    assert r.code == 1 and "nothing uploaded" in r.err
    assert FakeHfApi.calls == []


def test_hf_download_only_when_asked(
    hf_cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = pytest.importorskip("huggingface_hub")
    asked: list[dict[str, object]] = []

    def fake_snapshot_download(**kwargs: object) -> str:
        asked.append(kwargs)
        add_snapshot(hf_cache, "acme/remote", "9" * 40, {"config.json": b"{}"})
        return ""

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    r = run(capsys, "check", "--no-cache", "hf://acme/remote")
    assert r.code == 2 and asked == []  # offline by default
    monkeypatch.setenv("MLVERIFY_HF_DOWNLOAD", "1")
    r = run(capsys, "check", "--no-cache", "hf://acme/remote@main")
    assert r.code == 0, r.err
    assert asked[0]["repo_id"] == "acme/remote" and asked[0]["revision"] == "main"
