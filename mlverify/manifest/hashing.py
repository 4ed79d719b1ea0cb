"""Streaming, parallel hashing of files and byte ranges.

Memory is bounded: each worker thread reuses one read buffer. Both cores are
used: large jobs (whole files or shards) run on a thread pool, largest first,
and ``hashlib`` releases the GIL while it hashes a large buffer. BLAKE3 hashes
whole files through its own memory-mapped, multi-threaded path. Small whole
files (up to :data:`SMALL_FILE`), where Python's own work per file dominates,
are hashed in batches by worker processes (:mod:`mlverify.manifest.smallfiles`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal, NamedTuple, Protocol, get_args

from mlverify.errors import InputError

HashType = Literal["sha256", "blake2b", "blake3"]
HASH_TYPES: tuple[str, ...] = get_args(HashType)
#: Names other tools write for the same algorithms.
HASH_ALIASES: dict[str, HashType] = {"blake2": "blake2b"}

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
    of stores (the digest cache writes one transaction per run).
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
    # Largest first keeps both workers busy to the end.
    large.sort(key=lambda i: jobs[i].size_hint, reverse=True)
    workers = min(worker_count(), len(large))
    ex: ThreadPoolExecutor | None = None
    futures: dict[int, Future[str]] = {}
    try:
        if workers > 1 or (workers == 1 and small):
            ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlverify-hash")
            futures = {i: ex.submit(hash_range, jobs[i], hash_type) for i in large}
        else:
            for i in large:
                results[i] = hash_range(jobs[i], hash_type)
        if small:
            for i, digest in zip(
                small, _hash_small([jobs[i] for i in small], hash_type), strict=True
            ):
                results[i] = digest
        for i, fut in futures.items():
            results[i] = fut.result()
    finally:
        if ex is not None:
            # on an error, do not hash the rest of a large model before reporting it
            ex.shutdown(wait=True, cancel_futures=True)
    if store:
        for i in (*small, *large):
            store(jobs[i], results[i])  # type: ignore[arg-type]
    return results  # type: ignore[return-value]


def _hash_small(jobs: Sequence[HashJob], hash_type: HashType) -> list[str]:
    """Hex digests of small whole files: batched in worker processes, or here."""
    from mlverify.manifest import smallfiles

    paths = [os.fspath(j.path) for j in jobs]
    workers = worker_count()
    try:
        if workers > 1 and len(paths) >= smallfiles.PROCESS_MIN_FILES:
            raw = smallfiles.hash_in_workers(paths, hash_type, workers)
        else:
            raw = smallfiles.hash_inline(paths, hash_type)
    except smallfiles.WorkerError as e:
        raise _file_error(jobs[e.index].path, e.errno) from None
    except OSError as e:
        raise InputError(f"cannot hash the files: {e}; try again") from None
    return [d.hex() for d in raw]


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
