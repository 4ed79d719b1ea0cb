"""Red-team r4 against ``mlverify serve`` (a real process, a real registry on loopback):

- a1: a verdict cached under one tag's name was served for another tag's name;
- a1b: registry pushes were judged without their tag (the release policy never applied);
- a8: pushed manifests with a ``subject`` or an image config were never judged;
- suspected: pushes tagged ``quarantined-*`` were skipped entirely;
- a6: Kubernetes objects naming a model other than by ``storageUri`` were admitted unjudged.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.core.helpers import run
from tests.integrations.conftest import (
    EVIL_PICKLE,
    Registry,
    Server,
    free_port,
    make_evil_model,
)
from tests.integrations.conftest import oci_registry as OciRegistry

HEAD = "apiVersion: mlverify.dev/v1\nkind: Policy\n"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _wait(pred: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def _policy(directory: Path, name: str, body: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.yaml").write_text(HEAD + f"metadata: {{name: {name}}}\nspec:\n{body}")


def _push(capsys: pytest.CaptureFixture[str], model: Path, target: str) -> str:
    r = run(capsys, "oci", "push", model, target)
    assert r.code == 0, r.err
    return r.out.strip().rsplit("@", 1)[1]


def _retag(registry: Registry, repo: str, digest: str, tag: str) -> None:
    reg = OciRegistry(registry.host)
    data, media, _ = reg.get_manifest(repo, digest)
    reg.push_manifest(repo, tag, data, media)


def _review(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u1", "operation": "CREATE", "object": obj},
    }


def _admit(srv: Server, obj: dict[str, Any]) -> dict[str, Any]:
    code, _, doc = srv.request("POST", "/k8s/validate", _review(obj))
    assert code == 200, doc
    return dict(doc["response"])


def _verdicts(srv: Server) -> dict[str, bool]:
    _, _, doc = srv.request("GET", "/v1/verdicts")
    return {v["ref"]: v["allowed"] for v in doc["verdicts"]}


# ------------------------------------------------------------------ a1: the cache key


def test_a_verdict_is_cached_under_the_name_it_was_judged_by(
    serve_factory: Callable[..., Server],
    registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One digest, tags ``dev-1`` (a warn policy) and ``release-1`` (enforced): the
    dev verdict was answered, cached, for the release name and the bare digest, and to
    the Kubernetes webhook."""
    repo = "r4cache/m"
    digest = _push(capsys, make_evil_model(tmp_path), f"oci://{registry.host}/{repo}:dev-1")
    _retag(registry, repo, digest, "release-1")
    pols = tmp_path / "pols"
    _policy(pols, "dev", "  mode: warn\n  match: {paths: ['oci://*:dev-*']}\n")
    _policy(pols, "release", "  match: {paths: ['oci://*:release-*']}\n"
            "  scan: {max_severity: low}\n")  # fmt: skip
    srv = serve_factory("--registry", registry.host, "--policy", str(pols))
    base = f"oci://{registry.host}/{repo}"

    code, _, dev = srv.request("POST", "/v1/check", {"ref": f"{base}:dev-1@{digest}"})
    assert code == 200 and dev["allowed"] is True, dev
    code, _, again = srv.request("POST", "/v1/check", {"ref": f"{base}:dev-1@{digest}"})
    assert again["cached"] is True and again["allowed"] is True  # the cache still works

    response = _admit(srv, {"kind": "InferenceService", "spec": {"predictor": {"model": {
        "storageUri": f"{base}:release-1@{digest}"}}}})  # fmt: skip
    assert response["allowed"] is False, response
    code, _, release = srv.request("POST", "/v1/check", {"ref": f"{base}:release-1@{digest}"})
    assert release["allowed"] is False, release
    assert [d["policy"] for d in release["decisions"]] == ["release"]
    code, _, bare = srv.request("POST", "/v1/check", {"ref": f"{base}@{digest}"})
    assert bare["cached"] is False, bare  # judged under its own name
    # a host spelt otherwise is the same name: the same cached verdict
    upper = f"oci://{registry.host.upper()}/{repo}:release-1@{digest}"
    code, _, spelt = srv.request("POST", "/v1/check", {"ref": upper})
    assert code == 200 and spelt["cached"] is True and spelt["allowed"] is False, spelt


# ------------------------------------------------------------------ registry events


@pytest.fixture
def notified(
    serve_factory: Callable[..., Server],
    registry_factory: Callable[..., Registry],
    tmp_path: Path,
) -> Callable[..., tuple[Registry, Server]]:
    def start(mode: str, pols: Path) -> tuple[Registry, Server]:
        port = free_port()
        reg = registry_factory(notify=f"http://127.0.0.1:{port}/registry/events")
        srv = serve_factory("--registry", reg.host, "--quarantine", mode, "--policy",
                            str(pols), "--retry-backoff", "0.2", port=port)  # fmt: skip
        return reg, srv

    return start


