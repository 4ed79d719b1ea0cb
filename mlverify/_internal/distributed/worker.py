"""``mlverify worker``: N worker processes (the scan is CPU-bound Python: processes,
not threads), each a Dramatiq worker, supervised by this process.

- each process judges with ``THREADS`` threads, each with its own verdict-store
  connection: not for CPU (one core per process) but so that one job's waits (the
  store's durable writes, the broker's acks, a registry pull) overlap another's work;

- a worker process that dies (killed, crashed) is restarted after a pause that grows
  while it keeps dying; its message goes back to the queue when its heartbeat stops;
- SIGTERM (or SIGINT) stops gracefully: each process finishes the job in flight within
  ``grace`` seconds, or exits and its job is handed back to the queue;
- metrics of all processes are served by this one (``--metrics-port``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("mlverify._internal.distributed")

SETTINGS_ENV = "MLVERIFY_WORKER_SETTINGS"
#: jobs one worker process judges at once (see the module's docstring)
THREADS = 2
#: messages fetched ahead per thread (Dramatiq's default: 2)
PREFETCH = 4
#: seconds between two looks for messages this process fetched but does not hold
RECLAIM_EVERY = 2.0


@dataclass(frozen=True)
class WorkerSettings:
    queue_url: str
    store_url: str
    policy_refs: tuple[str, ...]
    roots: tuple[str, ...] = ()
    registries: tuple[str, ...] = ()
    queues: tuple[str, ...] = ("uploads", "backfill")
    plain_http: bool = False
    max_deliveries: int = 5
    min_backoff: float = 1.0  #: seconds before the first retry
    max_backoff: float = 300.0
    heartbeat_timeout: float = 10.0
    verdict_ttl: float = 86_400.0
    job_timeout: float = 3600.0
    grace: float = 60.0
    log_level: str = "info"
    metrics: bool = False
    events: str = ""  #: --events: OCSF events of each verdict decided ("-": stdout)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSettings:
        doc = json.loads(text)
        for k in ("policy_refs", "roots", "registries", "queues"):
            doc[k] = tuple(doc[k])
        return cls(**doc)


# -- one worker process ------------------------------------------------------------------


def process_main() -> None:
    """Entry point of a worker process (settings in the environment, from the supervisor)."""
    from mlverify._internal.serve.logs import configure_logging

    settings = WorkerSettings.from_json(os.environ[SETTINGS_ENV])
    configure_logging(settings.log_level, ("mlverify",))
    configure_logging("error", ("dramatiq",))  # our own lines say what happened to a job
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us with SIGTERM
    _stop_with_parent(stop)
    try:
        _run(settings, stop)
    except Exception as e:  # one line, then the supervisor restarts us
        from mlverify._internal.text import shown

        log.error("worker process failed", extra={"error": shown(f"{type(e).__name__}: {e}")})
        sys.exit(2)


def _stop_with_parent(stop: threading.Event) -> None:
    """Stop gracefully when the supervisor is gone (killed: it cannot say so), rather
    than judge on as an orphan nobody supervises or stops."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                log.warning("supervisor gone; stopping", extra={"pid": os.getpid()})
                stop.set()

    threading.Thread(target=watch, name="mlverify-parent-watch", daemon=True).start()


def _warm_up(policies: list[Any]) -> None:
    """Check a model of our own making once, so that the pipeline's modules are imported
    when the process starts, not in the first job's time budget."""
    import tempfile

    import mlverify

    with tempfile.TemporaryDirectory(prefix="mlverify-warm-") as tmp:
        model = Path(tmp, "model")
        model.mkdir()
        (model / "config.json").write_text('{"model_type": "warm-up"}')
        header = b'{"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}'
        header += b" " * (-len(header) % 8)
        body = len(header).to_bytes(8, "little") + header + bytes(8)
        (model / "model.safetensors").write_bytes(body)
        try:
            mlverify.check(str(model), policy=policies, use_cache=False)
        except Exception as e:  # a warm-up never stops a worker: its jobs will say why
            log.warning("warm-up check failed", extra={"error": f"{type(e).__name__}: {e}"})


