"""Slowloris against a real ``mlverify serve`` process on loopback: before and after.

Opens N connections from 127.0.0.2 that send part of a request's headers and never
finish, keeps them open, and meanwhile sends ``GET /healthz`` and an AdmissionReview
from 127.0.0.1: prints the status codes and latencies the legitimate client sees, and
how many attacking connections the server closed (read timeout, per-client limit).

    .venv/bin/python bench/slowloris.py --connections 300 --seconds 8
    PYTHONPATH=/path/to/old/checkout .venv/bin/python bench/slowloris.py   # "before"
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {"uid": "u-1", "operation": "CREATE", "object": {"kind": "Pod", "spec": {}}},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, extra: list[str], log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlverify", "serve", "--no-auth", "--port", str(port), *extra],
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")


def open_slow(port: int, n: int, sources: int = 1) -> list[socket.socket]:
    """``n`` connections from ``sources`` addresses (127.0.1.x), headers never finished."""
    socks = []
    for i in range(n):
        s = socket.socket()
        s.settimeout(5)
        s.bind((f"127.0.{1 + i % sources // 250}.{2 + i % sources % 250}", 0))
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"POST /v1/check HTTP/1.1\r\nHost: verifier\r\nX-Slow: ")
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def closed_by_server(socks: list[socket.socket]) -> int:
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(65536)
            n += 1 if data == b"" or data else 0  # EOF, or an answer (then a close)
        except BlockingIOError:
            pass
        except OSError:
            n += 1
    return n


def legit(port: int, seconds: float) -> dict[str, Any]:
    codes: Counter[str] = Counter()
    lat: list[float] = []
    end = time.monotonic() + seconds
    body = json.dumps(REVIEW).encode()
    while time.monotonic() < end:
        for method, path, data in (("GET", "/healthz", None), ("POST", "/k8s/validate", body)):
            t0 = time.perf_counter()
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request(method, path, body=data, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                codes[f"{path} {r.status}"] += 1
                c.close()
            except OSError as e:
                codes[f"{path} {type(e).__name__}"] += 1
            lat.append(time.perf_counter() - t0)
    lat.sort()
    return {
        "codes": dict(codes),
        "p50_ms": round(statistics.median(lat) * 1000, 1),
        "max_ms": round(lat[-1] * 1000, 1),
    }


def measure(port: int, connections: int, seconds: float, sources: int = 1) -> dict[str, Any]:
    socks = open_slow(port, connections, sources)
    time.sleep(0.5)
    during = legit(port, seconds)
    closed = closed_by_server(socks)
    for s in socks:
        s.close()
    return {"opened": len(socks), "closed_by_server": closed, **during}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--sources", type=int, default=1, help="attacking addresses (127.0.x.y)")
    ap.add_argument("--server-args", default="--read-timeout 3")
    args = ap.parse_args()
    port = free_port()
    log = Path(tempfile.mkdtemp()) / "serve.log"
    extra = args.server_args.split() if args.server_args else []
    proc = start_server(port, extra, log)
    try:
        result = measure(port, args.connections, args.seconds, args.sources)
        print(json.dumps(result, indent=2))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
