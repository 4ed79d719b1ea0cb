"""Fixtures for the integration tests: real processes on loopback.

- ``registry``: the Debian ``docker-registry`` (CNCF distribution), filesystem
  storage with deletes enabled, on a free port; skipped with the install command
  when the binary is missing.
- ``serve_process``: ``mlverify serve`` started as a real process, ready when
  ``/healthz`` answers.
- ``test_ca``: a CA and a server certificate for 127.0.0.1, made here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REGISTRY_INSTALL = "apt-get install -y --no-install-recommends docker-registry"
TOKEN = "integration-test-token-0123456789"


def oci_registry(host: str) -> Any:
    """A client of a test registry with the environment's settings (loopback is HTTP)."""
    from mlverify._internal.sources.oci import Registry
    from mlverify._internal.sources.settings import oci_from_environment

    return Registry(host, oci_from_environment())


def oci_pull(text: str, dest: Path) -> Any:
    """Pull ``text`` into ``dest`` with the environment's settings."""
    from mlverify._internal.sources.oci import pull
    from mlverify._internal.sources.settings import oci_from_environment

    return pull(text, dest, oci_from_environment())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 15, context: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclass
class Registry:
    host: str  #: 127.0.0.1:PORT
    root: Path  #: storage root directory
    log: Path

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def blob_file(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="session")
def registry_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Registry]]:
    """Start a registry; ``notify``: a URL for its notifications (with our token)."""
    binary = os.environ.get("MLVERIFY_DOCKER_REGISTRY") or shutil.which("docker-registry")
    if binary is None and os.path.exists("/usr/bin/docker-registry"):
        binary = "/usr/bin/docker-registry"
    if binary is None or not os.path.exists(binary):  # MLVERIFY_DOCKER_REGISTRY=none: skip
        pytest.skip(f"docker-registry is not installed; install it with: {REGISTRY_INSTALL}")
    procs: list[subprocess.Popen[bytes]] = []

    def start(notify: str | None = None) -> Registry:
        port = free_port()
        base = tmp_path_factory.mktemp("registry")
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {
                "filesystem": {"rootdirectory": str(base / "data")},
                "delete": {"enabled": True},
            },
            "http": {"addr": f"127.0.0.1:{port}"},
        }
        if notify:
            config["notifications"] = {
                "endpoints": [
                    {
                        "name": "mlverify",
                        "url": notify,
                        "headers": {"Authorization": [f"Bearer {TOKEN}"]},
                        "timeout": "5s",
                        "threshold": 3,
                        "backoff": "1s",
                    }
                ]
            }
        (base / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        log = base / "registry.log"
        proc = subprocess.Popen(
            [binary, "serve", str(base / "config.yml")],
            stdout=open(log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        try:
            wait_http(f"http://127.0.0.1:{port}/v2/", timeout=10)
        except OSError:
            pytest.fail(f"docker-registry did not start: {log.read_text()[-2000:]}")
        return Registry(f"127.0.0.1:{port}", base / "data", log)

    yield start
    for p in procs:
        _stop(p)


@pytest.fixture(scope="session")
def registry(registry_factory: Callable[..., Registry]) -> Registry:
    return registry_factory()


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    context: ssl.SSLContext | None = None
    headers: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {TOKEN}"})

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        follow: bool = True,
    ) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        h = {**self.headers, **(headers or {})}
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.context),
            *([] if follow else [_NoRedirect()]),
        )
        try:
            with opener.open(req, timeout=60) as resp:
                payload = resp.read()
                code, hdrs = resp.status, {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as e:
            payload, code, hdrs = e.read(), e.code, {k.lower(): v for k, v in e.headers.items()}
        try:
            doc = json.loads(payload) if payload else None
        except ValueError:
            doc = payload.decode("utf-8", "replace")
        return code, hdrs, doc


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture(scope="session")
def serve_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Server]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        *args: str,
        port: int | None = None,
        token: str | None = TOKEN,
        context: ssl.SSLContext | None = None,
        tls: bool = False,
    ) -> Server:
        port = port or free_port()
        log = tmp_path_factory.mktemp("serve") / "serve.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("MLVERIFY_SERVE_TOKEN", None)
        if token:
            env["MLVERIFY_SERVE_TOKEN"] = token
        env["XDG_CACHE_HOME"] = str(log.parent / "cache")
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlverify", "serve", "--port", str(port), *args],
            stdout=open(log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            env=env,
        )
        procs.append(proc)
        scheme = "https" if tls else "http"
        base = f"{scheme}://127.0.0.1:{port}"
        try:
            wait_http(base + "/healthz", timeout=20, context=context)
        except OSError:
            proc.poll()
            pytest.fail(f"mlverify serve did not start: {log.read_text()[-3000:]}")
        return Server(base, proc, log, context)

    yield start
    for p in procs:
        _stop(p)


@dataclass
class CA:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self, *, with_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        if with_cert:
            ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    """A CA, and a certificate it issued for 127.0.0.1 / localhost."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = tmp_path_factory.mktemp("ca")
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlverify test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlverify-webhook")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ckey = ec.generate_private_key(ec.SECP256R1())
    client = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(ckey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (d / "client.pem").write_bytes(client.public_bytes(serialization.Encoding.PEM))
    (d / "client.key").write_bytes(
        ckey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return CA(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


FIXTURE_MODEL = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "tiny-classifier"

#: a protocol-0 pickle that would run os.system('true') if loaded (never loaded here)
EVIL_PICKLE = b"cos\nsystem\n(S'true'\ntR."


def make_clean_model(root: Path, name: str = "clean") -> Path:
    model = root / name
    shutil.copytree(FIXTURE_MODEL, model)
    return model


def make_evil_model(root: Path, name: str = "evil") -> Path:
    model = root / name
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"arch": "linear"}\n')
    (model / "model.pkl").write_bytes(EVIL_PICKLE)
    return model


def write_key_policy(directory: Path, public_key: Path, name: str = "keyed") -> Path:
    policy = directory / f"{name}.yaml"
    policy.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\n"
        f"metadata:\n  name: {name}\n"
        "spec:\n  signatures:\n    required: true\n    trusted:\n"
        f"      - key: {public_key}\n  scan:\n    max_severity: low\n"
    )
    return policy


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mlflow: needs MLflow (~850 MB, own venv: MLVERIFY_MLFLOW_PYTHON); heavy tier"
    )
