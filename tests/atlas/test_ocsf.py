"""OCSF events from real check results, shape-checked with the py-ocsf-models classes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlverify._internal.report.ocsf import render_ocsf

pytest.importorskip("py_ocsf_models")


def validated(line: str) -> dict[str, Any]:
    """The event, after the OCSF model of its class accepted it and gave back exactly
    it: an attribute the class does not have, or a value of the wrong type, differs."""
    from py_ocsf_models.events.findings.compliance_finding import ComplianceFinding
    from py_ocsf_models.events.findings.detection_finding import DetectionFinding

    event: dict[str, Any] = json.loads(line)
    model = {2004: DetectionFinding, 2003: ComplianceFinding}[event["class_uid"]]
    again = model.model_validate(event).model_dump(mode="json", exclude_none=True)
    assert again == event
    assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]
    return event


def events(doc: dict[str, Any]) -> list[dict[str, Any]]:
    text = render_ocsf(doc)
    assert text.endswith("\n")
    return [validated(line) for line in text.splitlines()]


def test_a_dangerous_pickle(checks: dict[str, Any]) -> None:
    out = events(checks["evil"])
    findings = [e for e in out if e["class_uid"] == 2004]
    decisions = [e for e in out if e["class_uid"] == 2003]
    assert findings and len(decisions) == 1
    f = next(e for e in findings if e["metadata"]["event_code"] == "MLV101")
    root = checks["evil"]["results"][0]["evidence"]["artifact"]["root_digest"]
    assert f["resources"][0]["uid"] == f"sha256:{root}"
    assert f["resources"][0]["data"]["file"] == "model.pkl"
    assert f["finding_info"]["analytic"]["uid"] == "MLV101"
    attack = f["finding_info"]["attacks"][0]
    assert attack["technique"]["uid"] == "AML.T0011"
    assert attack["sub_technique"]["uid"] == "AML.T0011.000"
    assert attack["tactic"]["name"] == "Execution" and attack["version"] == "ATLAS 5.6.0"
    assert "https://atlas.mitre.org/mitigations/AML.M0016" in f["remediation"]["references"]
    assert f["severity_id"] >= 4
    d = decisions[0]
    assert d["compliance"]["status_id"] == 3 and d["compliance"]["control"] == "default"
    assert "scan.finding" in d["compliance"]["requirements"]
    assert "denied" in d["message"]
    uids = {a.get("sub_technique", a["technique"])["uid"] for a in d["finding_info"]["attacks"]}
    assert "AML.T0011.000" in uids


def test_fixtures_allowed_with_warning_and_tampered(checks: dict[str, Any]) -> None:
    out = events(checks["fixtures"])
    assert [e["class_uid"] for e in out] == [2003, 2003]  # no findings, two decisions
    by_name = {e["resources"][0]["name"].rsplit("/", 1)[-1]: e for e in out}
    warned = by_name["tiny-classifier"]["compliance"]
    assert warned["status_id"] == 2 and warned["requirements"] == ["signature.absent"]
    tampered = by_name["tampered-classifier"]
    assert tampered["compliance"]["status_id"] == 3
    assert "signature.mismatch" in tampered["status_detail"]
    assert "atlas:AML.M0013" in tampered["metadata"]["labels"]


def test_signed_and_allowed(checks: dict[str, Any]) -> None:
    (d,) = events(checks["signed"])
    assert d["compliance"]["status_id"] == 1 and d["severity_id"] == 1
    assert d["finding_info"]["attacks"] == []  # nothing denied or warned
    assert "signature.verified" in d["status_detail"]


def test_undecided_and_hostile_results() -> None:
    doc = {
        "results": [
            {"artifact": "oci://r/m:1", "decisions": [], "evidence": {}, "outcome": "error",
             "message": "unreachable", "status": "error"},
            {"artifact": "m", "decisions": [], "evidence": {}, "outcome": "skipped"},
            {
                "artifact": "x",
                "decisions": [{"allowed": "yes", "reasons": [{"level": "deny", "code": 5}]}],
                "evidence": {
                    "time": "yesterday",
                    "artifact": {"size": True, "formats": "p"},
                    "findings": [{"rule_id": "MLV9999", "severity": "?", "offset": 1.5}],
                },
            },
        ]
    }  # fmt: skip
    error, skipped, finding, hostile = events(doc)
    assert error["compliance"]["status_id"] == 3 and "unreachable" in error["status_detail"]
    assert skipped["compliance"]["status_id"] == 0
    assert finding["severity_id"] == 5 and finding["finding_info"]["attacks"]
    assert "offset" not in finding["resources"][0]["data"]
    assert hostile["compliance"]["status_id"] == 3  # "yes" is not true: not allowed


def test_an_unknown_attribute_would_be_caught() -> None:
    """The shape check is not vacuous: a field the class lacks fails it."""
    doc = {"results": [{"artifact": "m", "decisions": [], "evidence": {}, "outcome": "error"}]}
    line = json.loads(render_ocsf(doc))
    line["disposition_of_the_moon"] = 1
    with pytest.raises(AssertionError):
        validated(json.dumps(line))
