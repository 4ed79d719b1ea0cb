"""The service's state: configuration, the worker pool and the verdict cache.

Transport-free (no HTTP here), so it can be driven directly by tests and by the
Starlette routes in :mod:`mlverify._internal.serve.app`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlverify._internal.errors import MlverifyError, UsageError, VerificationError

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.policy.model import Policy

log = logging.getLogger("mlverify._internal.serve")

_PINNED_OCI = re.compile(r"^oci://[^/]+/.+@sha256:[0-9a-f]{64}$")
_PINNED_HF = re.compile(r"^hf://[^/@]+/[^/@]+@[0-9a-f]{40}(/.*)?$")


@dataclass
class ServeConfig:
    policies: list[Policy]
    roots: list[Path] = field(default_factory=list)  #: local paths allowed under these only
    registries: list[str] = field(default_factory=list)  #: oci hosts allowed ("*": any)
    require_digest: bool = False  #: k8s: deny references not pinned by digest / commit
    quarantine: str = "none"  #: registry events: none | delete | tag
    check_timeout: float = 5.0  #: k8s: seconds to wait for a verdict on a miss
    workers: int = 4
    cache_size: int = 10_000
    plain_http: bool = False  #: talk HTTP to registries (loopback always does)
    verdict_ttl: float = 300.0  #: seconds an OCI verdict is reused, at most
    referrer_recheck: float = 10.0  #: seconds after which a hit re-reads the referrer set
    event_retries: int = 3  #: registry events: retries of an operational error
    retry_backoff: float = 1.0  #: seconds before the first retry (doubling after)


@dataclass
class Verdict:
    """A decision about one reference, JSON-ready."""

    ref: str
    allowed: bool
    digest: str = ""
    cached: bool = False
    error: str = ""
    result: CheckResult | None = None
    note: str = ""
    #: when the verdict stops being valid (epoch seconds): the TTL, and the end of the
    #: UTC day (key windows and exemptions are judged by date); 0: never reused
    valid_until: float = 0.0
    #: the manifests attached to the subject when it was judged (signatures,
    #: attestations): a verdict is stale once they change
    referrers: tuple[str, ...] = ()
    referrers_seen_at: float = 0.0

    def to_json(self, *, evidence: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ref": self.ref,
            "allowed": self.allowed,
            "digest": self.digest,
            "cached": self.cached,
        }
        if self.error:
            out["error"] = self.error
        if self.note:
            out["note"] = self.note
        if self.valid_until:
            out["valid_until"] = dt.datetime.fromtimestamp(
                self.valid_until, dt.timezone.utc
            ).isoformat(timespec="seconds")
        if self.result is not None:
            doc = self.result.to_json()
            out["decisions"] = doc["decisions"]
            if evidence:
                out["evidence"] = doc["evidence"]
        return out

    def messages(self) -> list[str]:
        """Deny reasons (or the error) in one line each."""
        if self.error:
            return [self.error]
        if self.result is None:
            return [self.note] if self.note else []
        return [
            r.message + (f" ({r.remedy})" if r.remedy else "")
            for d in self.result.decisions
            for r in d.reasons
            if r.level == "deny" and not d.allowed
        ]

    def warnings(self) -> list[str]:
        if self.result is None:
            return []
        return [
            r.message for d in self.result.decisions for r in d.reasons if r.level == "warn"
        ] + [
            f"would be denied: {r.message}"
            for d in self.result.decisions
            if d.allowed and d.would_deny
            for r in d.reasons
            if r.level == "deny"
        ]


def is_pinned(ref: str) -> bool:
    return bool(_PINNED_OCI.match(ref) or _PINNED_HF.match(ref))


class Service:
    """Checks on a bounded pool; verdicts of digest-pinned OCI references cached by
    (manifest digest); concurrent requests for one reference share one check."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix="mlverify-check"
        )
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Verdict] = OrderedDict()
        self._inflight: dict[str, concurrent.futures.Future[Verdict]] = {}

    # -- what a caller may make us read ---------------------------------------------
    def admit_reference(self, ref: str) -> None:
        """Refuse references the configuration does not allow (no arbitrary paths, no
        arbitrary hosts)."""
        if ref.startswith("oci://"):
            host = ref[len("oci://") :].split("/", 1)[0]
            if "*" not in self.config.registries and host not in self.config.registries:
                raise UsageError(
                    f"{ref}: registry {host} is not configured (serve --registry); refusing it"
                )
        elif ref.startswith("hf://"):
            if not _PINNED_HF.match(ref):
                raise UsageError(
                    f"{ref}: the service judges hf:// references pinned to a commit only "
                    "(hf://ORG/NAME@<40-hex commit>): unpinned, the local cache's snapshot "
                    "may not be what the runtime downloads"
                )
        elif "://" in ref:
            raise UsageError(f"{ref}: unsupported scheme; use oci://, hf:// or a path")
        elif not self.config.roots:
            raise UsageError(f"{ref}: local paths are not served (serve --root DIR to allow some)")
        else:
            from mlverify._internal.refs import require_under

            require_under(Path(ref), self.config.roots)

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

    def verdicts(self) -> dict[str, Verdict]:
        with self._lock:
            return dict(self._cache)

    # -- checking ---------------------------------------------------------------------
    def _run(self, ref: str, authorization: str | None) -> Verdict:
        from mlverify._internal.refs import check_ref

        t0 = time.perf_counter()
        try:
            out = check_ref(
                ref,
                self.config.policies,
                environment="admission",
                roots=self.config.roots,
                use_cache=False,  # an admission service hashes every byte
                insecure_http=self.config.plain_http,
                authorization=authorization,
            )
        except VerificationError as e:  # tampered content: a deny, not an outage
            verdict = Verdict(ref, False, error=str(e))
        except MlverifyError as e:
            verdict = Verdict(ref, False, error=str(e))
            log.info("check failed", extra={"ref": ref, "error": str(e)})
            return verdict
        else:
            if isinstance(out, str):
                verdict = Verdict(ref, False, note=out)
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
        from mlverify._internal.oci import current_referrers, parse_ref

        r = parse_ref(ref)
        try:
            current = current_referrers(
                r.host, r.repository, hit.digest, insecure_http=self.config.plain_http
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
        fut.add_done_callback(lambda _f: self._forget(ref))
        return fut

    def _forget(self, ref: str) -> None:
        with self._lock:
            self._inflight.pop(ref, None)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def references_in(obj: Any) -> list[str]:
    """Model references in a Kubernetes object: every ``storageUri`` (KServe
    InferenceService, any predictor layout) and OCI image volumes of pods."""
    found: list[str] = []

    def walk(x: Any, key: str = "") -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, str(k))
        elif isinstance(x, list):
            for v in x:
                walk(v, key)
        elif key == "storageUri" and isinstance(x, str):
            found.append(x)

    walk(obj)
    spec = obj.get("spec") if isinstance(obj, dict) else None
    if isinstance(spec, dict) and isinstance(obj, dict) and obj.get("kind") == "Pod":
        volumes = spec.get("volumes")
        for vol in volumes if isinstance(volumes, list) else []:
            image = vol.get("image") if isinstance(vol, dict) else None
            if isinstance(image, dict) and isinstance(image.get("reference"), str):
                found.append("oci://" + image["reference"])
    return list(dict.fromkeys(found))
