"""`mlverify atlas`: per technique, what the policies enforce, warn on, leave absent."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mlverify._internal.atlas.coverage import coverage_json
from mlverify._internal.policy.model import load_policies
from tests.core.helpers import run

TRUSTED = "  trusted:\n    - key: keys/k.pub\n"


def _technique(doc: dict[str, Any], tid: str) -> dict[str, Any]:
    return next(t for t in doc["techniques"] if t["id"] == tid)


def _items(t: dict[str, Any], status: str, mitigation: str) -> list[dict[str, Any]]:
    return [i for i in t[status] if i["mitigation"] == mitigation]


def _policy(tmp_path: Path, spec: str, name: str = "p") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: "
        + name
        + "\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec), "  ")
    )
    return path


def test_default_policy() -> None:
    doc = coverage_json(load_policies(["builtin:default"]))
    unsafe = _technique(doc, "AML.T0011.000")
    assert unsafe["status"] == "enforced"
    scan = _items(unsafe, "enforced", "AML.M0016")
    assert any("MLV101" in i["control"] and i["line"].startswith("default.yaml:21 ") for i in scan)
    # unsigned is allowed with a warning: code signing is warn-only, on the line that says so
    signing = _items(unsafe, "warn", "AML.M0013")
    assert [i["line"] for i in signing] == ["default.yaml:17 signatures.required: false"]
    # low-severity rules are not reported at max_severity low
    assert any("MLV107" in i["control"] for i in _items(unsafe, "absent", "AML.M0016"))
    poisoning = _technique(doc, "AML.T0020")
    assert poisoning["status"] == "absent" and not poisoning["enforced"]
    assert "(default)" in poisoning["absent"][0]["line"]


def test_strict_policy() -> None:
    doc = coverage_json(load_policies(["builtin:strict"]))
    model = _technique(doc, "AML.T0010.003")
    signing = _items(model, "enforced", "AML.M0013")
    assert [i["line"] for i in signing] == ["strict.yaml:16 signatures.required: true"]
    unsafe = _technique(doc, "AML.T0011.000")
    formats = [i for i in _items(unsafe, "enforced", "AML.M0011") if i["control"] != "scan"]
    assert any(i["line"].startswith("strict.yaml:24 formats.allow: safetensors") for i in formats)
    # max_severity info: every rule but the informational ones denies
    absent = _items(unsafe, "absent", "AML.M0016")
    assert [i["control"] for i in absent] == ["scanner rules MLV109, MLV803"]
    assert _technique(doc, "AML.T0019")["status"] == "enforced"  # provenance required


def test_warn_mode_enforces_nothing(tmp_path: Path) -> None:
    p = _policy(tmp_path, f"mode: warn\nsignatures:\n  required: true\n{TRUSTED}")
    doc = coverage_json(load_policies([str(p)]))
    assert all(not t["enforced"] for t in doc["techniques"])
    warned = _items(_technique(doc, "AML.T0010.003"), "warn", "AML.M0013")
    assert warned and "nothing is denied" in warned[0]["detail"]


def test_exemption_severity_and_datasets(tmp_path: Path) -> None:
    p = _policy(
        tmp_path,
        """\
        scan:
          max_severity: high
        attestations:
          provenance:
            required: true
            datasets:
              - name: corpus
                sha256: "%s"
        exemptions:
          - rule: MLV101
            owner: sec@example.com
            reason: reviewed
            expires: 2999-01-01
        """
        % ("a" * 64),
    )
    doc = coverage_json(load_policies([str(p)]))
    unsafe = _technique(doc, "AML.T0011.000")
    exempted = [i for i in _items(unsafe, "warn", "AML.M0016") if "MLV101" in i["control"]]
    assert exempted and exempted[0]["line"].startswith("p.yaml:15 exemptions[0]")
    enforced = " ".join(i["control"] for i in _items(unsafe, "enforced", "AML.M0016"))
    assert "MLV104" in enforced  # critical: above high
    assert "MLV105" not in enforced  # high: at the limit, not reported
    poisoning = _technique(doc, "AML.T0020")
    assert poisoning["status"] == "enforced"
    assert _items(poisoning, "enforced", "AML.M0025")[0]["line"].startswith(
        "p.yaml:11 attestations.provenance.datasets: corpus"
    )


def test_several_policies_strongest_wins(tmp_path: Path) -> None:
    lax = _policy(tmp_path, "signatures:\n  required: false\n", "lax")
    signed = _policy(
        tmp_path, f"match:\n  paths: ['models/*']\nsignatures:\n  required: true\n{TRUSTED}", "s"
    )
    doc = coverage_json(load_policies([str(lax), str(signed)]))
    model = _technique(doc, "AML.T0010.003")
    assert model["status"] == "enforced"
    (enforced,) = _items(model, "enforced", "AML.M0013")
    assert enforced["policy"] == "s" and "only artifacts matching models/*" in enforced["detail"]
    assert _items(model, "warn", "AML.M0013")[0]["policy"] == "lax"


def test_cli_formats(capsys: pytest.CaptureFixture[str]) -> None:
    r = run(capsys, "atlas", "--format", "json")
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["atlas_version"] == "5.6.0" and doc["policies"][0]["name"] == "default"
    r = run(capsys, "atlas", "--policy", "builtin:strict", "--format", "markdown")
    assert r.code == 0 and r.out.startswith("ATLAS 5.6.0 coverage of `strict`")
    assert "| AML.T0020 Poison Training Data | absent |" in r.out
    r = run(capsys, "atlas", "--policy", "builtin:default", "--policy", "builtin:strict")
    assert r.code == 0 and "AML.T0011.000 User Execution: Unsafe AI Artifacts" in r.out
    assert r.out.rstrip().splitlines()[-1].startswith("12 techniques:")


def test_cli_bad_policy_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: nope\n")
    r = run(capsys, "atlas", "--policy", str(bad))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "bad.yaml" in r.err


@pytest.mark.parametrize("name", ["default", "strict"])
def test_docs_show_the_current_coverage(name: str) -> None:
    """docs/atlas.md carries `mlverify atlas --format markdown` of the shipped policies."""
    from mlverify._internal.atlas.coverage import render_markdown

    docs = (Path(__file__).resolve().parents[2] / "docs" / "atlas.md").read_text()
    table = render_markdown(coverage_json(load_policies([f"builtin:{name}"])))
    assert table in docs, f"docs/atlas.md is stale for builtin:{name}: regenerate it"
