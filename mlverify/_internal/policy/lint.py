"""`mlverify policy lint` and `mlverify policy test`: policies are tested code."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlverify._internal.errors import InputError, MlverifyError
from mlverify._internal.evidence import evidence_from_json
from mlverify._internal.policy.cel import CompiledRule, RuleError, unguarded_all
from mlverify._internal.policy.engine import decide
from mlverify._internal.policy.model import Policy, load_policy

#: fields CEL rules may read, by level of the evidence document
EVIDENCE_FIELDS = {
    "": {
        "schema_version", "artifact", "signatures", "attestations", "failed_attestations",
        "findings", "scan_status", "scan_counts", "unsigned_files", "environment", "time",
        "time_source",
    },
    "artifact": {"ref", "kind", "formats", "size", "root_digest", "file_count", "files_digest"},
}  # fmt: skip
_FIELD = re.compile(r"\bevidence\.(\w+)(?:\.(\w+))?")


@dataclass(frozen=True)
class LintProblem:
    level: str  #: error | warning
    message: str


def lint_policy(
    path: Path, today: dt.date | None = None
) -> tuple[Policy | None, list[LintProblem]]:
    """Every problem of a policy file; a policy with any error must not be used."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    try:
        policy = load_policy(path)
    except MlverifyError as e:
        return None, [LintProblem("error", str(e))]
    problems: list[LintProblem] = []
    for rule in policy.rules:
        try:
            CompiledRule(rule.expr)
        except RuleError as e:
            problems.append(
                LintProblem("error", f"{path}: rule {rule.name}: does not compile: {e}")
            )
            continue
        for name in unguarded_all(rule.expr):
            problems.append(
                LintProblem(
                    "error",
                    f"{path}: rule {rule.name}: {name}.all(...) is true when {name} is empty "
                    f"(vacuous truth); guard it with size({name}) > 0 &&",
                )
            )
        for m in _FIELD.finditer(rule.expr):
            top, sub = m.group(1), m.group(2)
            if top not in EVIDENCE_FIELDS[""]:
                problems.append(
                    LintProblem(
                        "error", f"{path}: rule {rule.name}: unknown evidence field {top!r}"
                    )
                )
            elif top == "artifact" and sub and sub not in EVIDENCE_FIELDS["artifact"]:
                problems.append(
                    LintProblem(
                        "error",
                        f"{path}: rule {rule.name}: unknown evidence field 'artifact.{sub}'",
                    )
                )
    for k in policy.signatures.keys:
        if k.problem:
            problems.append(LintProblem("error", f"{path}: trusted key: {k.problem}"))
    for c in policy.signatures.certificates:
        for r in c.roots:
            if not r.is_file():
                problems.append(
                    LintProblem("error", f"{path}: certificate root {r} does not exist")
                )
    for ex in policy.exemptions:
        if ex.expires < today:
            problems.append(
                LintProblem(
                    "warning",
                    f"{path}: exemption for {ex.rule} (owner {ex.owner}) expired on {ex.expires}",
                )
            )
    if policy.mode == "warn":
        problems.append(LintProblem("warning", f"{path}: mode is warn: nothing will be denied"))
    return policy, problems


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    detail: str


def run_policy_tests(directory: Path, today: dt.date | None = None) -> list[CaseResult]:
    """Run every ``*.yaml`` case file with a top-level ``cases:`` list under ``directory``.

    A case file names a ``policy`` (relative to itself) and cases, each with an
    ``evidence`` document (inline mapping or a JSON file), ``expect: allow|deny``
    and optionally ``reasons``: substrings that must appear among the reasons.
    """
    from mlverify._internal.files import read_bounded
    from mlverify._internal.policy.model import MAX_POLICY_BYTES, load_yaml

    files = sorted(p for p in directory.rglob("*.yaml") if p.is_file())
    results: list[CaseResult] = []
    found = False
    for f in files:
        raw = read_bounded(f, what="policy test case file", limit=4 * MAX_POLICY_BYTES)
        doc = load_yaml(raw, source=str(f))
        if not isinstance(doc, dict) or "cases" not in doc:
            continue
        found = True
        policy = load_policy(f.parent / str(doc.get("policy", "")))
        case_today = doc.get("today", today)
        if isinstance(case_today, str):
            case_today = dt.date.fromisoformat(case_today)
        for i, case in enumerate(doc["cases"] or []):
            results.append(_run_case(f, i, case, policy, case_today))
    if not found:
        raise InputError(f"{directory}: no case file (a *.yaml with a 'cases:' list) found")
    return results


def _run_case(f: Path, i: int, case: Any, policy: Policy, today: dt.date | None) -> CaseResult:
    name = f"{f.name}: {case.get('name', f'case {i}')}" if isinstance(case, dict) else f"{f}: {i}"
    if not isinstance(case, dict) or case.get("expect") not in ("allow", "deny"):
        return CaseResult(name, False, "a case needs 'evidence' and 'expect: allow|deny'")
    ev_raw = case.get("evidence")
    try:
        if isinstance(ev_raw, str):
            ev_raw = json.loads((f.parent / ev_raw).read_text())
        if not isinstance(ev_raw, dict):
            raise ValueError("'evidence' must be a mapping or a JSON file name")
        evidence = evidence_from_json(ev_raw)
    except (OSError, ValueError, MlverifyError) as e:
        return CaseResult(name, False, f"evidence unreadable: {e}")
    decisions = decide([policy], evidence, today)
    allowed = all(d.allowed for d in decisions)
    got = "allow" if allowed else "deny"
    reasons = [r.message for d in decisions for r in d.reasons]
    if got != case["expect"]:
        return CaseResult(
            name, False, f"expected {case['expect']}, got {got}: {'; '.join(reasons)}"
        )
    missing = [s for s in case.get("reasons", []) if not any(s in r for r in reasons)]
    if missing:
        return CaseResult(name, False, f"reasons lack {missing}: {'; '.join(reasons)}")
    return CaseResult(name, True, got)
