"""Writing reports and signature files (the writer lives in :mod:`mlverify._internal.files`)."""

from __future__ import annotations

from mlverify._internal.files import write_atomically

__all__ = ["write_atomically"]
