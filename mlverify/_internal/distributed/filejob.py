"""File jobs: one large file of a path artifact hashed and scanned, as evidence.

A path artifact with at least :data:`FANOUT_MIN_FILES` regular files of at least
:data:`FANOUT_FILE_BYTES` bytes each fans out: its job (the parent, in
:mod:`mlverify._internal.distributed.jobs`) queues one file job per such file that has no
evidence yet, and comes back later to join them. A file job reads its file once, between
two equal lstat fingerprints, computing SHA-256 (the manifest's) and BLAKE3 (the job
digest's) from the same chunks while the scanner scans the same inode, and stores the
result under :func:`evidence_key`: (mlverify version, scan limits, the file's name in its
artifact, its fingerprint). Transport-free, like :func:`~jobs.run_job`.

At-least-once: a file job whose evidence exists does nothing. Its deliveries are counted in
the store (like a job's); after ``max_deliveries`` it stores *failed* evidence with the
reason, so that the parent denies rather than waits forever.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlverify._internal.distributed.keys import OPEN_FLAGS, _sha256, read_fd
from mlverify._internal.distributed.known import FilePrint, limits_digest, print_of
from mlverify._internal.distributed.retry import RetryJob
from mlverify._internal.errors import InputError, MlverifyError, UsageError
from mlverify._internal.serve.store.base import FileEvidence
from mlverify._internal.text import shown
from mlverify._internal.version import __version__

if TYPE_CHECKING:
    from mlverify._internal.distributed.jobs import WorkerContext
    from mlverify._internal.policy.model import Policy
    from mlverify._internal.scan.model import Limits

log = logging.getLogger("mlverify._internal.distributed")

#: an artifact fans out when it has at least this many regular files ...
FANOUT_MIN_FILES = 2
#: ... of at least this many bytes each (``MLVERIFY_FANOUT_FILE_BYTES`` in a worker's
#: environment overrides it: tests, and deployments with other trade-offs)
FANOUT_FILE_BYTES = 256 << 20
FANOUT_ENV = "MLVERIFY_FANOUT_FILE_BYTES"
#: a name in a file job: a path relative to its artifact, at most this long
MAX_NAME = 4096


def fanout_file_bytes() -> int:
    """:data:`FANOUT_FILE_BYTES`, or the environment's (a positive integer)."""
    text = os.environ.get(FANOUT_ENV, "")
    if not text:
        return FANOUT_FILE_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{FANOUT_ENV}={shown(text)}: expected a positive number of bytes")
    return value


def check_limits(policies: Sequence[Policy]) -> Limits:
    """The limits ``check_artifact`` scans every file with first: the policies' shared
    allowlist when they all have the same one, else none (a known entry made with other
    limits is not used by the check: it scans that file itself)."""
    from mlverify._internal.scan.model import Limits

    allow_sets = {frozenset(p.allow_globals) for p in policies}
    return Limits(extra_allow=next(iter(allow_sets)) if len(allow_sets) == 1 else frozenset())


def evidence_key(version: str, limits: str, name: str, fingerprint: FilePrint) -> str:
    return _sha256(["file-evidence", version, limits, name, *map(str, fingerprint)])


@dataclass(frozen=True)
class FileJob:
    """What a file job's message carries: the artifact (a path), one file's name in it,
    the fingerprint the parent listed it with, and the limits and version to scan with."""

    ref: str
    name: str
    fingerprint: FilePrint
    limits: str
    version: str = __version__

    @functools.cached_property
    def key(self) -> str:
        return evidence_key(self.version, self.limits, self.name, self.fingerprint)

    def to_message(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "name": self.name,
            "fingerprint": list(self.fingerprint),
            "limits": self.limits,
            "version": self.version,
            "key": self.key,
        }

    @classmethod
    def from_message(cls, doc: Any) -> FileJob:
        if not isinstance(doc, dict):
            raise UsageError("file job message: expected a JSON object")
        try:
            fp = doc["fingerprint"]
            if not isinstance(fp, list) or len(fp) != 5 or any(type(x) is not int for x in fp):
                raise ValueError("fingerprint: expected 5 integers")
            a, b, c, d, e = fp
            job = cls(
                str(doc["ref"]), str(doc["name"]), (a, b, c, d, e),
                str(doc["limits"]), str(doc["version"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"file job message: missing or malformed field ({e})") from None
        if doc.get("key") != job.key:
            raise UsageError("file job message: its key is not the key of its fields")
        return job


def _parts(name: str) -> list[str]:
    """The components of a member name, or an error: relative, normalized, no ``..``."""
    parts = name.split("/")
    if not name or len(name) > MAX_NAME or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"{shown(name)}: not a file name inside an artifact")
    return parts


def _open_member(root: str, parts: list[str]) -> int:
    """``root/parts...`` opened without following a link at any component."""
    dflags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(root, dflags)
    try:
        for p in parts[:-1]:
            nxt = os.open(p, dflags, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], OPEN_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)


