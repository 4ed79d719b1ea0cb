"""`check` reads each small file once: its scan hashes the bytes it scanned and the
manifest is made of those digests (large files are hashed on threads, apart). The
manifest is the one ``build_manifest`` makes; a file that changes between its reads, or
during the check, is an error; the signature's verification reuses the check's walk."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from mlverify._internal import check as check_mod
from mlverify._internal.artifact import walk_model
from mlverify._internal.errors import InputError
from mlverify._internal.manifest.build import build_manifest
from mlverify._internal.manifest.cache import DigestCache
from mlverify._internal.manifest.manifest import Serialization
from mlverify._internal.scan import dispatch, engine, workers
from mlverify._internal.scan.model import Limits
from mlverify._internal.signing import oms
from tests.core.helpers import run, write_key_pair

SYSTEM_PICKLE = b"cos\nsystem\n(S'true'\ntR."  # os.system('true') as opcodes: never run
BIG = engine.WHOLE_MAX + 4096


def _odd_tree(root: Path) -> None:
    """Odd names, empty files, a symlink, ignored files, large and small files."""
    (root / "sub dir" / "deeper").mkdir(parents=True)
    (root / "a-b").mkdir()
    (root / "a").mkdir()
    (root / "a" / "x.txt").write_bytes(b"a/x\n")
    (root / "a-b" / "x.txt").write_bytes(b"a-b/x\n")  # sorts between "a" and "a/x.txt"
    (root / "sub dir" / "deeper" / "caf\u00e9 \u2603.bin").write_bytes(os.urandom(700))
    (root / "sub dir" / "tab\tand newline\n.txt").write_bytes(b"odd\n")
    (root / "empty").write_bytes(b"")
    (root / ".hidden").write_bytes(b"dotfile\n")
    (root / "evil.pkl").write_bytes(SYSTEM_PICKLE)
    (root / "large.bin").write_bytes(os.urandom(BIG))
    (root / "large2.bin").write_bytes(os.urandom(BIG + 1))
    (root / "logs").mkdir()
    (root / "logs" / "run.log").write_bytes(b"ignored\n")
    (root / "notes.tmp").write_bytes(b"ignored by a glob\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    (root / "link.txt").symlink_to("a/x.txt")


def _check_manifest(tree: object, cache: DigestCache | None, n_workers: int) -> object:
    from mlverify._internal.artifact import ModelTree

    assert isinstance(tree, ModelTree)
    ser = Serialization(allow_symlinks=tree.allow_symlinks, ignore_paths=tree.ignore_paths)
    scanned, at = check_mod._scan_order(tree)
    hashing = check_mod._Hashing(tree, ser, cache, engine.WHOLE_MAX)
    scan = workers.scan_many(
        [f.location for f in scanned],
        [f.name for f in scanned],
        [f.size for f in scanned],
        Limits(),
        workers=n_workers,
    )
    return hashing.manifest(scan, at)


@pytest.mark.parametrize("use_cache", [False, True])
@pytest.mark.parametrize("n_workers", [1, 2])
@pytest.mark.parametrize("general", [False, True])
def test_the_checks_manifest_is_the_one_build_manifest_makes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    use_cache: bool,
    n_workers: int,
    general: bool,
) -> None:
    model = tmp_path / "m"
    _odd_tree(model)
    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 0)
    monkeypatch.setattr(workers, "BATCH", 3)
    tree = walk_model(model, ignore=["logs", "*.tmp"], allow_symlinks=True)
    assert len(tree.left_out) == 3 and len(tree.files) == 10
    ser = Serialization(allow_symlinks=True, ignore_paths=tree.ignore_paths)
    cache = DigestCache(tmp_path / "c.sqlite3") if use_cache else None
    expected = build_manifest(tree, ser, None)
    if general:  # every file scanned from the file: all hashed apart, the same manifest
        with dispatch.general_path():
            got = _check_manifest(tree, cache, 1)
    else:
        got = _check_manifest(tree, cache, n_workers)
    assert got == expected
    if use_cache:  # a second run from the cache: the same manifest again
        assert _check_manifest(tree, DigestCache(cache.path), n_workers) == expected  # type: ignore[union-attr]
    single = walk_model(model / "evil.pkl")
    ser1 = Serialization(ignore_paths=single.ignore_paths)
    assert _check_manifest(single, None, 1) == build_manifest(single, ser1, None)


def test_the_scan_hashes_the_bytes_it_scanned(tmp_path: Path) -> None:
    paths = []
    for i, body in enumerate([b"", b"text\n", SYSTEM_PICKLE, os.urandom(BIG)]):
        p = tmp_path / f"f{i}"
        p.write_bytes(body)
        paths.append(p)
    scan = workers.scan_many(
        [str(p) for p in paths],
        [p.name for p in paths],
        [p.stat().st_size for p in paths],
        Limits(),
    )
    for i, p in enumerate(paths):
        st = p.stat()
        assert scan.key(i) == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        data = p.read_bytes()
        if len(data) <= engine.WHOLE_MAX:
            assert scan.digest(i) == hashlib.sha256(data).digest()
        else:  # scanned from the file: hashed apart
            assert scan.digest(i) is None
    assert scan.status(2).value == "findings"


def _data(tmp_path: Path, n: int) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(n):
        (data / f"s-{i:03d}.txt").write_bytes(b"row %d\n" % i)
    (data / "big.bin").write_bytes(b"\0" * BIG)
    return data


def _policy(tmp: Path, public: Path) -> Path:
    p = tmp / "p.yaml"
    p.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: t\n"
        f"spec:\n  signatures: {{required: true, trusted: [{{key: {public}}}]}}\n"
    )
    return p


@pytest.mark.parametrize("n_workers", [1, 2])
def test_a_small_file_rewritten_after_its_scan_is_an_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    n_workers: int,
) -> None:
    data = _data(tmp_path, 30)
    target = data / "s-007.txt"
    real = engine.scan_context

    def scan_then_rewrite(path, *args, **kw):  # type: ignore[no-untyped-def]
        out = real(path, *args, **kw)
        if str(path) == str(target):
            # same size, other bytes: what the scan read and hashed is no longer there
            target.write_bytes(b"row X\n")
        return out

    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 10**9)  # in this process (patched)
    monkeypatch.setattr(engine, "scan_context", scan_then_rewrite)
    r = run(capsys, "check", "--no-cache", data)
    assert r.code == 2 and "changed while being checked" in r.err and "s-007.txt" in r.err


def test_a_large_file_rewritten_between_its_hash_and_its_scan_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _data(tmp_path, 5)
    big = data / "big.bin"
    hashed = threading.Event()
    real_hash = check_mod.hash_files

    def hash_then_signal(*args, **kw):  # type: ignore[no-untyped-def]
        out = real_hash(*args, **kw)
        hashed.set()
        return out

    real_scan = engine.scan_context

    def rewrite_then_scan(path, *args, **kw):  # type: ignore[no-untyped-def]
        if str(path) == str(big):
            assert hashed.wait(30)
            with open(big, "r+b") as f:  # the same size: a pickle where zeros were hashed
                f.write(SYSTEM_PICKLE)
        return real_scan(path, *args, **kw)

    monkeypatch.setattr(check_mod, "hash_files", hash_then_signal)
    monkeypatch.setattr(engine, "scan_context", rewrite_then_scan)
    r = run(capsys, "check", "--no-cache", data)
    assert r.code == 2 and "changed while being checked" in r.err and "big.bin" in r.err


def test_a_file_scanned_again_that_reads_differently_is_an_error(tmp_path: Path) -> None:
    from mlverify._internal.scan.workers import ScanResults

    p = tmp_path / "evil.pkl"
    p.write_bytes(SYSTEM_PICKLE)
    scan = workers.scan_many([str(p)], ["evil.pkl"], [p.stat().st_size], Limits())
    assert 0 in scan.findings
    p.write_bytes(SYSTEM_PICKLE.replace(b"true", b"echo"))  # same size, other bytes
    with pytest.raises(InputError, match="changed while being checked"):
        check_mod._scan_again(scan, frozenset({"os.system"}), [str(p)], ["evil.pkl"], [9])
    assert isinstance(scan, ScanResults)


@pytest.mark.parametrize(
    "ignore",
    [[], ["notes.txt"], ["logs"], ["logs/"], ["*.tmp"], ["sub/*.txt"], ["missing", "x*"]],
)
def test_the_walk_narrowed_to_a_signatures_ignores_is_that_walk(
    tmp_path: Path, ignore: list[str]
) -> None:
    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    (model / "logs" / "deep").mkdir(parents=True)
    for name in ("a.txt", "notes.txt", "x.tmp", "xylo", "sub/b.txt", "sub/c.bin",
                 "logs/deep/l.txt", "logs.txt", ".gitattributes"):  # fmt: skip
        (model / name).write_bytes(name.encode())
    sig = model / "model.sig"
    sig.write_bytes(b"not a signature, left out by being named")
    plain = walk_model(model, extra_excluded=[sig])
    narrowed = oms._narrowed(plain, [".git", ".gitattributes", *ignore])
    walked = walk_model(model, ignore=ignore, extra_excluded=[sig], require_files=False)
    assert narrowed.files == walked.files


def test_the_signature_is_verified_on_the_checks_walk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _data(tmp_path, 20)
    (data / "notes.txt").write_text("the signer's ignore paths leave this out\n")
    private, public = write_key_pair(tmp_path, "p256")
    sig = data / "model.sig"  # inside: the signer records it among its ignore paths
    args = ("sign", data, "--key", private, "--signature", sig, "--ignore", "notes.txt")
    assert run(capsys, *args).code == 0
    walks: list[Path] = []
    real = oms.walk_model

    def counted(path: Path, **kw: object):  # type: ignore[no-untyped-def]
        walks.append(path)
        return real(path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(oms, "walk_model", counted)
    p = _policy(tmp_path, public)
    r = run(capsys, "check", "--no-cache", data, "--policy", p, "--format", "json")
    assert r.code == 0, r.out + r.err
    assert walks == []  # the check's own walk, narrowed to the signature's ignores
    ev = json.loads(r.out)["results"][0]["evidence"]
    assert ev["unsigned_files"] == ["notes.txt"]
    assert [s["status"] for s in ev["signatures"]] == ["verified"]
    # a file the signer did not sign is still found extra on the reused walk
    (data / "s-003.txt").write_bytes(b"row 3 again, other bytes\n")
    (data / "added.txt").write_bytes(b"new\n")
    r = run(capsys, "check", "--no-cache", data, "--policy", p, "--format", "json")
    assert r.code == 1
    (sig_ev,) = json.loads(r.out)["results"][0]["evidence"]["signatures"]
    assert sig_ev["status"] == "mismatch"
    assert (
        "changed: s-003.txt" in sig_ev["reason"]
        and "extra (unsigned): added.txt" in sig_ev["reason"]
    )


def test_a_small_files_digest_is_never_taken_from_the_cache(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    small = model / "small.txt"
    small.write_bytes(b"the bytes scanned\n")
    (model / "large.bin").write_bytes(b"\1" * BIG)
    tree = walk_model(model)
    cache = DigestCache(tmp_path / "c.sqlite3")
    st = small.stat()
    # a stale (or planted) entry under the small file's very identity
    cache._db.execute(
        "INSERT INTO digests VALUES (?,?,?,?,?,?,?,?,?)",
        (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, "sha256", 0, -1,
         "00" * 32),
    )  # fmt: skip
    cache._db.commit()
    got = _check_manifest(tree, cache, 1)
    assert got == build_manifest(tree, Serialization(ignore_paths=tree.ignore_paths), None)
    # the same entry is what a manifest from the cache alone would take
    poisoned = build_manifest(tree, Serialization(ignore_paths=tree.ignore_paths), cache)
    assert poisoned.resources[1].digest == "00" * 32


@pytest.mark.parametrize("n_workers", [1, 2])
def test_a_file_replaced_by_a_symlink_after_the_walk_is_an_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    n_workers: int,
) -> None:
    """Replaced, once walked, by a link to a copy of it outside the model (r6 E): the
    scan opens through the link and the copy's status stays put, so only the entry's own
    status (the link's) tells; the walk refused symlinks, and so does the check."""
    import os

    data = _data(tmp_path, 30)
    target = data / "s-007.txt"
    outside = tmp_path / "outside.txt"
    outside.write_bytes(target.read_bytes())
    real = engine.scan_context
    swapped: list[bool] = []

    def swap_then_scan(path, *args, **kw):  # type: ignore[no-untyped-def]
        if not swapped:
            swapped.append(True)
            tmp = data / ".swap"
            os.symlink(outside, tmp)
            os.replace(tmp, target)  # atomically: the name now a link
        return real(path, *args, **kw)

    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 10**9)  # in this process (patched)
    monkeypatch.setattr(engine, "scan_context", swap_then_scan)
    r = run(capsys, "check", "--no-cache", data)
    assert r.code == 2 and "changed while being checked" in r.err and "s-007.txt" in r.err


