"""Back-fills: queue every artifact a source already holds that has no current verdict.

Sources: a directory of models (each entry directly under it, file or directory, is one
artifact), an OCI registry (``oci://HOST``: its catalog) or repository
(``oci://HOST/REPO``): every tag resolved to its digest, model manifests only, queued under
the pinned name admission asks about; the local Hugging Face cache (``hf-cache`` or
``hf-cache:DIR``: every snapshot, as ``hf://ORG/NAME@COMMIT``); or a file of references
(one ``oci://``, ``hf://`` or path per line; ``#`` comments). At most
``max_outstanding`` jobs are queued and undecided at once (back-pressure); a re-run
skips what has a current verdict (resumable).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mlverify._internal.distributed.broker import Queue, QueueError
from mlverify._internal.distributed.jobs import Job, artifact_digest
from mlverify._internal.distributed.keys import Config
from mlverify._internal.errors import InputError, MlverifyError, UsageError
from mlverify._internal.serve.store.base import VerdictStore
from mlverify._internal.text import shown

if TYPE_CHECKING:
    from mlverify._internal.sources.oci import Registry

log = logging.getLogger("mlverify._internal.distributed")

#: Longest line accepted in a file of references, and most references in one.
MAX_REF_LINE = 4096
MAX_REFS = 10_000_000
MAX_MANIFEST = 4 << 20
#: references named (digested) before their verdicts are looked up in one statement
LOOKUP_BATCH = 64


@dataclass
class Progress:
    total: int = 0
    skipped: int = 0  #: a current verdict was there
    queued: int = 0
    allowed: int = 0
    denied: int = 0
    failed: int = 0  #: could not be named (unreadable, not allowed): reported, not queued
    errors: list[str] = field(default_factory=list)

    @property
    def decided(self) -> int:
        return self.allowed + self.denied

    def line(self) -> str:
        return (
            f"backfill: {self.total} seen, {self.skipped} already decided, {self.queued} queued, "
            f"{self.decided} decided ({self.allowed} allowed, {self.denied} denied), "
            f"{self.queued - self.decided} outstanding, {self.failed} not queued"
        )


#: Most repositories, tags and pages read from one registry.
MAX_LISTED = 1_000_000
MAX_PAGES = 10_000
HF_SNAPSHOT = re.compile(r"^[0-9a-f]{40}$")


def references(source: str, *, plain_http: bool = False) -> tuple[list[Path] | None, Iterator[str]]:
    """(the roots its paths must lie under, None: any; the references) of a source."""
    if source.startswith("oci://"):
        host, _, repo = source[len("oci://") :].partition("/")
        if not host or "@" in repo or ":" in repo.rsplit("/", 1)[-1]:
            raise UsageError(f"{shown(source)}: expected oci://HOST or oci://HOST/REPOSITORY")
        return None, registry_refs(host, repo.rstrip("/"), plain_http=plain_http)
    if source == "hf-cache" or source.startswith("hf-cache:"):
        from mlverify._internal.sources import SourceSettings

        where = (
            Path(source[len("hf-cache:") :])
            if ":" in source
            else SourceSettings.from_environment().hf.cache
        )
        return None, hf_cache_refs(where)
    path = Path(source)
    if path.is_dir():
        root = path.resolve()
        return [root], (str(p) for p in sorted(root.iterdir()))
    if path.is_file():  # the user's own list: paths in it are the user's to name
        return None, _lines(path)
    raise InputError(
        f"{shown(source)}: not a directory, a file of references, oci://HOST[/REPO] or hf-cache"
    )


def _paged(reg: Registry, path: str, field: str) -> Iterator[str]:
    """The names a paginated distribution listing returns (``Link: <...>; rel="next"``)."""
    import json
    import urllib.parse

    listed = 0
    for _ in range(MAX_PAGES):
        resp = reg.request("GET", path)
        with resp:
            body = resp.read(MAX_MANIFEST + 1)
            link = resp.headers.get("Link", "")
        if len(body) > MAX_MANIFEST:
            raise InputError(f"{reg.host}: {path} answered more than {MAX_MANIFEST} bytes")
        try:
            names = json.loads(body).get(field) or []
        except (ValueError, AttributeError):
            raise InputError(f"{reg.host}: {path} did not answer a JSON listing") from None
        for name in names:
            listed += 1
            if listed > MAX_LISTED:
                raise InputError(f"{reg.host}: more than {MAX_LISTED} entries listed")
            if isinstance(name, str):
                yield name
        m = re.match(r'^\s*<([^>]+)>\s*;\s*rel="?next"?', link)
        if not m:
            return
        nxt = urllib.parse.urlsplit(m.group(1))
        if nxt.netloc and nxt.netloc != reg.host:
            raise InputError(f"{reg.host}: the listing's next page is on another host; refused")
        path = nxt.path + (f"?{nxt.query}" if nxt.query else "")
    raise InputError(f"{reg.host}: more than {MAX_PAGES} pages listed")


def registry_refs(host: str, repo: str, *, plain_http: bool = False) -> Iterator[str]:
    """``oci://HOST/REPO@DIGEST`` of every model manifest a tag names (each digest once)."""
    import dataclasses
    import json

    from mlverify._internal.serve.quarantine import is_model
    from mlverify._internal.sources import SourceSettings
    from mlverify._internal.sources.oci import Registry

    oci = SourceSettings.from_environment().oci
    reg = Registry(host, dataclasses.replace(oci, plain_http=oci.plain_http or plain_http))
    repos = [repo] if repo else _paged(reg, "/v2/_catalog?n=1000", "repositories")
    for name in repos:
        seen: set[str] = set()
        for tag in _paged(reg, f"/v2/{name}/tags/list?n=1000", "tags"):
            if tag.startswith(("sha256-", "quarantined-")):
                continue  # attached manifests (referrers fallback) and our quarantine tags
            data, _, digest = reg.get_manifest(name, tag)
            if digest in seen:
                continue
            seen.add(digest)
            try:
                doc = json.loads(data)
            except ValueError:
                continue
            if isinstance(doc, dict) and is_model(doc):
                yield f"oci://{host}/{name}@{digest}"


