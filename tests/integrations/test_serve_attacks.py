"""Issue 12, the service: attacks against ``mlverify serve`` as a real process on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.core.helpers import safetensors
from tests.integrations.conftest import Registry, Server, make_clean_model
from tests.integrations.conftest import oci_registry as OciRegistry
from tests.integrations.registry_proxy import Proxy, running
from tests.integrations.test_oci import oras_push


@pytest.fixture(scope="module")
def attack_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("attack-root")
    model = root / "badsig"
    model.mkdir()
    safetensors(model / "w.safetensors")
    (model / "model.sig").write_text(json.dumps({"mediaType": ["x"], "dsseEnvelope": {}}))
    return root


@pytest.fixture(scope="module")
def server(serve_factory: Callable[..., Server], attack_root: Path) -> Server:
    return serve_factory("--root", str(attack_root))


# ------------------------------------------------------------------ 12: bad bodies


def test_deeply_nested_bodies_answer_400_and_admission_denies(server: Server) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    code, _, doc = server.request("POST", "/v1/check", raw=deep)
    assert code == 400 and "nested" in doc["error"], doc
    code, _, doc = server.request("POST", "/k8s/validate", raw=deep)
    assert code == 400 and doc["response"]["allowed"] is False, doc
    shallow_but_deep = {"request": {"uid": "u1", "object": {"a": [[[[[[[[[[[[]]]]]]]]]]]]}}}
    for _ in range(60):
        shallow_but_deep = {"x": shallow_but_deep}
    code, _, doc = server.request("POST", "/k8s/validate", shallow_but_deep)
    assert code == 400 and doc["response"]["allowed"] is False
    code, _, doc = server.request("POST", "/k8s/validate", {"request": {"uid": ["not", "a str"]}})
    assert code == 400 and doc["response"]["allowed"] is False
    code, _, doc = server.request("POST", "/registry/events", {"events": [{"action": "push",
                                  "target": ["a list"]}]})  # fmt: skip
    assert code == 200 and doc == {"queued": 0}
    log = server.log.read_text()
    assert "Traceback" not in log and "internal error" not in log


def test_a_signature_with_a_list_media_type_is_a_verdict_not_a_500(
    server: Server, attack_root: Path
) -> None:
    code, _, doc = server.request(
        "POST", "/v1/check", {"ref": str(attack_root / "badsig"), "evidence": True}
    )
    assert code == 200, doc
    sig = doc["evidence"]["signatures"][0]
    assert sig["status"] == "invalid" and "mediaType" in sig["reason"]


# ------------------------------------------------------------------ 8: flaky registry


def _wait(pred: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def _event(host: str, repo: str, digest: str) -> dict[str, Any]:
    return {
        "events": [
            {
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "repository": repo,
                    "url": f"http://{host}/v2/{repo}/manifests/{digest}",
                    "tag": "v1",
                },
            }
        ]
    }


@pytest.mark.parametrize("failures", [1, 1000])
def test_a_503_from_the_registry_never_quarantines(
    serve_factory: Callable[..., Server],
    registry: Registry,
    tmp_path: Path,
    failures: int,
) -> None:
    """One transient 503 during the pull once became DELETE of a good manifest, and
    the deny stayed cached. Now: retried (and judged: clean, kept); a registry that
    keeps failing gets no verdict at all, and nothing is deleted."""
    repo = f"flaky/clean{failures}"
    oras_push(registry, make_clean_model(tmp_path, "clean"), f"{repo}:v1")
    digest = OciRegistry(registry.host).get_manifest(repo, "v1")[2]
    with running(Proxy(registry.host, fail_blob_gets=failures)) as proxy:
        srv = serve_factory("--registry", proxy.host, "--quarantine", "delete",
                            "--retry-backoff", "0.2", "--event-retries", "2")  # fmt: skip
        code, _, doc = srv.request("POST", "/registry/events", _event(proxy.host, repo, digest))
        assert code == 200 and doc == {"queued": 1}

        def logged(msg: str) -> bool:
            return any(
                json.loads(x).get("msg") == msg
                for x in srv.log.read_text().splitlines()
                if x.startswith("{")
            )

        if failures == 1:
            assert _wait(lambda: bool(srv.request("GET", "/v1/verdicts")[2]["verdicts"]))
            verdicts = srv.request("GET", "/v1/verdicts")[2]["verdicts"]
            assert [v["allowed"] for v in verdicts] == [True]
        else:
            assert _wait(lambda: logged("event: not judged after retries; not quarantined"))
            assert srv.request("GET", "/v1/verdicts")[2]["verdicts"] == []
        assert not logged("quarantined")
    assert OciRegistry(registry.host).manifest_exists(repo, digest)


# ------------------------------------------------------------------ 9: slowloris


def test_slowloris_does_not_take_the_admission_path_down(
    serve_factory: Callable[..., Server],
) -> None:
    """300 connections that never finish their headers once made every request,
    /healthz included, answer 503 for as long as they were held."""
    from bench.slowloris import closed_by_server, legit, open_slow

    srv = serve_factory(
        "--no-auth", "--read-timeout", "2", "--max-client-connections", "32", token=None
    )
    port = int(srv.base.rsplit(":", 1)[1])
    socks = open_slow(port, 300)
    try:
        during = legit(port, 1.5)
        assert set(during["codes"]) == {"/healthz 200", "/k8s/validate 200"}, during
        assert during["max_ms"] < 2000
        time.sleep(3)  # past the read timeout: every attacking connection is closed
        assert closed_by_server(socks) == len(socks)
    finally:
        for s in socks:
            s.close()
    log = srv.log.read_text()
    assert "too many open connections from this client" in log
    assert "request not received in time" in log


# ------------------------------------------------------------------ 11: stale verdicts


def test_a_signature_attached_later_is_seen_and_verdicts_expire(
    serve_factory: Callable[..., Server],
    registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlverify._internal.sources.oci import attach
    from tests.core.helpers import run, write_key_pair
    from tests.integrations.conftest import write_key_policy

    model = make_clean_model(tmp_path, "late")
    r = run(capsys, "oci", "push", model, f"oci://{registry.host}/stale/late:v1")
    assert r.code == 0, r.err
    ref = r.out.strip()
    private, public = write_key_pair(tmp_path)
    policy = write_key_policy(tmp_path, public)
    srv = serve_factory("--registry", registry.host, "--policy", str(policy),
                        "--referrers-recheck", "0", "--verdict-ttl", "3")  # fmt: skip
    code, _, first = srv.request("POST", "/v1/check", {"ref": ref})
    assert code == 200 and first["allowed"] is False and "valid_until" in first
    code, _, again = srv.request("POST", "/v1/check", {"ref": ref})
    assert again["cached"] is True and again["allowed"] is False
    # the publisher attaches the signature afterwards: the old deny is stale
    sig = tmp_path / "late.sig"
    assert run(capsys, "sign", model, "--key", private, "--signature", sig).code == 0
    reg = OciRegistry(registry.host)
    data, _, digest = reg.get_manifest("stale/late", ref.rsplit("@", 1)[1])
    attach(reg, "stale/late", digest, len(data), sig.read_bytes())
    code, _, after = srv.request("POST", "/v1/check", {"ref": ref})
    assert after["cached"] is False and after["allowed"] is True, after
    code, _, hit = srv.request("POST", "/v1/check", {"ref": ref})
    assert hit["cached"] is True
    time.sleep(3.2)  # past --verdict-ttl: judged again
    code, _, expired = srv.request("POST", "/v1/check", {"ref": ref})
    assert expired["cached"] is False and expired["allowed"] is True


def test_unpinned_hf_references_are_refused(server: Server) -> None:
    code, _, doc = server.request("POST", "/v1/check", {"ref": "hf://acme/tiny"})
    assert code == 403 and "pinned to a commit" in doc["error"]
    code, _, doc = server.request("POST", "/v1/check", {"ref": "hf://acme/tiny@main"})
    assert code == 403


def test_a_verdict_reached_through_a_tag_is_not_reused_for_the_pinned_name(
    serve_factory: Callable[..., Server],
    registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.core.helpers import run
    from tests.integrations.conftest import make_evil_model

    tagged = f"oci://{registry.host}/names/evil:release-1"
    r = run(capsys, "oci", "push", make_evil_model(tmp_path, "evil"), tagged)
    assert r.code == 0, r.err
    pinned = r.out.strip()
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
    srv = serve_factory("--registry", registry.host, "--policy", str(pols))
    code, _, first = srv.request("POST", "/v1/check", {"ref": tagged})
    assert code == 200 and first["allowed"] is True  # only the warn policy governs the tag
    code, _, second = srv.request("POST", "/v1/check", {"ref": pinned})
    assert second["cached"] is False and second["allowed"] is False, second
