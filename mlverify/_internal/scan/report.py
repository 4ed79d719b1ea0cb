"""Render scan reports as text, JSON or SARIF 2.1.0."""

from __future__ import annotations

import json

from mlverify._internal.report import relative_uri, sarif_location, sarif_log
from mlverify._internal.scan.model import ScanReport, Severity
from mlverify._internal.scan.policy import data_version
from mlverify._internal.version import __version__

_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.8",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}
_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}


def render_text(reports: list[ScanReport]) -> str:
    lines: list[str] = []
    for r in reports:
        fmts = ",".join(r.formats) or "data"
        lines.append(f"{r.path}: {r.status.value} [{fmts}]")
        for f in r.findings:
            where = f"{f.member}" if f.member else ""
            off = f"@{f.offset}" if f.offset is not None else ""
            loc = f" {where}{off}" if where or off else ""
            lines.append(f"  {f.severity.label.upper():8} {f.rule_id}{loc}: {f.message}")
            if f.chain:
                lines.append(f"           via {f.chain}")
    return "\n".join(lines) + ("\n" if lines else "")


def render_json(reports: list[ScanReport]) -> str:
    doc = {
        "tool": "mlverify",
        "version": __version__,
        "policy_version": data_version(),
        "files": [r.to_dict() for r in reports],
    }
    return json.dumps(doc, indent=2) + "\n"


def render_sarif(reports: list[ScanReport]) -> str:
    import hashlib

    from mlverify._internal.scan.formats import catalogue
    from mlverify._internal.scan.rules import by_id

    used = sorted({f.rule_id for r in reports for f in r.findings})
    index = {rid: i for i, rid in enumerate(used)}
    rules = []
    known = catalogue()
    for rid in used:
        # an id outside the catalogue (a component reporting a new id) is still described
        sev = max(f.severity for r in reports for f in r.findings if f.rule_id == rid)
        first = next(f for r in reports for f in r.findings if f.rule_id == rid)
        rule = known.get(rid) or by_id(rid, sev, first.message)
        rules.append(
            {
                "id": rid,
                "name": rule.name,
                "shortDescription": {"text": rule.summary},
                "fullDescription": {"text": rule.summary},
                "help": {"text": rule.help},
                "defaultConfiguration": {"level": _LEVEL[rule.severity]},
                "properties": {
                    "security-severity": _SECURITY_SEVERITY[rule.severity],
                    "tags": ["security", "ml-supply-chain"],
                },
            }
        )
    results = []
    for r in reports:
        for f in r.findings:
            fp = hashlib.sha256(
                f"{f.rule_id}|{relative_uri(r.path)}|{f.member}|{f.subject}".encode()
            ).hexdigest()[:32]
            text = f.message + (f" (via {f.chain})" if f.chain else "")
            if f.member:
                text = f"{f.member}: {text}"
            results.append(
                {
                    "ruleId": f.rule_id,
                    "ruleIndex": index[f.rule_id],
                    "level": _LEVEL[f.severity],
                    "message": {"text": text},
                    "locations": [sarif_location(relative_uri(r.path))],
                    "partialFingerprints": {"primaryLocationLineHash": fp},
                    "properties": {
                        "severity": f.severity.label,
                        "security-severity": _SECURITY_SEVERITY[f.severity],
                        "member": f.member,
                        "byteOffset": f.offset,
                        "subject": f.subject,
                    },
                }
            )
    return sarif_log(rules, results)
