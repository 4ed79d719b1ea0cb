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
from mlverify._internal.report.verdicts import reached
from mlverify._internal.serve.service import _PINNED_OCI, ServeConfig, Service, Verdict
from mlverify._internal.serve.store.base import VerdictStore

log = logging.getLogger("mlverify._internal.serve")


class LocalExecutor:
    """Checks on a bounded pool in this process; verdicts of digest-pinned OCI references
    cached by the name policies matched (host, repository, tag) and the manifest digest,
    valid while the subject's attached manifests are the ones judged; concurrent
    requests for one reference share one check."""

    def __init__(self, config: ServeConfig, store: VerdictStore | None = None) -> None:
        self.config = config
        self.store = store  #: where each verdict reached is recorded (for /report)
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix="mlverify-check"
        )
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Verdict] = OrderedDict()
        self._inflight: dict[str, concurrent.futures.Future[Verdict]] = {}
        #: the latest verdict of every reference judged (errors too), for peek()
        self._recent: OrderedDict[str, Verdict] = OrderedDict()
        #: manifests this service tagged ``quarantined-<hex>`` itself (their tag's push
        #: event needs no second check)
        self._quarantined: OrderedDict[str, None] = OrderedDict()

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
        key = self._oci_key(ref)
        if key is not None:
            hit = self.cached(key)
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
            reached(verdict, self.store, self.config.events)
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
        # Only a digest-pinned reference's verdict is reused, under exactly the name it
        # was judged by (the tag included: policies match it) and its digest; a verdict
        # reached through a tag alone was matched against the tag's name.
        key = self._oci_key(ref)
        if key is not None and verdict.digest and verdict.result is not None:
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
            if key == self._oci_key(ref, verdict.digest):  # judged what the name pins
                self.remember(key, verdict)
        reached(verdict, self.store, self.config.events)  # the page's store, the event stream
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
        key = self._oci_key(ref)
        if key is not None:
            self.remember(key, dataclasses.replace(hit, referrers_seen_at=now))
        return True

    @staticmethod
    def _oci_key(ref: str, digest: str = "") -> str | None:
        """The cache key of a digest-pinned ``oci://`` reference: its canonical name, as
        the check names it for policies (host, repository, tag) and the digest; None for
        anything else (not cached)."""
        if not _PINNED_OCI.match(ref):
            return None
        from mlverify._internal.sources.oci import parse_ref

        try:
            r = parse_ref(ref)
        except MlverifyError:
            return None
        return str(dataclasses.replace(r, digest=digest or r.digest))

    def submit(
        self, ref: str, *, refresh: bool = False, authorization: str | None = None
    ) -> concurrent.futures.Future[Verdict]:
        """A future verdict for ``ref``: done at once on a cache hit; shared with a check
        already running for the same reference."""
        key = self._oci_key(ref)
        if not refresh and key is not None:
            hit = self.cached(key)
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
        from mlverify._internal.serve.quarantine import pushed_name, quarantine_tag

        ref = pushed_name(host, repo, digest, tag)
        key = self._oci_key(ref)
        if key is not None and self.cached(key) is not None:
            return False  # already judged under this name
        with self._lock:
            ours = tag == quarantine_tag(digest) and f"{host}/{repo}@{digest}" in self._quarantined
        if ours:
            return False  # our own quarantine tag, pushed after a deny
        self.pool.submit(self._handle_push, host, repo, digest, ref)
        return True

    def _handle_push(self, host: str, repo: str, digest: str, ref: str) -> None:
        """Judge a pushed manifest under ``ref`` (its pushed name); quarantine it only on
        a policy decision made with complete evidence. Operational errors (the registry
        answering 503, a pull cut short) are retried with backoff, logged, and never
        cached or acted on."""
        from mlverify._internal.serve.quarantine import (
            is_model,
            judged_name,
            quarantine,
            read_manifest,
        )

        retries = self.config.event_retries
        got = read_manifest(
            host, repo, digest, plain_http=self.config.plain_http, retries=retries,
            backoff=self.config.retry_backoff,
        )  # fmt: skip
        if got is None:
            return
        if not is_model(got[1]):
            log.info("event: signatures or attestations only, not judged", extra={"ref": ref})
            return
        ref = judged_name(ref, plain_http=self.config.plain_http, retries=retries,
                          backoff=self.config.retry_backoff)  # fmt: skip
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
        key = self._oci_key(ref)
        if key is not None:
            self.remember(key, verdict)
        if not verdict.allowed:
            if self.config.quarantine == "tag":
                with self._lock:
                    self._quarantined[f"{host}/{repo}@{digest}"] = None
                    while len(self._quarantined) > self.config.cache_size:
                        self._quarantined.popitem(last=False)
            quarantine(
                host, repo, digest, self.config.quarantine, plain_http=self.config.plain_http
            )


def in_process_service(config: ServeConfig) -> Service:
    """One process, verdicts and Harbor requests in memory: ``serve`` without a queue."""
    from mlverify._internal.serve.store.memory import MemoryStore

    store = MemoryStore(config.cache_size)
    return Service(config, LocalExecutor(config, store), store)
