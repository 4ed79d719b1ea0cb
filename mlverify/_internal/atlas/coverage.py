"""What a set of policies covers, per ATLAS technique: enforced, warn-only or absent.

Each policy setting that decides something is a *control* with the ATLAS refs of the
reason codes (or scanner rules) it produces, a status and the policy line responsible:

- signatures: ``signatures.required`` denies unsigned models (else: a warning);
- provenance: ``attestations.provenance.required`` (Verify AI Artifacts) and
  ``provenance.datasets`` pinned by digest (Maintain AI Dataset Provenance);
- formats: ``formats.allow`` / ``formats.deny`` (Restrict Library Loading) and
  ``formats.allow_unsupported`` (a file the scanner cannot read);
- scanner: one control per rule: enforced when its default severity is above
  ``scan.max_severity`` (a finding at or below it is dropped without a reason: absent),
  warn-only while an unexpired exemption covers it;
- CEL rules: ``rules[]``.

A policy in ``mode: warn`` turns every enforced control into warn-only. With several
policies the strongest status wins (every governing policy must allow an artifact);
a policy with a ``match`` block only covers what it matches, and says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlverify._internal import atlas
from mlverify._internal.policy.model import SEVERITIES, Policy

Status = Literal["enforced", "warn", "absent"]
_RANK: dict[str, int] = {"absent": 0, "warn": 1, "enforced": 2}


@dataclass(frozen=True)
class Control:
    """One policy setting, what it does to the artifacts it governs, and why."""

    name: str  #: e.g. "signatures required", "scan MLV101"
    refs: atlas.AtlasRefs
    status: Status
    policy: str
    line: str  #: "default.yaml:21 spec.scan.max_severity: low" or "... (default)"
    detail: str


@dataclass(frozen=True)
class Entry:
    """A mitigation for one technique, as one control implements it."""

    mitigation: atlas.Mitigation
    control: Control


@dataclass(frozen=True)
class TechniqueCoverage:
    technique: atlas.Technique
    enforced: tuple[Entry, ...]
    warn: tuple[Entry, ...]
    absent: tuple[Entry, ...]

    @property
    def status(self) -> Status:
        return "enforced" if self.enforced else "warn" if self.warn else "absent"


# --------------------------------------------------------------------------- lines


def _key_lines(source: str) -> dict[str, int]:
    """Dotted key path (``spec.scan.max_severity``, ``spec.rules[0]``) -> 1-based line."""
    import yaml

    from mlverify._internal.errors import MlverifyError
    from mlverify._internal.files import read_bounded
    from mlverify._internal.policy.model import MAX_POLICY_BYTES

    try:
        raw = read_bounded(Path(source), what="policy file", limit=MAX_POLICY_BYTES)
        root = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
    except (MlverifyError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return {}  # the policy loaded from this file already; a change since: no lines
    out: dict[str, int] = {}

    def walk(node: Any, path: str, depth: int) -> None:
        if depth > 32:
            return
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                p = f"{path}.{key.value}" if path else str(key.value)
                out[p] = key.start_mark.line + 1
                walk(value, p, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                p = f"{path}[{i}]"
                out[p] = item.start_mark.line + 1
                walk(item, p, depth + 1)

    walk(root, "", 0)
    return out


class _Lines:
    def __init__(self, policy: Policy) -> None:
        self.name = Path(policy.source).name or policy.name
        self.lines = _key_lines(policy.source)

    def __call__(self, key: str, shown: str) -> str:
        line = self.lines.get(key)
        where = f"{self.name}:{line}" if line else self.name
        return f"{where} {key.removeprefix('spec.')}: {shown}" + ("" if line else " (default)")


# --------------------------------------------------------------------------- controls


def restrict(refs: atlas.AtlasRefs, mitigation_id: str) -> atlas.AtlasRefs:
    """``refs`` narrowed to one mitigation and the techniques ATLAS says it addresses."""
    addressed = set(atlas.atlas_data()["mitigations"][mitigation_id]["addresses"])
    return atlas.AtlasRefs(
        tuple(t for t in refs.techniques if t.id in addressed),
        tuple(m for m in refs.mitigations if m.id == mitigation_id),
        refs.profile,
        refs.mapped,
    )


def _mode(policy: Policy, status: Status) -> Status:
    return "warn" if status == "enforced" and policy.mode == "warn" else status


def policy_controls(policy: Policy, today: dt.date | None = None) -> list[Control]:
    from mlverify._internal.scan.formats import catalogue

    today = today or dt.datetime.now(dt.timezone.utc).date()
    at = _Lines(policy)
    scope = ""
    if policy.match_paths or policy.match_formats:
        scope = (
            " (only artifacts matching "
            + ", ".join([*policy.match_paths, *(f"format {f}" for f in policy.match_formats)])
            + ")"
        )
    if policy.mode == "warn":
        scope += f" [{at('spec.mode', 'warn')}: nothing is denied]"
    out: list[Control] = []

    def add(name: str, refs: atlas.AtlasRefs, status: Status, line: str, detail: str) -> None:
        out.append(Control(name, refs, _mode(policy, status), policy.name, line, detail + scope))

    sig = policy.signatures
    signers = len(sig.keys) + len(sig.certificates) + len(sig.sigstore)
    add(
        "signatures required",
        atlas.refs_for_reason("signature.absent"),
        "enforced" if sig.required else "warn",
        at("spec.signatures.required", str(sig.required).lower()),
        (
            f"an unsigned model, or one no trusted signer signed, is denied ({signers} "
            f"trusted signer(s), {sig.threshold} required)"
            if sig.required
            else "an unsigned model is allowed with a warning (a signature that does not "
            "match the files still denies)"
        ),
    )
    if sig.threshold > 1:
        add(
            "signature threshold",
            atlas.refs_for_reason("signature.threshold"),
            "enforced" if sig.required else "warn",
            at("spec.signatures.threshold", str(sig.threshold)),
            f"{sig.threshold} distinct trusted signers must sign",
        )
    prov = policy.provenance
    prov_refs = atlas.refs_for_reason("provenance.verified")
    add(
        "provenance required",
        restrict(prov_refs, "AML.M0014"),
        "enforced" if prov.required else "absent",
        at("spec.attestations.provenance.required", str(prov.required).lower()),
        (
            "verified SLSA provenance is required"
            + (f" from builder(s) {', '.join(prov.builder_ids)}" if prov.builder_ids else "")
            + (f", source {prov.source_repo}" if prov.source_repo else "")
            if prov.required
            else "provenance is not checked"
        ),
    )
    pinned = [name for name, digest in prov.datasets if digest]
    add(
        "datasets pinned",
        restrict(prov_refs, "AML.M0025"),
        "enforced" if prov.required and prov.datasets else "absent",
        at(
            "spec.attestations.provenance.datasets",
            ", ".join(n for n, _ in prov.datasets) or "none",
        ),
        (
            f"the provenance must name dataset(s) {', '.join(n for n, _ in prov.datasets)}"
            + (f" ({len(pinned)} by digest)" if pinned else "")
            if prov.required and prov.datasets
            else "no training dataset is required"
        ),
    )
    fmt_refs = atlas.refs_for_reason("format.not_allowed")
    if policy.allowed_formats:
        add(
            "formats allowed",
            fmt_refs,
            "enforced",
            at("spec.formats.allow", ", ".join(policy.allowed_formats)),
            "any other format is denied",
        )
    elif policy.denied_formats:
        add(
            "formats denied",
            fmt_refs,
            "enforced",
            at("spec.formats.deny", ", ".join(policy.denied_formats)),
            "these formats are denied; any other format is allowed",
        )
    else:
        add(
            "formats allowed",
            fmt_refs,
            "absent",
            at("spec.formats.allow", "any"),
            "every format is allowed (code-carrying ones are left to the scanner)",
        )
    add(
        "unsupported files",
        atlas.refs_for_reason("scan.unsupported"),
        "absent" if policy.allow_unsupported else "enforced",
        at("spec.formats.allow_unsupported", str(policy.allow_unsupported).lower()),
        (
            "a file the scanner recognises but cannot read is allowed"
            if policy.allow_unsupported
            else "a file the scanner recognises but cannot read is denied"
        ),
    )
    limit = SEVERITIES.index(policy.max_severity)
    for rule in catalogue().values():
        sev = SEVERITIES[int(rule.severity)]
        line = at("spec.scan.max_severity", policy.max_severity)
        exempt = [
            (i, e)
            for i, e in enumerate(policy.exemptions)
            if e.rule in (rule.id, "*") and e.expires >= today
        ]
        if int(rule.severity) <= limit:
            status: Status = "absent"
            detail = f"{rule.name} ({sev} by default) is at or below the limit: not reported"
        elif exempt:
            i, e = exempt[0]
            status = "warn"
            line = at(f"spec.exemptions[{i}]", f"{e.rule} by {e.owner} until {e.expires}")
            where = e.file or e.subject or "every file"
            detail = f"{rule.name} denies, except for {where} (exempted)"
        else:
            status = "enforced"
            detail = f"{rule.name} ({sev} by default) denies"
        add(f"scan {rule.id}", atlas.refs_for_rule(rule.id), status, line, detail)
    for i, r in enumerate(policy.rules):
        add(
            f"rule {r.name}",
            atlas.refs_for_reason("rule.failed"),
            "enforced",
            at(f"spec.rules[{i}]", r.name),
            r.message,
        )
    return out


# --------------------------------------------------------------------------- per technique


def coverage(policies: Sequence[Policy], today: dt.date | None = None) -> list[TechniqueCoverage]:
    """Per ATLAS technique any control names: each mitigation of each control, by the
    control's status (a mitigation enforced by one control and absent from another is
    listed under both, each with its line); the technique's status is the best."""
    controls = [c for p in policies for c in policy_controls(p, today)]
    techniques: dict[str, atlas.Technique] = {}
    # (technique, mitigation) -> the controls implementing it
    pairs: dict[tuple[str, str], list[Control]] = {}
    for c in controls:
        for t in c.refs.techniques:
            techniques.setdefault(t.id, t)
            addressed = {
                m.id
                for m in c.refs.mitigations
                if t.id in atlas.atlas_data()["mitigations"][m.id]["addresses"]
            }
            # ATLAS relates no mitigation to some techniques (Corrupt AI Model): then
            # every mitigation of the control counts for it
            for mid in sorted(addressed) or [m.id for m in c.refs.mitigations]:
                pairs.setdefault((t.id, mid), []).append(c)
    out: list[TechniqueCoverage] = []
    for tid in sorted(techniques):
        by: dict[Status, list[Entry]] = {"enforced": [], "warn": [], "absent": []}
        for (pair_tid, mid), cs in sorted(pairs.items()):
            if pair_tid != tid:
                continue
            m = atlas.mitigation(mid)
            for c in cs:
                by[c.status].append(Entry(m, c))
        out.append(
            TechniqueCoverage(
                techniques[tid], tuple(by["enforced"]), tuple(by["warn"]), tuple(by["absent"])
            )
        )
    return out


