"""MITRE ATLAS in every answer: what each rule and reason defends against.

Two data files beside the rule catalogue: ``data/atlas_map.json`` (hand-written: each
scanner rule id and each policy reason code names a profile, a profile names ATLAS
techniques and mitigations) and ``data/atlas.json`` (generated from MITRE's ATLAS.yaml by
``scripts/gen_atlas.py``: names, tactics, which techniques each mitigation addresses).

An id the map does not know (a rule of a newer release in an old document, a reason code
added without a mapping) is never left bare: rules fall back to the ``scan`` profile and
reason codes to their family (``signature.*`` to ``signature``), then to ``supply-chain``;
``mapped`` says so. A test keeps every id the code can emit mapped explicitly.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

TOOL_COMPONENT = "MITRE ATLAS"
_FALLBACK_RULE = "scan"
_FALLBACK_REASON = "supply-chain"


@dataclass(frozen=True)
class Technique:
    id: str
    name: str  #: with the parent's name for a sub-technique ("User Execution: Unsafe AI Artifacts")
    tactics: tuple[str, ...]  #: tactic names
    url: str


@dataclass(frozen=True)
class Mitigation:
    id: str
    name: str
    url: str


@dataclass(frozen=True)
class AtlasRefs:
    techniques: tuple[Technique, ...]
    mitigations: tuple[Mitigation, ...]
    profile: str  #: the map's profile name
    mapped: bool = True  #: False: the id was not in the map (a fallback profile)

    @property
    def technique_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.techniques)

    @property
    def mitigation_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.mitigations)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "techniques": [{"id": t.id, "name": t.name} for t in self.techniques],
            "mitigations": [{"id": m.id, "name": m.name} for m in self.mitigations],
        }
        if not self.mapped:
            out["mapped"] = False
        return out


def _load(name: str) -> dict[str, Any]:
    text = (resources.files("mlverify._internal") / "data" / name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@functools.cache
def atlas_data() -> dict[str, Any]:
    """The shipped ATLAS subset (``data/atlas.json``)."""
    return _load("atlas.json")


@functools.cache
def atlas_map() -> dict[str, Any]:
    """The mapping (``data/atlas_map.json``)."""
    return _load("atlas_map.json")


def atlas_version() -> str:
    return str(atlas_data()["atlas"]["version"])


def technique(tid: str) -> Technique:
    data = atlas_data()
    t = data["techniques"][tid]
    return Technique(tid, t["name"], tuple(data["tactics"][x] for x in t["tactics"]), t["url"])


def mitigation(mid: str) -> Mitigation:
    m = atlas_data()["mitigations"][mid]
    return Mitigation(mid, m["name"], m["url"])


@functools.cache
def refs_for_profile(profile: str, mapped: bool = True) -> AtlasRefs:
    p = atlas_map()["profiles"][profile]
    return AtlasRefs(
        tuple(technique(t) for t in p["techniques"]),
        tuple(mitigation(m) for m in p["mitigations"]),
        profile,
        mapped,
    )


def refs_for_rule(rule_id: str) -> AtlasRefs:
    """The ATLAS techniques a scanner rule (``MLV101``) defends against, and its mitigations."""
    profile = atlas_map()["rules"].get(rule_id)
    if profile is None:
        return refs_for_profile(_FALLBACK_RULE, False)
    return refs_for_profile(profile)


def refs_for_reason(code: str) -> AtlasRefs:
    """The same for a policy reason code (``signature.mismatch``)."""
    reasons: dict[str, str] = atlas_map()["reasons"]
    profile = reasons.get(code)
    if profile is not None:
        return refs_for_profile(profile)
    family = code.split(".", 1)[0]
    if family in atlas_map()["profiles"]:
        return refs_for_profile(family, False)
    return refs_for_profile(_FALLBACK_REASON, False)


def refs_for_output(name: str) -> AtlasRefs:
    """What an output of mlverify implements (``cyclonedx``: AI Bill of Materials)."""
    return refs_for_profile(atlas_map()["outputs"][name])


def rule_in_reason(message: str) -> str:
    """The rule id a ``scan.finding`` / ``scan.exempted`` reason names (its second word:
    the engine writes "SEVERITY RULE in FILE: ..."), or ""."""
    words = message.split(" ", 2)
    if len(words) >= 2 and words[1].startswith("MLV") and words[1][3:].isdigit():
        return words[1]
    return ""


def refs_for_reason_text(code: str, message: str) -> AtlasRefs:
    """A reason's refs; a scan reason also carries those of the rule it names."""
    refs = refs_for_reason(code)
    rule = rule_in_reason(message) if code.startswith("scan.") else ""
    if not rule:
        return refs
    return merge(refs, refs_for_rule(rule))


def merge(*many: AtlasRefs) -> AtlasRefs:
    techniques: dict[str, Technique] = {}
    mitigations: dict[str, Mitigation] = {}
    for r in many:
        techniques.update((t.id, t) for t in r.techniques)
        mitigations.update((m.id, m) for m in r.mitigations)
    return AtlasRefs(
        tuple(techniques.values()),
        tuple(mitigations.values()),
        "+".join(dict.fromkeys(r.profile for r in many)),
        all(r.mapped for r in many),
    )


# --------------------------------------------------------------------------- SARIF


