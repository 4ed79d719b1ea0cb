"""The verdict store: one protocol, one schema, for every back end.

A verdict is stored under its job key (see :mod:`mlverify._internal.distributed.keys`):
the artifact's name and content digest, the policies' digest, the trust material's
digest and mlverify's version. Writes are idempotent: the first verdict for a key wins
until it expires (``valid_until``); a second delivery of the same job finds it and
writes nothing, so at-least-once delivery is harmless.

Besides verdicts the store holds the jobs (how often each was delivered: a job that
keeps killing its worker is dead-lettered by that count, not by the broker's) and
Harbor's scan requests (so every replica can answer a report).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from mlverify._internal.errors import MlverifyError

#: One schema for SQLite and PostgreSQL (types both accept; BOOLEAN is 0/1 in SQLite).
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS mlverify_verdicts (
        key TEXT PRIMARY KEY,
        ref TEXT NOT NULL,
        digest TEXT NOT NULL,
        allowed BOOLEAN NOT NULL,
        kind TEXT NOT NULL,
        decided_at DOUBLE PRECISION NOT NULL,
        valid_until DOUBLE PRECISION NOT NULL,
        reasons TEXT NOT NULL,
        result TEXT NOT NULL,
        decided_by TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS mlverify_verdicts_ref ON mlverify_verdicts (ref)",
    """CREATE TABLE IF NOT EXISTS mlverify_jobs (
        key TEXT PRIMARY KEY,
        ref TEXT NOT NULL,
        deliveries INTEGER NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        last_error TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS mlverify_scans (
        id TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        ref TEXT NOT NULL,
        repository TEXT NOT NULL,
        digest TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS mlverify_file_evidence (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        blake3 TEXT NOT NULL,
        size BIGINT NOT NULL,
        entry TEXT NOT NULL,
        failed TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
)

#: What a stored verdict records: a policy decision, a deny because the bytes failed
#: verification before any decision, or a job dead-lettered after its deliveries.
KINDS = ("decided", "failed", "dead-letter")


class StoreError(MlverifyError):
    """The verdict store cannot be reached or used (an operational error: never an allow)."""


@dataclass(frozen=True)
class StoredVerdict:
    key: str
    ref: str
    digest: str  #: the artifact's content digest (manifest digest, commit, tree digest)
    allowed: bool
    kind: str  #: one of :data:`KINDS`
    decided_at: float  #: epoch seconds
    valid_until: float  #: epoch seconds; after it the key is judged again
    reasons: tuple[str, ...]  #: deny reasons (or the error), one line each
    result: str = ""  #: the CheckResult's JSON (decisions and evidence), "" if none
    decided_by: str = ""  #: host:pid of the worker that decided

    def current(self, now: float) -> bool:
        return now < self.valid_until

    def result_json(self) -> dict[str, Any] | None:
        if not self.result:
            return None
        doc = json.loads(self.result)
        return doc if isinstance(doc, dict) else None

    def row(self) -> tuple[Any, ...]:
        return (
            self.key,
            self.ref,
            self.digest,
            self.allowed,
            self.kind,
            self.decided_at,
            self.valid_until,
            json.dumps(list(self.reasons)),
            self.result,
            self.decided_by,
        )

    @classmethod
    def from_row(cls, row: Any) -> StoredVerdict:
        key, ref, digest, allowed, kind, decided_at, valid_until, reasons, result, by = row
        return cls(
            str(key),
            str(ref),
            str(digest),
            bool(allowed),
            str(kind),
            float(decided_at),
            float(valid_until),
            tuple(str(r) for r in json.loads(reasons)),
            str(result),
            str(by),
        )

    def to_json(self) -> dict[str, Any]:
        import datetime as dt

        def iso(t: float) -> str:
            return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")

        return {
            "ref": self.ref,
            "digest": self.digest,
            "allowed": self.allowed,
            "kind": self.kind,
            "decided_at": iso(self.decided_at),
            "valid_until": iso(self.valid_until),
            "reasons": list(self.reasons),
            "key": self.key,
            "decided_by": self.decided_by,
        }


@dataclass(frozen=True)
class ScanRequest:
    """A Harbor scan request: what was asked, under which job key its verdict is."""

    id: str
    key: str
    ref: str
    repository: str
    digest: str
    created: float


@dataclass(frozen=True)
class FileEvidence:
    """What one file job found about one large file of a path artifact: its digests and
    its scan entry, about the bytes read between two equal lstat fingerprints
    (:mod:`mlverify._internal.distributed.filejob`). Or, ``failed`` non-empty, why no
    evidence could be made (after the job's deliveries): the artifact is then denied."""

    key: str  #: :func:`mlverify._internal.distributed.filejob.evidence_key`
    name: str  #: the file's name in its artifact (as the scanner sees it)
    fingerprint: tuple[int, int, int, int, int]  #: (st_dev, st_ino, size, mtime_ns, ctime_ns)
    sha256: str  #: hex, "" when failed
    blake3: str  #: hex, "" when failed
    size: int
    entry: str  #: the scanner's compact entry (``scan_one``'s result) as JSON, "" when failed
    created_at: float
    failed: str = ""  #: the reason no evidence was made

    def row(self) -> tuple[Any, ...]:
        return (
            self.key,
            self.name,
            json.dumps(list(self.fingerprint)),
            self.sha256,
            self.blake3,
            self.size,
            self.entry,
            self.failed,
            self.created_at,
        )

    @classmethod
    def from_row(cls, row: Any) -> FileEvidence:
        key, name, fp, sha, b3, size, entry, failed, created = row
        a, b, c, d, e = (int(x) for x in json.loads(fp))
        return cls(
            str(key), str(name), (a, b, c, d, e), str(sha), str(b3), int(size), str(entry),
            float(created), str(failed),
        )  # fmt: skip


#: the columns of :class:`FileEvidence` rows, in :meth:`FileEvidence.row`'s order
EVIDENCE_COLUMNS = "key, name, fingerprint, sha256, blake3, size, entry, failed, created_at"


class VerdictStore(Protocol):
    """Where verdicts, job delivery counts and Harbor scan requests live."""

    url: str  #: shown in messages (without a password)

    def get(self, key: str) -> StoredVerdict | None:
        """The verdict stored under ``key`` (current or expired), if any."""
        ...

    def get_many(self, keys: list[str]) -> dict[str, StoredVerdict]: ...

    def states(self, keys: list[str]) -> dict[str, tuple[bool, float]]:
        """(allowed, valid_until) of the keys that have a verdict: what a back-fill polls
        (without the evidence)."""
        ...

    def put(self, verdict: StoredVerdict, *, now: float) -> bool:
        """Store ``verdict`` unless a current one (``valid_until > now``) holds the key;
        True when written. Idempotent: a repeated job writes nothing."""
        ...

    def deliver(self, key: str, ref: str, now: float) -> int:
        """Count one more delivery of the job ``key``, unless a current verdict (valid
        at ``now``) holds the key: then 0, nothing counted (the job is done: a duplicate).
        Else the count in this round (1 the first time, and again once a verdict was
        decided since the last delivery: a key judged again after its verdict expired
        starts a new round). One round trip for both: the lookup and the count. Durable
        once the next verdict write is: a store may commit it without waiting for the
        disk (a count lost in a crash only delays a dead letter by a delivery)."""
        ...

    def note_error(self, key: str, error: str, now: float) -> None: ...

    def deliveries(self, key: str) -> int: ...

    def verdicts(
        self, *, denied: bool = False, limit: int = 100_000, newest: bool = False
    ) -> list[StoredVerdict]:
        """Verdicts by decision time, oldest first (``newest``: the newest ``limit``
        first), at most ``limit``."""
        ...

    def add_scan(self, scan: ScanRequest) -> None: ...

    def get_scan(self, scan_id: str) -> ScanRequest | None: ...

    def get_evidence(self, keys: list[str]) -> dict[str, FileEvidence]:
        """The file evidence stored under any of ``keys``."""
        ...

    def put_evidence(self, evidence: FileEvidence) -> bool:
        """Store ``evidence`` unless the key holds some already (the first write wins:
        evidence is about immutable inputs); True when written."""
        ...

    def close(self) -> None: ...


def redacted(url: str) -> str:
    """``url`` without a password, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
