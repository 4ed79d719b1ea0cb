"""Verdict stores by URL: ``memory://``, ``sqlite:///PATH``, ``postgresql://...``."""

from __future__ import annotations

from mlverify._internal.errors import UsageError
from mlverify._internal.serve.store.base import (
    ScanRequest,
    StoredVerdict,
    StoreError,
    VerdictStore,
    redacted,
)

__all__ = ["ScanRequest", "StoreError", "StoredVerdict", "VerdictStore", "open_store"]


def open_store(url: str) -> VerdictStore:
    """The store named by ``url`` (schema created when missing)."""
    if url == "memory://":
        from mlverify._internal.serve.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite:///"):
        from mlverify._internal.serve.store.sqlite import open_sqlite

        return open_sqlite(url)
    if url.startswith(("postgresql://", "postgres://")):
        from mlverify._internal.serve.store.postgres import open_postgres

        return open_postgres(url)
    raise UsageError(
        f"{redacted(url)}: unknown verdict store; use sqlite:///PATH, postgresql://... or memory://"
    )
