"""CycloneDX 1.6 ML-BOM from real check results, validated by cyclonedx-python-lib."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlverify._internal.report.cyclonedx import render_cyclonedx
from tests.core.helpers import run

pytest.importorskip("cyclonedx")


def validate(text: str) -> dict[str, Any]:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, str(error)[:2000]
    doc: dict[str, Any] = json.loads(text)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    return doc


def props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def test_signed_model_with_provenance(checks: dict[str, Any]) -> None:
    doc = validate(render_cyclonedx(checks["signed"]))
    model = doc["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    evidence = checks["signed"]["results"][0]["evidence"]
    files = {c["name"]: c for c in model["components"]}
    for f in evidence["artifact"]["files"]:
        assert files[f["name"]]["hashes"] == [{"alg": "SHA-256", "content": f["sha256"]}]
    p = props(model)
    assert p["mlverify:status"] == "allowed" and p["mlverify:formats"] == "safetensors"
    assert p["mlverify:signature:0:status"] == "verified"
    assert p["mlverify:signature:0:method"] == "key"
    assert p["mlverify:provenance:builder"] == "https://ci.example/train"
    assert p["mlverify:provenance:source"] == "https://git.example/acme/m"
    assert p["mlverify:oms_root_digest"] == evidence["artifact"]["root_digest"]
    assert p["mlverify:decision:0"] == "allowed by policy signed (enforce)"
    refs = {r["type"]: r["url"] for r in model["externalReferences"]}
    assert refs == {"build-system": "https://ci.example/train", "vcs": "https://git.example/acme/m"}
    # the dataset and the base model, with their digests, which the model depends on
    deps = {c["name"]: c for c in doc["components"]}
    assert deps["corpus"]["type"] == "data"
    assert deps["corpus"]["hashes"][0]["alg"] == "SHA-256"
    assert deps["base"]["type"] == "machine-learning-model"
    assert deps["base"]["hashes"] == [{"alg": "SHA-256", "content": "b" * 64}]
    (graph,) = [d for d in doc["dependencies"] if d["ref"] == model["bom-ref"]]
    assert set(graph["dependsOn"]) == {deps["corpus"]["bom-ref"], deps["base"]["bom-ref"]}
    assert "mlverify:atlas:mitigations" in props(doc["metadata"])


def test_findings_are_vulnerabilities_with_atlas_ids(checks: dict[str, Any]) -> None:
    doc = validate(render_cyclonedx(checks["evil"]))
    (v, *_) = doc["vulnerabilities"]
    assert v["id"] == "MLV101" and v["source"]["name"] == "mlverify"
    assert v["ratings"][0]["severity"] in ("critical", "high")
    p = props(v)
    assert "AML.T0011.000" in p["mlverify:atlas:techniques"].split(",")
    assert p["mlverify:atlas:mitigations"] == "AML.M0016"
    model = doc["metadata"]["component"]
    assert v["affects"][0]["ref"] == model["components"][0]["bom-ref"]  # the file itself
    assert model["hashes"][0]["alg"] == "SHA-256"  # a single file: the model's own hash
    assert props(model)["mlverify:status"] == "denied"
    reasons = [v for k, v in props(model).items() if ":reason:" in k]
    assert any("scan.finding" in r and "AML.M0016" in r for r in reasons)


def test_several_results_and_an_undecided_one(checks: dict[str, Any]) -> None:
    doc = dict(checks["fixtures"])
    undecided = {
        "artifact": "oci://example/m:1",
        "status": "error",
        "allowed": False,
        "decisions": [],
        "evidence": {},
        "outcome": "error",
        "message": "registry unreachable",
    }
    doc["results"] = [*doc["results"], undecided]
    out = validate(render_cyclonedx(doc))
    assert "component" not in out["metadata"]
    by_name = {c["name"].rsplit("/", 1)[-1]: c for c in out["components"]}
    assert set(by_name) == {"tiny-classifier", "tampered-classifier", "m:1"}
    assert props(by_name["m:1"])["mlverify:outcome_message"] == "registry unreachable"
    tampered = props(by_name["tampered-classifier"])
    assert tampered["mlverify:signature:0:status"] == "mismatch"
    # the same document renders the same BOM (serial number from the content)
    assert render_cyclonedx(doc) == render_cyclonedx(doc)


def test_hostile_document_values_do_not_break_the_bom() -> None:
    doc = {
        "results": [
            {
                "artifact": "m\x1b[31m",
                "decisions": [{"reasons": [{"code": "x"}], "allowed": "yes"}],
                "evidence": {
                    "artifact": {
                        "files": [{"name": "a", "sha256": "not-hex"}, "junk"],
                        "formats": "pickle",
                    },
                    "attestations": [
                        {
                            "predicate_type": "https://slsa.dev/provenance/v1",
                            "predicate": {"buildDefinition": {"resolvedDependencies": [1, {}]}},
                        }
                    ],
                    "findings": [{"rule_id": "MLV9999", "severity": "weird"}],
                },
            }
        ]
    }
    out = validate(render_cyclonedx(doc))
    assert out["metadata"]["component"]["components"][0].get("hashes") is None
    assert out["vulnerabilities"][0]["ratings"][0]["severity"] == "critical"


def test_bom_command(
    checks: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(capsys, "bom", "--policy", checks["policy"], checks["tmp"] / "model")
    assert r.code == 0
    validate(r.out)
    out = tmp_path / "bom.json"
    r = run(capsys, "bom", checks["tmp"] / "evil" / "model.pkl", "--output", out)
    assert r.code == 1  # denied: the exit code is check's
    assert validate(out.read_text())["vulnerabilities"]
    r = run(capsys, "bom", "--from-json", checks["results"] / "fix.json")
    assert r.code == 1 and len(validate(r.out)["components"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"nothing": 1}')
    r = run(capsys, "bom", "--from-json", bad)
    assert r.code == 2 and "bad.json" in r.err and len(r.err.strip().splitlines()) == 1
    r = run(capsys, "bom")
    assert r.code == 2 and "PATHS or --from-json" in r.err


def test_the_validator_rejects_what_the_schema_forbids() -> None:
    bad = '{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"type": "x"}]}'
    with pytest.raises(AssertionError):
        validate(bad)
