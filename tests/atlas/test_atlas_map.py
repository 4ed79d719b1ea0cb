"""Every rule and every reason code mlverify can emit names ATLAS ids that exist.

The codes are found in the code itself (the rule catalogue, and every ``Reason(...)``
built anywhere in the package, read with ``ast``), not from a list kept beside the map.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from mlverify._internal import atlas
from mlverify._internal.check import Outcome
from mlverify._internal.scan.formats import catalogue

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "mlverify"


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.id if isinstance(f, ast.Name) else getattr(f, "attr", "")
                if called == name:
                    out.append((path, node))
    return out


def _arg(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    if len(call.args) > index:
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def signature_statuses() -> set[str]:
    """Every status a SignatureEvidence is built with (constant second argument)."""
    out = set()
    for path, call in _calls("SignatureEvidence"):
        node = _arg(call, 1, "status")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.add(node.value)
        elif node is not None and path.name != "evidence.py":  # evidence.py rebuilds from JSON
            raise AssertionError(f"{path}:{call.lineno}: SignatureEvidence status not constant")
    return out


def emitted_reason_codes() -> set[str]:
    """Every code a Reason is built with; f-string codes expand to the values they take."""
    codes = set()
    for path, call in _calls("Reason"):
        node = _arg(call, 1, "code")
        where = f"{path.relative_to(REPO)}:{call.lineno}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            codes.add(node.value)
        elif isinstance(node, ast.JoinedStr):
            text = ast.unparse(node)
            head = node.values[0]
            prefix = head.value if isinstance(head, ast.Constant) else ""
            if prefix == "signature." and len(node.values) == 2 and "status" in text:
                codes |= {f"signature.{s}" for s in signature_statuses()}
            elif prefix == "check." and len(node.values) == 2 and "outcome" in text:
                codes |= {f"check.{o.replace('-', '_')}" for o in typing.get_args(Outcome) if o}
            else:
                raise AssertionError(f"{where}: reason code {text} is not known to this test")
        elif node is None and (
            any(isinstance(a, ast.Starred) for a in call.args)
            or any(k.arg is None for k in call.keywords)
        ):
            continue  # Reason(**r): rebuilt from a JSON document
        else:
            raise AssertionError(f"{where}: reason code is not a constant or f-string")
    return codes


def test_reason_code_discovery_finds_the_engine_codes() -> None:
    codes = emitted_reason_codes()
    # a sample of what the engine writes, so that a broken discovery cannot pass empty
    for code in ("signature.mismatch", "signature.untrusted", "evidence.missing", "check.error"):
        assert code in codes
    assert len(codes) >= 20


def test_every_rule_is_mapped_to_existing_ids() -> None:
    rules = catalogue()
    mapping = atlas.atlas_map()["rules"]
    assert sorted(set(rules) - set(mapping)) == [], "rules without an ATLAS mapping"
    assert sorted(set(mapping) - set(rules)) == [], "mapped rules that do not exist"
    for rule_id in rules:
        refs = atlas.refs_for_rule(rule_id)
        assert refs.mapped and refs.techniques and refs.mitigations, rule_id


def test_every_rule_id_in_the_code_is_in_the_catalogue() -> None:
    """Components emit core rules by id string (the pickle walker, the zip reader)."""
    ids = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                v = node.value
                if v.startswith("MLV") and v[3:].isdigit():
                    ids.add(v)
    assert ids and sorted(ids - set(catalogue())) == []


def test_every_reason_code_is_mapped_to_existing_ids() -> None:
    codes = emitted_reason_codes()
    mapping = atlas.atlas_map()["reasons"]
    assert sorted(codes - set(mapping)) == [], "reason codes without an ATLAS mapping"
    assert sorted(set(mapping) - codes) == [], "mapped reason codes nothing emits"
    for code in codes:
        refs = atlas.refs_for_reason(code)
        assert refs.mapped and refs.techniques and refs.mitigations, code


def test_every_id_exists_and_each_mitigation_addresses_its_techniques() -> None:
    """Ids exist in the shipped ATLAS data, and a profile never claims a mitigation that
    ATLAS does not relate to one of the profile's techniques."""
    data = atlas.atlas_data()
    for name, profile in atlas.atlas_map()["profiles"].items():
        for tid in profile["techniques"]:
            assert tid in data["techniques"], (name, tid)
        for mid in profile["mitigations"]:
            assert mid in data["mitigations"], (name, mid)
            addressed = set(data["mitigations"][mid]["addresses"])
            assert addressed & set(profile["techniques"]), f"{name}: {mid} addresses none"
    used = set(atlas.atlas_map()["rules"].values()) | set(atlas.atlas_map()["reasons"].values())
    used |= set(atlas.atlas_map()["outputs"].values())
    assert used == set(atlas.atlas_map()["profiles"]), "unused or missing profiles"


