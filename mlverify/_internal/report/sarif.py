"""SARIF 2.1.0 for GitHub code scanning.

Every result points at the file that holds it: the member file of a model directory
(relative to the working directory, which in CI is the repository root), or, for a
member of an archive, the archive file plus a logical location naming the member
(``arch.zip!inner/data.pkl``). Reasons about the artifact as a whole (signatures,
provenance, policy rules) point at the artifact. A remote reference (``oci://``,
``hf://``, ``models:/``) has no file in the repository: its files are named
``HOST/REPO@DIGEST/FILE`` (the scheme dropped, ``:`` escaped), a relative URI as
GitHub requires, with the full reference as a logical location.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from mlverify._internal.report import RenderOptions
from mlverify._internal.version import __version__

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.policy.engine import Reason
    from mlverify._internal.scan.model import ScanReport

_SCAN_SEVERITY = {"critical": "9.8", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}
_SCAN_LEVEL = {
    "critical": "error",
    "high": "error",
    "medium": "warning",
    "low": "note",
    "info": "note",
}


def is_remote(name: str) -> bool:
    """A reference, not a local path (``oci://``, ``hf://``, ``models:/``, ``runs:/``)."""
    head = name.split("/", 1)[0]
    return "://" in name or (head.endswith(":") and len(head) > 2)


def artifact_uri(name: str) -> str:
    """A relative POSIX URI for an artifact or file name (GitHub rejects absolute URIs)."""
    if is_remote(name):
        rest = name.split(":", 1)[1].lstrip("/")
        return urllib.parse.quote(rest, safe="/@-._~")
    p = name.replace(os.sep, "/")
    if os.path.isabs(p):
        try:
            p = os.path.relpath(p).replace(os.sep, "/")
        except ValueError:
            p = p.lstrip("/")
    uri = p if p.startswith("..") else str(PurePosixPath(p)).lstrip("/")
    return urllib.parse.quote(uri, safe="/@-._~")


def file_uri(artifact: str, kind: str, file: str) -> str:
    """The URI of ``file`` (a name relative to the artifact root) of ``artifact``."""
    base = artifact_uri(artifact)
    if not file or kind == "file":
        return base
    return f"{base.rstrip('/')}/{urllib.parse.quote(file, safe='/@-._~')}"


def location(uri: str, logical: str = "") -> dict[str, Any]:
    """A location GitHub accepts for a (binary) file: relative URI, line 1; ``logical``
    names a member inside it, or the reference the file belongs to."""
    loc: dict[str, Any] = {
        "physicalLocation": {
            "artifactLocation": {"uri": uri, "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": 1},
        }
    }
    if logical:
        loc["logicalLocations"] = [{"fullyQualifiedName": logical, "kind": "resource"}]
    return loc


def _logical(shown: str, member: str) -> str:
    """A logical location: the member inside an archive (``FILE!MEMBER``), or the full
    reference of a remote file; "" for a local file itself."""
    if member:
        return f"{shown}!{member}"
    return shown if is_remote(shown) else ""


def _shown(artifact: str, kind: str, file: str) -> str:
    return artifact if not file or kind == "file" else f"{artifact.rstrip('/')}/{file}"


def sarif_log(rules: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    """A SARIF 2.1.0 log with one run of mlverify (GitHub code scanning shape)."""
    ordered = sorted(rules, key=lambda r: str(r["id"]))
    index = {r["id"]: i for i, r in enumerate(ordered)}
    for result in results:
        result["ruleIndex"] = index[result["ruleId"]]
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
                        "rules": ordered,
                    }
                },
                "results": results,
            }
        ],
    }
    from mlverify._internal.atlas import add_sarif_taxonomy

    return json.dumps(add_sarif_taxonomy(doc), indent=2) + "\n"


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _policy_rule(code: str, remedy: str) -> dict[str, Any]:
    rule_id = f"MLV-{code}"
    return {
        "id": rule_id,
        "name": code.replace(".", "-"),
        "shortDescription": {"text": f"mlverify policy: {code}"},
        "fullDescription": {"text": f"mlverify policy check {code}"},
        "help": {"text": remedy or "see the message"},
        "defaultConfiguration": {"level": "error"},
        "properties": {"security-severity": "8.0", "tags": ["security"]},
    }


