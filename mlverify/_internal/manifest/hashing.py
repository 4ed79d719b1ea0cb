"""Streaming, parallel hashing of files and byte ranges.

Memory is bounded: each worker thread reuses one read buffer. Both cores are
used: large jobs (whole files or shards) run on a thread pool, largest first,
and ``hashlib`` releases the GIL while it hashes a large buffer. BLAKE3 hashes
whole files through its own memory-mapped, multi-threaded path. Small whole
files (up to :data:`SMALL_FILE`), where Python's own work per file dominates,
are hashed in batches by worker processes (:mod:`mlverify._internal.manifest.smallfiles`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal, NamedTuple, Protocol, get_args

from mlverify._internal.errors import InputError
from mlverify._internal.progress import advance

HashType = Literal["sha256", "blake2b", "blake3"]
HASH_TYPES: tuple[str, ...] = get_args(HashType)
#: Names other tools write for the same algorithms.
HASH_ALIASES: dict[str, HashType] = {"blake2": "blake2b"}
#: raw digest sizes, in bytes
DIGEST_SIZES: dict[str, int] = {"sha256": 32, "blake2b": 64, "blake3": 32}

READ_BUFFER = 4 * 1024 * 1024
#: whole files up to this size are hashed in batches (worker processes)
SMALL_FILE = 1024 * 1024
_local = threading.local()


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...


def parse_hash_type(name: str) -> HashType:
    """Map a hash name found in a signature to one we support, or fail."""
    canonical = HASH_ALIASES.get(name, name)
    if canonical not in HASH_TYPES:
        raise InputError(
            f"unsupported hash algorithm {name!r}; expected one of {', '.join(HASH_TYPES)}"
        )
    return canonical  # type: ignore[return-value]


def new_hasher(hash_type: HashType) -> _Hasher:
    if hash_type == "sha256":
        return hashlib.sha256()
    if hash_type == "blake2b":
        return hashlib.blake2b()
    import blake3

    return blake3.blake3()


def _buffer() -> bytearray:
    buf: bytearray | None = getattr(_local, "buf", None)
    if buf is None:
        buf = bytearray(READ_BUFFER)
        _local.buf = buf
    return buf


class HashJob(NamedTuple):
    """Hash bytes ``[start, end)`` of ``path``; ``end`` None means the whole file.

    A named tuple: a million of them are made for a million-file dataset.
    """

    path: Path | str
    start: int = 0
    end: int | None = None
    size_hint: int = 0


def hash_range(job: HashJob, hash_type: HashType) -> str:
    """Hex digest of one job's bytes, read in bounded chunks."""
    try:
        if hash_type == "blake3" and job.start == 0 and job.end is None:
            return _blake3_whole_file(job.path)
        hasher = new_hasher(hash_type)
        buf = _buffer()
        view = memoryview(buf)
        with open(job.path, "rb", buffering=0) as f:
            if job.start:
                f.seek(job.start)
            remaining = -1 if job.end is None else job.end - job.start
            while remaining:
                want = READ_BUFFER if remaining < 0 else min(READ_BUFFER, remaining)
                n = f.readinto(view[:want])
                if not n:
                    if remaining > 0:
                        raise InputError(
                            f"{job.path}: file shrank while hashing (expected bytes up to "
                            f"offset {job.end}); hash again once it stops changing"
                        )
                    break
                hasher.update(view[:n])
                advance(n)
                if remaining > 0:
                    remaining -= n
        return hasher.hexdigest()
    except FileNotFoundError:
        raise InputError(f"{job.path}: file disappeared while hashing") from None
    except PermissionError:
        raise InputError(f"{job.path}: permission denied; make it readable") from None
    except IsADirectoryError:
        raise InputError(f"{job.path}: expected a file, found a directory") from None


def _blake3_whole_file(path: Path | str) -> str:
    import blake3

    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if os.path.getsize(path) == 0:
        return str(hasher.hexdigest())
    hasher.update_mmap(path)
    return str(hasher.hexdigest())


class DigestStore(Protocol):
    """Somewhere digests can be looked up before hashing and stored after.

    A store may also have a ``commit()`` method, called once after each batch
    of stores (the digest cache writes one transaction per run), and a
    ``lookup_many(hash_type, locations) -> (bytearray, missing)`` method for whole
    files: the raw digests it knows, in order (zeros elsewhere), and the indices of
    the files it does not know (those are hashed; nothing is stored).
    """

    def lookup_for(self, hash_type: str) -> Callable[[HashJob], str | None]: ...

    def store_for(self, hash_type: str) -> Callable[[HashJob, str], None]: ...


