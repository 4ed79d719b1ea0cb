"""The distributed executor: verdicts from the shared store, misses queued for workers.

A replica keeps no state that matters: a hit is answered from the store (through a
small per-replica cache that never outlives a verdict's validity, nor a few seconds);
a miss is queued (the uploads queue) and waited on by one poller thread per replica,
which reads every awaited key from the store in one query every 50 ms. The artifact's
digest is computed here (an OCI manifest digest and its attached manifests, an hf://
commit, a path's tree digest), so the key names exactly what a worker will judge.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import OrderedDict

from mlverify._internal.distributed.broker import Queue
from mlverify._internal.distributed.jobs import Job, artifact_digest
from mlverify._internal.distributed.keys import Config
from mlverify._internal.errors import MlverifyError
from mlverify._internal.report.verdicts import reached
from mlverify._internal.serve.service import ServeConfig, Verdict
from mlverify._internal.serve.store.base import StoredVerdict, VerdictStore

log = logging.getLogger("mlverify._internal.serve")

#: seconds a replica reuses what it read from the store (and an OCI subject's attached
#: manifests), at most
CACHE_SECONDS = 5.0


def verdict_of(v: StoredVerdict, ref: str, *, cached: bool) -> Verdict:
    from mlverify._internal.check import CheckResult

    doc = v.result_json()
    result = CheckResult.from_json(doc) if doc is not None and v.kind == "decided" else None
    return Verdict(
        ref,
        v.allowed,
        digest=v.digest,
        cached=cached,
        error="" if result is not None else "; ".join(v.reasons) or "denied",
        result=result,
        valid_until=v.valid_until,
    )


class QueueExecutor:
    def __init__(
        self, config: ServeConfig, store: VerdictStore, queue: Queue, keys: Config
    ) -> None:
        self.config = config
        self.store = store
        self.queue = queue
        self.keys = keys
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix="mlverify-resolve"
        )
        self._lock = threading.Lock()
        self._names: OrderedDict[str, tuple[float, str, str]] = OrderedDict()
        self._hits: OrderedDict[str, tuple[float, StoredVerdict]] = OrderedDict()
        #: key -> (deadline, futures waiting for it with their reference)
        self._waiting: dict[
            str, tuple[float, list[tuple[str, concurrent.futures.Future[Verdict]]]]
        ] = {}
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="mlverify-poll", daemon=True)
        self._poller.start()
        self._metrics = None
        try:
            from mlverify._internal.distributed.metrics import metrics

            self._metrics = metrics()
        except MlverifyError:
            pass

    # -- keys --------------------------------------------------------------------------
    def _identity(self, ref: str, refresh: bool) -> tuple[str, str]:
        """(name judged, artifact digest). Reused for a few seconds for OCI (a pinned
        manifest is immutable; its attached set is re-read as often as a hit is re-checked
        in process) and hf:// (a commit); a path's content is read every time."""
        if not ref.startswith(("oci://", "hf://")):
            return artifact_digest(ref, roots=self.config.roots)
        now = time.monotonic()
        with self._lock:
            known = self._names.get(ref)
        if (
            known is not None
            and not refresh
            and now - known[0] < min(CACHE_SECONDS, self.config.referrer_recheck)
        ):
            return known[1], known[2]
        name, digest = artifact_digest(
            ref, roots=self.config.roots, plain_http=self.config.plain_http
        )
        with self._lock:
            self._names[ref] = (now, name, digest)
            while len(self._names) > self.config.cache_size:
                self._names.popitem(last=False)
        return name, digest

    def _lookup(self, key: str) -> StoredVerdict | None:
        now = time.time()
        with self._lock:
            hit = self._hits.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS and hit[1].current(now):
            return hit[1]
        v = self.store.get(key)
        if v is not None and v.current(now):
            with self._lock:
                self._hits[key] = (time.monotonic(), v)
                while len(self._hits) > self.config.cache_size:
                    self._hits.popitem(last=False)
            return v
        return None

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.lookups.labels(result).inc()

    # -- the executor protocol -----------------------------------------------------------
    def submit(
        self, ref: str, *, refresh: bool = False, authorization: str | None = None
    ) -> concurrent.futures.Future[Verdict]:
        """``authorization`` is not passed on: credentials never travel through the
        queue; workers pull with their own."""
        fut: concurrent.futures.Future[Verdict] = concurrent.futures.Future()
        self.pool.submit(self._start, ref, refresh, fut)
        return fut

    def _start(self, ref: str, refresh: bool, fut: concurrent.futures.Future[Verdict]) -> None:
        key: str | None = None
        try:
            name, digest = self._identity(ref, refresh)
            key = self.keys.key(name, digest)
            hit = self._lookup(key)
            if hit is not None:
                self._count("hit")
                fut.set_result(verdict_of(hit, ref, cached=True))
                return
            self._count("miss")
            with self._lock:
                waiting = self._waiting.get(key)
                if waiting is not None:
                    waiting[1].append((ref, fut))
                    return
                self._waiting[key] = (time.monotonic() + self.config.queue_wait, [(ref, fut)])
            job = Job(name, digest, self.keys.policy, self.keys.trust, self.keys.version,
                      "uploads", enqueued_at=time.time())  # fmt: skip
            self.queue.enqueue(job)
            if self._metrics is not None:
                self._metrics.enqueued.labels("uploads").inc()
            log.info("queued", extra={"key": key, "ref": name})
        except MlverifyError as e:  # cannot be judged or cannot be queued: a deny
            self._resolve_all(key, fut, Verdict(ref, False, error=str(e)))
        except Exception as e:  # never an allow
            log.error("internal error", extra={"ref": ref, "error": f"{type(e).__name__}: {e}"})
            self._resolve_all(
                key, fut, Verdict(ref, False, error=f"internal error ({type(e).__name__})")
            )

    def _resolve_all(
        self, key: str | None, fut: concurrent.futures.Future[Verdict], verdict: Verdict
    ) -> None:
        """Deny ``fut`` and everyone waiting for the same key."""
        waiters = [(verdict.ref, fut)]
        if key is not None:
            with self._lock:
                entry = self._waiting.pop(key, None)
            if entry is not None:
                waiters = entry[1]
        reached(verdict, None, self.config.events)  # a deny reached here, not by a worker
        for ref, f in waiters:
            if not f.done():
                f.set_result(Verdict(ref, False, error=verdict.error))

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            with self._lock:
                keys = list(self._waiting)
            if not keys:
                continue
            try:
                now = time.time()
                done = [k for k, (_, until) in self.store.states(keys).items() if now < until]
                found = self.store.get_many(done) if done else {}
            except MlverifyError as e:
                log.warning("store unreachable while waiting", extra={"error": str(e)})
                continue
            now = time.time()
            for key in keys:
                v = found.get(key)
                with self._lock:
                    entry = self._waiting.get(key)
                    if entry is None:
                        continue
                    if v is not None and v.current(now):
                        self._waiting.pop(key)
                    elif time.monotonic() > entry[0]:
                        self._waiting.pop(key)
                        v = None
                    else:
                        continue
                for ref, f in entry[1]:
                    if f.done():
                        continue
                    if v is None:
                        late = Verdict(ref, False, error=(
                            f"{ref}: queued, not decided within {self.config.queue_wait:g}s; "
                            "ask again"))  # fmt: skip
                        reached(late, None, self.config.events)  # a deny reached here
                        f.set_result(late)
                    else:
                        f.set_result(verdict_of(v, ref, cached=False))

    def peek(self, ref: str) -> Verdict | None:
        try:
            name, digest = self._identity(ref, False)
            v = self._lookup(self.keys.key(name, digest))
        except MlverifyError as e:
            return Verdict(ref, False, error=str(e))
        return verdict_of(v, ref, cached=True) if v is not None else None

    def recorded(self) -> dict[str, Verdict]:
        """The newest thousand (a registry's store holds millions: `mlverify verdicts`)."""
        latest = self.store.verdicts(limit=1000, newest=True)
        return {v.key: verdict_of(v, v.ref, cached=True) for v in latest}

    def on_push(self, host: str, repo: str, digest: str, tag: str) -> bool:
        from mlverify._internal.serve.quarantine import (
            is_model,
            judged_name,
            pushed_name,
            read_manifest,
        )

        ref = pushed_name(host, repo, digest, tag)  # judged by the tag pushed
        c = self.config
        got = read_manifest(
            host, repo, digest, plain_http=c.plain_http, retries=c.event_retries,
            backoff=c.retry_backoff,
        )  # fmt: skip
        if got is None or not is_model(got[1]):
            return False
        ref = judged_name(ref, plain_http=c.plain_http, retries=c.event_retries,
                          backoff=c.retry_backoff)  # fmt: skip
        name, art = self._identity(ref, True)
        key = self.keys.key(name, art)
        if self._lookup(key) is not None:
            return False
        job = Job(name, art, self.keys.policy, self.keys.trust, self.keys.version, "uploads",
                  quarantine=self.config.quarantine, enqueued_at=time.time())  # fmt: skip
        self.queue.enqueue(job)
        log.info("queued push", extra={"key": key, "ref": name})
        return True

    def close(self) -> None:
        self._stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.queue.close()
