"""Benchmark of the fan-out of large path artifacts (not a test): one artifact of
COUNT x SIZE MiB data files and the fixture model's small files, judged by `mlverify
worker --concurrency 1|2` with the fan-out on (``MLVERIFY_FANOUT_FILE_BYTES`` below the
files' size) and off (above it), and by plain `mlverify check`.

    .venv/bin/python bench/fanout_bench.py --count 2 --mib 512

- wall: from the job's enqueue to its verdict in the store (the job key is computed
  before, untimed: a back-fill's or a replica's cost, the same in every run);
- CPU: user + system seconds of the worker processes over that interval (from /proc,
  their reaped children included), not Redis' or PostgreSQL's; plain check: its process.
Files are in the page cache (written just before): what is measured is hashing and
scanning, not the disk. Starts Redis and PostgreSQL on loopback (root needed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURE = ROOT / "fixtures" / "models" / "tiny-classifier"


def ticks(pid: int) -> float:
    """CPU seconds of ``pid`` and its reaped children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def run(n: int, fanout: bool, model: Path, redis_url: str, store_url: str, size: int) -> tuple[
    float, float
]:  # fmt: skip
    import redis

    redis.Redis.from_url(redis_url).flushall()
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "MLVERIFY_FANOUT_FILE_BYTES": str(size // 2 if fanout else 1 << 62)}  # fmt: skip
    log = model.parent / f"worker-{n}-{fanout}.log"
    with open(log, "wb") as err:
        sup = subprocess.Popen(
            [sys.executable, "-m", "mlverify", "worker", "--queue", redis_url, "--store",
             store_url, "--root", str(model.parent), "--concurrency", str(n),
             "--policy", "builtin:default"],
            env=env, stderr=err,
        )  # fmt: skip
    try:
        return _measure(sup, n, model, redis_url, store_url, log)
    finally:
        sup.send_signal(signal.SIGTERM)
        sup.wait(120)


def _measure(
    sup: subprocess.Popen[bytes], n: int, model: Path, redis_url: str, store_url: str, log: Path
) -> tuple[float, float]:
    from mlverify._internal.distributed.broker import Queue
    from mlverify._internal.distributed.jobs import Job, artifact_digest
    from mlverify._internal.distributed.keys import Config
    from mlverify._internal.policy.model import load_policies
    from mlverify._internal.serve.store import open_store

    deadline = time.monotonic() + 120  # imports and warm-up: not measured
    while log.read_text(errors="replace").count("worker process ready") < n:
        if time.monotonic() > deadline or sup.poll() is not None:
            sys.exit(f"the worker did not start: {log.read_text()[-3000:]}")
        time.sleep(0.1)
    procs = children(sup.pid)
    assert len(procs) == n, procs
    c = Config.of(load_policies(["builtin:default"]))
    ref, digest = artifact_digest(str(model), roots=[model.parent])
    job = Job(ref, digest, c.policy, c.trust, c.version)
    store = open_store(store_url)
    q = Queue(redis_url)
    cpu0 = sum(ticks(p) for p in procs)
    t0 = time.perf_counter()
    q.enqueue(job)
    while (v := store.get(job.key)) is None:
        if time.perf_counter() - t0 > 600:
            sys.exit(f"no verdict in 600 s; {log.read_text()[-3000:]}")
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    cpu = sum(ticks(p) for p in procs) - cpu0
    if not v.allowed:
        sys.exit(f"denied: {v.reasons}")
    q.close()
    store.close()
    return wall, cpu


def plain(model: Path) -> tuple[float, float]:
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mlverify", "check", str(model), "--policy", "builtin:default"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2)
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    from tests.distributed.conftest import Redis, new_database, postgres_running
    from tests.integrations.conftest import free_port

    work = Path(tempfile.mkdtemp(prefix="mlverify-fanout-bench-"))
    try:
        model = work / "models" / "big"
        shutil.copytree(FIXTURE, model)
        size = args.mib << 20
        chunk = bytes(range(1, 256)) * 4096
        for i in range(args.count):
            with open(model / f"weights-{i}.bin", "wb") as f:
                left = size
                while left:
                    f.write(chunk[: min(left, len(chunk))])
                    left -= min(left, len(chunk))
        redis = Redis(free_port(), work)
        redis.start()
        try:
            with postgres_running() as pg:
                print(f"load average {os.getloadavg()[0]:.1f}; {args.count} x {args.mib} MiB")
                for _ in range(args.repeat):
                    w, c = plain(model)
                    print(f"plain check            wall {w:6.2f} s  CPU {c:6.2f} s")
                    for n in (1, 2):
                        for fan in (False, True):
                            store = new_database(pg)
                            w, c = run(n, fan, model, redis.url, store, size)
                            plural = "s" if n > 1 else " "
                            label = f"{n} worker{plural} fan-out {'on ' if fan else 'off'}"
                            print(f"{label}  wall {w:6.2f} s  CPU {c:6.2f} s", flush=True)
                print(f"load average {os.getloadavg()[0]:.1f}")
        finally:
            redis.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
