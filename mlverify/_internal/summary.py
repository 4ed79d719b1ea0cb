"""A Markdown summary of check results (GitHub's ``$GITHUB_STEP_SUMMARY``, PR comments)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlverify._internal.text import shown

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult

_ICON = {"deny": ":x:", "warn": ":warning:", "info": ":white_check_mark:"}


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, no newlines, no raw HTML)."""
    return (
        shown(text.replace("\r", " ").replace("\n", " "))
        .replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


def check_markdown(results: Sequence[CheckResult], *, title: str = "mlverify check") -> str:
    """A verdict table, then the deny / warn reasons of each artifact with their remedies."""
    denied = sum(1 for r in results if r.exit_code)
    lines = [
        f"## {title}",
        "",
        f"**{len(results) - denied} allowed, {denied} denied** of {len(results)} artifact(s).",
        "",
    ]
    if not results:
        return "\n".join([*lines, "Nothing was checked.", ""])
    lines += ["| Artifact | Verdict | Policy | Digest |", "|---|---|---|---|"]
    for r in results:
        if r.outcome:
            verdict = {"error": ":x: **error**", "skipped": ":warning: skipped"}.get(
                r.outcome, ":x: **denied** (not fetched)"
            )
            lines.append(f"| `{_cell(r.artifact)}` | {verdict} | none | `` |")
        for d in r.decisions:
            if d.allowed and d.would_deny:
                verdict = ":warning: allowed (warn mode)"
            else:
                verdict = ":white_check_mark: allowed" if d.allowed else ":x: **denied**"
            digest = str(r.evidence.get("artifact", {}).get("root_digest", ""))
            lines.append(
                f"| `{_cell(r.artifact)}` | {verdict} | {_cell(d.policy or 'none')} | "
                f"`{_cell(digest[:19])}` |"
            )
    details = [
        (r, reason)
        for r in results
        for d in r.decisions
        for reason in d.reasons
        if reason.level != "info"
    ]
    from mlverify._internal.policy.engine import Reason

    details += [(r, Reason("deny", "check.error", r.message)) for r in results if r.outcome]
    if details:
        lines += ["", "### Reasons", ""]
        for r, reason in details:
            line = f"- {_ICON[reason.level]} `{_cell(r.artifact)}`: {_cell(reason.message)}"
            if reason.remedy:
                line += f" Next: {_cell(reason.remedy)}."
            lines.append(line)
    return "\n".join(lines) + "\n"
