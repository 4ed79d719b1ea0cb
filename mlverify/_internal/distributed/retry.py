"""The error a job or a file job raises to be delivered again (with backoff)."""

from __future__ import annotations

from mlverify._internal.errors import MlverifyError


class RetryJob(MlverifyError):
    """An operational error: deliver the job again later (with backoff)."""
