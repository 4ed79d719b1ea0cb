"""Hash many small files fast: batches, in worker processes.

For files of a few KiB the time is Python's (open, read, hexdigest, the
objects around them), not the hash's, and Python threads share one GIL. So
small whole files are hashed in batches (:data:`BATCH` names per request) by
worker processes, one per core, each a bare interpreter (``-I -S``, stdlib
only: about 15 ms to start) running :data:`WORKER`. A request is the files'
paths; a reply is an errno per file (0: hashed, -1: not a regular file), then
the raw digests, which land in one buffer for all files (no object per file).
Below :data:`PROCESS_MIN_FILES` files (or on one core) the same loop runs in
this process.

Workers open with ``O_NONBLOCK`` (a FIFO swapped in after the walk cannot hang
them), check it is a regular file and read it in bounded chunks.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence

#: names per request: large enough that the parent's per-batch work vanishes
BATCH = 512
#: fewer small files than this are hashed in this process (a worker costs ~15 ms)
PROCESS_MIN_FILES = 3000
#: hash types the workers can compute (hashlib, stdlib only)
WORKER_HASHES = ("sha256", "blake2b")

WORKER = r"""
import hashlib, os, stat, struct, sys

def main():
    new = {"sha256": hashlib.sha256, "blake2b": hashlib.blake2b}[sys.argv[1]]
    zero = bytes(new().digest_size)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    chunk = 1 << 20
    buf = bytearray(chunk)
    view = memoryview(buf)
    rd, wr = sys.stdin.buffer.raw, sys.stdout.buffer.raw
    pack, fstat, isreg, readv, oopen, close = (
        struct.Struct("<i").pack, os.fstat, stat.S_ISREG, os.readv, os.open, os.close
    )

    def exact(n):
        out = bytearray()
        while len(out) < n:
            got = rd.read(n - len(out))
            if not got:
                raise SystemExit(0)
            out += got
        return out

    while True:
        count, length = struct.unpack("<II", exact(8))
        if count == 0:
            return
        names = bytes(exact(length)).split(b"\0")
        errs = bytearray()
        digests = bytearray()
        for name in names:
            try:
                fd = oopen(name, flags)
            except OSError as e:
                errs += pack(e.errno or 5)
                digests += zero
                continue
            try:
                if not isreg(fstat(fd).st_mode):
                    errs += pack(-1)
                    digests += zero
                    continue
                h = new()
                while True:
                    n = readv(fd, [buf])
                    if not n:
                        break
                    h.update(view[:n])
                errs += pack(0)
                digests += h.digest()
            except OSError as e:
                errs += pack(e.errno or 5)
                digests += zero
            finally:
                close(fd)
        reply = errs + digests
        view_out = memoryview(reply)
        while view_out:
            view_out = view_out[wr.write(view_out):]

main()
"""


class WorkerError(Exception):
    """A file a worker could not hash: ``errno`` 0 < n, or -1 (not a regular file)."""

    def __init__(self, index: int, errno: int) -> None:
        super().__init__(index, errno)
        self.index = index
        self.errno = errno


def _digest_size(hash_type: str) -> int:
    return 32 if hash_type == "sha256" else 64


def hash_inline(paths: Sequence[str], hash_type: str) -> bytes:
    """Raw digests of whole files, concatenated, computed in this process."""
    import hashlib
    import stat

    new = hashlib.sha256 if hash_type == "sha256" else hashlib.blake2b
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    out = bytearray()
    for i, p in enumerate(paths):
        try:
            fd = os.open(p, flags)
        except OSError as e:
            raise WorkerError(i, e.errno or 5) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise WorkerError(i, -1)
            h = new()
            while n := os.readv(fd, [buf]):
                h.update(view[:n])
            out += h.digest()
        except OSError as e:
            raise WorkerError(i, e.errno or 5) from None
        finally:
            os.close(fd)
    return bytes(out)


def hash_in_workers(paths: Sequence[str], hash_type: str, workers: int) -> bytes:
    """Raw digests of whole files, concatenated, computed by ``workers`` processes;
    raises :class:`WorkerError` for the first file (in the given order) that could
    not be hashed."""
    size = _digest_size(hash_type)
    slab = bytearray(size * len(paths))
    errors: list[WorkerError] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    batches = iter(range(0, len(paths), BATCH))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", WORKER, hash_type],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    close_fds=True,
                )
            )
    except OSError:
        for p in procs:
            p.kill()
            p.wait()
        raise

    def feed(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            while not errors and not failures:
                with lock:
                    start = next(batches, None)
                if start is None:
                    break
                chunk = paths[start : start + BATCH]
                n = len(chunk)
                names = b"\0".join(os.fsencode(p) for p in chunk)
                proc.stdin.write(struct.pack("<II", n, len(names)) + names)
                proc.stdin.flush()
                reply = proc.stdout.read((4 + size) * n)
                if len(reply) != (4 + size) * n:
                    raise OSError("a hashing worker exited early")
                if reply[: 4 * n].count(0) != 4 * n:
                    for j in range(n):
                        err = int.from_bytes(reply[4 * j : 4 * j + 4], "little", signed=True)
                        if err:
                            with lock:
                                errors.append(WorkerError(start + j, err))
                            return
                slab[start * size : (start + n) * size] = reply[4 * n :]
        except BaseException as e:  # reported by the caller's thread
            failures.append(e)

    from mlverify._internal.workerpool import feed_workers

    # hashing stops at the first error anyway: the workers are told goodbye, not killed
    feed_workers(procs, feed, goodbye=struct.pack("<II", 0, 0), failed=lambda: False)
    if errors:
        raise min(errors, key=lambda e: e.index)
    if failures:
        raise OSError(f"hashing workers failed ({failures[0]})")
    return bytes(slab)
