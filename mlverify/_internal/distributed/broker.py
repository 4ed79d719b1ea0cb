"""The job queue: Dramatiq with its Redis broker.

Two queues of jobs: ``mlverify-uploads`` (pushes, admission misses) and
``mlverify-backfill``; in a worker the uploads actor has the higher priority, so an upload
waits for at most the back-fill job in flight. A third, ``mlverify-files``, holds the file
jobs of large path artifacts (:mod:`~mlverify._internal.distributed.filejob`): first of
all, since a parent job waits for them. Delivery is at-least-once: a worker that dies holding a
message stops sending heartbeats, and any other worker's next queue maintenance hands
its messages back (``heartbeat_timeout``, default 10 s; the heartbeat thread runs the
maintenance every second, not Dramatiq's one-in-a-thousand chance).

Two repairs to Dramatiq's Redis consumer (:func:`_consumer_class`): no growing back-off
while its prefetch is full, and no message left behind in a live process's acks set
(:meth:`reclaim`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

from mlverify._internal.errors import MlverifyError, UsageError

if TYPE_CHECKING:
    from dramatiq.brokers.redis import RedisBroker

    from mlverify._internal.distributed.filejob import FileJob
    from mlverify._internal.distributed.jobs import Job

QUEUE_NAMES = {
    "uploads": "mlverify-uploads",
    "backfill": "mlverify-backfill",
    "files": "mlverify-files",
}
ACTORS = {
    "uploads": "mlverify_verify_upload",
    "backfill": "mlverify_verify_backfill",
    "files": "mlverify_hash_file",
}
PRIORITIES = {"uploads": 0, "backfill": 100, "files": -100}  #: lower runs first
NAMESPACE = "mlverify"


class QueueError(MlverifyError):
    """The queue (Redis) cannot be reached: an operational error, never an allow."""


#: seconds a consumer whose prefetch is full waits for an ack before looking again
FULL_WAIT = 0.2


def _consumer_class() -> type[Any]:
    """Dramatiq's Redis consumer, with two changes (made once, on first use: Dramatiq is
    imported lazily):

    - while more than half its prefetch is outstanding (the worker threads hold or wait
      for what it fetched), it waits for an ack (or ``FULL_WAIT``) and looks again at
      once: Dramatiq's own consumer sleeps a back-off there that grows to the worker
      timeout, leaving a worker that finishes small jobs in milliseconds idle most of the
      time; and it fetches half a prefetch at a time, not one message per ack;
    - it tracks what it handed to the worker threads until acked (the broker's
      :meth:`~Broker.reclaim` requeues what the process fetched but no longer holds), and
      requeues what it fetched but never handed on when it is closed (Dramatiq drops that
      cache, e.g. when a fetch fails, leaving the messages in this live process's acks
      set, where no heartbeat timeout ever frees them).
    """
    from dramatiq import Message
    from dramatiq.brokers.redis import _RedisConsumer

    class Consumer(_RedisConsumer):
        def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
            super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
            self._freed = threading.Event()

        def __next__(self) -> Any:
            # fetch only once half the prefetch is free: one fetch (a round trip and a
            # script run) brings several messages, not one per ack
            if not self.message_cache and self.outstanding_message_count > self.prefetch // 2:
                self._freed.wait(FULL_WAIT)
                self._freed.clear()
                return None
            proxy = super().__next__()  # type: ignore[no-untyped-call]
            if proxy is not None:
                self.broker.holding(self.queue_name, proxy.options["redis_message_id"], True)
            return proxy

        def _done(self, message: Any) -> None:
            self.broker.holding(self.queue_name, message.options["redis_message_id"], False)
            self._freed.set()

        def ack(self, message: Any) -> None:
            try:
                super().ack(message)  # type: ignore[no-untyped-call]
            finally:
                self._done(message)

        def nack(self, message: Any) -> None:
            try:
                super().nack(message)  # type: ignore[no-untyped-call]
            finally:
                self._done(message)

        def cached_ids(self) -> list[str]:
            out = []
            for data in list(self.message_cache):
                if data is not None:
                    out.append(str(Message.decode(data).options["redis_message_id"]))
            return out

        def requeue(self, messages: Any) -> None:
            messages = list(messages)
            super().requeue(messages)  # type: ignore[no-untyped-call]
            for m in messages:
                self.broker.holding(self.queue_name, m.options["redis_message_id"], False)

        def close(self) -> None:
            ids = self.cached_ids()
            self.message_cache = []
            if ids:
                with contextlib.suppress(Exception):  # reclaim() frees them later
                    self.broker.do_requeue(self.queue_name, *ids)
            super().close()

    return Consumer


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
    from dramatiq.common import dq_name

    consumer_class = _consumer_class()

    class Broker(RedisBroker):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)  # type: ignore[no-untyped-call]
            self._lock = threading.Lock()
            self._held: set[tuple[str, str]] = set()  #: (queue, message id) handed on
            self._current: dict[str, Any] = {}  #: queue -> its consumer
            self._suspects: set[tuple[str, str]] = set()

        @property
        def consumer_class(self) -> Any:
            return consumer_class

        def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
            consumer = super().consume(queue_name, prefetch, timeout)
            self._current[queue_name] = consumer
            return consumer

        def holding(self, queue: str, message_id: str, held: bool) -> None:
            with self._lock:
                if held:
                    self._held.add((queue, message_id))
                else:
                    self._held.discard((queue, message_id))

        def reclaim(self) -> int:
            """Requeue the messages in this process's acks sets that it does not hold
            (neither fetched into a consumer's cache nor handed to a thread) on two calls
            in a row; how many. A message whose fetch reply was lost, or that a consumer
            dropped, would otherwise wait for this process to die. (Two sightings: a fetch
            reply in flight is not yet held; a false sighting is a duplicate delivery,
            which jobs make harmless.)"""
            seen: set[tuple[str, str]] = set()
            for q in sorted(self.queues):
                for name in (q, dq_name(q)):
                    key = f"{self.namespace}:__acks__.{self.broker_id}.{name}"
                    members = self.client.smembers(key)
                    consumer = self._current.get(name)
                    cached = set(consumer.cached_ids()) if consumer is not None else set()
                    with self._lock:
                        held = {m for (qn, m) in self._held if qn == name}
                    for raw in members:
                        mid = raw.decode() if isinstance(raw, bytes) else str(raw)
                        if mid not in held and mid not in cached:
                            seen.add((name, mid))
            again, self._suspects = seen & self._suspects, seen - self._suspects
            for name, mid in sorted(again):
                self.do_requeue(name, mid)
            return len(again)

        def _should_do_maintenance(self, command: str) -> int:
            return 1 if command == "qsize" else super()._should_do_maintenance(command)

    broker = Broker(
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


def send(broker: RedisBroker, url: str, queue: str, doc: Any, delay: float = 0.0) -> None:
    """Queue one message (``doc``) on ``queue`` (a key of :data:`QUEUE_NAMES`)."""
    import dramatiq
    import redis

    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=QUEUE_NAMES[queue],
        actor_name=ACTORS[queue],
        args=(doc,),
        kwargs={},
        options={},
    )
    try:
        broker.enqueue(message, delay=int(delay * 1000) or None)
    except redis.RedisError as e:
        raise QueueError(
            f"queue {url}: cannot enqueue ({type(e).__name__}: {e}); check that Redis is up"
        ) from None


class BrokerFanout:
    """A worker's :class:`~mlverify._internal.distributed.jobs.Fanout`: file jobs and
    waiting parents queued on its own broker."""

    def __init__(self, broker: RedisBroker, url: str) -> None:
        from mlverify._internal.serve.store.base import redacted

        self.broker = broker
        self.url = redacted(url)

    def file_job(self, job: FileJob) -> None:
        send(self.broker, self.url, "files", job.to_message())

    def again(self, job: Job, delay: float) -> None:
        send(self.broker, self.url, job.queue, job.to_message(), delay)


class Queue:
    """The producer side: what ``serve`` and ``backfill`` enqueue into."""

    def __init__(self, url: str) -> None:
        from mlverify._internal.serve.store.base import redacted

        self.url = redacted(url)
        self.broker = make_broker(url)

    def enqueue(self, job: Job, delay: float = 0.0) -> None:
        """Queue ``job`` (on its queue), delivered ``delay`` seconds from now at the
        earliest."""
        send(self.broker, self.url, job.queue, job.to_message(), delay)

    def enqueue_file(self, job: FileJob) -> None:
        send(self.broker, self.url, "files", job.to_message())

    def depth(self) -> dict[str, int]:
        """Messages waiting (not yet fetched by a worker) per queue."""
        import redis

        try:
            return {k: int(self.broker.do_qsize(q)) for k, q in QUEUE_NAMES.items()}
        except redis.RedisError as e:
            raise QueueError(f"queue {self.url}: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        self.broker.close()