def worker_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def hash_all(
    jobs: Sequence[HashJob],
    hash_type: HashType,
    *,
    lookup: Callable[[HashJob], str | None] | None = None,
    store: Callable[[HashJob, str], None] | None = None,
) -> list[str]:
    """Digests of every job, in the order given, computed in parallel.

    ``lookup`` / ``store`` plug in an optional digest cache.
    """
    results: list[str | None] = [lookup(j) for j in jobs] if lookup else [None] * len(jobs)
    small: list[int] = []
    large: list[int] = []
    batchable = hash_type != "blake3"
    for i, r in enumerate(results):
        if r is not None:
            continue
        j = jobs[i]
        if batchable and j.end is None and not j.start and j.size_hint <= SMALL_FILE:
            small.append(i)
        else:
            large.append(i)
    large_hex, small_raw = _hash_parts(
        [jobs[i] for i in large], [os.fspath(jobs[i].path) for i in small], hash_type
    )
    w = DIGEST_SIZES[hash_type]
    for k, i in enumerate(small):
        results[i] = small_raw[k * w : (k + 1) * w].hex()
    for k, i in enumerate(large):
        results[i] = large_hex[k]
    if store:
        for i in (*small, *large):
            store(jobs[i], results[i])  # type: ignore[arg-type]
    return results  # type: ignore[return-value]


def hash_whole_files(locations: Sequence[str], sizes: Sequence[int], hash_type: HashType) -> bytes:
    """Raw digests (concatenated, in order) of whole files: the dataset path.

    No object per file: small files go to the batched hashers by path, and
    their digests come back in one buffer.
    """
    n = len(locations)
    w = DIGEST_SIZES[hash_type]
    if hash_type != "blake3" and all(s <= SMALL_FILE for s in sizes):
        return _hash_parts([], locations, hash_type)[1]
    big = [i for i in range(n) if hash_type == "blake3" or sizes[i] > SMALL_FILE]
    big_set = set(big)
    small = [i for i in range(n) if i not in big_set]
    large_hex, small_raw = _hash_parts(
        [HashJob(locations[i], 0, None, sizes[i]) for i in big],
        [locations[i] for i in small],
        hash_type,
    )
    out = bytearray(n * w)
    for k, i in enumerate(small):
        out[i * w : (i + 1) * w] = small_raw[k * w : (k + 1) * w]
    for k, i in enumerate(big):
        out[i * w : (i + 1) * w] = bytes.fromhex(large_hex[k])
    return bytes(out)


def _hash_parts(
    large: Sequence[HashJob], small: Sequence[str], hash_type: HashType
) -> tuple[list[str], bytes]:
    """Hex digests of ``large`` (threads, largest first) and raw digests of the
    ``small`` whole files (batched), computed at the same time."""
    order = sorted(range(len(large)), key=lambda i: large[i].size_hint, reverse=True)
    out: list[str] = [""] * len(large)
    workers = min(worker_count(), len(large))
    ex: ThreadPoolExecutor | None = None
    futures: dict[int, Future[str]] = {}
    small_raw = b""
    try:
        if workers > 1 or (workers == 1 and small):
            # Largest first keeps both workers busy to the end.
            ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlverify-hash")
            futures = {i: ex.submit(hash_range, large[i], hash_type) for i in order}
        else:
            for i in order:
                out[i] = hash_range(large[i], hash_type)
        if small:
            small_raw = _hash_small(small, hash_type)
        for i, fut in futures.items():
            out[i] = fut.result()
    finally:
        if ex is not None:
            # on an error, do not hash the rest of a large model before reporting it
            ex.shutdown(wait=True, cancel_futures=True)
    return out, small_raw


def _hash_small(paths: Sequence[str], hash_type: HashType) -> bytes:
    """Raw digests of small whole files: batched in worker processes, or here."""
    from mlverify._internal.manifest import smallfiles

    workers = worker_count()
    try:
        if workers > 1 and len(paths) >= smallfiles.PROCESS_MIN_FILES:
            try:
                return smallfiles.hash_in_workers(paths, hash_type, workers)
            except OSError:
                pass  # no worker could start or one died: the same work, in this process
        return smallfiles.hash_inline(paths, hash_type)
    except smallfiles.WorkerError as e:
        raise _file_error(paths[e.index], e.errno) from None


def _file_error(path: Path | str, errno_: int) -> InputError:
    import errno

    if errno_ == errno.ENOENT:
        return InputError(f"{path}: file disappeared while hashing")
    if errno_ in (errno.EACCES, errno.EPERM):
        return InputError(f"{path}: permission denied; make it readable")
    if errno_ in (errno.EISDIR, -1):
        return InputError(
            f"{path}: expected a regular file, found something else (changed "
            "while hashing?); hash again once it stops changing"
        )
    return InputError(f"{path}: cannot read ({os.strerror(errno_)})")
