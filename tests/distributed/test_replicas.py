"""Two `serve` replicas on one store and one queue, with real workers behind them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.distributed.conftest import Proc, Redis
from tests.distributed.test_distributed import corpus, verdicts, wait_for, worker
from tests.integrations.conftest import Server
from tests.integrations.test_serve import isvc, review

pytest.importorskip("dramatiq")
pytest.importorskip("psycopg")


def replica(serve_factory: Callable[..., Server], redis: Redis, store: str, policy: Path,
            root: Path, *extra: str) -> Server:  # fmt: skip
    return serve_factory("--queue", redis.url, "--store", store, "--policy", str(policy),
                         "--root", str(root), *extra)  # fmt: skip


def test_two_replicas_share_the_store(
    tmp_path: Path,
    redis_server: Redis,
    pg_url: str,
    mlverify_proc: Callable[..., Proc],
    serve_factory: Callable[..., Server],
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    policy, expect = corpus(root, tmp_path, 6)
    budget = 20.0
    a = replica(serve_factory, redis_server, pg_url, policy, root, "--check-timeout", str(budget))
    b = replica(serve_factory, redis_server, pg_url, policy, root, "--check-timeout", "0.5")
    refs = sorted(expect)
    # no worker yet: a miss is queued, and admission denies when its budget runs out
    t0 = time.monotonic()
    _, _, doc = b.request("POST", "/k8s/validate", review(isvc(refs[1]), uid="early"))
    assert time.monotonic() - t0 < 5
    assert doc["response"]["allowed"] is False
    assert "still running" in doc["response"]["status"]["message"]
    w = worker(mlverify_proc, redis_server, pg_url, policy, root)
    # a verdict made through one replica ...
    code, _, first = a.request("POST", "/v1/check", {"ref": refs[2]})
    assert code == 200 and first["cached"] is False
    assert first["allowed"] is (expect[refs[2]] == "clean")
    # ... is a hit on the other
    code, _, second = b.request("POST", "/v1/check", {"ref": refs[2]})
    assert code == 200 and second["cached"] is True and second["digest"] == first["digest"]
    assert second["allowed"] == first["allowed"]
    # an AdmissionReview miss, answered within the budget once the worker decided
    t0 = time.monotonic()
    _, _, doc = a.request("POST", "/k8s/validate", review(isvc(refs[0]), uid="miss"))
    took = time.monotonic() - t0
    assert took < budget and doc["response"]["uid"] == "miss"
    assert doc["response"]["allowed"] is (expect[refs[0]] == "clean"), doc
    # the malicious one is denied with its reason, through either replica
    evil = next(r for r in refs if expect[r] == "malicious")
    _, _, doc = a.request("POST", "/k8s/validate", review(isvc(evil)))
    assert (
        doc["response"]["allowed"] is False and "os.system" in doc["response"]["status"]["message"]
    )
    _, _, doc = b.request("POST", "/k8s/validate", review(isvc(evil)))
    assert (
        doc["response"]["allowed"] is False and "os.system" in doc["response"]["status"]["message"]
    )
    # the early miss was decided by the worker meanwhile: now a hit on the short budget
    wait_for(lambda: any(v["ref"] == refs[1] for v in verdicts(pg_url)), 60, "the early job")
    _, _, doc = b.request("POST", "/k8s/validate", review(isvc(refs[1]), uid="late"))
    assert doc["response"]["allowed"] is (expect[refs[1]] == "clean"), doc
    # a changed model is another artifact: judged again, not served from the old verdict
    changed = Path(refs[2]) / "config.json"
    changed.write_text('{"arch": "changed"}\n')
    code, _, third = b.request("POST", "/v1/check", {"ref": refs[2]})
    assert third["cached"] is False and third["allowed"] is False
    # both replicas list what the store holds; the metrics count hits and misses
    _, _, listed = b.request("GET", "/v1/verdicts")
    assert {v["ref"] for v in listed["verdicts"]} >= {refs[0], refs[2]}
    code, _, text = a.request("GET", "/metrics")
    assert code == 200 and 'mlverify_store_lookups_total{result="miss"}' in text
    assert w.stop() == 0
    for srv in (a, b):
        assert "Traceback" not in srv.log.read_text()
