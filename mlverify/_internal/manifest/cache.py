"""Optional digest cache, for re-hashing unchanged files fast (pre-commit).

Off by default. A digest is reused when a file's (device, inode, size,
mtime_ns, ctime_ns) are unchanged. That is a trade-off, documented in
docs/digest-cache.md: a writer that restores both timestamps (ctime needs
root or a clock change) or a file system with coarse timestamps can make the
cache return a stale digest. Never use it where the files may be hostile.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from mlverify._internal.errors import InputError, Remedy
from mlverify._internal.manifest.hashing import HashJob
from mlverify._internal.text import short, shown

_SCHEMA = """
CREATE TABLE IF NOT EXISTS digests (
    dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER,
    hash_type TEXT, start INTEGER, end_ INTEGER, digest TEXT,
    PRIMARY KEY (dev, ino, hash_type, start, end_)
)
"""


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlverify" / "digests.sqlite3"


class DigestCache:
    """A small SQLite table of digests keyed by file identity and timestamps."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # used by one thread at a time, possibly not the one that opened it
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute(_SCHEMA)
            # Identity seen before hashing: a file that changes while it is
            # hashed must not be cached under its new timestamps.
            self._seen: dict[HashJob, tuple[int, ...]] = {}
            self._pending: list[tuple[object, ...]] = []
        except (OSError, sqlite3.Error) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else e  # not the path again
            raise InputError(
                f"{shown(short(self.path))}: cannot open the digest cache ({why})",
                remedy=Remedy("fix the path or run without the digest cache", "no_cache"),
            ) from None

    @staticmethod
    def _key(job: HashJob) -> tuple[int, ...] | None:
        try:
            st = os.stat(job.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def lookup_for(self, hash_type: str) -> Callable[[HashJob], str | None]:
        def lookup(job: HashJob) -> str | None:
            key = self._key(job)
            if key is None:
                return None
            self._seen[job] = key
            row = self._db.execute(
                "SELECT digest FROM digests WHERE dev=? AND ino=? AND size=? AND mtime_ns=? "
                "AND ctime_ns=? AND hash_type=? AND start=? AND end_=?",
                (*key, hash_type, job.start, -1 if job.end is None else job.end),
            ).fetchone()
            return None if row is None else str(row[0])

        return lookup

    def store_for(self, hash_type: str) -> Callable[[HashJob, str], None]:
        """Digests are kept until :meth:`commit`: one transaction per run, not per file."""

        def store(job: HashJob, digest: str) -> None:
            key = self._seen.pop(job, None)
            if key is None or key != self._key(job):
                return
            self._pending.append(
                (*key, hash_type, job.start, -1 if job.end is None else job.end, digest)
            )

        return store

    def commit(self) -> None:
        """Write the digests stored since the last commit, in one transaction."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO digests VALUES (?,?,?,?,?,?,?,?,?)", rows
                )
        except sqlite3.Error as e:
            raise InputError(
                f"{self.path}: cannot write the digest cache ({e})",
                remedy=Remedy("fix the path or run without the digest cache", "no_cache"),
            ) from None
