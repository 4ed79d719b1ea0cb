"""Load test of `mlverify serve` /v1/check (not a test): requests/s and latency
percentiles on a cached verdict and on a miss.

Starts what it needs on loopback: a CNCF distribution registry (Debian
docker-registry) with the fixture model pushed (signed), and `mlverify serve`
as a real process. Then, with N client threads on keep-alive connections:

- oci hit:  a digest-pinned oci:// reference, verdict from the service's cache;
- oci miss: the same reference with "refresh": true (pull, verify digests and
  signature, hash, scan, decide; concurrent requests for one reference share the
  check in flight, so the miss is also measured with a single client);
- path:     a model under --root (a full check every time: every byte hashed,
  scanned, decided).

    .venv/bin/python bench/serve_load.py --seconds 5 --clients 8 --workers 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURE = ROOT / "fixtures" / "models" / "tiny-classifier"
TOKEN = "bench-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def load(port: int, body: dict[str, Any], seconds: float, clients: int) -> dict[str, float]:
    payload = json.dumps(body).encode()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            conn.request("POST", "/v1/check", body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            mine.append(time.perf_counter() - t0)
            if resp.status != 200 or not json.loads(data).get("allowed"):
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "rps": n / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
        "errors": errors[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()

    from mlverify._internal.sources.oci import push
    from mlverify._internal.sources.settings import oci_from_environment
    from tests.core.helpers import write_key_pair

    tmp = Path(tempfile.mkdtemp(prefix="mlverify-load-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        registry = shutil.which("docker-registry")
        models = tmp / "models"
        model = models / "tiny"
        shutil.copytree(FIXTURE, model)
        priv, pub = write_key_pair(tmp)
        mlverify = [sys.executable, "-m", "mlverify"]
        subprocess.run([*mlverify, "sign", str(model), "--key", str(priv)], check=True)
        policy = tmp / "policy.yaml"
        policy.write_text(
            "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: bench\n"
            f"spec:\n  signatures:\n    required: true\n    trusted:\n      - key: {pub}\n"
        )
        cases: dict[str, dict[str, Any]] = {"path (full check)": {"ref": str(model)}}
        serve_args = ["--root", str(models)]
        if registry:
            rport = free_port()
            (tmp / "registry.yml").write_text(
                json.dumps(
                    {
                        "version": 0.1,
                        "log": {"level": "error"},
                        "storage": {"filesystem": {"rootdirectory": str(tmp / "reg")}},
                        "http": {"addr": f"127.0.0.1:{rport}"},
                    }
                )
            )
            procs.append(
                subprocess.Popen(
                    [registry, "serve", str(tmp / "registry.yml")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait(f"http://127.0.0.1:{rport}/v2/")
            target = f"oci://127.0.0.1:{rport}/bench/tiny:v1"
            digest, _ = push(model, target, oci_from_environment(), signature=model / "model.sig")
            ref = f"oci://127.0.0.1:{rport}/bench/tiny@{digest}"
            cases = {
                "oci hit (cached verdict)": {"ref": ref},
                "oci miss (full check)": {"ref": ref, "refresh": True},
                **cases,
            }
            serve_args += ["--registry", f"127.0.0.1:{rport}"]
        else:
            print("docker-registry not installed: oci cases skipped", file=sys.stderr)
        port = free_port()
        env = {**os.environ, "MLVERIFY_SERVE_TOKEN": TOKEN, "XDG_CACHE_HOME": str(tmp / "cache")}
        procs.append(
            subprocess.Popen(
                [
                    *mlverify,
                    *("serve", "--port", str(port), "--policy", str(policy)),
                    *("--workers", str(args.workers), "--log-level", "warning", *serve_args),
                ],
                env=env,
            )
        )
        wait(f"http://127.0.0.1:{port}/healthz")
        for body in cases.values():  # warm: first verdict cached
            load(port, body, 0.01, 1)
        print(
            f"/v1/check, {args.clients} clients, {args.workers} workers, "
            f"{args.seconds:g}s per case, model {FIXTURE.name} (signed, key policy)\n"
        )
        print("| case | requests | req/s | p50 ms | p99 ms | errors |")
        print("|---|---:|---:|---:|---:|---:|")
        runs = [(name, body, args.clients) for name, body in cases.items()]
        # concurrent misses of one reference share one check; one client shows the
        # cost of each check alone
        runs += [(f"{n}, 1 client", b, 1) for n, b in cases.items() if "miss" in n]
        for name, body, clients in runs:
            r = load(port, body, args.seconds, clients)
            print(
                f"| {name} | {r['requests']:.0f} | {r['rps']:.0f} | {r['p50_ms']:.1f} "
                f"| {r['p99_ms']:.1f} | {r['errors']:.0f} |"
            )
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