def test_a_signed_file_made_after_the_walk_is_missing_not_verified_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the trusted signature lists, absent when the check walks and written once
    the scan runs (r6 I): the verification must not find it by name and hash it, a file
    the check never scanned; it is missing."""
    from tests.check.test_attacks import policy

    model = tmp_path / "model"
    model.mkdir()
    (model / "a.bin").write_bytes(os.urandom(4096))
    late = model / "late.bin"
    late.write_bytes(b"signed, never scanned\n")
    private, public = write_key_pair(tmp_path, "p256")
    assert run(capsys, "sign", model, "--key", private).code == 0
    trusted = f"spec:\n  signatures:\n    required: true\n    trusted: [{{key: {public}}}]\n"
    p = policy(tmp_path, trusted)
    content = late.read_bytes()
    late.unlink()
    real = engine.scan_context

    def scan_then_create(path, *args, **kw):  # type: ignore[no-untyped-def]
        out = real(path, *args, **kw)
        if not late.exists():
            late.write_bytes(content)
        return out

    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 10**9)  # in this process (patched)
    monkeypatch.setattr(engine, "scan_context", scan_then_create)
    r = run(capsys, "check", "--policy", p, model)
    assert r.code == 1 and "late.bin" in r.out, r.out + r.err
    monkeypatch.setattr(engine, "scan_context", real)
    assert run(capsys, "check", "--policy", p, model).code == 0  # there, and scanned: fine


def test_a_signed_left_out_file_is_compared_by_the_bytes_its_scan_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signed file under a signature's name (r6 B): at check time it parses as a
    signature, so the walk leaves it out and the scan reads it as one; changed back to the
    signed bytes once scanned, through a shared mapping whose page is already dirty (no
    time changes: the kernel does not see the write). The verification compares the
    digest of what the scan read, never a second read (which would find the signed bytes)."""
    import mmap

    from tests.check.test_attacks import policy

    private, public = write_key_pair(tmp_path, "p256")
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.bin").write_bytes(b"x")
    assert run(capsys, "sign", other, "--key", private).code == 0
    bundle = (other / "model.sig").read_bytes()  # parses as a signature
    model = tmp_path / "model"
    (model / "attestations").mkdir(parents=True)
    (model / "a.bin").write_bytes(os.urandom(4096))
    hidden = model / "attestations" / "extra.sigstore.json"
    signed = b"#" * len(bundle)  # not a signature: hashed and signed
    hidden.write_bytes(signed)
    assert run(capsys, "sign", model, "--key", private).code == 0
    hidden.write_bytes(bundle)
    trusted = f"spec:\n  signatures:\n    required: true\n    trusted: [{{key: {public}}}]\n"
    p = policy(tmp_path, trusted)
    fd = os.open(hidden, os.O_RDWR)
    m = mmap.mmap(fd, 0)
    m[0:1] = m[0:1]  # dirty the page before the check
    real = engine.scan_context

    def scan_then_swap(path, *args, **kw):  # type: ignore[no-untyped-def]
        out = real(path, *args, **kw)
        if str(path) == str(hidden):
            m[:] = signed  # back to what was signed, unseen by the file's times
        return out

    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 10**9)  # in this process (patched)
    monkeypatch.setattr(engine, "scan_context", scan_then_swap)
    try:
        before = os.stat(hidden)
        r = run(capsys, "check", "--policy", p, model)
        after = os.stat(hidden)
    finally:
        m.close()
        os.close(fd)
    if (before.st_mtime_ns, before.st_ctime_ns) != (after.st_mtime_ns, after.st_ctime_ns):
        pytest.skip("this kernel updated the timestamps of a dirty shared mapping")
    assert r.code == 1 and "extra.sigstore.json" in r.out, r.out + r.err


def test_a_signature_past_the_config_bound_does_not_deny_its_own_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset's signature grows with its files (228 bytes each: 16 MiB at about 73k
    files); past the config scanner's decode bound it was a high finding denying the check
    it signs. It is searched to its end like any JSON past the bound, and holds nothing."""
    from mlverify._internal.scan.formats import configs
    from tests.check.test_attacks import policy

    model = tmp_path / "data"
    model.mkdir()
    for i in range(60):
        (model / f"row-{i:03d}.txt").write_bytes(b"row %d\n" % i)
    private, public = write_key_pair(tmp_path, "p256")
    assert run(capsys, "sign", model, "--key", private).code == 0
    assert (model / "model.sig").stat().st_size > 4096
    monkeypatch.setattr(configs, "MAX_CONFIG", 4096)  # the bound, made small
    trusted = f"spec:\n  signatures:\n    required: true\n    trusted: [{{key: {public}}}]\n"
    r = run(capsys, "check", "--policy", policy(tmp_path, trusted), model)
    assert r.code == 0, r.out + r.err
