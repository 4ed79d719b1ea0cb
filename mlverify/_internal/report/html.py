"""The posture page: one self-contained HTML file over many check results.

Sections: verdict totals (and per day, as a chart), the denied artifacts with their
reasons, the top findings by rule, an ATLAS technique heat map (how many artifacts
attempted each technique, how many of those were blocked) and the policy coverage
table (``mlverify atlas``). Charts are static SVG written by matplotlib (imported here
only) with text kept as text, inlined; the page loads nothing (a Content-Security-Policy
forbids it) and runs no script. Every value from a result is escaped.

*Attempted*: a technique is attempted by an artifact when one of its scanner findings
(above info), or one of the deny reasons of its decisions (also one a warn-mode policy
only reported), maps to the technique; a warning (an unsigned model) is a gap, not an
attempt. *Blocked*: the artifact was not admitted (denied, not checkable) and a deny
reason maps to the technique. Attempted but not blocked is what got through: a warn-mode
policy, an exempted finding, a finding at or below the policy's severity limit.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from mlverify._internal import atlas
from mlverify._internal.text import shown
from mlverify._internal.version import __version__

_STATUSES = ("allowed", "denied", "error", "skipped")
_COLOURS = {"allowed": "#2e7d32", "denied": "#c62828", "error": "#6a1b9a", "skipped": "#9e9e9e"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1b1b}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#555}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:1rem}.card{border:1px solid #ccc;border-radius:6px;padding:.6rem 1rem}
.card b{display:block;font-size:1.8rem}.allowed b{color:#2e7d32}.denied b{color:#c62828}
.error b{color:#6a1b9a}.skipped b{color:#757575}code{font-size:.9em}
.enforced{background:#e8f5e9}.warn{background:#fff8e1}.absent{background:#ffebee}
svg{max-width:100%;height:auto}
"""


def _e(value: object) -> str:
    """Text for the page: control characters (terminal escapes, bidirectional overrides,
    NUL) shown as escapes, then HTML-escaped."""
    return html.escape(shown("" if value is None else str(value)), quote=True)


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _status(result: dict[str, Any]) -> str:
    s = result.get("status")
    if s in _STATUSES:
        return str(s)
    # a document without a status: what check would say (fail closed)
    return "allowed" if result.get("allowed") is True and not result.get("outcome") else "denied"


def _day(result: dict[str, Any]) -> str:
    text = _d(result.get("evidence")).get("time")
    try:
        return dt.datetime.fromisoformat(str(text)).date().isoformat()
    except ValueError:
        return "unknown"


