"""OCSF 1.5 events from a check JSON document, as JSON lines a SIEM ingests.

- one **Detection Finding** (class 2004) per scanner finding: the rule as the analytic,
  the finding's ATLAS techniques as ``finding_info.attacks`` (technique, sub-technique,
  tactic, ``version: "ATLAS 5.6.0"``), its mitigations as remediation references;
- one **Compliance Finding** (class 2003) per decision (an admission): the policy as the
  control, Pass / Warning (allowed only in warn mode, or with warnings) / Fail, every
  reason, the ATLAS techniques of the reasons that denied or warned;
- an artifact that could not be decided gets one Compliance Finding, Fail (an error and
  unfetched content are not admitted) or Unknown (skipped in a commit hook).

The artifact is the resource: ``uid`` is its OMS root digest (``sha256:...``; for a
verdict reached without evidence, the digest it names), ``name`` its reference.
Events are plain JSON built here (no OCSF library at run time); the tests check their
shape with the ``py-ocsf-models`` classes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from mlverify._internal import atlas
from mlverify._internal.report.document import DocumentReporter
from mlverify._internal.version import __version__

OCSF_VERSION = "1.5.0"
_SEVERITY = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_SEVERITY_NAME = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
_COMPLIANCE = {0: "Unknown", 1: "Pass", 2: "Warning", 3: "Fail"}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _millis(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 time (UTC when no offset); now when unreadable."""
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        stamp = dt.datetime.now(dt.timezone.utc)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return int(stamp.timestamp() * 1000)


def attacks(refs: atlas.AtlasRefs) -> list[dict[str, Any]]:
    """OCSF ``attack`` objects for ATLAS techniques: one per technique and tactic."""
    data = atlas.atlas_data()
    version = f"ATLAS {atlas.atlas_version()}"
    out = []
    for t in refs.techniques:
        entry = data["techniques"][t.id]
        parent = entry["parent"]
        if parent:
            p = data["techniques"][parent]
            base: dict[str, Any] = {
                "technique": {"uid": parent, "name": p["name"], "src_url": p["url"]},
                "sub_technique": {"uid": t.id, "name": entry["short_name"], "src_url": t.url},
            }
        else:
            base = {"technique": {"uid": t.id, "name": entry["name"], "src_url": t.url}}
        for tactic in entry["tactics"] or [""]:
            a = {**base, "version": version}
            if tactic:
                a["tactic"] = {
                    "uid": tactic,
                    "name": data["tactics"][tactic],
                    "src_url": f"https://atlas.mitre.org/tactics/{tactic}",
                }
            out.append(a)
    return out


def _remediation(text: str, refs: atlas.AtlasRefs) -> dict[str, Any]:
    return {"desc": text or "see the mitigations", "references": [m.url for m in refs.mitigations]}


def _labels(refs: atlas.AtlasRefs) -> list[str]:
    return [f"atlas:{i}" for i in (*refs.technique_ids, *refs.mitigation_ids)]


def _uid(*parts: object) -> str:
    return hashlib.sha256("\x00".join(map(_text, parts)).encode()).hexdigest()[:32]


def _metadata(code: str, correlation: str, uid: str, labels: list[str]) -> dict[str, Any]:
    return {
        "version": OCSF_VERSION,
        "product": {"name": "mlverify", "vendor_name": "mlverify", "version": __version__},
        "event_code": code,
        "correlation_uid": correlation,
        "uid": uid,
        "labels": labels,
    }


