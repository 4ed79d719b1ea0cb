"""The service's state: configuration, the worker pool and the verdict cache.

Transport-free (no HTTP here), so it can be driven directly by tests and by the
Starlette routes in :mod:`mlverify._internal.serve.app`.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlverify._internal.errors import Remedy, UsageError

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.policy.model import Policy
    from mlverify._internal.serve.store.base import VerdictStore

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
    queue_wait: float = 600.0  #: distributed: seconds a replica waits for a queued verdict


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


class Executor(Protocol):
    """How a service reaches verdicts: in this process (``executors/local.py``) or
    through the queue and the shared store (``executors/queue.py``)."""

    def submit(
        self, ref: str, *, refresh: bool = False, authorization: str | None = None
    ) -> concurrent.futures.Future[Verdict]:
        """A future verdict for ``ref`` (done at once on a hit)."""
        ...

    def peek(self, ref: str) -> Verdict | None:
        """The verdict for ``ref`` if one is already known, without starting work."""
        ...

    def recorded(self) -> dict[str, Verdict]:
        """Verdicts to list on ``/v1/verdicts``, by key."""
        ...

    def on_push(self, host: str, repo: str, digest: str, tag: str) -> bool:
        """A registry push: judge it (and quarantine a denied model); False if it was
        already judged."""
        ...

    def close(self) -> None: ...


class Service:
    """What the routes call: the configuration, which references a caller may name,
    the executor that reaches verdicts and the store that keeps Harbor's requests."""

    def __init__(self, config: ServeConfig, executor: Executor, store: VerdictStore) -> None:
        self.config = config
        self.executor = executor
        self.store = store

    # -- what a caller may make us read ---------------------------------------------
    def admit_reference(self, ref: str) -> None:
        """Refuse references the configuration does not allow (no arbitrary paths, no
        arbitrary hosts)."""
        if ref.startswith("oci://"):
            host = ref[len("oci://") :].split("/", 1)[0]
            if "*" not in self.config.registries and host not in self.config.registries:
                raise UsageError(
                    f"{ref}: registry {host} is not configured; refusing it", setting="registry"
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
            raise UsageError(
                f"{ref}: local paths are not served",
                remedy=Remedy("allow model directories the service may read", "root"),
            )
        else:
            from mlverify._internal.sources.local import require_under

            require_under(Path(ref), self.config.roots)

    def submit(
        self, ref: str, *, refresh: bool = False, authorization: str | None = None
    ) -> concurrent.futures.Future[Verdict]:
        return self.executor.submit(ref, refresh=refresh, authorization=authorization)

    def verdicts(self) -> dict[str, Verdict]:
        return self.executor.recorded()

    def close(self) -> None:
        self.executor.close()
        self.store.close()


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
