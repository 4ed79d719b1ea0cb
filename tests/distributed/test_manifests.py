"""Every manifest under deploy/kubernetes/ is read into the `kubernetes` client's models,
field by field: a key the model does not have (a typo, a wrong level) is an error, as
are missing required fields; the policy in the ConfigMap parses; the images' commands
are ones `mlverify` has, with options it accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))

KINDS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"):
        "V1ValidatingWebhookConfiguration",
}  # fmt: skip


def strict(value: Any, type_name: str, where: str) -> None:
    """Every key of ``value`` is a field of the model ``type_name`` (recursively)."""
    import kubernetes.client.models as models

    if type_name.lower().startswith("list["):
        assert isinstance(value, list), f"{where}: expected a list"
        for i, item in enumerate(value):
            strict(item, type_name[5:-1], f"{where}[{i}]")
        return
    if type_name.lower().startswith(("dict(", "dict[")):
        assert isinstance(value, dict), f"{where}: expected a mapping"
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        for k, v in value.items():
            strict(v, inner, f"{where}.{k}")
        return
    cls = getattr(models, type_name, None)
    if cls is None:  # str, int, bool, object, datetime
        return
    assert isinstance(value, dict), f"{where}: expected a mapping for {type_name}"
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, v in value.items():
        assert key in by_json, f"{where}: {type_name} has no field {key!r}"
        strict(v, cls.openapi_types[by_json[key]], f"{where}.{key}")


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in MANIFESTS:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                out.append((f"{path.name}#{i}", doc))
    return out


def test_every_manifest_is_a_valid_kubernetes_object() -> None:
    pytest.importorskip("kubernetes")
    from kubernetes.client import ApiClient

    client = ApiClient()
    docs = documents()
    assert {d["kind"] for _, d in docs} >= {
        "Deployment", "Service", "ValidatingWebhookConfiguration", "StatefulSet", "ConfigMap",
    }  # fmt: skip
    for where, doc in docs:
        type_name = KINDS[(doc["apiVersion"], doc["kind"])]
        strict(doc, type_name, where)
        # the client's own deserialiser (required fields, enums with client validation)
        obj = client._ApiClient__deserialize(doc, type_name)  # type: ignore[attr-defined]
        assert obj.metadata.name, where
    serve = next(d for _, d in docs if d["metadata"]["name"] == "mlverify-serve"
                 and d["kind"] == "Deployment")  # fmt: skip
    assert serve["spec"]["replicas"] == 2
    hook = next(d for _, d in docs if d["kind"] == "ValidatingWebhookConfiguration")
    timeout = hook["webhooks"][0]["timeoutSeconds"]
    args = serve["spec"]["template"]["spec"]["containers"][0]["args"]
    budget = float(next(a for a in args if a.startswith("--check-timeout=")).split("=")[1])
    assert budget < timeout, "the replicas answer before the API server gives up"
    assert hook["webhooks"][0]["failurePolicy"] == "Fail"


def test_the_commands_and_policy_in_the_manifests_work(tmp_path: Path) -> None:
    """Each container's mlverify command and options exist (click parses them)."""
    from click.testing import CliRunner

    from mlverify._internal.cli import cli
    from mlverify._internal.policy.model import load_policy

    for where, doc in documents():
        if doc["kind"] == "ConfigMap":
            p = tmp_path / "policy.yaml"
            p.write_text(doc["data"]["policy.yaml"])
            assert load_policy(p).name == "cluster", where
        if doc["kind"] not in ("Deployment",):
            continue
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        if not container["image"].startswith("ghcr.io/mlverify/"):
            continue
        options = [re.sub(r"=.*", "", a) for a in args[1:] if a.startswith("--")]
        help_text = CliRunner().invoke(cli, [args[0], "--help"]).output
        for option in options:
            assert option in help_text, f"{where}: {args[0]} has no option {option}"
