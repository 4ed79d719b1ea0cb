"""Benchmark of the distributed layer (not a test): jobs/s and GB/s of 1 and 2 workers
against plain `mlverify check` of the same set in one process; admission latency
answered from the store.

A mixed set: N small models (the fixture model, copied) and M large ones (a valid
safetensors file of SIZE GiB each). Starts what it needs on loopback: Redis, and
PostgreSQL as its own user (root needed; else the SQLite store, said in the output).

    .venv/bin/python bench/distributed_bench.py --small 2000 --large 4 --large-gib 1

- plain:      `mlverify check` of every model, one process;
- N workers:  `mlverify backfill DIR` into an empty store with `mlverify worker
              --concurrency N` running, from the start of the back-fill to its last verdict
              (the back-fill reads every byte once more, for the job keys); the worker's
              start-up (imports, its warm-up check) is not measured: the clock starts once
              its processes are idle (it was a fixed 3 s sleep, too short on a loaded
              machine: the rest of the start-up was counted as job time);
- CPU s:      user + system seconds of those processes (not Redis', PostgreSQL's): what
              the run costs whatever else the machine does;
- admission:  /k8s/validate of decided models through `mlverify serve --queue --store`,
              one client on a kept-alive connection, latency percentiles.

Redis runs as deployed (deploy/kubernetes: ``appendfsync everysec``); ``--redis-fsync
always`` measures the tests' setting (every enqueue, fetch and ack waits for the disk).
The workers' and back-fills' stderr are kept in the work directory's ``*.log`` and the
last lines printed when a run fails.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURE = ROOT / "fixtures" / "models" / "tiny-classifier"
TOKEN = "bench-token-0123456789abcdef"


def safetensors(path: Path, size: int) -> None:
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    pad = (8 - len(header) % 8) % 8
    raw = (header + " " * pad).encode()
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        f.truncate(8 + len(raw) + size)  # zeros, sparse: hashing reads them all the same


def corpus(root: Path, small: int, large: int, gib: float) -> int:
    total = 0
    for i in range(small):
        shutil.copytree(FIXTURE, root / f"s{i:05d}")
    total += small * sum(f.stat().st_size for f in FIXTURE.iterdir())
    for i in range(large):
        d = root / f"L{i}"
        d.mkdir()
        shutil.copy(FIXTURE / "config.json", d / "config.json")
        safetensors(d / "model.safetensors", int(gib * (1 << 30)))
        total += int(gib * (1 << 30))
    return total


def cpu() -> float:
    """CPU seconds (user + system) of this process's reaped descendants so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def mlverify(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlverify", *args]


@contextlib.contextmanager
def services(work: Path, fsync: str) -> Iterator[tuple[str, str, str]]:
    """(redis URL, a function-free store URL prefix, the store kind)."""
    import redis as redis_client

    from tests.distributed.conftest import Redis, Unavailable, postgres_running
    from tests.integrations.conftest import free_port

    redis = Redis(free_port(), work)
    redis.start()
    redis_client.Redis.from_url(redis.url).config_set("appendfsync", fsync)
    try:
        try:
            with postgres_running() as pg:
                yield redis.url, "postgres", pg.url
        except Unavailable as e:
            print(f"PostgreSQL unavailable ({e}); the SQLite store is measured", file=sys.stderr)
            yield redis.url, "sqlite", f"sqlite:///{work}/verdicts"
    finally:
        redis.stop()


def fresh_store(kind: str, base: str, n: int) -> str:
    if kind == "sqlite":
        return f"{base}-{n}.db"
    from tests.distributed.conftest import Postgres, new_database

    port = int(base.rsplit(":", 1)[1].split("/")[0])
    return new_database(Postgres(port, Path("/")))


