"""Semantic fuzzing of the parsers of untrusted evidence, configuration and requests
(issue 12): bundles (key and certificate, parsed and verified), statements and OMS
manifests, attestation files, policies, evidence documents, and the service's routes
driven in-process (AdmissionReview, registry events, Harbor, /v1/check).

Each parser gets valid documents with one value replaced by any JSON value (wrong
types, nesting, empty, huge numbers), and random JSON: the only exception allowed
out is a :class:`MlverifyError` (a one-line "invalid" reason), never a TypeError
or KeyError that would surface as "internal error". Time-boxed: a few seconds each.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlverify._internal.errors import MlverifyError
from mlverify._internal.manifest.manifest import Manifest, Resource, Serialization

FUZZ = settings(max_examples=400, deadline=5000, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


KEY = ec.generate_private_key(ec.SECP256R1())
MANIFEST = Manifest(
    "model", Serialization(), (Resource("w.bin", "ab" * 32), Resource("c.json", "cd" * 32))
)


def _key_bundle() -> dict[str, Any]:
    from mlverify._internal.signing.keys import KeySigner
    from mlverify._internal.signing.oms import sign_manifest

    return json.loads(sign_manifest(MANIFEST, KeySigner(KEY)))


def _cert_bundle(tmp: Path) -> tuple[dict[str, Any], Path]:
    from cryptography import x509

    from mlverify._internal.signing.keys import KeySigner, load_private_key_pem
    from mlverify._internal.signing.x509 import load_certificates, sign_manifest_with_certificate
    from tests.signing.helpers import make_pki

    pki = make_pki(tmp)
    key, cert = pki.leaf("fuzz", [x509.RFC822Name("fuzz@example.com")])
    signer = KeySigner(load_private_key_pem(key.read_bytes(), where="fuzz", password=None))
    leaf = load_certificates(cert)[0]
    chain = load_certificates(pki.inter_pem)
    return json.loads(sign_manifest_with_certificate(MANIFEST, signer, leaf, chain)), pki.root_pem


BUNDLE = _key_bundle()
STATEMENT = json.loads(base64.b64decode(BUNDLE["dsseEnvelope"]["payload"]))
BUNDLE_PATHS = _paths(BUNDLE)
STATEMENT_PATHS = _paths(STATEMENT)


def _parse_and_verify(doc: Any, trust: Any) -> None:
    from mlverify._internal.signing.bundle import parse_bundle
    from mlverify._internal.signing.oms import signed_manifest
    from mlverify._internal.signing.trustset import verify_bundle

    try:
        b = parse_bundle(json.dumps(doc).encode(), source="fuzz")
        signed_manifest(b)
        verify_bundle(b, trust)
    except MlverifyError:
        pass


@FUZZ
@given(st.sampled_from(BUNDLE_PATHS), JSON)
def test_key_bundle_with_one_value_replaced(path: tuple[Any, ...], value: Any) -> None:
    from mlverify._internal.signing.keys import public_key_pem
    from mlverify._internal.signing.trust import Trust, compile_trust, trusted_key_pem

    trust = compile_trust(Trust((trusted_key_pem(public_key_pem(KEY.public_key())),)))
    _parse_and_verify(_replace(BUNDLE, path, value), trust)


@pytest.fixture(scope="module")
def cert_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any]:
    from mlverify._internal.signing.trust import Trust, compile_trust, trusted_certificate

    doc, root = _cert_bundle(tmp_path_factory.mktemp("pki"))
    signer = trusted_certificate((root,), identities=("fuzz@example.com",))
    trust = compile_trust(Trust((signer,)))
    _parse_and_verify(doc, trust)
    return doc, trust


@FUZZ
@given(data=st.data())
def test_certificate_bundle_with_one_value_replaced(
    cert_bundle: tuple[dict[str, Any], Any], data: st.DataObject
) -> None:
    doc, trust = cert_bundle
    path = data.draw(st.sampled_from(_paths(doc)))
    _parse_and_verify(_replace(doc, path, data.draw(JSON)), trust)


@FUZZ
@given(st.sampled_from(STATEMENT_PATHS), JSON)
def test_statement_with_one_value_replaced(path: tuple[Any, ...], value: Any) -> None:
    from mlverify._internal.attest.intoto import parse_statement
    from mlverify._internal.signing.statement import load_statement, manifest_from_statement

    raw = json.dumps(_replace(STATEMENT, path, value)).encode()
    with contextlib.suppress(MlverifyError):
        manifest_from_statement(load_statement(raw, where="fuzz"), where="fuzz")
    with contextlib.suppress(MlverifyError):
        parse_statement(raw, where="fuzz")


@FUZZ
@given(JSON)
def test_attestation_file_of_any_json(tmp_path_factory: Any, value: Any) -> None:
    from mlverify._internal.attest.intoto import read_attestations

    p = tmp_path_factory.mktemp("att") / "x.intoto.jsonl"
    p.write_text(json.dumps(value))
    with contextlib.suppress(MlverifyError):
        read_attestations(p)


# ------------------------------------------------------------------ policies

POLICY: dict[str, Any] = {
    "apiVersion": "mlverify.dev/v1",
    "kind": "Policy",
    "metadata": {"name": "fuzz", "description": "x"},
    "spec": {
        "mode": "enforce",
        "match": {"paths": ["models/*"], "formats": ["pickle"]},
        "signatures": {
            "required": True,
            "threshold": 2,
            "trusted": [
                {"key": "k.pub", "owner": "a", "not_before": "2026-01-01"},
                {"certificate": {"roots": ["ca.pem"], "identities": ["x@y"]}, "owner": "b"},
                {"sigstore": {"issuer": "https://i", "identity_regex": "^x$"}, "owner": "c"},
            ],
        },
        "attestations": {
            "provenance": {
                "required": True,
                "builder_ids": ["b"],
                "parameters": {"epochs": "3"},
                "datasets": [{"name": "d", "sha256": "ab" * 32}],
            }
        },
        "formats": {"allow": ["safetensors"], "allow_data": ["*.bin"], "deny": ["pickle"]},
        "scan": {"max_severity": "low", "allow_globals": ["a.b"]},
        "exemptions": [
            {"rule": "MLV101", "owner": "o", "reason": "r", "expires": "2027-01-01", "file": "x"}
        ],
        "rules": [{"name": "n", "expr": "true", "message": "m"}],
    },
}
POLICY_PATHS = _paths(POLICY)


@FUZZ
@given(st.sampled_from(POLICY_PATHS), JSON)
def test_policy_with_one_value_replaced(path: tuple[Any, ...], value: Any) -> None:
    import yaml

    from mlverify._internal.policy.model import parse_policy

    raw = yaml.safe_dump(_replace(POLICY, path, value)).encode()
    with contextlib.suppress(MlverifyError):
        parse_policy(raw, source="fuzz.yaml", base=Path("."))


@FUZZ
@given(st.binary(max_size=300))
def test_policy_of_any_bytes(raw: bytes) -> None:
    from mlverify._internal.policy.model import parse_policy

    with contextlib.suppress(MlverifyError):
        parse_policy(raw, source="fuzz.yaml", base=Path("."))


@FUZZ
@given(JSON)
def test_evidence_document_of_any_json(value: Any) -> None:
    from mlverify._internal.evidence import evidence_from_json
    from mlverify._internal.policy.engine import decide
    from mlverify._internal.policy.model import parse_policy

    policy = parse_policy(b"apiVersion: mlverify.dev/v1\nkind: Policy\n", source="p", base=Path())
    doc = {"artifact": {"ref": "m", "formats": value}, "scan_status": value, "findings": value}
    for candidate in (value, doc):
        try:
            ev = evidence_from_json(candidate) if isinstance(candidate, dict) else None
        except MlverifyError:
            continue
        if ev is not None:
            assert all(not d.allowed or d.reasons for d in decide([policy], ev))


# ------------------------------------------------------------------ the service's requests

REVIEW: dict[str, Any] = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "u",
        "operation": "CREATE",
        "object": {
            "kind": "Pod",
            "spec": {
                "volumes": [
                    {"name": "m", "image": {"reference": "reg.example/m@sha256:" + "a" * 64}}
                ],
                "predictor": {"model": {"storageUri": "hf://acme/tiny@" + "b" * 40}},
            },
        },
    },
}
EVENTS: dict[str, Any] = {
    "events": [
        {
            "action": "push",
            "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + "c" * 64,
                "repository": "m",
                "url": "http://reg.example/v2/m/manifests/x",
                "tag": "v1",
            },
        }
    ]
}
HARBOR: dict[str, Any] = {
    "registry": {"url": "http://reg.example", "authorization": "Basic x"},
    "artifact": {"repository": "m", "digest": "sha256:" + "d" * 64},
}
ROUTES = [
    ("/k8s/validate", REVIEW),
    ("/registry/events", EVENTS),
    ("/api/v1/scan", HARBOR),
    ("/v1/check", {"ref": "hf://acme/tiny@" + "e" * 40, "refresh": True, "evidence": True}),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The ASGI app with nothing it may read: no roots, no registries; hf:// from an
    empty cache (offline)."""
    import os

    from mlverify._internal.policy.model import load_policies
    from mlverify._internal.serve.app import build_app
    from mlverify._internal.serve.executors.local import in_process_service
    from mlverify._internal.serve.service import ServeConfig

    os.environ["HF_HUB_CACHE"] = str(tmp_path_factory.mktemp("hub"))
    os.environ.pop("MLVERIFY_HF_DOWNLOAD", None)
    service = in_process_service(
        ServeConfig(policies=load_policies(["builtin:default"]), workers=1)
    )
    return build_app(service, token=None)


