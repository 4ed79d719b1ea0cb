"""Text for people: one verdict per artifact with every reason; for scans, the files
that need a look (findings, or not fully checked) and a summary line, every file with
``--all``. Every name from an artifact is escaped (:func:`mlverify._internal.text.shown`).
Each finding and each deny or warn reason ends with its ATLAS ids in brackets
(techniques, then mitigations: ``[AML.T0011.000 AML.T0010.003 AML.M0016]``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlverify._internal import atlas
from mlverify._internal.report import RenderOptions
from mlverify._internal.text import shown

if TYPE_CHECKING:
    from mlverify._internal.atlas import AtlasRefs
    from mlverify._internal.check import CheckResult
    from mlverify._internal.scan.model import ScanReport

_MARK = {"deny": "deny", "warn": "warn", "info": "ok  "}


def atlas_ids(refs: AtlasRefs) -> str:
    """`` [AML.T0011.000 AML.M0016]``: a finding's or reason's ATLAS techniques and
    mitigations (the ids JSON carries, from the same map), or ""."""
    ids = (*refs.technique_ids, *refs.mitigation_ids)
    return f" [{' '.join(ids)}]" if ids else ""


def needs_a_look(report: ScanReport) -> bool:
    """Shown without ``--all``: a file with any finding, or one not fully checked.
    Hidden: clean and data files without findings (counted in the summary)."""
    from mlverify._internal.scan.model import Status

    return bool(report.findings) or report.status not in (Status.CLEAN, Status.DATA)


def scan_summary(reports: Sequence[ScanReport]) -> str:
    """``N file(s): 3 clean, 1 findings`` (statuses in their fixed order)."""
    from mlverify._internal.scan.model import Status

    counts = {s: sum(r.status == s for r in reports) for s in Status}
    parts = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    return f"{len(reports)} file(s): {parts or 'none'}"


class TextReporter:
    media_type = "text/plain; charset=utf-8"

    def check(self, results: Sequence[CheckResult], options: RenderOptions) -> str:
        lines: list[str] = []
        for r in results:
            if r.outcome:
                label = {"error": "ERROR", "skipped": "SKIPPED"}.get(r.outcome, "DENIED")
                lines.append(f"{label}: {shown(r.artifact)}")
                mark = "ok  " if r.outcome == "skipped" else "deny"
                code = "check." + r.outcome.replace("-", "_")
                ids = "" if r.outcome == "skipped" else atlas_ids(atlas.refs_for_reason(code))
                lines.append(f"  {mark} {shown(r.message)}{ids}")
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
                    if reason.level != "info":
                        line += atlas_ids(atlas.refs_for_reason_text(reason.code, reason.message))
                    lines.append(line)
            if options.explain:
                lines.append("  evidence:")
                text = json.dumps(r.evidence, indent=2)  # JSON escapes control characters
                lines.extend("    " + shown(x) for x in text.splitlines())
        return "\n".join(lines) + "\n"

    def scan(self, reports: Sequence[ScanReport], options: RenderOptions) -> str:
        lines: list[str] = []
        # one file named on its own is always shown; in a directory, only what needs a look
        every = options.show_all or len(reports) == 1
        listed = [r for r in reports if every or needs_a_look(r)]
        for r in listed:
            fmts = ",".join(r.formats) or "data"
            lines.append(f"{shown(r.path)}: {r.status.value} [{shown(fmts)}]")
            for f in r.findings:
                off = f"@{f.offset}" if f.offset is not None else ""
                loc = f" {shown(f.member)}{off}" if f.member or off else ""
                ids = atlas_ids(atlas.refs_for_rule(f.rule_id))
                lines.append(
                    f"  {f.severity.label.upper():8} {f.rule_id}{loc}: {shown(f.message)}{ids}"
                )
                if f.chain:
                    lines.append(f"           via {shown(f.chain)}")
        hidden = len(reports) - len(listed)
        if hidden:  # the summary line (on stderr) counts every file
            lines.append(f"{hidden} clean or data file(s) not listed (--all lists them)")
        return "\n".join(lines) + ("\n" if lines else "")


REPORTER = TextReporter()
