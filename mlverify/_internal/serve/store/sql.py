"""The SQL verdict store: one implementation of :class:`VerdictStore` over a DB-API
connection (SQLite and PostgreSQL differ only in how they connect and in the
parameter marker)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from mlverify._internal.serve.store.base import (
    EVIDENCE_COLUMNS,
    SCHEMA,
    FileEvidence,
    ScanRequest,
    StoredVerdict,
    StoreError,
    redacted,
)

_COLUMNS = "key, ref, digest, allowed, kind, decided_at, valid_until, reasons, result, decided_by"


class SqlStore:
    """Verdicts in SQL, one connection guarded by a lock (statements take microseconds).

    ``connect`` opens a connection in autocommit mode; ``errors`` are the driver's
    exception classes, turned into :class:`StoreError` (an operational error). A broken
    connection is reopened once per statement. ``schema_lock``: the statements that take
    and release a lock around the schema's creation. ``relaxed``: opens a second connection
    whose commits do not wait for the disk (PostgreSQL's ``synchronous_commit`` off for the
    session), for writes whose loss in a crash is harmless: a later durable commit on
    either connection makes them durable too (the server's log is written in order). One
    statement each, not four (BEGIN, SET LOCAL, the statement, COMMIT).
    """

    def __init__(
        self,
        url: str,
        connect: Callable[[], Any],
        errors: tuple[type[BaseException], ...],
        marker: str,
        schema_lock: tuple[str, str] | None = None,
        relaxed: Callable[[], Any] | None = None,
    ) -> None:
        self.url = redacted(url)
        self._connect = connect
        self._errors = errors
        self._m = marker
        # [durable, relaxed]: a connection and its lock each (the relaxed one opened by
        # ``relaxed``, else the durable one is used for both)
        self._connects = [connect, relaxed or connect]
        self._locks = [threading.Lock(), threading.Lock()]
        self._conns: list[Any] = [None, None]
        # processes starting together race on CREATE ... IF NOT EXISTS in PostgreSQL
        # (a unique violation in its catalog): the schema is made under a lock there
        if schema_lock is not None:
            self._run(schema_lock[0], fetch="one")
        try:
            for statement in SCHEMA:
                self._run(statement)
        finally:
            if schema_lock is not None:
                self._run(schema_lock[1], fetch="one")

    def _run(
        self, sql: str, args: tuple[Any, ...] = (), fetch: str = "", *, relaxed: bool = False
    ) -> Any:
        """Execute one statement; ``fetch``: "" (nothing), "one" or "all". A broken
        connection is reopened and the statement run again, once. ``relaxed``: on the
        connection whose commits do not wait for the disk (if the store has one)."""
        which = 1 if relaxed and self._connects[1] is not self._connects[0] else 0
        with self._locks[which]:
            for attempt in (0, 1):
                try:
                    if self._conns[which] is None:
                        self._conns[which] = self._connects[which]()
                    cur = self._conns[which].cursor()
                    try:
                        cur.execute(sql.replace("?", self._m), args)
                        out = cur.fetchone() if fetch == "one" else None
                        return cur.fetchall() if fetch == "all" else out
                    finally:
                        cur.close()
                except self._errors as e:
                    self._drop(which)
                    if attempt == 1 or not _is_disconnect(e):
                        first = str(e).strip().splitlines()[0] if str(e).strip() else "error"
                        raise StoreError(
                            f"verdict store {self.url}: {type(e).__name__}: {first}; "
                            "check that the database is up and reachable"
                        ) from None
        raise AssertionError("unreachable")

    def _drop(self, which: int) -> None:
        if self._conns[which] is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._conns[which].close()
            self._conns[which] = None

    def get(self, key: str) -> StoredVerdict | None:
        row = self._run(f"SELECT {_COLUMNS} FROM mlverify_verdicts WHERE key = ?", (key,), "one")
        return StoredVerdict.from_row(row) if row else None

    def _rows_by_key(self, columns: str, table: str, keys: list[str]) -> Iterator[Any]:
        """The rows of ``table`` whose key is one of ``keys``, 500 keys per statement."""
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {columns} FROM {table} WHERE key IN ({marks})"
            yield from self._run(sql, tuple(chunk), "all")

    def get_many(self, keys: list[str]) -> dict[str, StoredVerdict]:
        rows = self._rows_by_key(_COLUMNS, "mlverify_verdicts", keys)
        return {v.key: v for v in map(StoredVerdict.from_row, rows)}

    def states(self, keys: list[str]) -> dict[str, tuple[bool, float]]:
        rows = self._rows_by_key("key, allowed, valid_until", "mlverify_verdicts", keys)
        return {str(key): (bool(allowed), float(until)) for key, allowed, until in rows}

    def put(self, verdict: StoredVerdict, *, now: float) -> bool:
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])
        row = self._run(
            f"INSERT INTO mlverify_verdicts ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) "
            f"ON CONFLICT (key) DO UPDATE SET {updates} "
            "WHERE mlverify_verdicts.valid_until <= ? RETURNING key",
            (*verdict.row(), now),
            "one",
        )
        return row is not None

    def deliver(self, key: str, ref: str, now: float) -> int:
        # one statement: the lookup of a current verdict (a job done: nothing counted, no
        # row returned) and the count, where a lookup and a count were two round trips
        row = self._run(
            "INSERT INTO mlverify_jobs (key, ref, deliveries, updated_at, last_error) "
            "SELECT CAST(? AS TEXT), CAST(? AS TEXT), 1, CAST(? AS DOUBLE PRECISION), '' "
            "WHERE NOT EXISTS (SELECT 1 FROM mlverify_verdicts c "
            "WHERE c.key = ? AND c.valid_until > ?) "
            "ON CONFLICT (key) DO UPDATE SET "
            "deliveries = CASE WHEN EXISTS (SELECT 1 FROM mlverify_verdicts v "
            "WHERE v.key = excluded.key AND v.decided_at >= mlverify_jobs.updated_at) "
            "THEN 1 ELSE mlverify_jobs.deliveries + 1 END, updated_at = excluded.updated_at "
            "RETURNING deliveries",
            (key, ref, now, key, now),
            "one",
            relaxed=True,
        )
        return int(row[0]) if row else 0

    def note_error(self, key: str, error: str, now: float) -> None:
        self._run(
            "UPDATE mlverify_jobs SET last_error = ?, updated_at = ? WHERE key = ?",
            (error[:2000], now, key),
        )

    def deliveries(self, key: str) -> int:
        row = self._run("SELECT deliveries FROM mlverify_jobs WHERE key = ?", (key,), "one")
        return int(row[0]) if row else 0

    def verdicts(
        self, *, denied: bool = False, limit: int = 100_000, newest: bool = False
    ) -> list[StoredVerdict]:
        where = "WHERE allowed = ? " if denied else ""
        args: tuple[Any, ...] = (False, limit) if denied else (limit,)
        order = "decided_at DESC, key DESC" if newest else "decided_at, key"
        rows = self._run(
            f"SELECT {_COLUMNS} FROM mlverify_verdicts {where}ORDER BY {order} LIMIT ?",
            args,
            "all",
        )
        return [StoredVerdict.from_row(r) for r in rows]

    def add_scan(self, scan: ScanRequest) -> None:
        self._run(
            "INSERT INTO mlverify_scans (id, key, ref, repository, digest, created) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
            (scan.id, scan.key, scan.ref, scan.repository, scan.digest, scan.created),
        )

    def get_scan(self, scan_id: str) -> ScanRequest | None:
        row = self._run(
            "SELECT id, key, ref, repository, digest, created FROM mlverify_scans WHERE id = ?",
            (scan_id,),
            "one",
        )
        if row is None:
            return None
        return ScanRequest(
            str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), float(row[5])
        )

    def get_evidence(self, keys: list[str]) -> dict[str, FileEvidence]:
        rows = self._rows_by_key(EVIDENCE_COLUMNS, "mlverify_file_evidence", keys)
        return {e.key: e for e in map(FileEvidence.from_row, rows)}

    def put_evidence(self, evidence: FileEvidence) -> bool:
        row = self._run(
            f"INSERT INTO mlverify_file_evidence ({EVIDENCE_COLUMNS}) "
            "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (key) DO NOTHING RETURNING key",
            evidence.row(),
            "one",
        )
        return row is not None

    def close(self) -> None:
        for which in (0, 1):
            with self._locks[which]:
                self._drop(which)


def _is_disconnect(e: BaseException) -> bool:
    """A connection that broke (server restarted, idle connection cut): worth reopening."""
    name = type(e).__name__
    return name in ("OperationalError", "InterfaceError") and "locked" not in str(e)