def _run(settings: WorkerSettings, stop: threading.Event) -> None:
    import dramatiq
    import redis
    from dramatiq.middleware import Retries, ShutdownNotifications, TimeLimit

    from mlverify._internal.distributed.broker import (
        ACTORS,
        PRIORITIES,
        QUEUE_NAMES,
        BrokerFanout,
        make_broker,
    )
    from mlverify._internal.distributed.filejob import FileJob, fanout_file_bytes, run_file_job
    from mlverify._internal.distributed.jobs import Job, RetryJob, WorkerContext, run_job
    from mlverify._internal.errors import UsageError
    from mlverify._internal.policy.model import load_policies
    from mlverify._internal.report.events import open_events
    from mlverify._internal.report.verdicts import emit_stored
    from mlverify._internal.serve.store import open_store

    policies = load_policies(list(settings.policy_refs))
    fanout_bytes = fanout_file_bytes()  # a bad value fails the process at once
    _warm_up(policies)
    events = open_events(settings.events)
    opened = [open_store(settings.store_url)]  # fails early (and once) if unreachable
    spare = list(opened)
    local = threading.local()
    lock = threading.Lock()

    def context() -> WorkerContext:
        """This thread's context, with its own store connection."""
        ctx: WorkerContext | None = getattr(local, "ctx", None)
        if ctx is None:
            with lock:
                store = spare.pop() if spare else None
            if store is None:
                store = open_store(settings.store_url)
                with lock:
                    opened.append(store)
            ctx = local.ctx = WorkerContext(
                policies=policies,
                store=store,
                roots=[Path(r) for r in settings.roots],
                registries=list(settings.registries),
                plain_http=settings.plain_http,
                max_deliveries=settings.max_deliveries,
                verdict_ttl=settings.verdict_ttl,
                fanout=fanout,
                fanout_bytes=fanout_bytes,
                fanout_wait=settings.job_timeout,
            )
        return ctx

    m = None
    if settings.metrics:
        from mlverify._internal.distributed.metrics import metrics

        m = metrics()
    broker = make_broker(
        settings.queue_url,
        heartbeat_timeout=settings.heartbeat_timeout,
        middleware=[
            TimeLimit(time_limit=int(settings.job_timeout * 1000)),
            ShutdownNotifications(),
            Retries(
                # the store's delivery count dead-letters a job (as a deny); the broker
                # keeps retrying only while the store cannot be written, for days
                max_retries=10_000,
                min_backoff=int(settings.min_backoff * 1000),
                max_backoff=int(settings.max_backoff * 1000),
            ),
        ],
    )

    fanout = BrokerFanout(broker, settings.queue_url)

    def perform_file(doc: Any) -> None:
        t0 = time.perf_counter()
        try:
            job = FileJob.from_message(doc)
        except UsageError as e:
            log.error("malformed file job dropped", extra={"error": str(e)})
            if m is not None:
                m.jobs.labels("malformed").inc()
            return
        outcome = "retry"
        try:
            outcome = run_file_job(context(), job)
        except RetryJob:
            raise
        except Exception as e:
            log.warning(
                "file job failed, will retry",
                extra={"key": job.key, "ref": job.ref, "error": f"{type(e).__name__}: {e}"},
            )
            raise
        finally:
            if m is not None:
                m.jobs.labels(f"file-{outcome}").inc()
                m.job_seconds.observe(time.perf_counter() - t0)

    def perform(doc: Any) -> None:
        t0 = time.perf_counter()
        try:
            job = Job.from_message(doc)
        except UsageError as e:
            log.error("malformed job dropped", extra={"error": str(e)})
            if m is not None:
                m.jobs.labels("malformed").inc()
            return
        try:
            ctx = context()
            outcome = run_job(ctx, job)
            if events is not None and outcome not in ("duplicate", "waiting"):
                emit_stored(events, ctx.store, job.key)  # never raises
        except RetryJob:
            outcome = "retry"
            raise
        except Exception as e:
            outcome = "retry"
            log.warning(
                "job failed, will retry",
                extra={"key": job.key, "ref": job.ref, "error": f"{type(e).__name__}: {e}"},
            )
            raise
        finally:
            if m is not None:
                m.jobs.labels(outcome).inc()
                m.job_seconds.observe(time.perf_counter() - t0)
                if outcome == "dead-letter":
                    m.dead_letters.inc()

    # every worker takes file jobs: a parent waits for them, whatever queues it came from
    queues = (*settings.queues, "files")
    for q in queues:
        dramatiq.actor(  # type: ignore[call-overload]
            perform_file if q == "files" else perform,
            actor_name=ACTORS[q],
            queue_name=QUEUE_NAMES[q],
            priority=PRIORITIES[q],
            broker=broker,
            max_retries=10_000,
        )
    worker = dramatiq.Worker(
        broker,
        queues={QUEUE_NAMES[q] for q in queues},
        worker_threads=THREADS,
        worker_timeout=200,
    )
    # messages held per process: PREFETCH per thread, fetched half at a time (broker.py);
    # few, so that a worker does not sit on jobs an idle one could take
    worker.queue_prefetch = THREADS * PREFETCH
    worker.start()
    log.info("worker process ready", extra={"pid": os.getpid(), "queues": list(settings.queues)})
    # Heartbeats while a long job runs (Dramatiq's consumer stops fetching, and so stops
    # beating, once its prefetch is full), and the maintenance that requeues the messages
    # of dead workers: Dramatiq's maintenance frees the queue its command names only, so
    # every queue (and its delay queue) is named every second.
    from dramatiq.common import dq_name

    reclaim_at = time.monotonic() + RECLAIM_EVERY
    while not stop.wait(1.0):
        try:
            for q in queues:
                depth = broker.do_qsize(QUEUE_NAMES[q])
                broker.do_qsize(dq_name(QUEUE_NAMES[q]))
                if m is not None:
                    m.queue_depth.labels(q).set(depth)
            if time.monotonic() >= reclaim_at:
                reclaim_at = time.monotonic() + RECLAIM_EVERY
                if n := broker.reclaim():
                    log.warning("messages fetched but not held, requeued", extra={"count": n})
        except redis.RedisError:
            pass  # the consumer reconnects; so do we, next second
    log.info("worker process stopping", extra={"pid": os.getpid()})
    worker.stop(timeout=int(settings.grace * 1000))
    broker.close()
    if events is not None:
        events.close()
    for store in opened:
        store.close()


