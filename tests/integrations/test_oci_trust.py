"""Issue 12 item 10: the OCI client among hostile hosts, against the real registry behind
a scripted one on loopback: credentials bound to their host, token realms, redirects,
no oracle in error messages, bounded pulls."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlverify._internal.errors import MlverifyError
from mlverify._internal.sources.oci import _Redirects, is_internal
from tests.integrations.conftest import Registry, make_clean_model
from tests.integrations.conftest import oci_pull as pull
from tests.integrations.conftest import oci_registry as OciRegistry
from tests.integrations.registry_proxy import Proxy, running
from tests.integrations.test_oci import oras_push


@pytest.fixture(scope="module")
def model_ref(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    oras_push(registry, make_clean_model(tmp_path_factory.mktemp("m"), "clean"), "trust/m:v1")
    return "trust/m:v1"


@pytest.fixture
def proxy(registry: Registry) -> Iterator[Proxy]:
    with running(Proxy(registry.host)) as p:
        yield p


@pytest.fixture
def elsewhere() -> Iterator[Proxy]:
    """Another host (port) that records what it is sent and answers 200 with junk."""
    p = Proxy("unused")
    p.script = lambda h: (200, {"Content-Type": "application/json"}, b'{"token": "stolen"}')
    with running(p) as q:
        yield q


def _pull(proxy: Proxy, ref: str, tmp_path: Path) -> None:
    pull(f"oci://{proxy.host}/{ref}", tmp_path / "pulled")


def _auths(proxy: Proxy) -> list[str]:
    return [h.get("Authorization", "") for _, _, h in proxy.seen]


def test_credentials_go_to_their_host_only(
    proxy: Proxy, model_ref: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLVERIFY_OCI_AUTH_FILE", str(tmp_path / "none.json"))
    monkeypatch.setenv("MLVERIFY_OCI_USERNAME", "alice")
    monkeypatch.setenv("MLVERIFY_OCI_PASSWORD", "s3cret")
    with pytest.raises(MlverifyError, match="MLVERIFY_OCI_REGISTRY"):
        _pull(proxy, model_ref, tmp_path)
    monkeypatch.setenv("MLVERIFY_OCI_REGISTRY", "registry.example.com")
    _pull(proxy, model_ref, tmp_path / "a")
    assert proxy.seen and not any(_auths(proxy))
    proxy.seen.clear()
    monkeypatch.setenv("MLVERIFY_OCI_REGISTRY", proxy.host)
    _pull(proxy, model_ref, tmp_path / "b")
    assert all(a.startswith("Basic ") for a in _auths(proxy))


def test_docker_config_credentials_are_per_host(
    proxy: Proxy, model_ref: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = base64.b64encode(b"bob:pw").decode()
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {"other.example:443": {"auth": auth}}}))
    monkeypatch.setenv("MLVERIFY_OCI_AUTH_FILE", str(cfg))
    _pull(proxy, model_ref, tmp_path / "a")
    assert not any(_auths(proxy))
    cfg.write_text(json.dumps({"auths": {proxy.host: {"auth": auth}}}))
    proxy.seen.clear()
    _pull(proxy, model_ref, tmp_path / "b")
    assert set(_auths(proxy)) == {f"Basic {auth}"}


def test_a_token_realm_on_another_host_gets_nothing(
    proxy: Proxy,
    elsewhere: Proxy,
    model_ref: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLVERIFY_OCI_REGISTRY", proxy.host)
    monkeypatch.setenv("MLVERIFY_OCI_USERNAME", "alice")
    monkeypatch.setenv("MLVERIFY_OCI_PASSWORD", "s3cret")
    challenge = f'Bearer realm="http://{elsewhere.host}/token",service="reg",scope="x"'
    proxy.script = lambda h: (401, {"WWW-Authenticate": challenge}, b"{}")
    with pytest.raises(MlverifyError, match="HTTP 401"):
        _pull(proxy, model_ref, tmp_path)
    assert elsewhere.seen == []


def test_redirects_only_for_blobs_without_credentials_and_no_oracle(
    proxy: Proxy,
    elsewhere: Proxy,
    model_ref: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLVERIFY_OCI_REGISTRY", proxy.host)
    monkeypatch.setenv("MLVERIFY_OCI_USERNAME", "alice")
    monkeypatch.setenv("MLVERIFY_OCI_PASSWORD", "s3cret")
    secret = b'{"internal": "metadata the attacker wants to learn about"}'
    elsewhere.script = lambda h: (200, {"Content-Type": "text/plain"}, secret)
    to = f"http://{elsewhere.host}/latest/meta-data"

    def redirect_manifests(h: object) -> tuple[int, dict[str, str], bytes] | None:
        return (302, {"Location": to}, b"") if "/manifests/" in h.path else None  # type: ignore[attr-defined]

    proxy.script = redirect_manifests
    with pytest.raises(MlverifyError, match="only blob downloads may be redirected"):
        _pull(proxy, model_ref, tmp_path / "a")
    assert elsewhere.seen == []

    def redirect_blobs(h: object) -> tuple[int, dict[str, str], bytes] | None:
        return (307, {"Location": to}, b"") if "/blobs/" in h.path else None  # type: ignore[attr-defined]

    proxy.script = redirect_blobs
    with pytest.raises(MlverifyError) as err:
        _pull(proxy, model_ref, tmp_path / "b")
    text = str(err.value)
    assert "does not match" in text
    assert hashlib.sha256(secret).hexdigest() not in text
    # The size as a number of its own: the port in the message may contain its digits.
    assert not re.search(rf"(?<![\w.:]){len(secret)}(?![\w.:])", text)
    assert elsewhere.seen and not any(_auths(elsewhere))  # followed, but without credentials


def test_redirect_targets_that_are_internal_are_refused_for_a_public_registry() -> None:
    assert is_internal("169.254.169.254") and is_internal("10.1.2.3") and is_internal("[::1]:5000")
    assert not is_internal("8.8.8.8")
    import urllib.request

    reg = OciRegistry("93.184.216.34")  # a public address, never contacted
    handler = _Redirects(reg)
    req = urllib.request.Request("https://93.184.216.34/v2/m/blobs/sha256:" + "0" * 64)
    req.mlverify_blob = True  # type: ignore[attr-defined]
    for target in ("http://169.254.169.254/latest/meta-data", "https://10.0.0.5/x",
                   "https://127.0.0.1:5000/x", "http://8.8.8.8/x"):  # fmt: skip
        with pytest.raises(MlverifyError):
            handler.redirect_request(req, None, 302, "Found", {}, target)
    assert handler.redirect_request(req, None, 302, "Found", {}, "https://8.8.8.8/x") is not None


def _push_manifest(registry: Registry, repo: str, layers: list[dict[str, object]]) -> str:
    reg = OciRegistry(registry.host)
    config = reg.push_blob(repo, b"{}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": layers,
    }
    reg.push_manifest(repo, "v1", json.dumps(manifest).encode(), manifest["mediaType"])  # type: ignore[arg-type]
    return f"oci://{registry.host}/{repo}:v1"


def test_pulls_are_bounded(registry: Registry, tmp_path: Path) -> None:
    reg = OciRegistry(registry.host)
    data = b"weights"
    digest = reg.push_blob("bounds/nosize", data)
    ref = _push_manifest(registry, "bounds/nosize", [{
        "mediaType": "application/vnd.cncf.model.weight.v1.raw", "digest": digest,
        "annotations": {"org.cncf.model.filepath": "w.bin"}}])  # fmt: skip
    with pytest.raises(MlverifyError, match="no valid size"):
        pull(ref, tmp_path / "a")
    # a gzip bomb: 64 MiB of zeros in a tar, compressed about a thousand times
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 64 << 20
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    bomb = gzip.compress(raw.getvalue(), compresslevel=9)
    digest = reg.push_blob("bounds/bomb", bomb)
    ref = _push_manifest(registry, "bounds/bomb", [{
        "mediaType": "application/vnd.cncf.model.weight.v1.tar+gzip", "digest": digest,
        "size": len(bomb)}])  # fmt: skip
    with pytest.raises(MlverifyError, match="decompression bomb"):
        pull(ref, tmp_path / "b")
    assert not (tmp_path / "b" / "bomb" / "zeros.bin").exists()
