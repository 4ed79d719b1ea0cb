"""`mlverify serve`: the admission service (see mlverify/_internal/serve/app.py for the routes)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from mlverify._internal.errors import UsageError
from mlverify._internal.serve.logs import configure_logging


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8443, show_default=True)
@click.option(
    "--policy",
    "policy_refs",
    multiple=True,
    metavar="FILE|DIR|builtin:NAME",
    help="Policy [default: $MLVERIFY_POLICY, else builtin:default].",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Require client certificates issued by this CA (mTLS; replaces the token).",
)
@click.option(
    "--no-auth", is_flag=True, help="Serve without a token or client certificates (loopback dev)."
)
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory whose models callers may name by path (repeatable) [default: none].",
)
@click.option(
    "--registry",
    "registries",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Registry that oci:// references may name (repeatable; '*' for any) [default: none].",
)
@click.option("--require-digest", is_flag=True, help="Kubernetes: deny references not pinned.")
@click.option(
    "--quarantine",
    type=click.Choice(["none", "delete", "tag"]),
    default="none",
    show_default=True,
    help="Registry events: what to do with a pushed model that is denied.",
)
@click.option(
    "--check-timeout",
    type=float,
    default=5.0,
    show_default=True,
    help="Kubernetes: seconds to wait for a verdict not yet cached (then deny: retry).",
)
@click.option(
    "--verdict-ttl",
    type=click.FloatRange(0, 86400),
    default=300.0,
    show_default=True,
    help="Seconds an oci:// verdict is reused at most (never past the end of the UTC day).",
)
@click.option(
    "--referrers-recheck",
    type=click.FloatRange(0, 3600),
    default=10.0,
    show_default=True,
    help="A reused verdict re-reads the subject's attached manifests after this many "
    "seconds; a change (a signature attached or removed) means judging again.",
)
@click.option(
    "--event-retries",
    type=click.IntRange(0, 10),
    default=3,
    show_default=True,
    help="Registry events: retries of a check that failed for an operational reason "
    "(never quarantined, never cached).",
)
@click.option(
    "--retry-backoff",
    type=click.FloatRange(0, 60),
    default=1.0,
    show_default=True,
    help="Seconds before the first retry; doubles after each.",
)
@click.option("--workers", type=int, default=4, show_default=True, help="Concurrent checks.")
@click.option(
    "--max-body", type=int, default=1 << 20, show_default=True, help="Largest request (bytes)."
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(0.5, 300),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a whole request (headers and body); then the "
    "connection is closed (slowloris).",
)
@click.option(
    "--max-client-connections",
    type=click.IntRange(1, 100_000),
    default=64,
    show_default=True,
    help="Open connections one client address may hold at once.",
)
@click.option("--plain-http", is_flag=True, help="Talk HTTP to registries (loopback always does).")
@click.option(
    "--queue",
    "queue_url",
    metavar="redis://HOST:PORT/DB",
    help="Distributed: queue misses for `mlverify worker` (needs --store).",
)
@click.option(
    "--store",
    "store_url",
    metavar="postgresql://...|sqlite:///PATH",
    help="Distributed: the verdict store shared with the workers and other replicas.",
)
@click.option(
    "--queue-wait",
    type=click.FloatRange(0.1, 86400),
    default=600.0,
    show_default=True,
    help="Distributed: seconds /v1/check and Harbor wait for a queued verdict.",
)
@click.option(
    "--events",
    "events_target",
    metavar="FILE|-",
    help="Write OCSF events (JSON lines) of each verdict reached here to FILE (appended) "
    "or - (stdout); hits are not events.",
)
@click.option("--log-level", default="info", show_default=True)
def serve_command(
    host: str,
    port: int,
    policy_refs: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    no_auth: bool,
    roots: tuple[Path, ...],
    registries: tuple[str, ...],
    require_digest: bool,
    quarantine: str,
    check_timeout: float,
    verdict_ttl: float,
    referrers_recheck: float,
    event_retries: int,
    retry_backoff: float,
    workers: int,
    max_body: int,
    read_timeout: float,
    max_client_connections: int,
    plain_http: bool,
    queue_url: str | None,
    store_url: str | None,
    queue_wait: float,
    events_target: str | None,
    log_level: str,
) -> None:
    """Serve verification decisions over HTTP(S): generic API, Kubernetes admission,
    registry notifications and the Harbor scanner adapter API.

    Authentication: a bearer token from $MLVERIFY_SERVE_TOKEN, or client certificates
    (--tls-client-ca); without either the service refuses to start unless --no-auth.
    Callers never name arbitrary local paths: only models under --root, oci:// on a
    --registry, hf:// from the local cache.
    """
    from mlverify._internal.cli import ui

    ui.no_progress()
    token = os.environ.get("MLVERIFY_SERVE_TOKEN") or None
    if token is not None and len(token) < 16:
        raise UsageError(
            "MLVERIFY_SERVE_TOKEN is shorter than 16 characters; use a long random one"
        )
    if token is None and tls_client_ca is None and not no_auth:
        raise UsageError(
            "no authentication: set MLVERIFY_SERVE_TOKEN, or --tls-client-ca for mTLS, "
            "or pass --no-auth explicitly"
        )
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS)")
    if (queue_url is None) != (store_url is None):
        raise UsageError("--queue and --store go together (distributed mode needs both)")
    if workers < 1 or max_body < 1024:
        raise UsageError("--workers must be >= 1 and --max-body >= 1024")

    import ssl

    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise UsageError(
            "mlverify serve needs its extra: pip install 'mlverify[serve]' (starlette, uvicorn)"
        ) from None

    from mlverify._internal.policy.model import load_policies
    from mlverify._internal.serve.app import build_app
    from mlverify._internal.serve.service import ServeConfig, Service

    configure_logging(log_level)
    from mlverify._internal.report.events import open_events

    events = open_events(events_target)
    refs = list(policy_refs) or [os.environ.get("MLVERIFY_POLICY") or "builtin:default"]
    config = ServeConfig(
        policies=load_policies(refs),
        roots=[r.resolve() for r in roots],
        registries=list(registries),
        require_digest=require_digest,
        quarantine=quarantine,
        check_timeout=check_timeout,
        verdict_ttl=verdict_ttl,
        referrer_recheck=referrers_recheck,
        event_retries=event_retries,
        retry_backoff=retry_backoff,
        workers=workers,
        plain_http=plain_http,
        queue_wait=queue_wait,
        events=events,
    )
    if queue_url is not None and store_url is not None:
        from mlverify._internal.distributed.broker import Queue, QueueError
        from mlverify._internal.distributed.keys import Config
        from mlverify._internal.serve.executors.queue import QueueExecutor
        from mlverify._internal.serve.store import open_store

        store = open_store(store_url)
        queue = Queue(queue_url)
        try:
            queue.depth()
        except QueueError as e:
            raise UsageError(str(e)) from None
        executor = QueueExecutor(config, store, queue, Config.of(config.policies))
        service = Service(config, executor, store)
    else:
        from mlverify._internal.serve.executors.local import in_process_service

        service = in_process_service(config)
    app = build_app(service, token=token, max_body=max_body)
    logging.getLogger("mlverify._internal.serve").info(
        "starting",
        extra={
            "host": host,
            "port": port,
            "tls": tls_cert is not None,
            "auth": "token" if token else "mtls" if tls_client_ca else "none",
            "policies": [p.name for p in config.policies],
            "distributed": queue_url is not None,
        },
    )
    from mlverify._internal.serve.transport import GuardedH11Protocol

    uconfig = uvicorn.Config(
        app,
        http=GuardedH11Protocol.configured(
            read_timeout=read_timeout, per_client=max_client_connections
        ),
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        ssl_ca_certs=str(tls_client_ca) if tls_client_ca else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if tls_client_ca else ssl.CERT_NONE,
        access_log=False,
        log_config=None,
        limit_concurrency=1024,
        timeout_keep_alive=5,
        server_header=False,
    )
    uvicorn.Server(uconfig).run()
    if events is not None:
        events.close()
