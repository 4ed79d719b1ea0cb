"""Fan-out against the real components: `mlverify worker` processes on Redis and
PostgreSQL, the large-file threshold lowered through ``MLVERIFY_FANOUT_FILE_BYTES``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.distributed.conftest import Proc, Redis
from tests.distributed.test_distributed import FAST, verdicts, wait_for
from tests.distributed.test_fanout import BIG, big_model, evil_pickle
from tests.integrations.conftest import make_clean_model

pytest.importorskip("dramatiq")
pytest.importorskip("psycopg")

ENV = {"MLVERIFY_FANOUT_FILE_BYTES": str(32 << 10)}


def worker(start: Callable[..., Proc], redis: Redis, store: str, root: Path, *extra: str) -> Proc:
    p = start("worker", "--queue", redis.url, "--store", store, "--policy", "builtin:default",
              "--root", str(root), *FAST, *extra, env=ENV)  # fmt: skip
    wait_for(lambda: any(r.get("msg") == "worker process ready" for r in p.records()), 60,
             "a worker process to be ready")  # fmt: skip
    return p


def backfill(redis: Redis, store: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlverify", "backfill", str(root), "--queue", redis.url,
         "--store", store, "--policy", "builtin:default"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def file_jobs(*procs: Proc) -> list[tuple[int, str]]:
    """(worker index, file) of every file job that made evidence."""
    return [
        (i, f"{r['ref']}/{r['file']}")
        for i, p in enumerate(procs)
        for r in p.records()
        if r.get("msg") == "file evidence"
    ]


def test_two_workers_take_the_file_jobs_and_join_before_deciding(
    tmp_path: Path, redis_server: Redis, pg_url: str, mlverify_proc: Callable[..., Proc]
) -> None:
    """A clean artifact with 3 large files and its small ones, a malicious one (a large
    pickle beside 2 large data files), small models: one verdict each, correct; 6 file
    jobs (each file once), taken by whichever worker fetches them; the parents waited
    without a delivery."""
    root = tmp_path / "models"
    root.mkdir()
    big = big_model(root, "big")
    evil = big_model(root, "evil-big", large=2)
    (evil / "evil.pkl").write_bytes(evil_pickle(BIG))
    # more file jobs than one worker process holds at once (8): the other takes some
    wide = root / "wide"
    wide.mkdir()
    for i in range(12):
        (wide / f"shard-{i:02d}.bin").write_bytes(bytes([i + 1]) * (16 << 20))
    for i in range(4):
        make_clean_model(root, f"small-{i}")
    w1 = worker(mlverify_proc, redis_server, pg_url, root)
    w2 = worker(mlverify_proc, redis_server, pg_url, root)
    r = backfill(redis_server, pg_url, root)
    assert r.returncode == 0, r.stderr
    found = {str(v["ref"]): v for v in verdicts(pg_url)}
    assert sorted(found) == sorted(str(p) for p in root.iterdir())
    assert found[str(big)]["allowed"] is True, found[str(big)]
    assert found[str(evil)]["allowed"] is False
    assert "os.system" in " ".join(map(str, found[str(evil)]["reasons"]))  # type: ignore[call-overload]
    assert all(v["allowed"] is True for ref, v in found.items() if "small-" in ref)
    assert found[str(wide)]["allowed"] is True
    done = file_jobs(w1, w2)
    names = sorted(f for _, f in done)
    expected = [f"{big}/weights-{i}.bin" for i in range(3)]
    expected += [f"{evil}/evil.pkl", *(f"{evil}/weights-{i}.bin" for i in range(2))]
    expected += [f"{wide}/shard-{i:02d}.bin" for i in range(12)]
    assert names == sorted(expected), "each large file hashed and scanned once"
    # which worker takes which file job is the broker's scheduling (one may drain the
    # queue before the other fetches): not asserted; each file judged once is
    waited = [r for p in (w1, w2) for r in p.records() if r.get("msg") == "job waits for its files"]
    assert {str(r["ref"]) for r in waited} == {str(big), str(evil), str(wide)}
    # the parents' deliveries: one each (waiting is not a delivery); none judged twice
    started = [r for p in (w1, w2) for r in p.records() if r.get("msg") == "job started"]
    assert sorted(str(r["ref"]) for r in started if "small-" not in str(r["ref"])) == sorted(
        [str(big), str(evil), str(wide)]
    )
    # duplicates of the parent and of a file job: harmless (nothing judged again)
    from mlverify._internal.distributed.broker import Queue
    from mlverify._internal.distributed.filejob import FileJob, check_limits
    from mlverify._internal.distributed.jobs import Job
    from mlverify._internal.distributed.keys import Config
    from mlverify._internal.distributed.known import limits_digest
    from mlverify._internal.policy.model import load_policies

    c = Config.of(load_policies(["builtin:default"]))
    q = Queue(redis_server.url)
    parent = Job(str(big), str(found[str(big)]["digest"]), c.policy, c.trust, c.version)
    assert parent.key == found[str(big)]["key"]
    q.enqueue(parent)
    q.enqueue(parent)
    st = os.lstat(big / "weights-0.bin")
    fp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    limits = limits_digest(check_limits(load_policies(["builtin:default"])))
    q.enqueue_file(FileJob(str(big), "weights-0.bin", fp, limits))

    def seen(msg: str) -> int:
        return sum(r.get("msg") == msg for p in (w1, w2) for r in p.records())

    wait_for(lambda: seen("job already decided") >= 2 and seen("file job already done") >= 1,
             60, "the duplicates to be seen")  # fmt: skip
    q.close()
    assert len(verdicts(pg_url)) == len(found)
    assert file_jobs(w1, w2) == done
    assert w1.stop() == 0 and w2.stop() == 0


def test_a_file_that_never_holds_still_is_denied_not_waited_on_forever(
    tmp_path: Path, redis_server: Redis, pg_url: str, mlverify_proc: Callable[..., Proc]
) -> None:
    """A large file whose change time moves all the time: every file job for it fails
    (its fingerprint is never the one listed), the parent comes back a bounded number of
    times and is recorded as a deny naming the file, within the job timeout."""
    root = tmp_path / "models"
    root.mkdir()
    model = big_model(root, "busy")
    target = model / "weights-0.bin"
    stop = threading.Event()

    def touch() -> None:
        while not stop.wait(0.02):
            os.utime(target)

    w = worker(mlverify_proc, redis_server, pg_url, root, "--job-timeout", "8")
    toucher = threading.Thread(target=touch, daemon=True)
    toucher.start()
    try:
        t0 = time.monotonic()
        r = backfill(redis_server, pg_url, root)
        took = time.monotonic() - t0
    finally:
        stop.set()
        toucher.join()
    assert r.returncode == 0, r.stderr
    (v,) = verdicts(pg_url)
    assert v["allowed"] is False and v["kind"] in ("dead-letter", "failed"), v
    assert "weights-0.bin" in " ".join(map(str, v["reasons"]))  # type: ignore[call-overload]
    assert took < 120, took
    assert w.stop() == 0
