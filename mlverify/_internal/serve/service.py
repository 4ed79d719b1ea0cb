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
from mlverify._internal.text import shown

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.policy.model import Policy
    from mlverify._internal.report.events import EventStream
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
    events: EventStream | None = None  #: --events: OCSF events of the verdicts reached here


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
            from mlverify._internal.sources.oci import canonical_host

            host = canonical_host(ref[len("oci://") :].split("/", 1)[0])  # one spelling
            if "*" not in self.config.registries and host not in {
                canonical_host(h) for h in self.config.registries
            }:
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


#: KServe annotations that name the model a pod loads (the storage initializer's source,
#: a local model cache's source)
MODEL_ANNOTATIONS = (
    "internal.serving.kserve.io/storage-initializer-sourceuri",
    "internal.serving.kserve.io/localmodel-sourceuri",
)
#: keys whose string value is a model location, wherever they appear (InferenceService
#: and TrainedModel ``storageUri``, LocalModelCache ``sourceModelUri``)
_URI_KEYS = ("storageUri", "sourceModelUri")
#: containers KServe runs to fetch a model: their arguments name it
_FETCHERS = ("storage-initializer", "modelcar-init")
_MAX_NODES = 200_000


@dataclass(frozen=True)
class ModelReferences:
    """What a Kubernetes object names as models: references to judge, and the ways of
    naming a model the webhook cannot resolve (each one a deny reason)."""

    refs: tuple[str, ...]
    unresolved: tuple[str, ...]

    def __bool__(self) -> bool:
        """Does the object name any model?"""
        return bool(self.refs or self.unresolved)


def references_in(obj: Any) -> ModelReferences:
    """Every model location a Kubernetes object names, wherever it sits (an
    InferenceService in any predictor, explainer or transformer layout, a TrainedModel,
    a LocalModelCache, a Pod or a pod template):

    - ``storageUri`` and ``sourceModelUri`` strings; ``storageUris`` entries' ``uri``;
      an LLMInferenceService's ``model.uri``;
    - a ``STORAGE_URI`` environment variable of any container (KServe's custom containers);
    - the KServe annotations of a pod naming its model (:data:`MODEL_ANNOTATIONS`);
    - the arguments of KServe's fetching init containers (``storage-initializer``) that
      are URIs;
    - the ``image.reference`` of image volumes (OCI artifacts).

    Unresolvable (denied with the reason, never admitted unjudged): a ``storage`` spec
    (``key``/``path``/``parameters``: the bucket is in a secret the webhook does not read),
    a location that is not a string, a ``STORAGE_URI`` from ``valueFrom``, an object too
    large to walk."""
    found: list[str] = []
    problems: list[str] = []

    def location(where: str, value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        else:
            problems.append(f"{where}: a model location that is not a string; denied")

    stack: list[tuple[Any, str, str]] = [(obj, "", "")]
    seen = 0
    while stack:
        x, key, where = stack.pop()
        seen += 1
        if seen > _MAX_NODES:
            problems.append("the object is too large to find every model it names; denied")
            break
        if isinstance(x, list):
            stack.extend((v, key, f"{where}[{i}]") for i, v in enumerate(x))
            continue
        if not isinstance(x, dict):
            continue
        for k, v in x.items():
            k = str(k)
            at = f"{where}.{k}" if where else k
            if k in _URI_KEYS:
                location(at, v)
            elif k == "storageUris":
                for i, entry in enumerate(v if isinstance(v, list) else [v]):
                    location(
                        f"{at}[{i}].uri", entry.get("uri") if isinstance(entry, dict) else entry
                    )
            elif k == "uri" and key == "model":
                location(at, v)
            elif k == "storage" and isinstance(v, dict):
                named = ", ".join(
                    f"{shown(str(n)[:40])}={shown(str(v[n])[:200])}" for n in sorted(v)[:5]
                )
                problems.append(
                    f"{at}: the model is named through a storage spec ({named}); the webhook "
                    "cannot resolve a storage key's bucket: name the model with storageUri "
                    "(a digest-pinned oci:// or hf:// reference); denied"
                )
            elif k == "annotations" and isinstance(v, dict):
                for name in MODEL_ANNOTATIONS:
                    if name in v:
                        location(f"{at}.{name}", v[name])
            elif k == "env" and isinstance(v, list):
                for i, var in enumerate(v):
                    if isinstance(var, dict) and var.get("name") == "STORAGE_URI":
                        if "value" in var:
                            location(f"{at}[{i}].value", var["value"])
                        else:
                            problems.append(
                                f"{at}[{i}]: STORAGE_URI is taken from elsewhere (valueFrom); "
                                "the webhook cannot resolve it: give the value inline; denied"
                            )
            elif k == "volumes" and isinstance(v, list):
                for i, vol in enumerate(v):
                    image = vol.get("image") if isinstance(vol, dict) else None
                    if isinstance(image, dict):
                        ref = image.get("reference")
                        if isinstance(ref, str):
                            found.append("oci://" + ref)
                        else:
                            location(f"{at}[{i}].image.reference", ref)
            elif k in ("containers", "initContainers") and isinstance(v, list):
                for c in v:
                    if isinstance(c, dict) and c.get("name") in _FETCHERS:
                        args = c.get("args")
                        for a in args if isinstance(args, list) else []:
                            if isinstance(a, str) and "://" in a:
                                found.append(a)
            if isinstance(v, (dict, list)):
                stack.append((v, k, at))
    return ModelReferences(tuple(dict.fromkeys(found)), tuple(dict.fromkeys(problems)))
