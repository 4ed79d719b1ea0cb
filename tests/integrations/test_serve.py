"""``mlverify serve`` as a real process: generic API, Kubernetes AdmissionReview over
HTTPS (test CA), Harbor scanner flow, registry notifications from the real registry."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integrations.conftest import (
    CA,
    TOKEN,
    Registry,
    Server,
    free_port,
    make_clean_model,
    make_evil_model,
)
from tests.integrations.conftest import oci_registry as OciRegistry
from tests.integrations.test_oci import oras_push


def digest_of(registry: Registry, repo: str, tag: str) -> str:
    return OciRegistry(registry.host).get_manifest(repo, tag)[2]


@pytest.fixture(scope="module")
def models(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("serve-models")
    oras_push(registry, make_clean_model(d, "clean"), "serve/clean:v1")
    oras_push(registry, make_evil_model(d, "evil"), "serve/evil:v1")
    big = make_clean_model(d, "big")
    (big / "weights.bin").write_bytes(bytes(96 << 20))  # slow enough to see a pending scan
    oras_push(registry, big, "serve/big:v1")
    out: dict[str, str] = {}
    for name in ("clean", "evil", "big"):
        out[name] = (
            f"oci://{registry.host}/serve/{name}@{digest_of(registry, f'serve/{name}', 'v1')}"
        )
    out["clean_tag"] = f"oci://{registry.host}/serve/clean:v1"
    return out


@pytest.fixture(scope="module")
def local_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("serve-root")
    make_clean_model(d, "clean")
    make_evil_model(d, "evil")
    return d


@pytest.fixture(scope="module")
def server(
    serve_factory: Callable[..., Server], local_root: Path, request: pytest.FixtureRequest
) -> Server:
    """Models under --root; and the test registry when there is one (the tests that
    need no registry still run without it)."""
    args = ["--root", str(local_root), "--workers", "4"]
    with contextlib.suppress(pytest.skip.Exception):
        args += ["--registry", request.getfixturevalue("registry").host]
    return serve_factory(*args)


def test_refuses_to_start_without_auth(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLVERIFY_SERVE_TOKEN"}
    r = subprocess.run(
        [sys.executable, "-m", "mlverify", "serve", "--port", str(free_port())],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert r.returncode == 2
    assert "no authentication" in r.stderr and "--no-auth" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_health_auth_and_limits(server: Server) -> None:
    code, _, doc = server.request("GET", "/healthz", headers={"Authorization": ""})
    assert code == 200 and doc["status"] == "ok"
    code, hdrs, doc = server.request(
        "POST", "/v1/check", {"ref": "x"}, headers={"Authorization": ""}
    )
    assert code == 401 and "Bearer" in hdrs["www-authenticate"]
    code, _, _ = server.request(
        "POST", "/v1/check", {"ref": "x"}, headers={"Authorization": "Bearer wrong"}
    )
    assert code == 401
    # a body larger than --max-body is refused from its declared length, before it is sent
    host, port = server.base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/v1/check")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Length", str(2 << 20))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    code, _, doc = server.request("POST", "/v1/check", raw=b"{not json")
    assert code == 400
    code, _, doc = server.request("POST", "/v1/check", {"nope": 1})
    assert code == 400


def test_v1_check_paths_only_under_roots(server: Server, local_root: Path) -> None:
    root = local_root
    code, _, doc = server.request("POST", "/v1/check", {"ref": f"{root}/clean"})
    assert code == 200 and doc["allowed"] is True, doc
    code, _, doc = server.request("POST", "/v1/check", {"ref": f"{root}/evil", "evidence": True})
    assert code == 200 and doc["allowed"] is False
    assert doc["evidence"]["findings"][0]["subject"].startswith("os.system")
    for ref in ("/etc", f"{root}/../", "/etc/passwd", "file:///etc/passwd"):
        code, _, doc = server.request("POST", "/v1/check", {"ref": ref})
        assert code == 403, (ref, doc)
    code, _, doc = server.request(
        "POST", "/v1/check", {"ref": "oci://evil.example/x@sha256:" + "0" * 64}
    )
    assert code == 403 and "not configured" in doc["error"]


def test_v1_check_oci_cached_by_digest(server: Server, models: dict[str, str]) -> None:
    code, _, first = server.request("POST", "/v1/check", {"ref": models["clean"], "refresh": True})
    assert code == 200 and first["allowed"] is True and first["cached"] is False
    code, _, second = server.request("POST", "/v1/check", {"ref": models["clean"]})
    assert second["cached"] is True and second["digest"] == first["digest"]
    # a tag is resolved to its digest (and verified, not cached by tag)
    code, _, doc = server.request("POST", "/v1/check", {"ref": models["clean_tag"]})
    assert doc["allowed"] is True and models["clean"].endswith(doc["digest"])


def test_concurrent_requests(server: Server, models: dict[str, str], local_root: Path) -> None:
    refs = [models["clean"], models["evil"], f"{local_root}/clean"] * 10
    with ThreadPoolExecutor(16) as ex:
        answers = list(ex.map(lambda r: server.request("POST", "/v1/check", {"ref": r}), refs))
    assert all(code == 200 for code, _, _ in answers)
    verdicts = {ref: doc["allowed"] for ref, (_, _, doc) in zip(refs, answers, strict=True)}
    assert verdicts == {
        models["clean"]: True,
        models["evil"]: False,
        f"{local_root}/clean": True,
    }


def test_json_logs(server: Server) -> None:
    lines = [json.loads(x) for x in server.log.read_text().splitlines() if x.startswith("{")]
    requests = [x for x in lines if x["msg"] == "request"]
    assert requests and {"method", "path", "status", "ms", "client"} <= set(requests[-1])


# -- Kubernetes -----------------------------------------------------------------------


def review(obj: dict[str, Any], operation: str = "CREATE", uid: str = "u-1") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "serving.kserve.io", "version": "v1beta1", "kind": obj["kind"]},
            "resource": {"group": "serving.kserve.io", "version": "v1beta1", "resource": "x"},
            "name": "m",
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
        },
    }


def isvc(uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "m"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}},
    }


def test_admission_review_over_https(
    serve_factory: Callable[..., Server], registry: Registry, models: dict[str, str], test_ca: CA
) -> None:
    ctx = test_ca.client_context()
    srv = serve_factory(
        "--tls-cert", str(test_ca.server_cert), "--tls-key", str(test_ca.server_key),
        "--registry", registry.host, "--require-digest", "--check-timeout", "20",
        context=ctx, tls=True,
    )  # fmt: skip
    code, _, doc = srv.request("POST", "/k8s/validate", review(isvc(models["clean"]), uid="a1"))
    assert code == 200 and doc["kind"] == "AdmissionReview"
    assert doc["response"] == {
        "uid": "a1",
        "allowed": True,
        "warnings": doc["response"]["warnings"],
    }
    assert any("unsigned" in w for w in doc["response"]["warnings"])
    code, _, doc = srv.request("POST", "/k8s/validate", review(isvc(models["evil"]), uid="a2"))
    resp = doc["response"]
    assert resp["uid"] == "a2" and resp["allowed"] is False and resp["status"]["code"] == 403
    assert "os.system" in resp["status"]["message"]
    code, _, doc = srv.request("POST", "/k8s/validate", review(isvc(models["clean_tag"])))
    assert doc["response"]["allowed"] is False
    assert "not pinned by digest" in doc["response"]["status"]["message"]
    code, _, doc = srv.request("POST", "/k8s/validate", review(isvc(models["evil"]), "DELETE"))
    assert doc["response"]["allowed"] is True
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "m", "image": {"reference": models["evil"][len("oci://") :]}}],
        },
    }
    code, _, doc = srv.request("POST", "/k8s/validate", review(pod))
    assert doc["response"]["allowed"] is False
    code, _, doc = srv.request("POST", "/k8s/validate", {"kind": "AdmissionReview"})
    assert code == 400
    # plain HTTP to the TLS port does not get an answer
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(srv.base.replace("https", "http") + "/healthz", timeout=5)


def test_admission_time_budget(
    serve_factory: Callable[..., Server], registry: Registry, models: dict[str, str]
) -> None:
    """A miss that takes longer than the budget is denied ("retry"); once verified,
    the cached verdict answers at once."""
    srv = serve_factory("--registry", registry.host, "--check-timeout", "0.05")
    _, _, doc = srv.request("POST", "/k8s/validate", review(isvc(models["big"])))
    assert doc["response"]["allowed"] is False
    assert "still running" in doc["response"]["status"]["message"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _code, _, doc = srv.request("POST", "/k8s/validate", review(isvc(models["big"])))
        if doc["response"]["allowed"]:
            break
        time.sleep(0.2)
    assert doc["response"]["allowed"] is True


# -- Harbor -----------------------------------------------------------------------------


def test_harbor_scanner_adapter(server: Server, registry: Registry, models: dict[str, str]) -> None:
    code, hdrs, meta = server.request("GET", "/api/v1/metadata")
    assert code == 200 and hdrs["content-type"].startswith(
        "application/vnd.scanner.adapter.metadata+json"
    )
    assert meta["scanner"]["name"] == "mlverify" and meta["capabilities"][0]["produces_mime_types"]
    for name, expect in (("big", "Medium"), ("evil", "Critical")):
        digest = models[name].split("@", 1)[1]
        scan = {
            "registry": {"url": f"http://{registry.host}", "authorization": ""},
            "artifact": {
                "repository": f"serve/{name}",
                "digest": digest,
                "tag": "v1",
                "mime_type": "application/vnd.oci.image.manifest.v1+json",
            },
        }
        code, _, doc = server.request(
            "POST",
            "/api/v1/scan",
            scan,
            headers={
                "Content-Type": "application/vnd.scanner.adapter.scan.request+json; version=1.1"
            },
        )
        assert code == 202 and doc["id"]
        statuses = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            code, hdrs, report = server.request(
                "GET", f"/api/v1/scan/{doc['id']}/report", follow=False
            )
            statuses.append(code)
            if code == 200:
                break
            assert code == 302 and hdrs["refresh-after"] == "1"
            time.sleep(0.05)
        assert statuses[-1] == 200
        if name == "big":
            assert statuses[0] == 302  # pending first, then the report
        assert hdrs["content-type"].startswith("application/vnd.security.vulnerability.report")
        assert report["artifact"]["digest"] == digest
        assert report["severity"] in ("Unknown", "Negligible", "Low", "Medium", "High", "Critical")
        assert report["severity"] == expect  # unsigned: a warning (Medium); os.system: Critical
        for v in report["vulnerabilities"]:
            assert v["severity"] in ("Unknown", "Negligible", "Low", "Medium", "High", "Critical")
    code, _, _ = server.request("GET", "/api/v1/scan/nope/report")
    assert code == 404


# -- registry notifications ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["delete", "tag"])
def test_registry_events_quarantine(
    serve_factory: Callable[..., Server],
    registry_factory: Callable[..., Registry],
    tmp_path: Path,
    mode: str,
) -> None:
    """Real notifications from the registry: pushes verified, pulls ignored, the
    malicious model quarantined (deleted, or tagged for review)."""
    port = free_port()
    reg = registry_factory(notify=f"http://127.0.0.1:{port}/registry/events")
    srv = serve_factory("--registry", reg.host, "--quarantine", mode, port=port)
    # the digests the pushes answered: the service may quarantine the tag before a read
    clean = oras_push(reg, make_clean_model(tmp_path, "clean"), "models/clean:v1")
    evil = oras_push(reg, make_evil_model(tmp_path, "evil"), "models/evil:v1")
    assert clean.startswith("sha256:") and evil.startswith("sha256:")
    # pulls arrive as events too: they must be ignored
    OciRegistry(reg.host).get_manifest("models/clean", "v1")
    deadline = time.monotonic() + 30
    verdicts: dict[str, bool] = {}
    while time.monotonic() < deadline and len(verdicts) < 2:
        _, _, doc = srv.request("GET", "/v1/verdicts")
        verdicts = {v["digest"]: v["allowed"] for v in doc["verdicts"]}
        time.sleep(0.2)
    assert verdicts == {clean: True, evil: False}
    oci = OciRegistry(reg.host)
    quarantine_tag = "quarantined-" + evil.split(":", 1)[1]

    def quarantined() -> bool:
        if mode == "delete":
            return not oci.manifest_exists("models/evil", evil)
        return oci.manifest_exists("models/evil", quarantine_tag)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not quarantined():
        time.sleep(0.2)
    assert quarantined()
    assert oci.manifest_exists("models/clean", clean)
    if mode == "tag":
        assert oci.get_manifest("models/evil", quarantine_tag)[2] == evil
        time.sleep(0.5)  # the quarantine tag's own push event must not loop
        _, _, doc = srv.request("GET", "/v1/verdicts")
        assert len(doc["verdicts"]) == 2
    logs = [json.loads(x) for x in srv.log.read_text().splitlines() if x.startswith("{")]
    assert any(x["msg"] == "quarantined" and evil in x["ref"] for x in logs)
    assert not any(x["level"] == "error" for x in logs)
    events = [x for x in logs if x.get("path") == "/registry/events"]
    assert events and all(x["status"] == 200 for x in events)
    assert TOKEN  # the registry authenticated with the service's token (else 401 above)


def test_body_limit_without_declared_length() -> None:
    """A chunked body (no Content-Length) is cut off at the limit too."""
    import asyncio

    from starlette.requests import Request

    from mlverify._internal.serve.app import BodyTooLarge, read_json

    def request(parts: list[bytes]) -> Request:
        messages = [
            {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
            for i, p in enumerate(parts)
        ]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
        return Request(scope, receive)

    with pytest.raises(BodyTooLarge):
        asyncio.run(read_json(request([b"[" + b" " * 600, b" " * 600 + b"]"]), 1024))
    assert asyncio.run(read_json(request([b'{"a":', b" 1}"]), 1024)) == {"a": 1}


def test_mutual_tls_instead_of_token(
    serve_factory: Callable[..., Server], registry: Registry, models: dict[str, str], test_ca: CA
) -> None:
    """With --tls-client-ca no token is needed: only clients with a certificate from
    that CA get a TLS connection at all (how the Kubernetes API server calls webhooks)."""
    srv = serve_factory(
        "--tls-cert", str(test_ca.server_cert), "--tls-key", str(test_ca.server_key),
        "--tls-client-ca", str(test_ca.ca_cert), "--registry", registry.host,
        token=None, context=test_ca.client_context(with_cert=True), tls=True,
    )  # fmt: skip
    srv.headers = {}
    code, _, doc = srv.request("POST", "/k8s/validate", review(isvc(models["clean"])))
    assert code == 200 and doc["response"]["allowed"] is True
    srv.context = test_ca.client_context()  # no client certificate
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError, OSError)):
        srv.request("GET", "/v1/verdicts")