def test_pushes_are_judged_by_the_tag_pushed(
    notified: Callable[..., tuple[Registry, Server]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """r4 a1b: a push of ``:release-1`` was judged as ``oci://H/R@D``, where only the
    lenient catch-all applies: not quarantined. Each tag's name is judged now."""
    pols = tmp_path / "pols"
    _policy(pols, "everything", "  mode: warn\n")
    _policy(pols, "release", "  match: {paths: ['oci://*:release-*']}\n"
            "  scan: {max_severity: low}\n")  # fmt: skip
    reg, srv = notified("tag", pols)
    repo = "r4push/m"
    base = f"oci://{reg.host}/{repo}"
    digest = _push(capsys, make_evil_model(tmp_path), f"{base}:dev-2")
    assert _wait(lambda: f"{base}:dev-2@{digest}" in _verdicts(srv)), srv.log.read_text()
    _retag(reg, repo, digest, "release-1")  # one digest, a second tag: judged by its name
    oci = OciRegistry(reg.host)
    mark = "quarantined-" + digest.split(":", 1)[1]
    assert _wait(lambda: oci.manifest_exists(repo, mark)), srv.log.read_text()[-3000:]
    verdicts = _verdicts(srv)
    assert verdicts[f"{base}:dev-2@{digest}"] is True  # warn only
    assert verdicts[f"{base}:release-1@{digest}"] is False
    time.sleep(1)  # our own quarantine tag's push is not judged again
    assert f"{base}:{mark}@{digest}" not in _verdicts(srv)


def _blob(reg: OciRegistry, repo: str, data: bytes, media: str, **extra: Any) -> dict[str, Any]:
    reg.push_blob(repo, data)
    return {"mediaType": media, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data), **extra}  # fmt: skip


def _manifest(reg: OciRegistry, repo: str, tag: str, doc: dict[str, Any]) -> str:
    return reg.push_manifest(repo, tag, json.dumps(doc).encode(), OCI_MANIFEST)


def test_every_manifest_with_content_is_judged_at_the_door(
    notified: Callable[..., tuple[Registry, Server]],
    tmp_path: Path,
) -> None:
    """r4 a8: a manifest with a ``subject``, or an image config (KServe modelcars are
    images), was skipped as 'not a model'; a push tagged ``quarantined-*`` was skipped
    too. Each is judged and (here) deleted now; a signature attached to a model is
    evidence, not judged on its own."""
    from mlverify._internal.sources.oci import SIGSTORE_BUNDLE, attach

    pols = tmp_path / "pols"
    _policy(pols, "everything", "  signatures: {required: false}\n  scan: {max_severity: low}\n")
    reg, srv = notified("delete", pols)
    oci = OciRegistry(reg.host)
    nothing = "sha256:" + hashlib.sha256(b"no such manifest").hexdigest()
    empty = _blob(oci, "r4door/sub", b"{}", "application/vnd.oci.empty.v1+json")
    evil_layer = {"org.opencontainers.image.title": "model.pkl"}
    with_subject = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.cncf.model.manifest.v1+json", "config": empty,
        "layers": [_blob(oci, "r4door/sub", EVIL_PICKLE, "application/vnd.cncf.model.weight.v1.raw",
                         annotations=evil_layer)],
        "subject": {"mediaType": OCI_MANIFEST, "digest": nothing, "size": 2},
    }  # fmt: skip
    sub = _manifest(oci, "r4door/sub", "v1", with_subject)

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        info = tarfile.TarInfo("models/model.pkl")
        info.size = len(EVIL_PICKLE)
        tf.addfile(info, io.BytesIO(EVIL_PICKLE))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()  # fmt: skip
    image = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": _blob(oci, "r4door/image", config, "application/vnd.oci.image.config.v1+json"),
        "layers": [_blob(oci, "r4door/image", gzip.compress(tar.getvalue()),
                         "application/vnd.oci.image.layer.v1.tar+gzip")],
    }  # fmt: skip
    img = _manifest(oci, "r4door/image", "v1", image)

    evil_cfg = _blob(oci, "r4door/named", b"{}", "application/vnd.oci.empty.v1+json")
    named = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": evil_cfg,
        "layers": [_blob(oci, "r4door/named", EVIL_PICKLE, "application/octet-stream",
                         annotations=evil_layer)],
    }  # fmt: skip
    quarantined_named = _manifest(oci, "r4door/named", "quarantined-by-the-pusher", named)

    bundle = json.dumps({"mediaType": SIGSTORE_BUNDLE, "dsseEnvelope": {}}).encode()
    sig = attach(oci, "r4door/sig", nothing, 2, bundle)

    def gone(repo: str, digest: str) -> Callable[[], bool]:
        return lambda: not oci.manifest_exists(repo, digest)

    log = srv.log
    assert _wait(gone("r4door/sub", sub)), log.read_text()[-3000:]
    assert _wait(gone("r4door/image", img)), log.read_text()[-3000:]
    assert _wait(gone("r4door/named", quarantined_named)), log.read_text()[-3000:]

    def noted() -> bool:
        return any(
            json.loads(x).get("msg") == "event: signatures or attestations only, not judged"
            for x in log.read_text().splitlines()
            if x.startswith("{")
        )

    assert _wait(noted), log.read_text()[-3000:]
    assert oci.manifest_exists("r4door/sig", sig)