def make_evidence(job: FileJob, limits: Limits, roots: Sequence[Path]) -> FileEvidence:
    """Read ``job``'s file once (SHA-256 and BLAKE3 of the same chunks, on another thread)
    while the scanner scans it; the lstat fingerprint must be the job's before and after
    both, and the bytes hashed its size. Any difference is an error (retried)."""
    from mlverify._internal.background import BackgroundCall
    from mlverify._internal.scan.workers import scan_one
    from mlverify._internal.sources.local import require_under

    parts = _parts(job.name)
    require_under(Path(job.ref), roots)
    full = os.path.join(job.ref, *parts)
    where = f"{shown(job.ref)}: {shown(job.name)}"

    def lstat() -> os.stat_result:
        try:
            return os.lstat(full)
        except OSError as e:
            raise InputError(f"{where}: cannot read it ({e.strerror})") from None

    st = lstat()
    if not stat.S_ISREG(st.st_mode) or print_of(st) != job.fingerprint:
        raise InputError(f"{where}: changed since its artifact was listed")
    try:
        fd = _open_member(job.ref, parts)
    except OSError as e:
        raise InputError(
            f"{where}: cannot open it without following links ({e.strerror})"
        ) from None
    sha, b3 = hashlib.sha256(), _blake3()

    def hash_all() -> None:
        buf = bytearray(4 << 20)
        view = memoryview(buf)

        def chunk(n: int) -> None:
            sha.update(view[:n])
            b3.update(view[:n])

        read_fd(fd, full, st, buf, chunk)

    hashing = BackgroundCall(hash_all)
    # the same path; the file the scan opened (its status then) must be the one listed,
    # and the entry's status after both reads too
    entry, opened, _ = scan_one(full, job.name, limits)
    hashing.result()
    if print_of(lstat()) != job.fingerprint or (
        not isinstance(entry, dict) and tuple(opened) != tuple(job.fingerprint)
    ):
        raise InputError(f"{where}: changed while being hashed and scanned")
    if isinstance(entry, dict):  # scan_one's error entry: nothing was judged
        raise InputError(str(entry.get("error", "the scan failed")))
    return FileEvidence(
        key=job.key,
        name=job.name,
        fingerprint=job.fingerprint,
        sha256=sha.hexdigest(),
        blake3=b3.hexdigest(),
        size=st.st_size,
        entry=json.dumps(entry, separators=(",", ":")),
        created_at=time.time(),
    )


def _blake3() -> Any:
    import blake3

    return blake3.blake3()


def failed_evidence(job: FileJob, reason: str) -> FileEvidence:
    return FileEvidence(
        key=job.key, name=job.name, fingerprint=job.fingerprint, sha256="", blake3="",
        size=job.fingerprint[2], entry="", created_at=time.time(), failed=shown(reason),
    )  # fmt: skip


def run_file_job(ctx: WorkerContext, job: FileJob) -> str:
    """Make and store ``job``'s evidence; the outcome: ``duplicate`` (it exists),
    ``evidence`` or ``failed`` (stored as failed after its deliveries). Raises
    :class:`~jobs.RetryJob` for an error that deserves another delivery."""
    key = job.key
    if ctx.store.get_evidence([key]):
        log.info("file job already done", extra={"key": key, "ref": job.ref, "file": job.name})
        return "duplicate"
    n = ctx.store.deliver(key, job.ref, time.time())
    if n > ctx.max_deliveries:
        reason = "the file job ended its worker every time (crash or kill)"
        ctx.store.put_evidence(failed_evidence(job, reason))
        return "failed"
    log.info(
        "file job started", extra={"key": key, "ref": job.ref, "file": job.name, "delivery": n}
    )
    try:
        limits = check_limits(ctx.policies)
        if (job.version, job.limits) != (__version__, limits_digest(limits)):
            raise RetryJob(
                "this worker scans with another version or other limits than the file job asks "
                "for; a worker configured like the one that queued it must take it"
            )
        evidence = make_evidence(job, limits, ctx.roots)
    except MlverifyError as e:
        reason = str(e)
        ctx.store.note_error(key, reason, time.time())
        if n >= ctx.max_deliveries:
            ctx.store.put_evidence(failed_evidence(job, f"not hashed and scanned after {n} "
                                                        f"deliveries: {reason}"))  # fmt: skip
            log.error("file job failed", extra={"key": key, "ref": job.ref, "reason": reason})
            return "failed"
        log.warning("file job failed, will retry", extra={"key": key, "error": reason})
        raise RetryJob(reason) from None
    written = ctx.store.put_evidence(evidence)
    log.info("file evidence", extra={"key": key, "ref": job.ref, "file": job.name})
    return "evidence" if written else "duplicate"
