"""`mlverify hash`: what is covered, what is left out, algorithms, modes, refusals."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import blake3
import pytest

from mlverify._internal.artifact import walk_model
from mlverify._internal.manifest.build import hash_model, shard_bounds
from mlverify._internal.manifest.cache import DigestCache
from tests.core.helpers import make_model, run


def _json(capsys: pytest.CaptureFixture[str], *args: object) -> dict:  # type: ignore[type-arg]
    r = run(capsys, "hash", *args, "--format", "json")
    assert r.code == 0, r.err
    return json.loads(r.out)  # type: ignore[no-any-return]


def _root(digests: list[str]) -> str:
    return hashlib.sha256(b"".join(bytes.fromhex(d) for d in digests)).hexdigest()


def test_files_mode_covers_every_regular_file_and_records_exclusions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    # a stale signature is never hashed (it parses as a DSSE envelope)
    (model / "model.sig").write_text(
        '{"payloadType": "application/vnd.in-toto+json", "payload": "e30=", '
        '"signatures": [{"sig": "AAAA"}]}'
    )
    doc = _json(capsys, model)
    names = [r["name"] for r in doc["predicate"]["resources"]]
    assert names == [
        ".hidden",
        "config.json",
        "sub/deep/extra.bin",
        "sub/tokenizer.txt",
        "weights.bin",
    ]
    for r in doc["predicate"]["resources"]:
        data = (model / r["name"]).read_bytes()
        assert r["digest"] == hashlib.sha256(data).hexdigest()
        assert r["algorithm"] == "sha256"
    ser = doc["predicate"]["serialization"]
    assert ser == {
        "allow_symlinks": False,
        "hash_type": "sha256",
        "ignore_paths": [".git", ".gitattributes", ".github", ".gitignore", "model.sig"],
        "method": "files",
    }
    root = _root([r["digest"] for r in doc["predicate"]["resources"]])
    assert doc["subject"] == {"name": "model", "digest": {"sha256": root}}
    text = run(capsys, "hash", model)
    assert text.out.split()[0] == f"sha256:{root}"


def test_output_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_model(tmp_path)
    first = run(capsys, "hash", model, "--format", "json", "--ignore", "sub/deep").out
    os.utime(model / "config.json", (1, 1))
    second = run(capsys, "hash", model, "--format", "json", "--ignore", "sub/deep").out
    assert first == second


def test_ignore_is_relative_to_model_root_not_cwd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    doc = _json(capsys, model, "--ignore", "sub/deep", "--ignore", "*.txt", "--ignore", ".hidden")
    names = [r["name"] for r in doc["predicate"]["resources"]]
    assert names == ["config.json", "weights.bin"]
    ignore_paths = doc["predicate"]["serialization"]["ignore_paths"]
    # patterns as given, plus the concrete files a glob matched (for literal-path verifiers)
    assert "*.txt" in ignore_paths and "sub/tokenizer.txt" in ignore_paths
    assert "sub/deep" in ignore_paths and ".hidden" in ignore_paths


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../b", ""])
def test_ignore_patterns_that_leave_the_root_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    model = make_model(tmp_path)
    r = run(capsys, "hash", model, "--ignore", bad)
    assert r.code == 2
    assert r.err.startswith("mlverify: error: --ignore") and r.err.count("\n") == 1


@pytest.mark.parametrize("hash_type", ["sha256", "blake2b", "blake3"])
def test_algorithms_match_reference_implementations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hash_type: str
) -> None:
    model = make_model(tmp_path)
    doc = _json(capsys, model, "--hash", hash_type)
    ref = {
        "sha256": lambda b: hashlib.sha256(b).hexdigest(),
        "blake2b": lambda b: hashlib.blake2b(b).hexdigest(),
        "blake3": lambda b: blake3.blake3(b).hexdigest(),
    }[hash_type]
    for r in doc["predicate"]["resources"]:
        assert r["algorithm"] == hash_type
        assert r["digest"] == ref((model / r["name"]).read_bytes())


@pytest.mark.parametrize("hash_type", ["sha256", "blake3"])
def test_shards_mode_hashes_byte_ranges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hash_type: str
) -> None:
    model = make_model(tmp_path)
    (model / "empty").write_bytes(b"")
    doc = _json(capsys, model, "--mode", "shards", "--shard-size", "30000", "--hash", hash_type)
    ser = doc["predicate"]["serialization"]
    assert ser["method"] == "shards" and ser["shard_size"] == 30000
    names = [r["name"] for r in doc["predicate"]["resources"]]
    assert "weights.bin:0:30000" in names and "weights.bin:60000:70000" in names
    assert not any(n.startswith("empty:") for n in names)  # no byte ranges in an empty file
    for r in doc["predicate"]["resources"]:
        path, start, end = r["name"].rsplit(":", 2)
        data = (model / path).read_bytes()[int(start) : int(end)]
        expected = hashlib.sha256(data) if hash_type == "sha256" else blake3.blake3(data)
        assert r["digest"] == expected.hexdigest()


def test_shard_bounds() -> None:
    assert shard_bounds(0, 10) == []
    assert shard_bounds(10, 10) == [(0, 10)]
    assert shard_bounds(25, 10) == [(0, 10), (10, 20), (20, 25)]


def test_single_file_is_one_resource(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"abc" * 1000)
    doc = _json(capsys, f)
    assert doc["predicate"]["resources"] == [
        {"name": ".", "algorithm": "sha256", "digest": hashlib.sha256(b"abc" * 1000).hexdigest()}
    ]
    assert doc["subject"]["name"] == "model.safetensors"


def test_large_file_streams_with_bounded_buffers(tmp_path: Path) -> None:
    f = tmp_path / "big.bin"
    chunk = os.urandom(1 << 20)
    with open(f, "wb") as out:
        for _ in range(20):
            out.write(chunk)
    manifest = hash_model(f)
    assert manifest.resources[0].digest == hashlib.sha256(chunk * 20).hexdigest()


def test_empty_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    (empty / ".git").mkdir(parents=True)
    (empty / ".git" / "config").write_text("x")
    r = run(capsys, "hash", empty)
    assert r.code == 2
    assert "no files to hash" in r.err and str(empty) in r.err


def test_symlinks_refused_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_model(tmp_path)
    (model / "link.json").symlink_to("config.json")
    r = run(capsys, "hash", model)
    assert r.code == 2
    assert "link.json" in r.err and "--allow-symlinks" in r.err


def test_symlinks_inside_root_followed_when_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    (model / "link.json").symlink_to("config.json")
    (model / "linkdir").symlink_to("sub")
    doc = _json(capsys, model, "--allow-symlinks")
    by_name = {r["name"]: r["digest"] for r in doc["predicate"]["resources"]}
    assert by_name["link.json"] == by_name["config.json"]
    assert by_name["linkdir/tokenizer.txt"] == by_name["sub/tokenizer.txt"]
    assert doc["predicate"]["serialization"]["allow_symlinks"] is True


@pytest.mark.parametrize("target", ["outside", "loop"])
def test_escaping_or_looping_symlinks_refused_even_when_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    model = make_model(tmp_path)
    if target == "outside":
        (tmp_path / "secret.txt").write_text("not part of the model")
        (model / "escape").symlink_to(tmp_path / "secret.txt")
        expected = "escapes the model root"
    else:
        (model / "sub" / "up").symlink_to("..")
        expected = "symlink loop"
    r = run(capsys, "hash", model, "--allow-symlinks")
    assert r.code == 2 and expected in r.err


def test_fifo_is_refused_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_model(tmp_path)
    os.mkfifo(model / "pipe")
    r = run(capsys, "hash", model)  # reading a FIFO would hang: it must not be opened
    assert r.code == 2 and "not a regular file" in r.err and "pipe" in r.err


def test_model_path_that_is_a_symlink_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    (tmp_path / "alias").symlink_to(model)
    r = run(capsys, "hash", tmp_path / "alias")
    assert r.code == 2 and "is a symlink" in r.err


def test_digest_cache_reuses_and_invalidates(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    cache = DigestCache(tmp_path / "cache.sqlite3")
    tree = walk_model(model)
    from mlverify._internal.manifest.build import build_manifest
    from mlverify._internal.manifest.manifest import Serialization

    ser = Serialization(ignore_paths=tree.ignore_paths)
    first = build_manifest(tree, ser, cache)
    hits: list[str] = []
    lookup = cache.lookup_for("sha256")
    for f in tree.files:
        from mlverify._internal.manifest.hashing import HashJob

        got = lookup(HashJob(path=f.path))
        if got:
            hits.append(got)
    assert len(hits) == len(tree.files)
    # Change a file's content (size kept): its mtime/ctime change, the cache misses.
    data = bytearray((model / "weights.bin").read_bytes())
    data[0] ^= 0xFF
    (model / "weights.bin").write_bytes(bytes(data))
    second = build_manifest(walk_model(model), ser, cache)
    changed = {r.path for r, s in zip(first.resources, second.resources, strict=True) if r != s}
    assert changed == {"weights.bin"}
    assert dict((r.path, r.digest) for r in second.resources)["weights.bin"] == (
        hashlib.sha256(bytes(data)).hexdigest()
    )
