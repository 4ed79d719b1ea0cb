"""Markdown for a pull-request comment or ``$GITHUB_STEP_SUMMARY``: the verdict, a table
of artifacts, the reasons with their remedies, and a table of scanner findings.

Everything from an artifact is escaped for a table cell: no pipes, no line breaks, no
raw HTML, and control characters shown (a file name cannot forge a row or a verdict).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlverify._internal.report import RenderOptions
from mlverify._internal.text import shown

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.scan.model import ScanReport

_ICON = {"deny": ":x:", "warn": ":warning:", "info": ":white_check_mark:"}
_MAX_ROWS = 200  #: findings listed per document; the rest are counted


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell or list item."""
    return (
        shown(str(text).replace("\r", " ").replace("\n", " "))
        .replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("`", "'")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


def code(text: object) -> str:
    """An inline code span (empty text gives an empty cell, not a broken span)."""
    escaped = cell(text)
    return f"`{escaped}`" if escaped else ""


def _where(file: str, member: str, offset: object) -> str:
    out = file + (f"!{member}" if member else "")
    return out + (f" @{offset}" if offset is not None else "")


def _findings_table(rows: list[tuple[str, str, str, str, str]], total: int) -> list[str]:
    lines = [
        "",
        "### Findings",
        "",
        "| Severity | Rule | Artifact | Where | Finding |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {s} | {r} | {code(a)} | {code(w)} | {cell(m)} |" for s, r, a, w, m in rows]
    if total > len(rows):
        lines.append(f"\n{total - len(rows)} more finding(s) not listed; see the JSON report.")
    return lines


class MarkdownReporter:
    media_type = "text/markdown; charset=utf-8"

    def check(self, results: Sequence[CheckResult], options: RenderOptions) -> str:
        from mlverify._internal.policy.engine import Reason

        denied = sum(1 for r in results if r.exit_code)
        verdict = ":x: **denied**" if denied else ":white_check_mark: **allowed**"
        lines = [
            f"## {cell(options.title or 'mlverify check')}",
            "",
            f"{verdict}: **{len(results) - denied} allowed, {denied} denied** of "
            f"{len(results)} artifact(s).",
            "",
        ]
        if not results:
            return "\n".join([*lines, "Nothing was checked.", ""])
        lines += ["| Artifact | Verdict | Policy | Digest |", "|---|---|---|---|"]
        for r in results:
            if r.outcome:
                label = {"error": ":x: **error**", "skipped": ":warning: skipped"}.get(
                    r.outcome, ":x: **denied** (not fetched)"
                )
                lines.append(f"| {code(r.artifact)} | {label} | none | |")
            digest = str(r.evidence.get("artifact", {}).get("root_digest", ""))
            for d in r.decisions:
                if d.allowed and d.would_deny:
                    label = ":warning: allowed (warn mode)"
                else:
                    label = ":white_check_mark: allowed" if d.allowed else ":x: **denied**"
                lines.append(
                    f"| {code(r.artifact)} | {label} | {cell(d.policy or 'none')} | "
                    f"{code(digest[:19])} |"
                )
        details = [
            (r, reason)
            for r in results
            for d in r.decisions
            for reason in d.reasons
            if reason.level != "info"
        ]
        details += [(r, Reason("deny", "check.error", r.message)) for r in results if r.outcome]
        if details:
            lines += ["", "### Reasons", ""]
            for r, reason in details:
                line = f"- {_ICON[reason.level]} {code(r.artifact)}: {cell(reason.message)}"
                if reason.remedy:
                    line += f" Next: {cell(reason.remedy)}."
                lines.append(line)
        findings: list[tuple[str, str, str, str, str]] = []
        total = 0
        for r in results:
            for f in r.evidence.get("findings", ()):
                total += 1
                if len(findings) < _MAX_ROWS:
                    findings.append(_finding_row(r.artifact, f))
        if findings:
            lines += _findings_table(findings, total)
        return "\n".join(lines) + "\n"

    def scan(self, reports: Sequence[ScanReport], options: RenderOptions) -> str:
        from mlverify._internal.report.text import needs_a_look, scan_summary

        with_findings = [r for r in reports if r.findings]
        icon = ":x:" if with_findings else ":white_check_mark:"
        lines = [
            f"## {cell(options.title or 'mlverify scan')}",
            "",
            f"{icon} **{len(with_findings)} file(s) with findings** of {len(reports)}: "
            f"{cell(scan_summary(reports).split(': ', 1)[1])}.",
        ]
        listed = [r for r in reports if options.show_all or needs_a_look(r)]
        if listed:
            lines += ["", "| File | Status | Formats |", "|---|---|---|"]
            lines += [
                f"| {code(r.path)} | {r.status.value} | {cell(', '.join(r.formats) or 'data')} |"
                for r in listed
            ]
        rows = [
            (
                f.severity.label,
                cell(f.rule_id),
                r.path,
                _where("", f.member, f.offset).strip(),
                f.message + (f" ({f.chain})" if f.chain else ""),
            )
            for r in reports
            for f in r.findings
        ]
        if rows:
            lines += _findings_table(rows[:_MAX_ROWS], len(rows))
        return "\n".join(lines) + "\n"


def _finding_row(artifact: str, f: dict[str, Any]) -> tuple[str, str, str, str, str]:
    message = str(f.get("message", "")) + (f" ({f['chain']})" if f.get("chain") else "")
    where = _where(str(f.get("file", "")), str(f.get("member", "")), f.get("offset"))
    return (cell(f.get("severity", "")), cell(f.get("rule_id", "")), artifact, where, message)


REPORTER = MarkdownReporter()
