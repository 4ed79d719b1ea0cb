"""Two `serve` replicas on one store and one queue, with real workers behind them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.distributed.conftest import Proc, Redis
from tests.distributed.test_distributed import corpus, verdicts, wait_for, worker
from tests.integrations.conftest import Registry, Server
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


def test_registry_pushes_and_harbor_across_replicas(
    tmp_path: Path,
    redis_server: Redis,
    pg_url: str,
    mlverify_proc: Callable[..., Proc],
    serve_factory: Callable[..., Server],
    registry_factory: Callable[..., Registry],
) -> None:
    """Real registry notifications to replica A become jobs; the worker decides and
    quarantines the malicious model (after the policy decision); a Harbor scan asked of
    replica B is reported by replica A; a signature attached later is another artifact."""
    from tests.integrations.conftest import free_port, make_clean_model, make_evil_model
    from tests.integrations.conftest import oci_registry as OciRegistry
    from tests.integrations.test_oci import oras_push

    port = free_port()
    reg = registry_factory(notify=f"http://127.0.0.1:{port}/registry/events")
    policy = tmp_path / "p.yaml"
    policy.write_text("apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: p\n"
                      "spec:\n  scan:\n    max_severity: low\n")  # fmt: skip
    w = mlverify_proc("worker", "--queue", redis_server.url, "--store", pg_url, "--policy",
                      str(policy), "--heartbeat-timeout", "3", "--registry", reg.host)  # fmt: skip
    common = ("--queue", redis_server.url, "--store", pg_url, "--policy", str(policy),
              "--registry", reg.host, "--quarantine", "tag")  # fmt: skip
    a = serve_factory(*common, port=port)
    b = serve_factory(*common)
    oras_push(reg, make_clean_model(tmp_path, "clean"), "models/clean:v1")
    oras_push(reg, make_evil_model(tmp_path, "evil"), "models/evil:v1")
    oci = OciRegistry(reg.host)
    clean, evil = (oci.get_manifest(f"models/{n}", "v1")[2] for n in ("clean", "evil"))
    tag = "quarantined-" + evil.split(":", 1)[1]
    wait_for(lambda: oci.manifest_exists("models/evil", tag), 120, "the quarantine tag")
    found = {str(v["ref"]): v for v in verdicts(pg_url)}  # judged by the tag pushed
    assert found[f"oci://{reg.host}/models/clean:v1@{clean}"]["allowed"] is True
    assert found[f"oci://{reg.host}/models/evil:v1@{evil}"]["allowed"] is False
    assert oci.manifest_exists("models/clean", clean)
    # Harbor: the request to B, the report from A (the request lives in the store)
    scan = {"registry": {"url": f"http://{reg.host}"},
            "artifact": {"repository": "models/evil", "digest": evil}}  # fmt: skip
    code, _, doc = b.request("POST", "/api/v1/scan", scan)
    assert code == 202
    # Harbor names the digest alone: another name than the push's, judged on its own
    wait_for(lambda: a.request("GET", f"/api/v1/scan/{doc['id']}/report")[0] == 200, 60,
             "the Harbor report")  # fmt: skip
    code, _, report = a.request("GET", f"/api/v1/scan/{doc['id']}/report")
    assert code == 200 and report["severity"] == "Critical", report
    # both replicas answer the pushed model from the store
    for srv in (a, b):
        code, _, v = srv.request(
            "POST", "/v1/check", {"ref": f"oci://{reg.host}/models/evil:v1@{evil}"}
        )
        assert v["cached"] is True and v["allowed"] is False
    # a tag is judged as the digest it names now
    code, _, v = b.request("POST", "/v1/check", {"ref": f"oci://{reg.host}/models/clean:v1"})
    assert v["allowed"] is True and v["digest"].startswith(clean)
    # attaching a manifest to a judged subject makes it another artifact: judged again
    from mlverify._internal.sources.oci import attach
    from tests.core.helpers import write_key_pair

    pinned = f"oci://{reg.host}/models/clean@{clean}"
    priv, _ = write_key_pair(tmp_path)
    sig = tmp_path / "clean.sig"
    r = subprocess.run([sys.executable, "-m", "mlverify", "sign", str(tmp_path / "clean"),
                        "--key", str(priv), "--signature", str(sig)],
                       capture_output=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    data, _, _ = oci.get_manifest("models/clean", clean)
    attach(oci, "models/clean", clean, len(data), sig.read_bytes())
    time.sleep(5.5)  # past the replica's few seconds of reuse
    code, _, v = b.request("POST", "/v1/check", {"ref": pinned})
    assert v["cached"] is False and v["digest"] != clean and v["digest"].startswith(clean + "+")
    assert w.stop() == 0
    logs = [r for srv in (a, b) for r in Proc(srv.proc, srv.log).records()]
    assert not any(r.get("level") == "error" for r in logs), [
        r for r in logs if r.get("level") == "error"
    ]


def test_tags_are_named_as_in_process(
    tmp_path: Path,
    redis_server: Redis,
    pg_url: str,
    mlverify_proc: Callable[..., Proc],
    serve_factory: Callable[..., Server],
    registry: Registry,
) -> None:
    """Policies match on names: a tag reference is judged as ``REPO:TAG@DIGEST`` (as the
    in-process service does), and its verdict is not reused for the pinned name."""
    from tests.integrations.conftest import make_evil_model
    from tests.integrations.test_oci import oras_push

    oras_push(registry, make_evil_model(tmp_path, "evil"), "names/evil:release-1")
    pols = tmp_path / "pols"
    pols.mkdir()
    head = "apiVersion: mlverify.dev/v1\nkind: Policy\n"
    (pols / "releases.yaml").write_text(
        head + "metadata: {name: releases}\nspec:\n  mode: warn\n"
        "  match: {paths: ['*:release-*']}\n"
    )
    (pols / "pinned.yaml").write_text(
        head + "metadata: {name: pinned}\nspec:\n  match: {paths: ['*/evil@sha256:*']}\n"
    )
    w = mlverify_proc("worker", "--queue", redis_server.url, "--store", pg_url,
                      "--policy", str(pols), "--registry", registry.host)  # fmt: skip
    srv = serve_factory("--queue", redis_server.url, "--store", pg_url, "--policy", str(pols),
                        "--registry", registry.host)  # fmt: skip
    tagged = f"oci://{registry.host}/names/evil:release-1"
    code, _, first = srv.request("POST", "/v1/check", {"ref": tagged})
    assert code == 200 and first["allowed"] is True, first  # only the warn policy governs
    pinned = f"oci://{registry.host}/names/evil@{first['digest']}"
    code, _, second = srv.request("POST", "/v1/check", {"ref": pinned})
    assert second["cached"] is False and second["allowed"] is False, second
    assert w.stop() == 0


def test_backfill_of_a_registry_and_of_a_hugging_face_cache(
    tmp_path: Path,
    redis_server: Redis,
    pg_url: str,
    mlverify_proc: Callable[..., Proc],
    registry: Registry,
) -> None:
    """oci://HOST: every repository's tags, resolved, model manifests once per digest under
    the pinned name; hf-cache:DIR: every snapshot. Decided by a worker with the same cache."""
    from tests.distributed.test_distributed import run
    from tests.integrations.conftest import EVIL_PICKLE, FIXTURE_MODEL, make_evil_model
    from tests.integrations.conftest import oci_registry as OciRegistry
    from tests.integrations.test_hf import add_snapshot
    from tests.integrations.test_oci import oras_push

    evil_dir = make_evil_model(tmp_path, "evil")
    oras_push(registry, evil_dir, "bf/evil:v1")
    oras_push(registry, evil_dir, "bf/evil:also-v1")  # the same digest under two tags
    oras_push(registry, FIXTURE_MODEL, "bf/clean:v1")
    oci = OciRegistry(registry.host)
    evil = oci.get_manifest("bf/evil", "v1")[2]
    clean = oci.get_manifest("bf/clean", "v1")[2]
    cache = tmp_path / "hub"
    files = {p.name: p.read_bytes() for p in FIXTURE_MODEL.iterdir()}
    add_snapshot(cache, "acme/tiny", "a" * 40, files)
    add_snapshot(cache, "acme/evil", "b" * 40, {"config.json": b"{}", "model.pkl": EVIL_PICKLE})
    env = {"HF_HUB_CACHE": str(cache)}
    w = mlverify_proc("worker", "--queue", redis_server.url, "--store", pg_url,
                      "--registry", registry.host, env=env)  # fmt: skip
    r = run("backfill", f"oci://{registry.host}/bf/evil", "--queue", redis_server.url,
            "--store", pg_url)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "1 seen" in r.stderr.strip().splitlines()[-1], r.stderr  # two tags, one digest
    r = run("backfill", f"oci://{registry.host}", "--queue", redis_server.url, "--store", pg_url)
    assert r.returncode == 0, r.stderr
    r = run("backfill", f"hf-cache:{cache}", "--queue", redis_server.url, "--store", pg_url)
    assert r.returncode == 0, r.stderr
    found = {str(v["ref"]): v["allowed"] for v in verdicts(pg_url)}
    assert found[f"oci://{registry.host}/bf/evil@{evil}"] is False
    assert found[f"oci://{registry.host}/bf/clean@{clean}"] is True
    assert found["hf://acme/tiny@" + "a" * 40] is True
    assert found["hf://acme/evil@" + "b" * 40] is False
    assert w.stop() == 0
    bad = run("backfill", "oci://host/repo:tag", "--queue", redis_server.url, "--store", pg_url)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