class SarifReporter:
    media_type = "application/sarif+json"

    def check(self, results: Sequence[CheckResult], options: RenderOptions) -> str:
        """One result per deny / warn reason (and one for an artifact not decided)."""
        from mlverify._internal.policy.engine import Reason

        rules: dict[str, dict[str, Any]] = {}
        out: list[dict[str, Any]] = []
        for r in results:
            kind = str(r.evidence.get("artifact", {}).get("kind", "directory"))
            pairs: list[tuple[str, bool, Reason]] = [
                (d.policy, d.allowed, reason) for d in r.decisions for reason in d.reasons
            ]
            if r.outcome:  # not decided: one result saying why, an error unless skipped
                level_of: Any = "info" if r.outcome == "skipped" else "deny"
                undecided = Reason(level_of, f"check.{r.outcome.replace('-', '_')}", r.message)
                pairs = [("", False, undecided)]
            for policy, allowed, reason in pairs:
                if reason.level == "info" and not r.outcome:
                    continue
                rule = rules.setdefault(
                    f"MLV-{reason.code}", _policy_rule(reason.code, reason.remedy)
                )
                level = (
                    "note"
                    if reason.level == "info"
                    else "error"
                    if reason.level == "deny" and not allowed
                    else "warning"
                )
                uri = file_uri(r.artifact, kind, reason.file)
                text = reason.message + (f" Next: {reason.remedy}." if reason.remedy else "")
                out.append(
                    {
                        "ruleId": rule["id"],
                        "level": level,
                        "message": {"text": text},
                        "locations": [
                            location(
                                uri, _logical(_shown(r.artifact, kind, reason.file), reason.member)
                            )
                        ],
                        "partialFingerprints": {
                            "primaryLocationLineHash": _fingerprint(
                                rule["id"], uri, reason.member, reason.message
                            )
                        },
                        "properties": {
                            "policy": policy,
                            "artifact": r.artifact,
                            "artifactDigest": r.evidence.get("artifact", {}).get("root_digest", ""),
                        },
                    }
                )
        return sarif_log(list(rules.values()), out)

    def scan(self, reports: Sequence[ScanReport], options: RenderOptions) -> str:
        from mlverify._internal.scan.formats import catalogue
        from mlverify._internal.scan.rules import by_id

        known = catalogue()
        rules: dict[str, dict[str, Any]] = {}
        results: list[dict[str, Any]] = []
        for r in reports:
            for f in r.findings:
                if f.rule_id not in rules:
                    # an id outside the catalogue (a component reporting a new id) is
                    # still described
                    sev = max(
                        x.severity for q in reports for x in q.findings if x.rule_id == f.rule_id
                    )
                    rule = known.get(f.rule_id) or by_id(f.rule_id, sev, f.message)
                    label = rule.severity.label
                    rules[f.rule_id] = {
                        "id": f.rule_id,
                        "name": rule.name,
                        "shortDescription": {"text": rule.summary},
                        "fullDescription": {"text": rule.summary},
                        "help": {"text": rule.help},
                        "defaultConfiguration": {"level": _SCAN_LEVEL[label]},
                        "properties": {
                            "security-severity": _SCAN_SEVERITY[label],
                            "tags": ["security", "ml-supply-chain"],
                        },
                    }
                uri = artifact_uri(r.path)
                text = f.message + (f" (via {f.chain})" if f.chain else "")
                if f.member:
                    text = f"{f.member}: {text}"
                results.append(
                    {
                        "ruleId": f.rule_id,
                        "level": _SCAN_LEVEL[f.severity.label],
                        "message": {"text": text},
                        "locations": [location(uri, _logical(r.path, f.member))],
                        "partialFingerprints": {
                            "primaryLocationLineHash": _fingerprint(
                                f.rule_id, uri, f.member, f.subject
                            )
                        },
                        "properties": {
                            "severity": f.severity.label,
                            "security-severity": _SCAN_SEVERITY[f.severity.label],
                            "member": f.member,
                            "byteOffset": f.offset,
                            "subject": f.subject,
                        },
                    }
                )
        return sarif_log(list(rules.values()), results)


REPORTER = SarifReporter()
