"""Issue 12, the service: attacks against ``mlverify serve`` as a real process on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.core.helpers import safetensors
from tests.integrations.conftest import Server


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