def _weighty(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The deny and warn reasons of a result (an undecided one: its outcome)."""
    out = [
        _d(r)
        for d in _l(result.get("decisions"))
        for r in _l(_d(d).get("reasons"))
        if _d(r).get("level") in ("deny", "warn")
    ]
    if result.get("outcome"):
        code = "check." + str(result["outcome"]).replace("-", "_")
        out.append({"level": "deny", "code": code, "message": result.get("message", "")})
    return out


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


def _label(rule_id: str) -> str:
    """A rule id as a chart label: ids are short words; anything else (markup, mathtext
    ``$...$`` that matplotlib would parse) is shown as one "(unreadable rule id)" bar."""
    return rule_id if _LABEL.fullmatch(rule_id) else "(unreadable rule id)"


def _reason_refs(r: dict[str, Any]) -> atlas.AtlasRefs:
    return atlas.refs_for_reason_text(str(r.get("code", "")), str(r.get("message", "")))


# --------------------------------------------------------------------------- figures


def _svg(fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mlverify"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    start = text.find("<svg")
    return text[start:] if start >= 0 else ""


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), dpi=96)


def _over_time_svg(per_day: dict[str, Counter[str]]) -> str:
    days = sorted(per_day)
    fig = _figure(7, 2.8)
    ax = fig.add_subplot()
    bottom = [0] * len(days)
    for s in _STATUSES:
        values = [per_day[d][s] for d in days]
        if any(values):
            ax.bar(days, values, bottom=bottom, label=s, color=_COLOURS[s])
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("artifacts")
    ax.set_title("Verdicts per day")
    ax.legend(loc="upper left", fontsize="small")
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _svg(fig)


def _top_rules_svg(top: list[tuple[str, int]]) -> str:
    fig = _figure(7, 0.45 * len(top) + 1)
    ax = fig.add_subplot()
    names = [r for r, _ in top][::-1]
    ax.barh(names, [n for _, n in top][::-1], color="#c62828")
    ax.set_xlabel("findings")
    ax.set_title("Top findings by rule")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _svg(fig)


def _heatmap_svg(rows: list[tuple[str, str, int, int]]) -> str:
    """Techniques x (attempted, blocked); every cell's number is SVG text with an id."""
    fig = _figure(7, 0.42 * len(rows) + 1.2)
    ax = fig.add_subplot()
    grid = [[a, b] for _, _, a, b in rows]
    peak = max([1, *(v for row in grid for v in row)])
    ax.imshow(grid, cmap="Reds", vmin=0, vmax=peak, aspect="auto")
    ax.set_xticks([0, 1], ["attempted", "blocked"])
    ax.set_yticks(range(len(rows)), [f"{tid} {name}" for tid, name, _, _ in rows])
    ax.xaxis.tick_top()
    for y, (tid, _, attempted, blocked) in enumerate(rows):
        for x, (col, value) in enumerate((("attempted", attempted), ("blocked", blocked))):
            text = ax.text(
                x,
                y,
                str(value),
                ha="center",
                va="center",
                color="white" if value > peak / 2 else "black",
            )
            text.set_gid(f"heat-{tid}-{col}")
    ax.set_title("ATLAS techniques: attempted vs blocked (artifacts)", pad=24)
    return _svg(fig)


# --------------------------------------------------------------------------- page


def posture(docs: Sequence[Any]) -> dict[str, Any]:
    """The numbers the page shows (also useful as JSON)."""
    results = [r for d in docs for r in atlas.check_results(d)]
    totals = Counter(_status(r) for r in results)
    per_day: dict[str, Counter[str]] = {}
    rules: Counter[str] = Counter()
    attempted: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    names: dict[str, str] = {}
    denied: list[dict[str, Any]] = []
    through: list[dict[str, Any]] = []  # admitted by a warn-mode policy despite deny reasons
    for r in results:
        per_day.setdefault(_day(r), Counter())[_status(r)] += 1
        findings = [_d(f) for f in _l(_d(r.get("evidence")).get("findings"))]
        rules.update(_label(str(f.get("rule_id", ""))) for f in findings)
        reasons = _weighty(r)
        tried: set[str] = set()
        stopped: set[str] = set()
        for f in findings:
            if f.get("severity") == "info":
                continue
            for t in atlas.refs_for_rule(str(f.get("rule_id", ""))).techniques:
                tried.add(t.id)
                names[t.id] = t.name
        for reason in reasons:
            if reason.get("level") != "deny":
                continue
            for t in _reason_refs(reason).techniques:
                tried.add(t.id)
                names[t.id] = t.name
                if _status(r) != "allowed":
                    stopped.add(t.id)
        attempted.update(tried)
        blocked.update(stopped)
        admitted = _status(r) == "allowed" and any(x.get("level") == "deny" for x in reasons)
        if _status(r) in ("denied", "error") or admitted:
            (through if admitted else denied).append(
                {
                    "artifact": str(r.get("artifact", "")),
                    "digest": str(_d(_d(r.get("evidence")).get("artifact")).get("root_digest", "")),
                    "policies": sorted(
                        {str(_d(d).get("policy", "")) for d in _l(r.get("decisions"))} - {""}
                    ),
                    "reasons": [
                        {
                            "code": str(x.get("code", "")),
                            "message": str(x.get("message", "")),
                            "atlas": [t.id for t in _reason_refs(x).techniques],
                        }
                        for x in reasons
                        if x.get("level") == "deny"
                    ],
                }
            )
    return {
        "results": len(results),
        "totals": {s: totals[s] for s in _STATUSES},
        "per_day": {d: dict(c) for d, c in sorted(per_day.items())},
        "top_rules": rules.most_common(10),
        "heatmap": [
            (tid, names[tid], attempted[tid], blocked[tid])
            for tid in sorted(attempted, key=lambda t: (-attempted[t], -blocked[t], t))
        ],
        "denied": denied,
        "got_through": through,
    }


def _artifact_table(element_id: str, entries: list[dict[str, Any]], empty: str) -> str:
    if not entries:
        return f'<p id="{element_id}">{_e(empty)}</p>'
    rows = []
    for d in entries:
        reasons = "".join(
            f"<li><code>{_e(r['code'])}</code> {_e(r['message'])} "
            f"<small>[{_e(', '.join(r['atlas']))}]</small></li>"
            for r in d["reasons"]
        )
        rows.append(
            f"<tr><td><code>{_e(d['artifact'])}</code><br><small>{_e(d['digest'][:19])}"
            f"</small></td><td>{_e(', '.join(d['policies']) or '-')}</td>"
            f"<td><ul>{reasons}</ul></td></tr>"
        )
    return (
        f'<table id="{element_id}"><tr><th>Artifact</th><th>Policy</th><th>Reasons</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _coverage_table(coverage: dict[str, Any] | None) -> str:
    if not coverage:
        return "<p>No policy given.</p>"
    names = ", ".join(f"<code>{_e(p['name'])}</code>" for p in coverage["policies"])
    rows = []
    for t in coverage["techniques"]:
        cells = []
        for status in ("enforced", "warn", "absent"):
            items = "<br>".join(
                f"{_e(i['mitigation'])} {_e(i['mitigation_name'])}: {_e(i['control'])} "
                f"<small>({_e(i['line'])})</small>"
                for i in t[status]
            )
            cells.append(f'<td class="{status}">{items or "-"}</td>')
        rows.append(
            f'<tr id="coverage-{_e(t["id"])}"><td>{_e(t["id"])} {_e(t["name"])}</td>'
            f'<td class="{_e(t["status"])}">{_e(t["status"])}</td>{"".join(cells)}</tr>'
        )
    return (
        f"<p>Policies: {names} (ATLAS {_e(coverage['atlas_version'])}).</p>"
        '<table id="coverage"><tr><th>Technique</th><th>Status</th><th>Enforced</th>'
        "<th>Warn only</th><th>Absent</th></tr>" + "".join(rows) + "</table>"
    )


def render_html(
    docs: Sequence[Any],
    *,
    coverage: dict[str, Any] | None = None,
    title: str = "mlverify posture",
    generated: str | None = None,
    note: str = "",
) -> str:
    """The page for check JSON documents ``docs`` (each ``{"results": [...]}`` or one
    result); ``coverage`` is :func:`mlverify._internal.atlas.coverage.coverage_json`;
    ``note``: what the page leaves out (shown under the heading)."""
    p = posture(docs)
    generated = generated or dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    cards = "".join(
        f'<div class="card {s}" id="total-{s}"><b>{p["totals"][s]}</b>{s}</div>' for s in _STATUSES
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{p["results"]} artifact(s); generated {_e(generated)} by mlverify '
        f"{_e(__version__)}; MITRE ATLAS {_e(atlas.atlas_version())}</p>",
        f'<p class="meta" id="limit-note">{_e(note)}</p>' if note else "",
        '<h2 id="totals-heading">Verdicts</h2>',
        f'<div class="cards" id="totals">{cards}</div>',
    ]
    if p["results"]:
        counters = {d: Counter(c) for d, c in p["per_day"].items()}
        parts.append(f'<figure id="over-time">{_over_time_svg(counters)}</figure>')
    parts.append("<h2>Denied artifacts</h2>")
    parts.append(_artifact_table("denied", p["denied"], "None."))
    parts.append("<h2>Admitted despite deny reasons (warn mode)</h2>")
    parts.append(_artifact_table("got-through", p["got_through"], "None."))
    parts.append("<h2>Top findings by rule</h2>")
    if p["top_rules"]:
        parts.append(f'<figure id="top-rules">{_top_rules_svg(p["top_rules"])}</figure>')
        parts.append(
            '<table id="top-findings"><tr><th>Rule</th><th>Findings</th></tr>'
            + "".join(
                f'<tr><td>{_e(rule)}</td><td class="num">{n}</td></tr>'
                for rule, n in p["top_rules"]
            )
            + "</table>"
        )
    else:
        parts.append('<p id="top-findings">No findings.</p>')
    parts.append("<h2>ATLAS techniques: attempted and blocked</h2>")
    if p["heatmap"]:
        parts.append(f'<figure id="heatmap">{_heatmap_svg(p["heatmap"])}</figure>')
    else:
        parts.append('<p id="heatmap">Nothing attempted.</p>')
    parts.append("<h2>Policy coverage</h2>")
    parts.append(_coverage_table(coverage))
    parts.append("</body></html>")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(parts)) + "\n"