def _present(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without empty values; numbers only when they are integers."""
    return {
        k: v
        for k, v in data.items()
        if v not in ("", None, [])
        and (not isinstance(v, (int, float)) or (isinstance(v, int) and not isinstance(v, bool)))
    }


def _resource(result: dict[str, Any]) -> dict[str, Any]:
    art = _dict(_dict(result.get("evidence")).get("artifact"))
    root = _text(art.get("root_digest"))
    out: dict[str, Any] = {
        "name": _text(art.get("ref")) or _text(result.get("artifact")),
        "type": "AI Model",
        "data": _present(
            {
                "kind": _text(art.get("kind")),
                "formats": [_text(f) for f in _list(art.get("formats"))],
                "size": art.get("size"),
            }
        ),
    }
    if root:
        out["uid"] = f"sha256:{root}"
    elif _text(art.get("digest")):  # a verdict reached without evidence: its digest
        out["uid"] = _text(art.get("digest"))
    return out


def finding_events(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One Detection Finding per scanner finding of one check result."""
    from mlverify._internal.scan.formats import catalogue

    rules = catalogue()
    evidence = _dict(result.get("evidence"))
    time = _millis(_text(evidence.get("time")))
    resource = _resource(result)
    root = _text(resource.get("uid"))
    out = []
    for f in (_dict(x) for x in _list(evidence.get("findings"))):
        rule_id = _text(f.get("rule_id"))
        rule = rules.get(rule_id)
        refs = atlas.refs_for_rule(rule_id)
        sev = _SEVERITY.get(_text(f.get("severity")), 5)  # unknown: the worst
        where = _text(f.get("file")) + (f"!{f['member']}" if f.get("member") else "")
        uid = _uid(root, rule_id, where, f.get("offset"), f.get("subject"), f.get("message"))
        message = _text(f.get("message"))
        out.append(
            {
                "activity_id": 1,
                "activity_name": "Create",
                "category_uid": 2,
                "category_name": "Findings",
                "class_uid": 2004,
                "class_name": "Detection Finding",
                "type_uid": 200401,
                "type_name": "Detection Finding: Create",
                "severity_id": sev,
                "severity": _SEVERITY_NAME[sev],
                "status_id": 1,
                "status": "New",
                "time": time,
                "message": f"{rule_id} in {where}: {message}",
                "metadata": _metadata(rule_id, root, uid, _labels(refs)),
                "finding_info": {
                    "uid": uid,
                    "title": rule.summary if rule else f"{rule_id}: {message}",
                    "desc": message,
                    "types": ["mlverify scanner finding"],
                    "analytic": {
                        "uid": rule_id,
                        "name": rule.name if rule else rule_id.lower(),
                        "type_id": 1,
                        "type": "Rule",
                    },
                    "attacks": attacks(refs),
                },
                "resources": [
                    {
                        **resource,
                        "data": _present(
                            {
                                **resource["data"],
                                "file": _text(f.get("file")),
                                "member": _text(f.get("member")),
                                "offset": f.get("offset"),
                                "subject": _text(f.get("subject")),
                                "chain": _text(f.get("chain")),
                            }
                        ),
                    }
                ],
                "remediation": _remediation(rule.help if rule else "", refs),
            }
        )
    return out


def decision_events(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One Compliance Finding per decision (or per undecided artifact) of one result."""
    evidence = _dict(result.get("evidence"))
    time = _millis(_text(evidence.get("time")))
    resource = _resource(result)
    root = _text(resource.get("uid"))
    name = _text(resource.get("name"))
    decisions = [_dict(d) for d in _list(result.get("decisions"))]
    outcome = _text(result.get("outcome"))
    if outcome or not decisions:
        code = "check." + (outcome or "error").replace("-", "_")
        message = _text(result.get("message")) or "no decision"
        decisions = [
            {
                "policy": "",
                "mode": "enforce",
                "allowed": False,
                "skipped": outcome == "skipped",
                "reasons": [{"level": "deny", "code": code, "message": message}],
            }
        ]
    out = []
    for i, d in enumerate(decisions):
        reasons = [_dict(r) for r in _list(d.get("reasons"))]
        # what the decision rests on: deny and warn reasons (info ones are context)
        weighty = [r for r in reasons if r.get("level") in ("deny", "warn")]
        refs_each = [
            atlas.refs_for_reason_text(_text(r.get("code")), _text(r.get("message")))
            for r in weighty
        ]
        refs = atlas.merge(*refs_each) if refs_each else atlas.AtlasRefs((), (), "", True)
        allowed = d.get("allowed") is True
        denies = any(r.get("level") == "deny" for r in reasons)
        if d.get("skipped"):
            status = 0
        elif not allowed:
            status = 3
        else:
            status = 2 if weighty else 1
        policy = _text(d.get("policy")) or "(no policy)"
        verdict = "skipped" if d.get("skipped") else "allowed" if allowed else "denied"
        uid = _uid(root, name, policy, i, time, verdict)
        sev = 4 if status == 3 else 2 if status == 2 else 1
        detail = "; ".join(
            f"{_text(r.get('level'))} {_text(r.get('code'))}: {_text(r.get('message'))}"
            for r in reasons
        )
        remedies = "; ".join(_text(r.get("remedy")) for r in weighty if r.get("remedy"))
        event: dict[str, Any] = {
            "activity_id": 1,
            "activity_name": "Create",
            "category_uid": 2,
            "category_name": "Findings",
            "class_uid": 2003,
            "class_name": "Compliance Finding",
            "type_uid": 200301,
            "type_name": "Compliance Finding: Create",
            "severity_id": sev,
            "severity": _SEVERITY_NAME[sev],
            "status_id": 1,
            "status": "New",
            "status_detail": detail,
            "time": time,
            "message": f"mlverify admission: {name} {verdict} by policy {policy}"
            + (" (warn mode: would deny)" if allowed and denies else ""),
            "metadata": _metadata("decision." + verdict, root, uid, _labels(refs)),
            "compliance": {
                "control": policy,
                "standards": ["mlverify policy"],
                "status_id": status,
                "requirements": [_text(r.get("code")) for r in weighty],
                "desc": f"mode {_text(d.get('mode'))}; {len(reasons)} reason(s)",
            },
            "finding_info": {
                "uid": uid,
                "title": f"{name}: {verdict}",
                "desc": detail or "no reasons",
                "types": ["mlverify admission decision"],
                "attacks": attacks(refs),
            },
            "resources": [resource],
        }
        if remedies or refs.mitigations:
            event["remediation"] = _remediation(remedies, refs)
        out.append(event)
    return out


def events(doc: Any) -> list[dict[str, Any]]:
    """Every event of a check JSON document: per result its findings, then its decisions."""
    out = []
    for r in atlas.check_results(doc):
        out += finding_events(r)
        out += decision_events(r)
    return out


def render_ocsf(doc: dict[str, Any]) -> str:
    """The events as JSON lines (one compact object per line)."""
    return "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in events(doc))


REPORTER = DocumentReporter(render_ocsf, "application/x-ndjson", "ocsf")