def _call(app: Any, path: str, body: bytes) -> tuple[int, Any]:
    import asyncio

    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(payload) if payload else None


def _check_answer(path: str, body: bytes, status: int, doc: Any) -> None:
    assert status in (200, 202, 400, 403, 413, 422), (status, doc)
    if path == "/k8s/validate":
        from mlverify._internal.serve.service import references_in

        allowed = doc["response"]["allowed"]
        assert isinstance(allowed, bool) and (status == 200 or allowed is False)
        if allowed:  # nothing can be verified here (no registry, empty cache)
            req = json.loads(body)["request"]
            obj = req.get("object") or {}
            assert req.get("operation") == "DELETE" or not references_in(obj), body


@FUZZ
@given(st.sampled_from(range(len(ROUTES))), st.data())
def test_service_requests_with_one_value_replaced(
    app: Any, route: int, data: st.DataObject
) -> None:
    path, template = ROUTES[route]
    where = data.draw(st.sampled_from(_paths(template)))
    body = json.dumps(_replace(template, where, data.draw(JSON))).encode()
    _check_answer(path, body, *_call(app, path, body))


@FUZZ
@given(st.sampled_from([r[0] for r in ROUTES]), st.binary(max_size=200) | JSON.map(
    lambda v: json.dumps(v).encode()))  # fmt: skip
def test_service_requests_of_any_body(app: Any, path: str, body: bytes) -> None:
    _check_answer(path, body, *_call(app, path, body))
