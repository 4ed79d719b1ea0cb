"""Stage 7: render check results for people (text) and tools (SARIF)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlverify._internal.text import shown
from mlverify._internal.version import __version__

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult

# Until this module becomes the report/ package (issue 10): the renderers already in
# report/ (cyclonedx, ocsf, html) import as its submodules.
__path__ = [__file__[: -len(".py")]]

_MARK = {"deny": "deny", "warn": "warn", "info": "ok  "}


def check_text(results: Sequence[CheckResult], *, explain: bool = False) -> str:
    """One verdict line per artifact, then every reason in plain words."""
    lines: list[str] = []
    for r in results:
        if r.outcome:
            label = {"error": "ERROR", "skipped": "SKIPPED"}.get(r.outcome, "DENIED")
            lines.append(f"{label}: {shown(r.artifact)}")
            lines.append(f"  {'ok  ' if r.outcome == 'skipped' else 'deny'} {shown(r.message)}")
            continue
        for d in r.decisions:
            if d.allowed and d.would_deny:
                verdict = "ALLOWED (warn mode; would be DENIED)"
            else:
                verdict = "ALLOWED" if d.allowed else "DENIED"
            policy = f"policy {shown(d.policy)}" if d.policy else "no policy"
            lines.append(f"{verdict}: {shown(r.artifact)} ({policy})")
            for reason in d.reasons:
                line = f"  {_MARK[reason.level]} {shown(reason.message)}"
                if reason.remedy and reason.level != "info":
                    line += f" -> {shown(reason.remedy)}"
                lines.append(line)
        if explain:
            lines.append("  evidence:")
            lines.extend("    " + x for x in json.dumps(r.evidence, indent=2).splitlines())
    return "\n".join(lines) + "\n"


def relative_uri(path: str) -> str:
    """A relative POSIX URI for SARIF (GitHub rejects absolute URIs with a base id)."""
    import os
    from pathlib import PurePosixPath

    p = path.replace(os.sep, "/")
    if os.path.isabs(p):
        try:
            p = os.path.relpath(p).replace(os.sep, "/")
        except ValueError:
            p = p.lstrip("/")
    return p if p.startswith("..") else str(PurePosixPath(p)).lstrip("/")


def check_sarif(results: Sequence[CheckResult]) -> str:
    """SARIF 2.1.0 for GitHub code scanning: one result per deny / warn reason."""
    rules: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for r in results:
        uri = relative_uri(r.artifact)
        pairs = [(d, reason) for d in r.decisions for reason in d.reasons]
        if r.outcome:  # not decided: one result saying why, an error unless skipped
            from mlverify._internal.policy.engine import Decision, Reason

            level_of: Any = "info" if r.outcome == "skipped" else "deny"
            why = Reason(level_of, f"check.{r.outcome.replace('-', '_')}", r.message)
            pairs = [(Decision(r.artifact, "", "", "enforce", False, (why,)), why)]
        for d, reason in pairs:
            if reason.level == "info" and not r.outcome:
                continue
            rule_id = f"MLV-{reason.code}"
            level = (
                "note"
                if reason.level == "info"
                else "error"
                if reason.level == "deny" and not d.allowed
                else "warning"
            )
            rules.setdefault(
                rule_id,
                {
                    "id": rule_id,
                    "name": reason.code.replace(".", "-"),
                    "shortDescription": {"text": f"mlverify policy: {reason.code}"},
                    "fullDescription": {"text": f"mlverify policy check {reason.code}"},
                    "help": {"text": reason.remedy or "see the message"},
                    "defaultConfiguration": {"level": "error"},
                    "properties": {"security-severity": "8.0", "tags": ["security"]},
                },
            )
            fp = hashlib.sha256(f"{rule_id}|{uri}|{reason.message}".encode()).hexdigest()[:32]
            out.append(
                {
                    "ruleId": rule_id,
                    "level": level,
                    "message": {
                        "text": reason.message
                        + (f" Next: {reason.remedy}." if reason.remedy else "")
                    },
                    "locations": [sarif_location(uri)],
                    "partialFingerprints": {"primaryLocationLineHash": fp},
                    "properties": {
                        "policy": d.policy,
                        "artifactDigest": r.evidence.get("artifact", {}).get("root_digest", ""),
                    },
                }
            )
    ordered = sorted(rules)
    for result in out:
        result["ruleIndex"] = ordered.index(result["ruleId"])
    return sarif_log([rules[k] for k in ordered], out)


def sarif_location(uri: str) -> dict[str, Any]:
    """A physical location GitHub accepts for a (binary) file: relative URI, line 1."""
    return {
        "physicalLocation": {
            "artifactLocation": {"uri": uri, "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": 1},
        }
    }


def sarif_log(rules: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    """A SARIF 2.1.0 log with one run of mlverify (GitHub code scanning shape)."""
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "mlverify",
                        "version": __version__,
                        "informationUri": "https://github.com/mlverify/mlverify",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"