# ------------------------------------------------------------------ a6: Kubernetes


def test_every_way_kubernetes_names_a_model_is_judged_or_denied(
    serve_factory: Callable[..., Server],
    registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """r4 a6: a custom container's ``STORAGE_URI``, a ``storage`` spec, KServe's pod
    annotation and a non-string ``storageUri`` were answered allowed, unjudged."""
    digest = _push(capsys, make_evil_model(tmp_path), f"oci://{registry.host}/r4k8s/m:v1")
    evil = f"oci://{registry.host}/r4k8s/m@{digest}"
    srv = serve_factory("--registry", registry.host, "--policy", "builtin:default",
                        "--require-digest", "--check-timeout", "30")  # fmt: skip
    isvc = "InferenceService"
    env = [{"name": "STORAGE_URI", "value": evil}]
    objects: dict[str, dict[str, Any]] = {
        "storageUri": {"kind": isvc, "spec": {"predictor": {"model": {"storageUri": evil}}}},
        "STORAGE_URI": {"kind": isvc, "spec": {"predictor": {"containers": [
            {"name": "kserve-container", "image": "x", "env": env}]}}},
        "storageUris": {"kind": isvc, "spec": {"predictor": {"model": {"storageUris": [
            {"uri": evil, "mountPath": "/mnt/models/a"}]}}}},
        "annotation": {"kind": "Pod", "metadata": {"annotations": {
            "internal.serving.kserve.io/storage-initializer-sourceuri": evil}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}},
        "storage-initializer": {"kind": "Pod", "spec": {"initContainers": [
            {"name": "storage-initializer", "image": "kserve/storage-initializer",
             "args": [evil, "/mnt/models"]}], "containers": [{"name": "c", "image": "x"}]}},
        "template": {"kind": "Deployment", "spec": {"template": {"metadata": {"annotations": {
            "internal.serving.kserve.io/storage-initializer-sourceuri": evil}}}}},
        "llm": {"kind": "LLMInferenceService", "spec": {"model": {"uri": evil}}},
    }  # fmt: skip
    for what, obj in objects.items():
        response = _admit(srv, obj)
        assert response["allowed"] is False, (what, response)
        assert evil in response["status"]["message"], (what, response)

    unresolvable: dict[str, tuple[dict[str, Any], str]] = {
        "storage spec": ({"kind": isvc, "spec": {"predictor": {"model": {"storage": {
            "key": "localOCI", "path": f"r4k8s/m@{digest}"}}}}}, "storage spec"),
        "a list": ({"kind": isvc, "spec": {"predictor": {"model": {"storageUri": [evil]}}}},
                   "not a string"),
        "valueFrom": ({"kind": isvc, "spec": {"predictor": {"containers": [{"name": "k",
            "env": [{"name": "STORAGE_URI", "valueFrom": {"secretKeyRef": {"name": "s"}}}]}]}}},
            "valueFrom"),
    }  # fmt: skip
    for what, (obj, reason) in unresolvable.items():
        response = _admit(srv, obj)
        assert response["allowed"] is False, (what, response)
        assert reason in response["status"]["message"], (what, response)

    plain = {"kind": "Pod", "spec": {"containers": [{"name": "c", "image": "nginx",
             "resources": {"requests": {"storage": "1Gi"}}}]}}  # fmt: skip
    assert _admit(srv, plain)["allowed"] is True  # names no model


def test_a_tag_pushed_over_since_is_not_the_pushed_name(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A push event names the tag it was pushed under; when the tag names another manifest
    by the time it is handled, the digest is judged under its own name (a name that does
    not hold would fail its check, and the pushed manifest would go unjudged)."""
    from mlverify._internal.serve.quarantine import judged_name, pushed_name
    from tests.integrations.conftest import make_clean_model

    def judged(tag: str, host: str = registry.host) -> str:
        name = pushed_name(host, repo, evil, tag)
        return judged_name(name, plain_http=False, retries=1, backoff=0.05)

    repo = "r4moved/m"
    evil = _push(capsys, make_evil_model(tmp_path), f"oci://{registry.host}/{repo}:t1")
    base = f"oci://{registry.host}/{repo}"
    assert judged("t1") == f"{base}:t1@{evil}"
    _push(capsys, make_clean_model(tmp_path), f"{base}:t1")  # t1 moves on
    assert judged("t1") == f"{base}@{evil}"
    assert judged("never-pushed") == f"{base}@{evil}"
    assert judged("") == f"{base}@{evil}"
    # a tag that is not one; the host in its one spelling
    assert judged("no/such", registry.host.upper()) == f"{base}@{evil}"
