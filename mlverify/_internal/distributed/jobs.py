"""One job: judge one artifact version, write its verdict once.

Transport-free (the Dramatiq actor in :mod:`mlverify._internal.distributed.queue`
calls :func:`run_job`), so the pipeline is tested without a broker.

At-least-once delivery is made harmless, not impossible: a worker looks the key up
first and does nothing when a current verdict is there; a verdict write never replaces
a current one. Every delivery is counted in the store (not in the message: a job that
kills its worker is redelivered with the message unchanged); after ``max_deliveries``
the job is dead-lettered, recorded as a deny with its reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlverify._internal.distributed.filejob import FANOUT_FILE_BYTES
from mlverify._internal.distributed.keys import (
    Config,
    digest_entries,
    entries,
    fingerprint,
    oci_digest,
    prints_of,
    tree_digest,
)
from mlverify._internal.distributed.retry import RetryJob as RetryJob  # re-exported
from mlverify._internal.errors import MlverifyError, UsageError, VerificationError
from mlverify._internal.serve.store.base import StoredVerdict, VerdictStore
from mlverify._internal.text import shown

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.distributed.filejob import FileJob
    from mlverify._internal.distributed.keys import Entry
    from mlverify._internal.distributed.known import KnownFile
    from mlverify._internal.policy.model import Policy
    from mlverify._internal.sources.settings import AdmissionRules, SourceSettings

log = logging.getLogger("mlverify._internal.distributed")

QUEUES = ("uploads", "backfill")
#: bytes under a path job up to which its digest is read in the job's thread, before the
#: check (a thread per small job costs more than the read); larger ones beside the check
INLINE_DIGEST = 64 << 20
_PINNED_OCI = re.compile(r"^oci://[^/]+/.+@sha256:[0-9a-f]{64}$")
_PINNED_HF = re.compile(r"^hf://[^/@]+/[^/@]+@[0-9a-f]{40}(/.*)?$")
#: the environment every job is judged in: the key does not name one, so it is fixed
ENVIRONMENT = "admission"


#: most evidence keys a parent's message names (more are asked again: duplicates, harmless)
MAX_ASKED = 10_000
#: seconds a waiting parent comes back after at most (it starts at 0.1 s and doubles)
MAX_WAIT_DELAY = 2.0


class Fanout(Protocol):
    """How a parent queues its file jobs and itself again (the worker's broker)."""

    def file_job(self, job: FileJob) -> None: ...

    def again(self, job: Job, delay: float) -> None:
        """Queue ``job`` again, to be delivered in ``delay`` seconds."""
        ...


@dataclass(frozen=True)
class Job:
    """What a queue message carries."""

    ref: str
    digest: str  #: the artifact digest the key was made with
    policy: str
    trust: str
    version: str
    queue: str = "uploads"
    quarantine: str = "none"  #: registry pushes: what to do with a denied model
    enqueued_at: float = 0.0
    #: a parent waiting for its files' evidence: how often it came back (not in the key)
    waits: int = 0
    #: the evidence keys it queued file jobs for (not in the key)
    asked: tuple[str, ...] = ()

    @functools.cached_property
    def key(self) -> str:
        return Config(self.policy, self.trust, self.version).key(self.ref, self.digest)

    def to_message(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "digest": self.digest,
            "policy": self.policy,
            "trust": self.trust,
            "version": self.version,
            "queue": self.queue,
            "quarantine": self.quarantine,
            "enqueued_at": self.enqueued_at,
            "key": self.key,
            "waits": self.waits,
            "asked": list(self.asked),
        }

    @classmethod
    def from_message(cls, doc: Any) -> Job:
        if not isinstance(doc, dict):
            raise UsageError("job message: expected a JSON object")
        try:
            job = cls(
                **{k: str(doc[k]) for k in ("ref", "digest", "policy", "trust", "version")},
                queue=str(doc.get("queue", "uploads")),
                quarantine=str(doc.get("quarantine", "none")),
                enqueued_at=float(doc.get("enqueued_at", 0.0)),
                waits=max(0, int(doc.get("waits", 0))),
                asked=tuple(str(k) for k in doc.get("asked", ())[:MAX_ASKED]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"job message: missing or malformed field ({e})") from None
        if doc.get("key") != job.key:
            raise UsageError("job message: its key is not the key of its fields")
        if job.queue not in QUEUES or job.quarantine not in ("none", "delete", "tag"):
            raise UsageError("job message: unknown queue or quarantine mode")
        return job


def artifact_digest(
    ref: str,
    *,
    roots: Sequence[Path] | None,
    plain_http: bool = False,
) -> tuple[str, str]:
    """(the name judged, its artifact digest) for a reference a caller may name.

    OCI tags are resolved to the manifest digest (``oci://HOST/REPO:TAG@DIGEST`` is judged);
    hf:// must be pinned to a commit; a path must lie under one of ``roots`` (None: the
    caller's own command line names it, any path).
    """
    if ref.startswith("oci://"):
        from mlverify._internal.sources.oci import Registry, current_referrers, parse_ref
        from mlverify._internal.sources.settings import oci_from_environment

        settings = oci_from_environment(plain_http)
        r = parse_ref(ref)
        digest = r.digest
        if not digest:
            digest = Registry(r.host, settings).get_manifest(r.repository, r.reference)[2]
        # named as an in-process check names it: a tag stays in the name (policies match
        # on names, "*:release-*" included), pinned to the digest it resolved to
        pinned = f"oci://{r.host}/{r.repository}" + (f":{r.tag}" if r.tag else "") + f"@{digest}"
        attached = current_referrers(r.host, r.repository, digest, settings)
        return pinned, oci_digest(digest, attached)
    if ref.startswith("hf://"):
        if not _PINNED_HF.match(ref):
            raise UsageError(f"{ref}: hf:// references are judged pinned to a commit only")
        return ref, ref.split("@", 1)[1].split("/", 1)[0]
    if "://" in ref:
        raise UsageError(f"{shown(ref)}: unsupported scheme; use oci://, hf:// or a path")
    from mlverify._internal.sources.local import require_under

    path = Path(ref)
    if roots is not None:
        require_under(path, roots)
    return ref, tree_digest(path)[0]


@dataclass
class WorkerContext:
    """What a worker process judges with."""

    policies: list[Policy]
    store: VerdictStore
    roots: list[Path] = field(default_factory=list)
    registries: list[str] = field(default_factory=list)  #: oci hosts jobs may name ("*": any)
    plain_http: bool = False
    max_deliveries: int = 5
    verdict_ttl: float = 86_400.0
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    #: where sources read from (default: the environment's, with ``plain_http``)
    settings: SourceSettings | None = None
    #: fan-out of large path artifacts (None: every artifact is one job)
    fanout: Fanout | None = None
    fanout_bytes: int = FANOUT_FILE_BYTES  #: files of at least this size fan out
    fanout_wait: float = 3600.0  #: seconds a parent waits for its files' evidence, at most
    config: Config = field(init=False)

    def __post_init__(self) -> None:
        from mlverify._internal.sources.settings import SourceSettings

        self.config = Config.of(self.policies)
        base = self.settings or SourceSettings.from_environment()
        oci = dataclasses.replace(base.oci, plain_http=base.oci.plain_http or self.plain_http)
        self.settings = dataclasses.replace(base, oci=oci)

    @property
    def sources(self) -> SourceSettings:
        assert self.settings is not None  # set in __post_init__
        return self.settings

    def rules(self, path: bool) -> AdmissionRules:
        """What a job may make this worker read: paths under its roots, its registries;
        MLflow references are not judged from the queue."""
        from mlverify._internal.sources.settings import AdmissionRules

        return AdmissionRules(
            roots=tuple(self.roots) if path else None,
            registries=frozenset(self.registries),
            refused_kinds=frozenset({"mlflow"}),
        )


def valid_until(now: float, ttl: float) -> float:
    """``ttl`` seconds, never past the end of the UTC day: key windows and exemptions
    are judged by date."""
    tomorrow = dt.datetime.fromtimestamp(now, dt.timezone.utc).date() + dt.timedelta(1)
    midnight = dt.datetime.combine(tomorrow, dt.time(), dt.timezone.utc).timestamp()
    return min(now + ttl, midnight)


def deny_reasons(result: CheckResult) -> tuple[str, ...]:
    if result.outcome:
        return (result.message or result.outcome,)
    return tuple(
        r.message + (f" ({r.remedy})" if r.remedy else "")
        for d in result.decisions
        for r in d.reasons
        if r.level == "deny" and not d.allowed
    )


def _verdict(
    ctx: WorkerContext, job: Job, key: str, digest: str, allowed: bool, kind: str,
    reasons: Sequence[str], result: str = "",
) -> StoredVerdict:  # fmt: skip
    now = time.time()
    return StoredVerdict(
        key=key,
        ref=job.ref,
        digest=digest,
        allowed=allowed,
        kind=kind,
        decided_at=now,
        valid_until=valid_until(now, ctx.verdict_ttl),
        reasons=tuple(shown(r) for r in reasons),
        result=result,
        decided_by=ctx.worker_id,
    )


def dead_letter(ctx: WorkerContext, job: Job, reason: str, deliveries: int) -> str:
    v = _verdict(
        ctx, job, job.key, job.digest, False, "dead-letter",
        [f"not verified after {deliveries} deliveries: {reason}"],
    )  # fmt: skip
    ctx.store.put(v, now=time.time())
    log.error("job dead-lettered", extra={"key": job.key, "ref": job.ref, "reason": reason})
    return "dead-letter"


@dataclass(frozen=True)
class Plan:
    """What a path job's parent found before judging: the entries listed (``before``), the
    evidence of its large files (``known``, ``blake3``: by name, each about the very
    fingerprint listed), and why it cannot be allowed (``failed``, ``missing``)."""

    listed: list[Entry]
    known: Mapping[str, KnownFile] = field(default_factory=dict)
    blake3: Mapping[str, str] = field(default_factory=dict)
    failed: tuple[tuple[str, str], ...] = ()  #: (file, why its file job failed)
    missing: tuple[str, ...] = ()  #: files still without evidence after every wait


def wait_delay(waits: int) -> float:
    return min(MAX_WAIT_DELAY, 0.1 * 2.0 ** min(waits, 32))


def max_waits(budget: float) -> int:
    """How often a parent comes back before its files' evidence is given up on: the
    first count of waits whose delays add up to ``budget`` seconds."""
    n, total = 0, 0.0
    while total < budget:
        total += wait_delay(n)
        n += 1
    return n


def _plan(ctx: WorkerContext, job: Job) -> Plan | None:
    """Fan-out of a path job, before its delivery is counted: None when this worker does
    not fan it out (no fan-out configured, not a path, not a path or configuration it
    judges: :func:`run_job` says why, as a delivery); :data:`DECIDED` when the job fans out
    and a current verdict holds its key (looked up before its files' evidence, so a
    duplicate asks for no file job); :data:`WAITING` when file jobs for the evidence
    missing and the job itself were queued again; else the plan (without evidence when it
    has too few large files: one job, the store not asked here)."""
    from mlverify._internal.distributed.filejob import FANOUT_MIN_FILES, FileJob, check_limits
    from mlverify._internal.distributed.known import KnownFile, limits_digest, print_of
    from mlverify._internal.sources.local import require_under

    if ctx.fanout is None or job.ref.startswith(("oci://", "hf://")):
        return None
    if (job.policy, job.trust, job.version) != (
        ctx.config.policy, ctx.config.trust, ctx.config.version,
    ):  # fmt: skip
        return None
    path = Path(job.ref)
    try:
        require_under(path, ctx.roots)
        listed = entries(path)
    except MlverifyError:
        return None  # judged as one job: the same error, counted as a delivery
    large = [(n, st) for n, _, st in listed if stat.S_ISREG(st.st_mode)]
    large = [(n, st) for n, st in large if st.st_size >= ctx.fanout_bytes]
    if len(large) < FANOUT_MIN_FILES:
        return Plan(listed)
    existing = ctx.store.get(job.key)
    if existing is not None and existing.current(time.time()):
        return DECIDED
    limits = limits_digest(check_limits(ctx.policies))
    files = [FileJob(job.ref, n, print_of(st), limits) for n, st in large]
    found = ctx.store.get_evidence([f.key for f in files])
    known: dict[str, KnownFile] = {}
    blake3: dict[str, str] = {}
    failed: list[tuple[str, str]] = []
    missing: list[FileJob] = []
    for f in files:
        e = found.get(f.key)
        if e is None or (e.name, e.fingerprint) != (f.name, f.fingerprint):
            missing.append(f)
        elif e.failed:
            failed.append((f.name, e.failed))
        else:
            try:
                entry = json.loads(e.entry)
                sha = bytes.fromhex(e.sha256)
                bytes.fromhex(e.blake3)
            except ValueError:
                failed.append((f.name, "its stored evidence is unreadable"))
                continue
            if len(sha) != 32 or len(e.blake3) != 64 or e.size != f.fingerprint[2]:
                failed.append((f.name, "its stored evidence is unreadable"))
                continue
            known[f.name] = KnownFile(sha, entry, limits, f.fingerprint)
            blake3[f.name] = e.blake3
    if failed:
        return Plan(listed, failed=tuple(failed))
    if missing:
        if job.waits >= max_waits(ctx.fanout_wait):
            return Plan(listed, missing=tuple(f.name for f in missing))
        asked = set(job.asked)
        for f in missing:
            if f.key not in asked:
                ctx.fanout.file_job(f)
        again = dataclasses.replace(
            job, waits=job.waits + 1, asked=tuple(sorted(f.key for f in missing))
        )
        ctx.fanout.again(again, wait_delay(job.waits))
        log.info(
            "job waits for its files",
            extra={"key": job.key, "ref": job.ref, "files": len(missing), "waits": job.waits},
        )
        return WAITING
    return Plan(listed, known, blake3)


WAITING = Plan([])  #: the parent is queued again, its file jobs queued: nothing decided
DECIDED = Plan([])  #: a current verdict holds the parent's key: nothing to do


def run_job(ctx: WorkerContext, job: Job) -> str:
    """Judge ``job`` and store its verdict; the outcome: ``duplicate`` (a current verdict
    was there), ``allowed``, ``denied``, ``dead-letter``, or ``waiting`` (a large path
    artifact's file jobs were queued and the job queued again: not a delivery). Raises
    :class:`RetryJob` for an operational error that deserves another delivery."""
    key = job.key
    plan = _plan(ctx, job)  # a small path: only listed (the store is not asked)
    if plan is WAITING:
        return "waiting"  # before counting a delivery: waiting is not a failure
    # the lookup and the count in one statement: 0 when a current verdict holds the key
    n = 0 if plan is DECIDED else ctx.store.deliver(key, job.ref, time.time())
    if n == 0:
        log.info("job already decided", extra={"key": key, "ref": job.ref})
        return "duplicate"
    if n > ctx.max_deliveries:
        return dead_letter(ctx, job, "the job ended its worker every time (crash or kill)", n - 1)
    log.info("job started", extra={"key": key, "ref": job.ref, "delivery": n, "pid": os.getpid()})
    try:
        if (job.policy, job.trust, job.version) != (
            ctx.config.policy,
            ctx.config.trust,
            ctx.config.version,
        ):
            raise RetryJob(
                "this worker judges with other policies, trust or version than the job asks "
                "for; a worker configured like the replica that queued it must take it"
            )
        verdict = _judge(ctx, job, plan)
    except MlverifyError as e:
        reason = str(e)
        ctx.store.note_error(key, reason, time.time())
        if n >= ctx.max_deliveries:
            return dead_letter(ctx, job, reason, n)
        log.warning("job failed, will retry", extra={"key": key, "ref": job.ref, "error": reason})
        raise RetryJob(reason) from None
    written = ctx.store.put(verdict, now=time.time())
    outcome = "allowed" if verdict.allowed else "denied"
    log.info(
        "job decided" if written else "job decided twice (kept the first)",
        extra={"key": key, "ref": job.ref, "allowed": verdict.allowed, "digest": verdict.digest},
    )
    if written and not verdict.allowed and verdict.kind == "decided" and job.quarantine != "none":
        from mlverify._internal.serve.quarantine import quarantine
        from mlverify._internal.sources.oci import parse_ref

        r = parse_ref(job.ref)
        quarantine(r.host, r.repository, r.digest, job.quarantine, plain_http=ctx.plain_http)
    return outcome if written else "duplicate"


def _named(files: Sequence[str]) -> str:
    more = f" and {len(files) - 5} more" if len(files) > 5 else ""
    return ", ".join(shown(f) for f in files[:5]) + more


def _check_known(ctx: WorkerContext, ref: str, known: Mapping[str, KnownFile]) -> CheckResult:
    """``mlverify.check`` of a path with ``known`` files' evidence taken (the same
    pipeline: :func:`~mlverify._internal.sources.run.check_ref`)."""
    from mlverify._internal.check import CheckResult
    from mlverify._internal.sources.run import check_ref

    try:
        out = check_ref(
            ref, ctx.policies, ctx.sources, rules=ctx.rules(True), environment=ENVIRONMENT,
            known=known,
        )  # fmt: skip
    except MlverifyError as e:
        return CheckResult.failed(ref, e)
    if isinstance(out, str):
        return CheckResult(ref, (), {}, "not-fetched", out)
    return out


def _judge(ctx: WorkerContext, job: Job, plan: Plan | None = None) -> StoredVerdict:
    """The verdict about the bytes the job names, judged through the public API
    (:func:`mlverify.check`). An error result: tampered bytes (a
    :class:`VerificationError`) are a deny about them; any other error could not judge
    the bytes and is raised (retried); :class:`RetryJob` when the bytes are not the job's.
    Git LFS content not fetched is a deny: its bytes were not judged."""
    import mlverify

    key, ref = job.key, job.ref
    if ref.startswith("oci://"):
        host = ref[len("oci://") :].split("/", 1)[0]
        if "*" not in ctx.registries and host not in ctx.registries:
            raise RetryJob(
                f"{shown(ref)}: registry {shown(host)} is not one this worker may pull from "
                "(the worker's allowed registries)"
            )
    path = None if ref.startswith(("oci://", "hf://")) else Path(ref)
    same: Callable[[], None] = lambda: None  # noqa: E731 - nothing to compare for oci, hf
    known: Mapping[str, KnownFile] = {}
    if plan is not None and plan.failed:
        return _verdict(ctx, job, key, job.digest, False, "failed", [
            f"{shown(ref)}: {shown(name)} could not be hashed and scanned: {why}"
            for name, why in plan.failed
        ])  # fmt: skip
    if plan is not None and plan.missing:
        return _verdict(ctx, job, key, job.digest, False, "dead-letter", [
            f"{shown(ref)}: not verified: no evidence for {_named(plan.missing)} after "
            f"waiting {ctx.fanout_wait:g} s for its file jobs"
        ])  # fmt: skip
    if path is not None:
        from mlverify._internal.background import BackgroundCall
        from mlverify._internal.sources.local import require_under

        if plan is None:  # a plan's listing was made under this very check
            require_under(path, ctx.roots)
        listed = plan.listed if plan is not None else entries(path)
        known = plan.known if plan is not None else {}
        given = plan.blake3 if plan is not None else {}
        before = prints_of(listed)
        # the job's digest and the check both read after ``before`` was listed and before
        # the fingerprint is taken again: a change to any entry in between changes its
        # change time, so equal fingerprints mean both read the same bytes. A small
        # tree's digest is read first, here; a large one's beside the check (BLAKE3
        # releases the GIL), not before it
        digested: Callable[[], str]
        if sum(st.st_size for n, _, st in listed if n not in given) <= INLINE_DIGEST:
            value = digest_entries(listed, given)
            digested = lambda: value  # noqa: E731
        else:
            digested = BackgroundCall(digest_entries, listed, given).result

        def same() -> None:
            if digested() != job.digest:
                raise RetryJob(f"{shown(ref)}: its content is not what was queued (changed since)")
            if fingerprint(path) != before:
                raise RetryJob(f"{shown(ref)}: changed while being checked")

    if known:  # the large files' evidence taken: the check reads only the others
        out = _check_known(ctx, ref, known)
    else:
        out = mlverify.check(
            ref,
            policy=ctx.policies,
            settings=ctx.sources,
            rules=ctx.rules(path is not None),
            environment=ENVIRONMENT,
            use_cache=False,  # every byte is read: the verdict is stored for all replicas
        )
    same()  # a change explains an error better than the error does
    if out.outcome == "error":
        if out.error_exit == VerificationError.exit_code:  # tampered: a deny, not an outage
            return _verdict(ctx, job, key, job.digest, False, "failed", [out.message])
        raise MlverifyError(out.message)  # operational: retried, then dead-lettered
    if out.outcome:  # Git LFS content not fetched: its bytes were not judged
        return _verdict(ctx, job, key, job.digest, False, "failed", [out.message or out.outcome])

    doc = json.dumps(out.to_json(), sort_keys=True)
    if ref.startswith("oci://"):
        seen = out.evidence.get("reference", {})
        judged = oci_digest(
            str(seen.get("digest", "")), [str(x) for x in seen.get("referrers", [])]
        )
        if judged != job.digest:
            # the bytes (or what is attached to them) changed after the job was queued:
            # the verdict is stored under what was judged; the job's key learns why not
            ctx.store.put(
                _verdict(ctx, job, ctx.config.key(ref, judged), judged, out.allowed, "decided",
                         deny_reasons(out), doc),
                now=time.time(),
            )  # fmt: skip
            stale = _verdict(
                ctx, job, key, job.digest, False, "failed",
                [f"{ref}: attached manifests changed after the job was queued; ask again"],
            )  # fmt: skip
            return dataclasses.replace(stale, valid_until=stale.decided_at + 60)
    return _verdict(ctx, job, key, job.digest, out.allowed, "decided", deny_reasons(out), doc)
