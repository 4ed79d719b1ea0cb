"""The job queue: Dramatiq with its Redis broker.

Two queues: ``mlverify-uploads`` (pushes, admission misses) and ``mlverify-backfill``;
in a worker the uploads actor has the higher priority, so an upload waits for at most
the back-fill job in flight. Delivery is at-least-once: a worker that dies holding a
message stops sending heartbeats, and any other worker's next queue maintenance hands
its messages back (``heartbeat_timeout``, default 10 s; the heartbeat thread runs the
maintenance every second, not Dramatiq's one-in-a-thousand chance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlverify._internal.errors import MlverifyError, UsageError

if TYPE_CHECKING:
    from dramatiq.brokers.redis import RedisBroker

    from mlverify._internal.distributed.jobs import Job

QUEUE_NAMES = {"uploads": "mlverify-uploads", "backfill": "mlverify-backfill"}
ACTORS = {"uploads": "mlverify_verify_upload", "backfill": "mlverify_verify_backfill"}
PRIORITIES = {"uploads": 0, "backfill": 100}  #: lower runs first
NAMESPACE = "mlverify"


class QueueError(MlverifyError):
    """The queue (Redis) cannot be reached: an operational error, never an allow."""


def _require(url: str) -> None:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        from mlverify._internal.serve.store.base import redacted

        raise UsageError(f"{redacted(url)}: expected a Redis URL (redis://HOST:PORT/DB)")
    try:
        import dramatiq  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        raise UsageError(
            "the distributed queue needs Dramatiq: pip install 'mlverify[distributed]'"
        ) from None


def make_broker(
    url: str, *, heartbeat_timeout: float = 10.0, middleware: list[Any] | None = None
) -> RedisBroker:
    """A Redis broker whose ``qsize`` command also runs queue maintenance (requeueing
    the messages of workers whose heartbeat stopped)."""
    _require(url)
    from dramatiq.brokers.redis import RedisBroker

    class Broker(RedisBroker):
        def _should_do_maintenance(self, command: str) -> int:
            return 1 if command == "qsize" else super()._should_do_maintenance(command)

    broker = Broker(  # type: ignore[no-untyped-call]
        url=url,
        namespace=NAMESPACE,
        heartbeat_timeout=int(heartbeat_timeout * 1000),
        middleware=middleware if middleware is not None else [],
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=5,
    )
    for name in QUEUE_NAMES.values():
        broker.declare_queue(name)
    return broker


class Queue:
    """The producer side: what ``serve`` and ``backfill`` enqueue into."""

    def __init__(self, url: str) -> None:
        from mlverify._internal.serve.store.base import redacted

        self.url = redacted(url)
        self.broker = make_broker(url)

    def enqueue(self, job: Job) -> None:
        import dramatiq
        import redis

        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=QUEUE_NAMES[job.queue],
            actor_name=ACTORS[job.queue],
            args=(job.to_message(),),
            kwargs={},
            options={},
        )
        try:
            self.broker.enqueue(message)
        except redis.RedisError as e:
            raise QueueError(
                f"queue {self.url}: cannot enqueue ({type(e).__name__}: {e}); "
                "check that Redis is up"
            ) from None

    def depth(self) -> dict[str, int]:
        """Messages waiting (not yet fetched by a worker) per queue."""
        import redis

        try:
            return {k: int(self.broker.do_qsize(q)) for k, q in QUEUE_NAMES.items()}
        except redis.RedisError as e:
            raise QueueError(f"queue {self.url}: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        self.broker.close()