def sarif_taxonomy() -> dict[str, Any]:
    """A SARIF 2.1.0 ``toolComponent`` for ``runs[].taxonomies``: ATLAS's techniques and
    mitigations that mlverify names, as taxa."""
    data = atlas_data()
    taxa: list[dict[str, Any]] = []
    for tid, t in data["techniques"].items():
        taxa.append(
            {
                "id": tid,
                "name": t["name"],
                "shortDescription": {"text": t["name"]},
                "fullDescription": {"text": t["summary"] or t["name"]},
                "helpUri": t["url"],
                "properties": {
                    "kind": "technique",
                    "tactics": [data["tactics"][x] for x in t["tactics"]],
                },
            }
        )
    for mid, m in data["mitigations"].items():
        taxa.append(
            {
                "id": mid,
                "name": m["name"],
                "shortDescription": {"text": m["name"]},
                "fullDescription": {"text": m["summary"] or m["name"]},
                "helpUri": m["url"],
                "properties": {"kind": "mitigation", "addresses": list(m["addresses"])},
            }
        )
    return {
        "name": TOOL_COMPONENT,
        "fullName": str(data["atlas"]["name"]),
        "version": atlas_version(),
        "organization": "MITRE",
        "informationUri": "https://atlas.mitre.org",
        "isComprehensive": False,
        "taxa": taxa,
    }


def sarif_taxa(refs: AtlasRefs) -> list[dict[str, Any]]:
    """A SARIF result's ``taxa``: references into :func:`sarif_taxonomy`."""
    data = atlas_data()
    index = {tid: i for i, tid in enumerate([*data["techniques"], *data["mitigations"]])}
    return [
        {"id": i, "index": index[i], "toolComponent": {"name": TOOL_COMPONENT}}
        for i in (*refs.technique_ids, *refs.mitigation_ids)
    ]


def refs_for_sarif_result(result: dict[str, Any]) -> AtlasRefs | None:
    """The refs of one SARIF result mlverify wrote: ``ruleId`` ``MLV101`` (scan) or
    ``MLV-signature.mismatch`` (check: a reason code, whose message may name a rule)."""
    rule_id = result.get("ruleId")
    if not isinstance(rule_id, str):
        return None
    message = result.get("message")
    text = message.get("text") if isinstance(message, dict) else ""
    if rule_id.startswith("MLV-"):
        return refs_for_reason_text(rule_id[4:], text if isinstance(text, str) else "")
    if rule_id.startswith("MLV") and rule_id[3:].isdigit():
        return refs_for_rule(rule_id)
    return None


def add_sarif_taxonomy(sarif: dict[str, Any]) -> dict[str, Any]:
    """A copy of a SARIF log from mlverify with ATLAS as ``runs[].taxonomies`` and each
    result's techniques and mitigations as its ``taxa``."""
    out = copy.deepcopy(sarif)
    for run in out.get("runs") or ():
        if not isinstance(run, dict):
            continue
        # idempotent: an ATLAS taxonomy already there (mlverify's SARIF has one) is replaced
        atlas = sarif_taxonomy()
        taxonomies = [
            x
            for x in run.get("taxonomies") or ()
            if not (isinstance(x, dict) and x.get("name") == atlas["name"])
        ]
        run["taxonomies"] = taxonomies
        index = len(taxonomies)
        taxonomies.append(atlas)
        for result in run.get("results") or ():
            refs = refs_for_sarif_result(result) if isinstance(result, dict) else None
            if refs is not None:
                taxa = sarif_taxa(refs)
                for t in taxa:
                    t["toolComponent"]["index"] = index
                result["taxa"] = taxa
    return out


# --------------------------------------------------------------------------- JSON


def _annotate_result(result: dict[str, Any]) -> None:
    evidence = result.get("evidence")
    findings = evidence.get("findings") if isinstance(evidence, dict) else None
    for f in findings if isinstance(findings, list) else ():
        if isinstance(f, dict):
            f["atlas"] = refs_for_rule(str(f.get("rule_id", ""))).to_json()
    decisions = result.get("decisions")
    for d in decisions if isinstance(decisions, list) else ():
        reasons = d.get("reasons") if isinstance(d, dict) else None
        for r in reasons if isinstance(reasons, list) else ():
            if isinstance(r, dict):
                refs = refs_for_reason_text(str(r.get("code", "")), str(r.get("message", "")))
                r["atlas"] = refs.to_json()
    if result.get("outcome"):
        code = "check." + str(result["outcome"]).replace("-", "_")
        result["atlas"] = refs_for_reason(code).to_json()


def annotate(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a check JSON document (``{"results": [...]}`` or one result) in which every
    finding and every reason carries ``atlas`` (technique and mitigation ids and names), a
    result not decided carries those of its outcome, and the top level names the ATLAS
    version."""
    out = copy.deepcopy(doc)
    results = out.get("results")
    if isinstance(results, list):
        for r in results:
            if isinstance(r, dict):
                _annotate_result(r)
    else:
        _annotate_result(out)
    out["atlas_version"] = atlas_version()
    return out


def check_results(doc: Any) -> list[dict[str, Any]]:
    """The results of a check JSON document (``{"results": [...]}``, one result, or a list
    of either), each a dict; anything else is a ValueError naming what was found."""
    if isinstance(doc, list):
        return [r for d in doc for r in check_results(d)]
    if not isinstance(doc, dict):
        raise ValueError(f"expected a check JSON document (an object), found {type(doc).__name__}")
    if "results" in doc:
        results = doc["results"]
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise ValueError("'results' must be a list of check results")
        return list(results)
    if "artifact" in doc and "decisions" in doc:
        return [doc]
    raise ValueError("expected a check JSON document ('results' or one result), found neither")


__all__ = [
    "AtlasRefs",
    "Mitigation",
    "Technique",
    "add_sarif_taxonomy",
    "annotate",
    "atlas_version",
    "check_results",
    "refs_for_output",
    "refs_for_reason",
    "refs_for_rule",
    "sarif_taxa",
    "sarif_taxonomy",
]