def test_issue_examples() -> None:
    pickle = atlas.refs_for_rule("MLV101")
    assert {"AML.T0011.000", "AML.T0010.003"} <= set(pickle.technique_ids)
    assert "AML.M0016" in pickle.mitigation_ids
    for code in ("signature.absent", "signature.mismatch", "evidence.missing"):
        assert {"AML.M0013", "AML.M0014"} <= set(atlas.refs_for_reason(code).mitigation_ids)
    prov = atlas.refs_for_reason("attestation.rejected")  # a dataset digest mismatch
    assert {"AML.T0019", "AML.T0020"} <= set(prov.technique_ids)
    assert "AML.M0025" in prov.mitigation_ids
    assert atlas.refs_for_output("cyclonedx").mitigation_ids == ("AML.M0023",)


def test_unknown_ids_fall_back_and_say_so() -> None:
    assert atlas.refs_for_rule("MLV9999").mapped is False
    assert atlas.refs_for_rule("MLV9999").techniques
    sig = atlas.refs_for_reason("signature.someday")
    assert not sig.mapped and sig.profile == "signature"
    other = atlas.refs_for_reason("nonsense")
    assert not other.mapped and other.mitigations


def _doc(**reason: str) -> dict[str, Any]:
    return {
        "results": [
            {
                "artifact": "m",
                "decisions": [{"reasons": [reason]}],
                "evidence": {"findings": [{"rule_id": "MLV501"}]},
            },
            {"artifact": "n", "decisions": [], "evidence": {}, "outcome": "not-fetched"},
        ]
    }


def test_annotate_adds_ids_to_findings_reasons_and_outcomes() -> None:
    doc = _doc(
        code="scan.finding", level="deny", message="critical MLV501 in a.keras: Lambda layer"
    )
    out = atlas.annotate(doc)
    assert "atlas" not in json.dumps(doc)  # the input is not changed
    first = out["results"][0]
    finding = first["evidence"]["findings"][0]["atlas"]
    assert next(t["id"] for t in finding["techniques"]) == "AML.T0011.000"
    reason = first["decisions"][0]["reasons"][0]["atlas"]
    # scan.finding's own refs and those of the rule the message names (MLV501)
    assert "AML.T0018.002" in {t["id"] for t in reason["techniques"]}
    assert out["results"][1]["atlas"]["mitigations"][0]["id"] == "AML.M0014"
    assert out["atlas_version"] == "5.6.0"


def test_annotate_survives_hostile_shapes() -> None:
    out = atlas.annotate({"results": [1, {"decisions": "x", "evidence": []}, {}]})
    assert out["atlas_version"]
    one = atlas.annotate({"artifact": "m", "decisions": [{"reasons": [None, {"code": 3}]}]})
    assert one["decisions"][0]["reasons"][1]["atlas"]["mapped"] is False


def test_check_results_shapes() -> None:
    r = {"artifact": "m", "decisions": []}
    assert atlas.check_results({"results": [r]}) == [r]
    assert atlas.check_results([r, {"results": [r]}]) == [r, r]
    for bad in ("x", {"results": [3]}, {"other": 1}):
        with pytest.raises(ValueError):
            atlas.check_results(bad)


def test_sarif_taxonomy_and_taxa_agree() -> None:
    tax = atlas.sarif_taxonomy()
    assert tax["name"] == atlas.TOOL_COMPONENT and tax["version"] == "5.6.0"
    ids = [t["id"] for t in tax["taxa"]]
    assert len(ids) == len(set(ids))
    for rule_id in catalogue():
        for ref in atlas.sarif_taxa(atlas.refs_for_rule(rule_id)):
            assert tax["taxa"][ref["index"]]["id"] == ref["id"]
            assert ref["toolComponent"]["name"] == tax["name"]
    for taxon in tax["taxa"]:
        assert taxon["shortDescription"]["text"] and taxon["helpUri"].startswith("https://")


def _gen_module() -> Any:
    spec = importlib.util.spec_from_file_location("gen_atlas", REPO / "scripts" / "gen_atlas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_atlas"] = module
    spec.loader.exec_module(module)
    return module


def test_shipped_atlas_data_is_what_the_generator_writes(shared: Path) -> None:
    import yaml

    gen = _gen_module()
    source = shared / "vectors" / "atlas" / "ATLAS.yaml"
    with source.open(encoding="utf-8") as f:
        text = gen.render(gen.generate(yaml.safe_load(f), atlas.atlas_map()))
    shipped = (PACKAGE / "_internal" / "data" / "atlas.json").read_text(encoding="utf-8")
    assert shipped == text, "atlas.json is stale or edited by hand: run scripts/gen_atlas.py"


