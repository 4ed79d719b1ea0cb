"""Prometheus metrics of ``serve`` and ``worker`` (``prometheus_client``, imported lazily).

Worker processes write to a multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, set
by ``mlverify worker`` before it starts them); the supervising process serves them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from mlverify._internal.errors import UsageError


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise UsageError(
            "metrics need prometheus_client: pip install 'mlverify[distributed]'"
        ) from None
    return prometheus_client


@dataclass(frozen=True)
class Metrics:
    jobs: Any  #: Counter by outcome
    job_seconds: Any  #: Histogram
    dead_letters: Any  #: Counter
    lookups: Any  #: Counter by result (hit, miss)
    enqueued: Any  #: Counter by queue
    queue_depth: Any  #: Gauge by queue (set at scrape time)


@functools.cache
def metrics() -> Metrics:
    p = _client()
    return Metrics(
        jobs=p.Counter("mlverify_jobs", "Jobs finished, by outcome", ["outcome"]),
        job_seconds=p.Histogram(
            "mlverify_job_seconds",
            "Seconds per job",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800),
        ),
        dead_letters=p.Counter("mlverify_dead_letters", "Jobs dead-lettered (recorded as denies)"),
        lookups=p.Counter("mlverify_store_lookups", "Verdict-store lookups", ["result"]),
        enqueued=p.Counter("mlverify_enqueued", "Jobs enqueued, by queue", ["queue"]),
        queue_depth=p.Gauge(
            "mlverify_queue_depth", "Jobs waiting, by queue", ["queue"], multiprocess_mode="max"
        ),
    )


def exposition(multiprocess: bool = False) -> tuple[bytes, str]:
    """The metrics text and its content type."""
    p = _client()
    if multiprocess:
        from prometheus_client import multiprocess as mp

        registry = p.CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return p.generate_latest(registry), p.CONTENT_TYPE_LATEST
    return p.generate_latest(), p.CONTENT_TYPE_LATEST