# -- the supervisor ------------------------------------------------------------------------


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    failures: int = 0


def supervise(
    settings: WorkerSettings,
    concurrency: int,
    *,
    metrics_host: str = "127.0.0.1",
    metrics_port: int | None = None,
) -> int:
    """Run ``concurrency`` worker processes until SIGTERM/SIGINT; the exit code."""
    import tempfile

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    env = dict(os.environ)
    env[SETTINGS_ENV] = settings.to_json()
    mp_dir = None
    if metrics_port is not None:
        mp_dir = tempfile.mkdtemp(prefix="mlverify-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = mp_dir
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = mp_dir
        _serve_metrics(metrics_host, metrics_port, settings.queue_url)

    def start(index: int, failures: int = 0) -> _Child:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from mlverify._internal.distributed.worker import "
             "process_main; process_main()"],
            env=env,
        )  # fmt: skip
        log.info("worker process started", extra={"index": index, "pid": proc.pid})
        return _Child(index, proc, failures=failures)

    children = [start(i) for i in range(concurrency)]
    restart_at: dict[int, float] = {}
    while not stop.wait(0.25):
        for i, child in enumerate(children):
            code = child.proc.poll()
            if code is None:
                continue
            now = time.monotonic()
            if i not in restart_at:
                failures = child.failures + 1 if now - child.started < 60 else 1
                child.failures = failures
                pause = min(30.0, 0.5 * 2 ** (failures - 1))
                restart_at[i] = now + pause
                log.warning(
                    "worker process exited; restarting",
                    extra={"pid": child.proc.pid, "code": code, "in_seconds": pause},
                )
            elif now >= restart_at[i]:
                del restart_at[i]
                children[i] = start(i, child.failures)
    log.info("stopping worker processes", extra={"grace_seconds": settings.grace})
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + settings.grace + 10
    for child in children:
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait(5)
    if mp_dir is not None:
        import shutil

        shutil.rmtree(mp_dir, ignore_errors=True)
    return 0


def _serve_metrics(host: str, port: int, queue_url: str) -> None:
    """/metrics of every worker process, and the queue depth read at scrape time."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mlverify._internal.distributed.broker import Queue
    from mlverify._internal.distributed.metrics import exposition, metrics

    queue = Queue(queue_url)
    m = metrics()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            try:
                for name, depth in queue.depth().items():
                    m.queue_depth.labels(name).set(depth)
            except Exception:  # the depth is unknown while Redis is down
                pass
            body, ctype = exposition(multiprocess=True)
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="mlverify-metrics", daemon=True).start()
    log.info("metrics", extra={"host": host, "port": port})
