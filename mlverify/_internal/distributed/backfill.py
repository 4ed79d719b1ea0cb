"""Back-fills: queue every artifact a source already holds that has no current verdict.

Sources: a directory of models (each entry directly under it, file or directory, is one
artifact) or a file of references (one ``oci://``, ``hf://`` or path per line; ``#``
comments). At most ``max_outstanding`` jobs are queued and undecided at once
(back-pressure); a re-run skips what has a current verdict (resumable).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from mlverify._internal.distributed.broker import Queue, QueueError
from mlverify._internal.distributed.jobs import Job, artifact_digest
from mlverify._internal.distributed.keys import Config
from mlverify._internal.errors import InputError, MlverifyError
from mlverify._internal.serve.store.base import VerdictStore
from mlverify._internal.text import shown

log = logging.getLogger("mlverify._internal.distributed")

#: Longest line accepted in a file of references, and most references in one.
MAX_REF_LINE = 4096
MAX_REFS = 10_000_000


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


def references(source: Path) -> tuple[list[Path], Iterator[str]]:
    """(the roots jobs may read, the references) of a back-fill source."""
    if source.is_dir():
        root = source.resolve()
        return [root], (str(p) for p in sorted(root.iterdir()) if not p.name.startswith("."))
    if source.is_file():
        return [], _lines(source)
    raise InputError(f"{shown(str(source))}: no such directory or file of references")


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="strict") as f:
        for n, line in enumerate(f, 1):
            if n > MAX_REFS:
                raise InputError(f"{path}: more than {MAX_REFS} references")
            if len(line) > MAX_REF_LINE:
                raise InputError(f"{path}:{n}: line longer than {MAX_REF_LINE} characters")
            text = line.strip()
            if text and not text.startswith("#"):
                yield text


def backfill(
    refs: Iterator[str],
    *,
    roots: list[Path],
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
            done = store.get_many(sorted(outstanding))
            now = time.time()
            for key, v in done.items():
                if v.current(now):
                    outstanding.discard(key)
                    if v.allowed:
                        p.allowed += 1
                    else:
                        p.denied += 1
            report()
            if len(outstanding) >= max(limit, 1):
                sleep(0.2)

    for ref in refs:
        p.total += 1
        try:
            name, digest = artifact_digest(ref, roots=roots, plain_http=plain_http)
        except MlverifyError as e:
            p.failed += 1
            p.errors.append(str(e))
            print(f"backfill: {shown(ref)}: not queued: {e}", file=out, flush=True)
            continue
        key = config.key(name, digest)
        existing = store.get(key)
        if existing is not None and existing.current(time.time()):
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
