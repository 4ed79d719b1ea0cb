"""The embedded verdict store: one SQLite file (WAL), shared by the processes of one
machine. ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` (as SQLAlchemy)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from mlverify._internal.errors import UsageError
from mlverify._internal.serve.store.sql import SqlStore


def open_sqlite(url: str) -> SqlStore:
    rest = url[len("sqlite:///") :]
    if not url.startswith("sqlite:///") or not rest:
        raise UsageError(f"{url}: expected sqlite:///PATH (sqlite:////ABSOLUTE/PATH)")
    path = Path(rest)
    if not path.parent.is_dir():
        raise UsageError(f"{url}: directory {path.parent} does not exist; create it first")

    def connect() -> Any:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    return SqlStore(url, connect, (sqlite3.Error,), "?")
