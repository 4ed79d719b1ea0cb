"""Issue 14 against the real components: Redis (Dramatiq's broker), PostgreSQL (the
verdict store), `mlverify worker`, `backfill`, `verdicts` and `serve` as processes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.core.helpers import write_key_pair
from tests.distributed.conftest import Proc, Redis
from tests.integrations.conftest import make_clean_model, make_evil_model, write_key_policy

pytest.importorskip("dramatiq")
pytest.importorskip("psycopg")

FAST = ["--heartbeat-timeout", "3", "--retry-backoff", "0.2", "--max-backoff", "1"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlverify", *args], capture_output=True, text=True, timeout=timeout
    )


def sign(model: Path, key: Path) -> None:
    r = run("sign", str(model), "--key", str(key))
    assert r.returncode == 0, r.stderr


def corpus(root: Path, work: Path, n: int) -> tuple[Path, dict[str, str]]:
    """``n`` models under ``root``: signed clean ones, signed malicious ones, tampered
    ones (signed, then a byte changed); a key policy; what each must get."""
    keys = work / "keys"
    keys.mkdir()
    priv, pub = write_key_pair(keys)
    policy = write_key_policy(work, pub)
    clean = make_clean_model(work, "clean")
    sign(clean, priv)
    evil = make_evil_model(work, "evil")
    sign(evil, priv)
    big = make_clean_model(work, "big")  # a job long enough to be killed in the middle
    (big / "weights.bin").write_bytes(bytes(256 << 20))
    sign(big, priv)
    expect: dict[str, str] = {}
    shutil.copytree(big, root / "m0000-big")
    expect[str(root / "m0000-big")] = "clean"
    for i in range(1, n):
        kind = "malicious" if i % 10 == 3 else "tampered" if i % 10 == 7 else "clean"
        dest = root / f"m{i:04d}"
        shutil.copytree(evil if kind == "malicious" else clean, dest)
        if kind == "tampered":
            (dest / "config.json").write_text('{"arch": "tampered"}\n')
        expect[str(dest)] = kind
    return policy, expect


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def verdicts(store: str) -> list[dict[str, object]]:
    r = run("verdicts", "--store", store, "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert isinstance(doc, list)
    return doc


def check_verdicts(found: list[dict[str, object]], expect: dict[str, str]) -> None:
    by_ref: dict[str, list[dict[str, object]]] = {}
    for v in found:
        by_ref.setdefault(str(v["ref"]), []).append(v)
    assert sorted(by_ref) == sorted(expect), "every model gets a verdict, and nothing else does"
    for ref, kind in expect.items():
        (v,) = by_ref[ref]  # exactly one each
        assert {"ref", "digest", "allowed", "decided_at", "reasons"} <= set(v)
        reasons = " ".join(map(str, v["reasons"]))  # type: ignore[call-overload]
        if kind == "clean":
            assert v["allowed"] is True, (ref, reasons)
        else:
            assert v["allowed"] is False, (ref, kind)
            if kind == "malicious":
                assert "os.system" in reasons, reasons
            else:
                assert "config.json" in reasons, reasons


def worker(start: Callable[..., Proc], redis: Redis, store: str, policy: Path, root: Path,
           *extra: str) -> Proc:  # fmt: skip
    p = start("worker", "--queue", redis.url, "--store", store, "--policy", str(policy),
              "--root", str(root), *FAST, *extra)  # fmt: skip
    wait_for(lambda: any(r.get("msg") == "worker process ready" for r in p.records()), 60,
             "a worker process to be ready")  # fmt: skip
    return p


def test_backfill_two_workers_one_killed_mid_job(
    tmp_path: Path, redis_server: Redis, pg_url: str, mlverify_proc: Callable[..., Proc]
) -> None:
    """200 models, two workers, one worker process killed (SIGKILL, by PID) in the middle
    of a job: every model gets exactly one verdict, each correct; the killed job is
    finished by another process; a re-run of the back-fill queues nothing."""
    root = tmp_path / "models"
    root.mkdir()
    policy, expect = corpus(root, tmp_path, 200)
    w1 = worker(mlverify_proc, redis_server, pg_url, policy, root)
    w2 = worker(mlverify_proc, redis_server, pg_url, policy, root)
    bf = subprocess.Popen(
        [sys.executable, "-m", "mlverify", "backfill", str(root), "--queue", redis_server.url,
         "--store", pg_url, "--policy", str(policy), "--max-outstanding", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    big = str(root / "m0000-big")

    def started() -> list[tuple[Proc, dict[str, object]]]:
        return [(w, r) for w in (w1, w2) for r in w.records()
                if r.get("msg") == "job started" and r.get("ref") == big]  # fmt: skip

    wait_for(lambda: bool(started()), 300, "the large model's job to start")
    killed_in, victim = started()[0]
    pid = int(str(victim["pid"]))
    subprocess.run(["kill", "-KILL", str(pid)], check=True)
    _out, err = bf.communicate(timeout=600)
    assert bf.returncode == 0, err
    assert "200 seen" in err.strip().splitlines()[-1]
    found = verdicts(pg_url)
    check_verdicts(found, expect)
    killed = next(v for v in found if v["key"] == victim["key"])
    assert not str(killed["decided_by"]).endswith(f":{pid}"), "finished by another process"
    assert any(r.get("msg") == "worker process exited; restarting" for r in killed_in.records())
    # and restarted (the supervisor once dropped its restart time before it was due)
    assert sum(r.get("msg") == "worker process started" for r in killed_in.records()) >= 2
    # no verdict written twice: no worker saw its write refused
    for w in (w1, w2):
        assert not any("decided twice" in str(r.get("msg")) for r in w.records())
    # resumable: a second run finds everything decided
    r = run("backfill", str(root), "--queue", redis_server.url, "--store", pg_url,
            "--policy", str(policy))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "200 already decided, 0 queued" in r.stderr.strip().splitlines()[-1]
    assert w1.stop() == 0 and w2.stop() == 0
    text = run("verdicts", "--store", pg_url, "--denied")
    assert text.returncode == 0 and "os.system" in text.stdout
    assert all(" denied " in line for line in text.stdout.splitlines() if not line.startswith(" "))


def test_redis_restarted_mid_run(
    tmp_path: Path, redis_server: Redis, pg_url: str, mlverify_proc: Callable[..., Proc]
) -> None:
    """Redis stopped and started again (same port, its append-only file) while a back-fill
    runs: no verdict lost, work resumes, each model decided once and correctly."""
    root = tmp_path / "models"
    root.mkdir()
    # enough models that the restart falls mid-run (workers judge a small model in a few ms)
    policy, expect = corpus(root, tmp_path, 300)
    w = worker(mlverify_proc, redis_server, pg_url, policy, root)
    bf = subprocess.Popen(
        [sys.executable, "-m", "mlverify", "backfill", str(root), "--queue", redis_server.url,
         "--store", pg_url, "--policy", str(policy), "--max-outstanding", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: len(verdicts(pg_url)) >= 5, 120, "the first verdicts")
    redis_server.stop()
    time.sleep(2)
    during = len(verdicts(pg_url))
    redis_server.start()
    _, err = bf.communicate(timeout=600)
    assert bf.returncode == 0, err
    found = verdicts(pg_url)
    assert len(found) > during
    check_verdicts(found, expect)  # one verdict per model, each correct: none lost
    assert w.stop() == 0
    # delivery is at-least-once: a job in flight when Redis went away may be delivered
    # again and judged twice; the store kept the first verdict (checked above), and no
    # more can be in flight than the back-fill keeps outstanding
    twice = [r for r in w.records() if "decided twice" in str(r.get("msg"))]
    assert len(twice) <= 60, len(twice)
    assert all("kept the first" in str(r.get("msg")) for r in twice)


def test_sigterm_finishes_the_job_in_flight_and_metrics(
    tmp_path: Path, redis_server: Redis, pg_url: str, mlverify_proc: Callable[..., Proc]
) -> None:
    """SIGTERM to `mlverify worker` while it judges a large model: the job is finished
    (within --grace), its verdict stored, the exit clean; /metrics counted the job."""
    import urllib.request

    from tests.integrations.conftest import free_port

    root = tmp_path / "models"
    root.mkdir()
    policy, expect = corpus(root, tmp_path, 3)
    port = free_port()
    w = worker(mlverify_proc, redis_server, pg_url, policy, root, "--metrics-port", str(port))
    r = run("backfill", str(root), "--queue", redis_server.url, "--store", pg_url,
            "--policy", str(policy), "--no-wait")  # fmt: skip
    assert r.returncode == 0, r.stderr
    big = str(root / "m0000-big")
    wait_for(lambda: any(x.get("msg") == "job started" and x.get("ref") == big
                         for x in w.records()), 120, "the large job to start")  # fmt: skip
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(120) == 0
    assert any(v["ref"] == big and v["allowed"] is True for v in verdicts(pg_url))
    # a new worker takes what is left and two models added since; its metrics count what
    # it decided (the first one may have judged the small models beside the large one)
    for name in ("late-1", "late-2"):
        shutil.copytree(root / "m0001", root / name)
    r = run("backfill", str(root), "--queue", redis_server.url, "--store", pg_url,
            "--policy", str(policy), "--no-wait")  # fmt: skip
    assert r.returncode == 0, r.stderr
    first = {str(x["pid"]) for x in w.records() if x.get("msg") == "worker process started"}
    w2 = worker(mlverify_proc, redis_server, pg_url, policy, root, "--metrics-port", str(port))
    wait_for(lambda: len(verdicts(pg_url)) == 5, 120, "the other jobs")
    theirs = [v for v in verdicts(pg_url) if str(v["decided_by"]).rsplit(":", 1)[1] not in first]
    assert len(theirs) >= 2 and all(v["allowed"] is True for v in theirs)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert f'mlverify_jobs_total{{outcome="allowed"}} {len(theirs)}.0' in text, text
    assert "mlverify_queue_depth" in text and "mlverify_job_seconds_bucket" in text
    assert w2.stop() == 0
    assert expect  # the corpus held the large model, a clean one and a malicious one


def test_a_worker_process_stops_when_its_supervisor_is_killed(
    tmp_path: Path, redis_server: Redis, pg_url: str, mlverify_proc: Callable[..., Proc]
) -> None:
    """SIGKILL to `mlverify worker` (it cannot tell its processes): each worker process
    notices its parent is gone and stops, rather than judge on unsupervised."""
    import os

    root = tmp_path / "models"
    root.mkdir()
    policy, _ = corpus(root, tmp_path, 1)
    w = worker(mlverify_proc, redis_server, pg_url, policy, root)
    pids = [int(str(r["pid"])) for r in w.records() if r.get("msg") == "worker process ready"]
    assert pids
    w.proc.kill()
    w.proc.wait(10)

    def gone() -> bool:
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            with open(f"/proc/{pid}/stat") as f:  # reaped by init: a zombie is gone too
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    return False
        return True

    wait_for(gone, 30, "the orphaned worker processes to stop")