def hf_cache_refs(cache: Path) -> Iterator[str]:
    """``hf://ORG/NAME@COMMIT`` of every model snapshot in a Hugging Face cache."""
    if not cache.is_dir():
        raise InputError(f"{shown(str(cache))}: no Hugging Face cache here (HF_HUB_CACHE)")
    for repo in sorted(cache.glob("models--*--*")):
        parts = repo.name.split("--", 2)
        if len(parts) != 3 or not (repo / "snapshots").is_dir():
            continue
        for snap in sorted((repo / "snapshots").iterdir()):
            if HF_SNAPSHOT.match(snap.name):
                yield f"hf://{parts[1]}/{parts[2]}@{snap.name}"


def _lines(path: Path) -> Iterator[str]:
    """The references of a file, one per line: bounded in line length and count."""
    with open(path, "rb") as f:
        for n in range(1, MAX_REFS + 2):
            raw = f.readline(MAX_REF_LINE + 1)
            if not raw:
                return
            if n > MAX_REFS:
                raise InputError(f"{shown(str(path))}: more than {MAX_REFS} references")
            if len(raw) > MAX_REF_LINE:
                raise InputError(
                    f"{shown(str(path))}:{n}: line longer than {MAX_REF_LINE} bytes; "
                    "expected one reference per line"
                )
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InputError(f"{shown(str(path))}:{n}: not UTF-8 text") from None
            if text and not text.startswith("#"):
                yield text


def backfill(
    refs: Iterator[str],
    *,
    roots: list[Path] | None,
    config: Config,
    store: VerdictStore,
    queue: Queue,
    max_outstanding: int = 100,
    wait: bool = True,
    plain_http: bool = False,
    enqueue_timeout: float = 300.0,
    out: TextIO = sys.stderr,
    progress_every: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Progress:
    p = Progress()
    outstanding: set[str] = set()
    last: list[float | str] = [0.0, ""]

    def report(force: bool = False) -> None:
        """The progress line: when it changed (at most every ``progress_every``
        seconds), every 30 s regardless, and at the end."""
        now = time.monotonic()
        line = p.line()
        since = now - float(last[0])
        if force or (since >= progress_every and line != last[1]) or since >= 30:
            last[:] = [now, line]
            print(line, file=out, flush=True)

    def settle(limit: int) -> None:
        """Wait until fewer than ``limit`` jobs are outstanding."""
        while len(outstanding) >= max(limit, 1):
            done = store.states(sorted(outstanding))
            now = time.time()
            for key, (allowed, until) in done.items():
                if now < until:
                    outstanding.discard(key)
                    if allowed:
                        p.allowed += 1
                    else:
                        p.denied += 1
            report()
            if len(outstanding) >= max(limit, 1):
                sleep(0.2 if done else 0.5)

    for chunk in _chunks(refs, LOOKUP_BATCH):
        named: list[tuple[str, str, str]] = []  # (name, digest, key) of each ref named
        for ref in chunk:
            p.total += 1
            try:
                name, digest = artifact_digest(ref, roots=roots, plain_http=plain_http)
            except MlverifyError as e:
                p.failed += 1
                p.errors.append(str(e))
                print(f"backfill: {shown(ref)}: not queued: {e}", file=out, flush=True)
                continue
            named.append((name, digest, config.key(name, digest)))
        existing = store.get_many([key for _, _, key in named]) if named else {}
        now = time.time()
        for name, digest, key in named:
            found = existing.get(key)
            if found is not None and found.current(now):
                p.skipped += 1
                report()
                continue
            if key in outstanding:
                continue
            settle(max_outstanding)
            job = Job(name, digest, config.policy, config.trust, config.version, "backfill",
                      enqueued_at=time.time())  # fmt: skip
            _enqueue(queue, job, enqueue_timeout, sleep)
            outstanding.add(key)
            p.queued += 1
            report()
    if wait:
        settle(1)
    report(force=True)
    return p


def _chunks(items: Iterator[str], n: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _enqueue(queue: Queue, job: Job, timeout: float, sleep: Callable[[float], None]) -> None:
    """Enqueue, retrying while Redis is unreachable (restarts), for at most ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = 0.2
    while True:
        try:
            queue.enqueue(job)
            return
        except QueueError as e:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("enqueue failed, retrying", extra={"error": str(e), "seconds": pause})
            sleep(pause)
            pause = min(pause * 2, 5.0)