# --------------------------------------------------------------------------- output


def _group(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """Entries of one status grouped by mitigation, scanner rules folded together."""
    groups: dict[tuple[str, str, str], list[Control]] = {}
    for e in entries:
        kind = "scan" if e.control.name.startswith("scan MLV") else e.control.name
        groups.setdefault((e.mitigation.id, kind, e.control.line), []).append(e.control)
    out = []
    for (mid, kind, line), cs in groups.items():
        if kind == "scan":
            ids = sorted((c.name.removeprefix("scan ") for c in cs), key=lambda r: int(r[3:]))
            control = "scanner rules " + ", ".join(ids)
            detail = cs[0].detail if len(cs) == 1 else f"{len(cs)} rules"
        else:
            control, detail = kind, cs[0].detail
        out.append(
            {
                "mitigation": mid,
                "mitigation_name": atlas.mitigation(mid).name,
                "control": control,
                "policy": cs[0].policy,
                "line": line,
                "detail": detail,
            }
        )
    return out


def coverage_json(policies: Sequence[Policy], today: dt.date | None = None) -> dict[str, Any]:
    return {
        "atlas_version": atlas.atlas_version(),
        "policies": [{"name": p.name, "source": p.source, "mode": p.mode} for p in policies],
        "techniques": [
            {
                "id": c.technique.id,
                "name": c.technique.name,
                "tactics": list(c.technique.tactics),
                "status": c.status,
                "enforced": _group(c.enforced),
                "warn": _group(c.warn),
                "absent": _group(c.absent),
            }
            for c in coverage(policies, today)
        ],
    }


def _cell_items(items: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"{i['mitigation']} {i['mitigation_name']}: {i['control']} ({i['line']})" for i in items
    ]


def render_text(doc: dict[str, Any]) -> str:
    names = ", ".join(f"{p['name']} ({p['source']})" for p in doc["policies"])
    lines = [f"ATLAS {doc['atlas_version']} coverage of: {names}", ""]
    for t in doc["techniques"]:
        lines.append(f"{t['id']} {t['name']} [{', '.join(t['tactics'])}]: {t['status']}")
        for status in ("enforced", "warn", "absent"):
            for item in _cell_items(t[status]):
                lines.append(f"  {status:8} {item}")
        lines.append("")
    totals = {s: sum(1 for t in doc["techniques"] if t["status"] == s) for s in _RANK}
    lines.append(
        f"{len(doc['techniques'])} techniques: {totals['enforced']} enforced, "
        f"{totals['warn']} warn only, {totals['absent']} absent"
    )
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: dict[str, Any]) -> str:
    names = ", ".join(f"`{_md(p['name'])}`" for p in doc["policies"])
    lines = [
        f"ATLAS {doc['atlas_version']} coverage of {names}",
        "",
        "| Technique | Status | Enforced | Warn only | Absent |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in doc["techniques"]:
        cells = [
            "<br>".join(_md(i) for i in _cell_items(t[s])) or "-"
            for s in ("enforced", "warn", "absent")
        ]
        lines.append(f"| {t['id']} {_md(t['name'])} | {t['status']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
