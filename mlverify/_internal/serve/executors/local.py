"""The in-process executor: checks on a bounded thread pool, verdicts cached in memory.

What ``mlverify serve`` does without ``--queue``: one replica, nothing shared, nothing
kept across a restart.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections import OrderedDict

from mlverify._internal.errors import MlverifyError, VerificationError
from mlverify._internal.serve.service import _PINNED_OCI, ServeConfig, Service, Verdict

log = logging.getLogger("mlverify._internal.serve")


class LocalExecutor:
    """Checks on a bounded pool in this process; verdicts of digest-pinned OCI references
    cached by (manifest digest); concurrent requests for one reference share one check."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix="mlverify-check"
        )
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Verdict] = OrderedDict()
        self._inflight: dict[str, concurrent.futures.Future[Verdict]] = {}
        #: the latest verdict of every reference judged (errors too), for peek()
        self._recent: OrderedDict[str, Verdict] = OrderedDict()

    # -- cache ------------------------------------------------------------------------
    def cached(self, key: str) -> Verdict | None:
        with self._lock:
            v = self._cache.get(key)
            if v is not None:
                self._cache.move_to_end(key)
            return v

    def remember(self, key: str, verdict: Verdict) -> None:
        with self._lock:
            self._cache[key] = verdict
            self._cache.move_to_end(key)
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)

    def recorded(self) -> dict[str, Verdict]:
        with self._lock:
            return dict(self._cache)

    def peek(self, ref: str) -> Verdict | None:
        with self._lock:
            running = self._inflight.get(ref)
            if running is not None:
                return running.result() if running.done() else None
            recent = self._recent.get(ref)
        if recent is not None:
            return recent
        if _PINNED_OCI.match(ref):
            hit = self.cached(self._oci_key(ref, ref.rsplit("@", 1)[1]))
            if hit is not None:
                return dataclasses.replace(hit, ref=ref, cached=True)
        return None

    # -- checking ---------------------------------------------------------------------
    def _run(self, ref: str, authorization: str | None) -> Verdict:
        from mlverify._internal.api import check
        from mlverify._internal.sources import AdmissionRules, SourceSettings

        t0 = time.perf_counter()
        settings = SourceSettings.from_environment()
        oci = dataclasses.replace(
            settings.oci,
            plain_http=settings.oci.plain_http or self.config.plain_http,
            authorization=authorization,
        )
        out = check(
            ref,
            policy=self.config.policies,
            settings=dataclasses.replace(settings, oci=oci),
            # the routes admit oci://, hf:// and paths themselves; MLflow references are
            # not served (yet): never fetched through here
            rules=AdmissionRules(
                roots=tuple(self.config.roots),
                refused_kinds=frozenset({"mlflow"}),
            ),
            environment="admission",
            use_cache=False,  # an admission service hashes every byte
        )
        if out.outcome == "error" and out.error_exit == VerificationError.exit_code:
            verdict = Verdict(ref, False, error=out.message)  # tampered: a deny
        elif out.outcome == "error":
            verdict = Verdict(ref, False, error=out.message)
            log.info("check failed", extra={"ref": ref, "error": out.message})
            return verdict
        elif out.outcome:
            verdict = Verdict(ref, False, note=out.message)
        else:
            ev_ref = out.evidence.get("reference", {})
            digest = str(
                ev_ref.get("digest") or out.evidence.get("artifact", {}).get("root_digest", "")
            )
            verdict = Verdict(ref, out.allowed, digest=digest, result=out)
        log.info(
            "checked",
            extra={
                "ref": ref,
                "allowed": verdict.allowed,
                "digest": verdict.digest,
                "seconds": round(time.perf_counter() - t0, 3),
            },
        )
        # Only a digest-pinned reference's verdict is reused, under exactly that name: a
        # verdict reached through a tag was matched against the tag's name.
        if _PINNED_OCI.match(ref) and verdict.digest and verdict.result is not None:
            now = time.time()
            tomorrow = dt.datetime.fromtimestamp(now, dt.timezone.utc).date() + dt.timedelta(1)
            midnight = dt.datetime.combine(tomorrow, dt.time(), dt.timezone.utc).timestamp()
            seen = verdict.result.evidence.get("reference", {}).get("referrers", [])
            verdict = dataclasses.replace(
                verdict,
                valid_until=min(now + self.config.verdict_ttl, midnight),
                referrers=tuple(str(x) for x in seen),
                referrers_seen_at=now,
            )
            self.remember(self._oci_key(ref, verdict.digest), verdict)
        return verdict

    def _still_valid(self, ref: str, hit: Verdict) -> bool:
        """Not expired, and the subject's referrer set is the one it was judged with
        (re-read at most every ``referrer_recheck`` seconds)."""
        now = time.time()
        if now >= hit.valid_until:
            return False
        if now - hit.referrers_seen_at < self.config.referrer_recheck:
            return True
        from mlverify._internal.sources.oci import current_referrers, parse_ref
        from mlverify._internal.sources.settings import oci_from_environment

        r = parse_ref(ref)
        try:
            current = current_referrers(
                r.host, r.repository, hit.digest, oci_from_environment(self.config.plain_http)
            )
        except MlverifyError:
            return False  # cannot tell: judge again (which fails closed if the registry does)
        if tuple(current) != hit.referrers:
            log.info("verdict stale: attached manifests changed", extra={"ref": ref})
            return False
        self.remember(
            self._oci_key(ref, hit.digest), dataclasses.replace(hit, referrers_seen_at=now)
        )
        return True

    @staticmethod
    def _oci_key(ref: str, digest: str) -> str:
        base = ref.split("@", 1)[0]
        host_repo = base[len("oci://") :]
        if ":" in host_repo.rsplit("/", 1)[-1]:  # drop a tag
            host_repo = host_repo.rsplit(":", 1)[0]
        return f"oci://{host_repo}@{digest}"

    def submit(
        self, ref: str, *, refresh: bool = False, authorization: str | None = None
    ) -> concurrent.futures.Future[Verdict]:
        """A future verdict for ``ref``: done at once on a cache hit; shared with a check
        already running for the same reference."""
        if not refresh and _PINNED_OCI.match(ref):
            hit = self.cached(self._oci_key(ref, ref.rsplit("@", 1)[1]))
            if hit is not None and self._still_valid(ref, hit):
                done: concurrent.futures.Future[Verdict] = concurrent.futures.Future()
                done.set_result(dataclasses.replace(hit, ref=ref, cached=True))
                return done
        with self._lock:
            running = self._inflight.get(ref)
            if running is not None:
                return running
            fut = self.pool.submit(self._run, ref, authorization)
            self._inflight[ref] = fut
        fut.add_done_callback(lambda f: self._forget(ref, f))
        return fut

    def _forget(self, ref: str, fut: concurrent.futures.Future[Verdict]) -> None:
        with self._lock:
            self._inflight.pop(ref, None)
            if not fut.cancelled() and fut.exception() is None:
                self._recent[ref] = fut.result()
                self._recent.move_to_end(ref)
                while len(self._recent) > self.config.cache_size:
                    self._recent.popitem(last=False)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- registry pushes ----------------------------------------------------------------
    def on_push(self, host: str, repo: str, digest: str, tag: str) -> bool:
        ref = f"oci://{host}/{repo}@{digest}"
        if self.cached(ref) is not None:
            return False  # already judged (also our own quarantine tag's push)
        self.pool.submit(self._handle_push, host, repo, digest, tag)
        return True

    def _handle_push(self, host: str, repo: str, digest: str, tag: str) -> None:
        """Judge a pushed manifest; quarantine it only on a policy decision made with
        complete evidence. Operational errors (the registry answering 503, a pull cut
        short) are retried with backoff, logged, and never cached or acted on."""
        from mlverify._internal.serve.quarantine import is_model, quarantine, read_manifest

        ref = f"oci://{host}/{repo}@{digest}"
        retries = self.config.event_retries
        got = read_manifest(
            host, repo, digest, plain_http=self.config.plain_http, retries=retries,
            backoff=self.config.retry_backoff,
        )  # fmt: skip
        if got is None:
            return
        if not is_model(got[1]):
            log.info("event: not a model, skipped", extra={"ref": ref})
            return
        for attempt in range(retries + 1):
            verdict = self.submit(ref, refresh=attempt > 0).result()
            if verdict.result is not None:
                break
            log.warning(
                "event: check failed (operational error)",
                extra={"ref": ref, "error": verdict.error or verdict.note, "attempt": attempt + 1},
            )
            if attempt < retries:
                time.sleep(self.config.retry_backoff * 2**attempt)
        if verdict.result is None:
            log.error(
                "event: not judged after retries; not quarantined",
                extra={"ref": ref, "error": verdict.error or verdict.note},
            )
            return
        self.remember(ref, verdict)
        if not verdict.allowed:
            quarantine(
                host, repo, digest, self.config.quarantine, plain_http=self.config.plain_http
            )


def in_process_service(config: ServeConfig) -> Service:
    """One process, verdicts and Harbor requests in memory: ``serve`` without a queue."""
    from mlverify._internal.serve.store.memory import MemoryStore

    return Service(config, LocalExecutor(config), MemoryStore(config.cache_size))