def flush(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushall()


def _tree_cpu(pid: int) -> int:
    """Clock ticks of CPU used so far by ``pid`` and its children (Linux /proc)."""
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(d) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total


def _settled(pid: int, timeout: float = 120.0) -> None:
    """Wait until the worker ``pid`` and its processes stop using CPU (imported, warmed up,
    idle): a fixed sleep counted the start-up of a worker that took longer (a loaded
    machine) in the back-fill's time."""
    time.sleep(1.0)
    deadline = time.monotonic() + timeout
    before = -1
    while time.monotonic() < deadline:
        now = _tree_cpu(pid)
        if now == before:
            return
        before = now
        time.sleep(0.5)


def run_workers(
    n: int, root: Path, redis_url: str, store: str, env: dict[str, str], timeout: float
) -> float:
    log = root.parent / f"worker-{n}.log"
    with open(log, "wb") as err:
        w = subprocess.Popen(
            mlverify("worker", "--queue", redis_url, "--store", store, "--root", str(root),
                     "--concurrency", str(n), "--log-level", "warning"),
            env=env, stderr=err,
        )  # fmt: skip
    _settled(w.pid)  # the worker processes start (imports, warm-up): not what is measured
    t0 = time.perf_counter()
    try:
        r = subprocess.run(
            mlverify("backfill", str(root), "--queue", redis_url, "--store", store,
                     "--max-outstanding", "1000"),
            env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        sys.exit(f"backfill did not finish in {timeout:g} s; worker log:\n"
                 f"{log.read_text(errors='replace')[-3000:]}\nbackfill: {e.stderr!r}")  # fmt: skip
    wall = time.perf_counter() - t0
    w.send_signal(signal.SIGTERM)
    w.wait(120)
    if r.returncode != 0:
        sys.exit(f"backfill failed: {r.stderr[-2000:]}\nworker log:\n{log.read_text()[-2000:]}")
    print(f"  {r.stderr.strip().splitlines()[-1]}", file=sys.stderr)
    return wall


def admission(root: Path, redis_url: str, store: str, env: dict[str, str], n: int) -> list[float]:
    from tests.integrations.conftest import free_port, wait_http

    port = free_port()
    srv = subprocess.Popen(
        mlverify("serve", "--port", str(port), "--queue", redis_url, "--store", store,
                 "--root", str(root), "--log-level", "warning"),
        env={**env, "MLVERIFY_SERVE_TOKEN": TOKEN}, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        models = sorted(p for p in root.iterdir() if p.name.startswith("s"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        out = []
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        for i in range(n):
            model = {"storageUri": str(models[i % len(models)])}
            obj = {"kind": "InferenceService", "spec": {"predictor": {"model": model}}}
            review = {"uid": str(i), "operation": "CREATE", "object": obj}
            body = json.dumps(
                {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": review}
            )
            t0 = time.perf_counter()
            conn.request("POST", "/k8s/validate", body, headers)
            resp = conn.getresponse()
            doc = json.loads(resp.read())
            out.append(time.perf_counter() - t0)
            assert doc["response"]["allowed"] is True, doc
        return out
    finally:
        srv.terminate()
        srv.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--large", type=int, default=4)
    ap.add_argument("--large-gib", type=float, default=1.0)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--redis-fsync", choices=("everysec", "always"), default="everysec")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds a back-fill may take")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlverify-dbench-"))
    os.chmod(work, 0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(work / "cache")}
    try:
        root = work / "models"
        root.mkdir()
        total = corpus(root, args.small, args.large, args.large_gib)
        jobs = args.small + args.large
        print(f"set: {args.small} small + {args.large} x {args.large_gib:g} GiB = {jobs} jobs, "
              f"{total / 1e9:.2f} GB", file=sys.stderr)  # fmt: skip
        refs = [str(p) for p in sorted(root.iterdir())]
        t0, c0 = time.perf_counter(), cpu()
        r = subprocess.run(mlverify("check", *refs, "--format", "json"), env=env,
                           capture_output=True, text=True)  # fmt: skip
        plain, plain_cpu = time.perf_counter() - t0, cpu() - c0
        if r.returncode not in (0, 1):
            sys.exit(f"check failed: {r.stderr[-2000:]}")
        rows = [("plain `mlverify check`, 1 process", plain, plain_cpu)]
        with services(work, args.redis_fsync) as (redis_url, kind, base):
            for n in (1, 2):
                flush(redis_url)
                store = fresh_store(kind, base, n)
                c0 = cpu()
                wall = run_workers(n, root, redis_url, store, env, args.timeout)
                name = f"{n} worker process{'es' if n > 1 else ''} ({kind} store)"
                rows.append((name, wall, cpu() - c0))
            lat = sorted(admission(root, redis_url, store, env, args.requests))
        print(f"\nRedis appendfsync {args.redis_fsync}; load average at the end "
              f"{os.getloadavg()[0]:.1f}")  # fmt: skip
        print("\n| run | wall s | jobs/s | GB/s | vs plain | CPU s | CPU vs plain |\n"
              "|---|---:|---:|---:|---:|---:|---:|")  # fmt: skip
        for name, wall, used in rows:
            print(f"| {name} | {wall:.1f} | {jobs / wall:.1f} | {total / 1e9 / wall:.2f} | "
                  f"{wall / plain:.2f}x | {used:.1f} | {used / plain_cpu:.2f}x |")  # fmt: skip
        print("(CPU: the check, or the workers and the back-fill; not Redis' or PostgreSQL's)")
        q = statistics.quantiles(lat, n=100)
        print(
            f"\nadmission from the store ({len(lat)} AdmissionReviews, 1 client): "
            f"p50 {q[49] * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms, max {lat[-1] * 1000:.2f} ms"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
