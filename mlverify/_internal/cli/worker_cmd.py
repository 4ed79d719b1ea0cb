"""`mlverify worker`: verify queued jobs into the verdict store (see
mlverify/_internal/distributed/worker.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from mlverify._internal.errors import UsageError


def _queues(value: str) -> tuple[str, ...]:
    from mlverify._internal.distributed.jobs import QUEUES

    names = tuple(dict.fromkeys(x.strip() for x in value.split(",") if x.strip()))
    bad = [n for n in names if n not in QUEUES]
    if bad or not names:
        raise UsageError(
            f"--queues {value}: expected a comma-separated subset of {','.join(QUEUES)}"
        )
    return names


@click.command("worker")
@click.option("--queue", "queue_url", required=True, metavar="redis://HOST:PORT/DB")
@click.option(
    "--store", "store_url", required=True, metavar="postgresql://...|sqlite:///PATH",
    help="The verdict store (shared by every worker and replica).",
)  # fmt: skip
@click.option(
    "--policy", "policy_refs", multiple=True, metavar="FILE|DIR|builtin:NAME",
    help="Policy [default: $MLVERIFY_POLICY, else builtin:default]; as the replicas.",
)  # fmt: skip
@click.option(
    "--root", "roots", multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory whose models jobs may name by path (repeatable) [default: none].",
)  # fmt: skip
@click.option(
    "--registry", "registries", multiple=True, metavar="HOST[:PORT]",
    help="Registry that oci:// jobs may name (repeatable; '*' for any) [default: none].",
)  # fmt: skip
@click.option("--concurrency", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes.")  # fmt: skip
@click.option("--queues", "queues", default="uploads,backfill", show_default=True,
              help="Queues to take jobs from (uploads run first).")  # fmt: skip
@click.option("--max-deliveries", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Deliveries before a job is dead-lettered (a deny).")  # fmt: skip
@click.option("--retry-backoff", type=click.FloatRange(0.01, 3600), default=1.0, show_default=True,
              help="Seconds before the first retry (then growing).")  # fmt: skip
@click.option("--max-backoff", type=click.FloatRange(0.01, 86400), default=300.0,
              show_default=True)  # fmt: skip
@click.option("--heartbeat-timeout", type=click.FloatRange(2, 3600), default=10.0,
              show_default=True,
              help="Seconds without a heartbeat before a worker's jobs go to another.")  # fmt: skip
@click.option("--verdict-ttl", type=click.FloatRange(1, 86400), default=86400.0,
              show_default=True,
              help="Seconds a verdict holds (never past the end of its UTC day).")  # fmt: skip
@click.option("--job-timeout", type=click.FloatRange(1, 86400), default=3600.0,
              show_default=True, help="Seconds one job may run.")  # fmt: skip
@click.option("--grace", type=click.FloatRange(0, 3600), default=60.0, show_default=True,
              help="SIGTERM: seconds to finish the job in flight.")  # fmt: skip
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve Prometheus metrics on this port.")  # fmt: skip
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--plain-http", is_flag=True, help="Talk HTTP to registries (loopback always does).")
@click.option("--events", "events_target", metavar="FILE|-",
              help="Write OCSF events (JSON lines) of each verdict decided to FILE "
              "(appended) or - (stdout).")  # fmt: skip
@click.option("--log-level", default="info", show_default=True)
def worker_command(
    queue_url: str,
    store_url: str,
    policy_refs: tuple[str, ...],
    roots: tuple[Path, ...],
    registries: tuple[str, ...],
    concurrency: int,
    queues: str,
    max_deliveries: int,
    retry_backoff: float,
    max_backoff: float,
    heartbeat_timeout: float,
    verdict_ttl: float,
    job_timeout: float,
    grace: float,
    metrics_port: int | None,
    metrics_host: str,
    plain_http: bool,
    events_target: str | None,
    log_level: str,
) -> None:
    """Take verification jobs from the queue and write their verdicts to the store.

    Every job is keyed by (artifact digest, policy digest, trust digest, mlverify
    version): a job already decided is not done again; operational errors are retried
    with backoff; after --max-deliveries a job is recorded as a deny with its reason.
    Jobs name only what the worker may read: paths under --root, oci:// on a
    --registry, hf:// from the local cache.
    """
    from mlverify._internal.cli import ui
    from mlverify._internal.distributed.broker import Queue, QueueError

    ui.no_progress()
    from mlverify._internal.distributed.keys import Config
    from mlverify._internal.distributed.worker import WorkerSettings, supervise
    from mlverify._internal.policy.model import load_policies
    from mlverify._internal.serve.logs import configure_logging
    from mlverify._internal.serve.store import open_store

    configure_logging(log_level, ("mlverify",))
    refs = tuple(policy_refs) or (os.environ.get("MLVERIFY_POLICY") or "builtin:default",)
    # everything a worker process needs is checked here, once, with one-line errors
    config = Config.of(load_policies(list(refs)))
    open_store(store_url).close()
    from mlverify._internal.report.events import open_events

    events_target = events_target or ""
    events = open_events(events_target)  # refused here, once, if it cannot be opened
    if events is not None:
        events.close()
    q = Queue(queue_url)
    try:
        q.depth()
    except QueueError as e:
        raise UsageError(str(e)) from None
    finally:
        q.close()
    settings = WorkerSettings(
        queue_url=queue_url,
        store_url=store_url,
        policy_refs=refs,
        roots=tuple(str(r.resolve()) for r in roots),
        registries=registries,
        queues=_queues(queues),
        plain_http=plain_http,
        max_deliveries=max_deliveries,
        min_backoff=retry_backoff,
        max_backoff=max(max_backoff, retry_backoff),
        heartbeat_timeout=heartbeat_timeout,
        verdict_ttl=verdict_ttl,
        job_timeout=job_timeout,
        grace=grace,
        log_level=log_level,
        metrics=metrics_port is not None,
        # "-": each worker process writes to the stdout it inherits (report/events.py)
        events=events_target if events_target in ("", "-") else str(Path(events_target).resolve()),
    )
    import logging

    logging.getLogger("mlverify._internal.distributed").info(
        "worker starting",
        extra={
            "concurrency": concurrency,
            "policy_digest": config.policy,
            "queues": settings.queues,
        },
    )
    sys.exit(supervise(settings, concurrency, metrics_host=metrics_host, metrics_port=metrics_port))
