"""Datasets of many files: batched hashing in worker processes, the compact manifest,
the statement writer, sorted-stream comparison and the one-transaction digest cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mlverify._internal.artifact import walk_model
from mlverify._internal.errors import InputError
from mlverify._internal.manifest import smallfiles
from mlverify._internal.manifest.build import build_manifest, diff_resources
from mlverify._internal.manifest.cache import DigestCache
from mlverify._internal.manifest.hashing import HashJob, hash_all, worker_count
from mlverify._internal.manifest.manifest import Manifest, Resource, ResourceList, Serialization
from mlverify._internal.signing.statement import (
    OMS_PREDICATE_TYPE,
    STATEMENT_TYPE,
    load_statement,
    manifest_from_statement,
    statement_bytes,
)
from tests.core.helpers import run, write_key_pair

ODD_NAMES = ["a", 'quo"te', "ctl\x01x", "é/ü", "emoji-\U0001f600", "z/y/x"]


def _h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _reference_statement(m: Manifest) -> bytes:
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [m.subject()],
        "predicateType": OMS_PREDICATE_TYPE,
        "predicate": m.predicate(),
    }
    return json.dumps(statement, indent=2, sort_keys=True).encode()


@pytest.mark.parametrize("method", ["files", "shards"])
def test_statement_bytes_are_the_json_encoders(method: str) -> None:
    if method == "files":
        ser = Serialization(ignore_paths=('"resources": []', "x\ny"))
        resources = [Resource(n, _h(n.encode())) for n in sorted(ODD_NAMES)]
    else:
        ser = Serialization(method="shards", shard_size=10)
        resources = [
            Resource(n, _h(b"%d" % s), s, s + 10) for n in sorted(ODD_NAMES) for s in (0, 10)
        ]
    m = Manifest(subject_name='sub"ject\\\n', serialization=ser, resources=resources)
    data = statement_bytes(m)
    assert data == _reference_statement(m)
    back = manifest_from_statement(load_statement(data, where="t"), where="t")
    assert back.resources == m.resources and back.root_digest == m.root_digest
    assert list(back.resources) == resources
    assert (
        m.root_digest
        == hashlib.sha256(b"".join(bytes.fromhex(r.digest) for r in resources)).hexdigest()
    )


def test_resources_parse_compactly_and_refuse_defects() -> None:
    ser = Serialization().to_json()

    def parse(resources: list[object]) -> Manifest:
        return Manifest.from_predicate(
            {"resources": resources, "serialization": ser}, "m", where="w"
        )

    d = _h(b"x")
    m = parse([{"name": "b", "digest": d.upper(), "algorithm": "sha256"}, ("a", d, "sha256")])
    assert isinstance(m.resources, ResourceList) and m.resources.paths == ["b", "a"]
    assert m.resources[0].digest == d  # normalised to lowercase
    with pytest.raises(InputError, match="listed twice: a"):
        parse([("a", d, "sha256"), ("b", d, "sha256"), ("a", d, "sha256")])
    with pytest.raises(InputError, match="not 64 hex digits"):
        parse([("a", d[:-2], "sha256")])
    with pytest.raises(InputError, match="not 64 hex digits"):
        parse([("a", "zz" * 32, "sha256")])
    with pytest.raises(InputError, match="uses 'blake2b'"):
        parse([("a", d, "blake2b")])
    with pytest.raises(InputError, match="needs string"):
        parse([("a", 5, "sha256")])
    with pytest.raises(InputError, match=r"'\.\.'"):
        parse([("../etc/passwd", d, "sha256")])
    with pytest.raises(InputError, match="absolute"):
        parse([("/etc/passwd", d, "sha256")])


def test_diff_compares_sorted_streams() -> None:
    x, y = _h(b"x"), _h(b"y")
    expected = [Resource("c", x), Resource("a", x), Resource("b", x)]  # listed out of order
    found = [Resource("a", x), Resource("b", y), Resource("d", x)]
    diff = diff_resources(expected, found, ["e"])
    assert diff.changed == (("b", x, y),)
    assert diff.missing == ("c",) and diff.extra == ("d", "e")
    # shard names do not sort like (path, start): "f:100:110" < "f:10:20"
    shards = [Resource("f", x, s, s + 10) for s in (0, 10, 100)]
    moved = [Resource("f", x, 0, 10), Resource("f", y, 10, 20), Resource("f", x, 100, 110)]
    diff = diff_resources(shards, moved)
    assert diff.changed == (("f:10:20", x, y),) and not diff.missing and not diff.extra
    assert diff_resources(shards, list(reversed(shards))).ok
    # same names in the same order (the usual case): the digest buffers are compared
    same = [Resource(n, x) for n in ("b", "a", "c")]
    other = [Resource("b", x), Resource("a", y), Resource("c", y)]
    assert diff_resources(same, same, ["z"]) == diff_resources(same, same[::-1], ["z"])
    diff = diff_resources(same, other)
    assert diff.changed == (("a", x, y), ("c", x, y)) and not diff.missing and not diff.extra
    rl = ResourceList.of(other)
    assert rl.paths == ["b", "a", "c"] and rl[1] == Resource("a", y) and rl.name(2) == "c"
    with pytest.raises(ValueError, match="NUL"):
        ResourceList(["a\0b"], b"\0" * 32, 32)


def _files(root: Path, n: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = root / f"f{i:05d}"
        p.write_bytes(b"%d" % i * (i % 7 + 1))
        out.append(p)
    return out


@pytest.mark.skipif(worker_count() < 2, reason="worker processes are used on 2+ cores")
@pytest.mark.parametrize("hash_type", ["sha256", "blake2b"])
def test_small_files_hashed_in_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hash_type: str
) -> None:
    paths = _files(tmp_path, smallfiles.PROCESS_MIN_FILES + 7)

    def no_inline(*_: object) -> bytes:
        raise AssertionError("expected the worker processes")

    monkeypatch.setattr(smallfiles, "hash_inline", no_inline)
    got = hash_all([HashJob(p, size_hint=p.stat().st_size) for p in paths], hash_type)  # type: ignore[arg-type]
    new = hashlib.sha256 if hash_type == "sha256" else hashlib.blake2b
    assert got == [new(p.read_bytes()).hexdigest() for p in paths]


@pytest.mark.parametrize("many", [False, True])
def test_small_file_errors_name_the_file_and_never_hang(tmp_path: Path, many: bool) -> None:
    paths = _files(tmp_path, smallfiles.PROCESS_MIN_FILES + 7 if many else 20)
    gone = paths[len(paths) // 2]
    gone.unlink()
    with pytest.raises(InputError, match=f"{gone.name}: file disappeared while hashing"):
        hash_all([HashJob(p) for p in paths], "sha256")
    _files(tmp_path, len(paths))
    fifo = paths[-3]
    fifo.unlink()
    os.mkfifo(fifo)  # a FIFO swapped in after the walk: opening it must not wait for a writer
    with pytest.raises(InputError, match=f"{fifo.name}: expected a regular file"):
        hash_all([HashJob(p) for p in paths], "sha256")


def test_large_and_small_files_together(tmp_path: Path) -> None:
    paths = _files(tmp_path, 50)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(3 << 20))
    jobs = [HashJob(p, size_hint=p.stat().st_size) for p in [*paths, big]]
    jobs.append(HashJob(big, 1 << 20, 2 << 20, 1 << 20))
    got = hash_all(jobs, "sha256")
    data = big.read_bytes()
    assert got[-2] == _h(data) and got[-1] == _h(data[1 << 20 : 2 << 20])
    assert got[:50] == [_h(p.read_bytes()) for p in paths]


def test_digest_cache_writes_one_transaction_per_run(tmp_path: Path) -> None:
    model = tmp_path / "m"
    _files(model, 40)
    cache = DigestCache(tmp_path / "cache.sqlite3")
    statements: list[str] = []
    cache._db.set_trace_callback(statements.append)
    tree = walk_model(model)
    first = build_manifest(tree, Serialization(), cache)
    assert sum(s.strip().upper() == "COMMIT" for s in statements) == 1
    statements.clear()
    again = build_manifest(walk_model(model), Serialization(), DigestCache(cache.path))
    assert again.resources == first.resources
    rows = cache._db.execute("SELECT COUNT(*) FROM digests").fetchone()[0]
    assert rows == 40


def test_many_files_sign_verify_and_name_every_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "data"
    for d in range(4):
        _files(model / f"part-{d}", (smallfiles.PROCESS_MIN_FILES + 100) // 4)
    private, public = write_key_pair(tmp_path, "p256")
    sig = tmp_path / "data.sig"
    assert run(capsys, "sign", model, "--key", private, "--signature", sig).code == 0
    r = run(capsys, "verify", model, "--key", public, "--signature", sig)
    assert r.code == 0, r.err
    (model / "part-1" / "f00007").write_bytes(b"poisoned")
    (model / "part-2" / "f00009").unlink()
    (model / "part-3" / "new").write_bytes(b"new")
    r = run(capsys, "verify", model, "--key", public, "--signature", sig)
    assert r.code == 1
    assert "changed: part-1/f00007" in r.err and "missing: part-2/f00009" in r.err
    assert "extra (unsigned): part-3/new" in r.err


def test_lfs_pointer_listing_matches_os_walk(tmp_path: Path) -> None:
    """pointers_in lists with one lstat per file; same names and order as os.walk did."""
    from mlverify._internal.lfs import pointers_in, read_pointer

    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 3\n"
    for rel in ["b.bin", "a/z.bin", "a/b/c.bin", "c/d.bin", ".git/lfs.bin", "a/a.bin"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(pointer)
    (tmp_path / "a" / "big.bin").write_bytes(pointer + b"x" * 2000)
    (tmp_path / "a" / "plain.txt").write_bytes(b"not a pointer")
    os.symlink("b.bin", tmp_path / "link.bin")
    os.symlink("a", tmp_path / "dirlink")

    def old(path: Path) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for name in sorted(filenames):
                p = Path(dirpath) / name
                if not p.is_symlink() and read_pointer(p) is not None:
                    found.append(p.relative_to(path).as_posix())
        return found

    assert pointers_in(tmp_path) == old(tmp_path) == [
        "b.bin", "a/a.bin", "a/z.bin", "a/b/c.bin", "c/d.bin",
    ]  # fmt: skip


def test_workers_that_cannot_start_fall_back_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path, smallfiles.PROCESS_MIN_FILES + 1)
    monkeypatch.setattr("sys.executable", str(tmp_path / "no-such-python"))
    monkeypatch.setattr("mlverify._internal.manifest.hashing.worker_count", lambda: 2)
    got = hash_all([HashJob(p) for p in paths], "sha256")
    assert got == [_h(p.read_bytes()) for p in paths]
