"""The shared verdict store: PostgreSQL through psycopg 3 (``postgresql://...``)."""

from __future__ import annotations

from typing import Any

from mlverify._internal.errors import UsageError
from mlverify._internal.serve.store.sql import SqlStore


def open_postgres(url: str) -> SqlStore:
    try:
        import psycopg
    except ImportError:
        raise UsageError(
            f"{url}: the PostgreSQL store needs psycopg: pip install 'mlverify[distributed]'"
        ) from None

    def connect() -> Any:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)

    def relaxed() -> Any:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=10, options="-c synchronous_commit=off"
        )

    lock = ("SELECT pg_advisory_lock(4242014)", "SELECT pg_advisory_unlock(4242014)")
    return SqlStore(
        url,
        connect,
        (psycopg.Error,),
        "%s",
        schema_lock=lock,
        relaxed=relaxed,
    )