def test_generator_refuses_an_id_atlas_does_not_have(shared: Path) -> None:
    import yaml

    gen = _gen_module()
    with (shared / "vectors" / "atlas" / "ATLAS.yaml").open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    bad = {"profiles": {"x": {"techniques": ["AML.T9999"], "mitigations": []}}}
    with pytest.raises(SystemExit, match=r"AML\.T9999"):
        gen.generate(data, bad)


def test_sarif_logs_of_check_and_scan_get_the_taxonomy(tmp_path: Path) -> None:
    import jsonschema  # noqa: F401  (the structural checks below need no schema file)

    from mlverify._internal.check import CheckResult
    from mlverify._internal.policy.engine import Decision, Reason
    from mlverify._internal.report import RenderOptions, reporter

    reason = Reason("deny", "scan.finding", "critical MLV101 in m.pkl: os.system", "fix")
    mismatch = Reason("deny", "signature.mismatch", "files differ")
    result = CheckResult("m", (Decision("m", "p", "", "enforce", False, (reason, mismatch)),), {})
    sarif = json.loads(reporter("sarif").check([result], RenderOptions()))
    out = atlas.add_sarif_taxonomy(sarif)
    run = out["runs"][0]
    assert run["taxonomies"][0]["name"] == "MITRE ATLAS"
    by_rule = {r["ruleId"]: r for r in run["results"]}
    scan_taxa = {t["id"] for t in by_rule["MLV-scan.finding"]["taxa"]}
    assert {"AML.T0011.000", "AML.T0018.002", "AML.M0016"} <= scan_taxa
    sig_taxa = {t["id"] for t in by_rule["MLV-signature.mismatch"]["taxa"]}
    assert {"AML.M0013", "AML.M0014"} <= sig_taxa
    for r in run["results"]:
        for t in r["taxa"]:
            component = run["taxonomies"][t["toolComponent"]["index"]]
            assert component["taxa"][t["index"]]["id"] == t["id"]
    # mlverify's own SARIF already carries the taxonomy; adding it again changes nothing
    assert out == sarif and atlas.add_sarif_taxonomy(out) == out
    scan = {"runs": [{"results": [{"ruleId": "MLV501", "message": {"text": "x"}}, {}]}]}
    scanned = atlas.add_sarif_taxonomy(scan)["runs"][0]["results"]
    assert scanned[0]["taxa"] and "taxa" not in scanned[1]


def test_sarif_with_atlas_passes_githubs_rules_multitool(tmp_path: Path) -> None:
    """SARIF Multitool `validate --rule-kind Sarif;Gh;Ghas` (GitHub's ingestion rules) and
    the SARIF 2.1.0 JSON schema it ships, when the tool is available (the SARIF tier of
    scripts/test sets MLVERIFY_SARIF_MULTITOOL)."""
    import os
    import subprocess

    tool = os.environ.get("MLVERIFY_SARIF_MULTITOOL")
    if not tool or not Path(tool).is_file():
        pytest.skip("SARIF Multitool not available (set MLVERIFY_SARIF_MULTITOOL)")
    import jsonschema

    from mlverify._internal.check import CheckResult
    from mlverify._internal.policy.engine import Decision, Reason
    from mlverify._internal.report import RenderOptions, reporter

    reasons = (
        Reason("deny", "scan.finding", "critical MLV101 in m.pkl: os.system", "fix"),
        Reason("deny", "signature.mismatch", "files differ"),
        Reason("warn", "signature.absent", "unsigned"),
    )
    result = CheckResult("m", (Decision("m", "p", "", "enforce", False, reasons),), {})
    doc = json.loads(reporter("sarif").check([result], RenderOptions()))
    schema = Path(tool).parent / "sarif-2.1.0.json"
    if schema.is_file():
        jsonschema.validate(doc, json.loads(schema.read_text(encoding="utf-8-sig")))
    sarif = tmp_path / "atlas.sarif"
    sarif.write_text(json.dumps(doc))
    out = tmp_path / "validation.sarif"
    r = subprocess.run(
        [tool, "validate", "--rule-kind", "Sarif;Gh;Ghas", str(sarif), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(out.read_text())["runs"][0]["results"] == []


def test_annotate_real_check_documents(checks: dict[str, Any]) -> None:
    """Every finding and reason of real check runs carries ids that exist."""
    data = atlas.atlas_data()
    seen = 0
    for name in ("signed", "evil", "warned", "fixtures"):
        out = atlas.annotate(checks[name])
        for result in out["results"]:
            items = [*result["evidence"]["findings"]]
            items += [r for d in result["decisions"] for r in d["reasons"]]
            for item in items:
                refs = item["atlas"]
                assert "mapped" not in refs, item
                assert {t["id"] for t in refs["techniques"]} <= set(data["techniques"])
                assert {m["id"] for m in refs["mitigations"]} <= set(data["mitigations"])
                assert refs["techniques"] and refs["mitigations"]
                seen += 1
    assert seen >= 8
