"""The GitHub Action's pieces: `mlverify report` (SARIF + Markdown summary), the
composite action and the workflows (their shape; GitHub itself does not run here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlverify._internal.check import CheckResult
from mlverify._internal.policy.engine import Decision, Reason
from tests.core.helpers import run
from tests.integrations.conftest import make_clean_model, make_evil_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    models = tmp_path / "models"
    make_clean_model(models)
    make_evil_model(models)
    out = tmp_path / "results.json"
    r = run(
        capsys, "check", "--no-cache", "--format", "json", "--output", out,
        models / "clean", models / "evil",
    )  # fmt: skip
    assert r.code == 1, r.err  # the evil one is denied
    return out


def _assert_github_sarif(doc: dict[str, object]) -> None:
    """The shape GitHub code scanning accepts (see the integrations reference)."""
    assert doc["version"] == "2.1.0" and "sarif-2.1.0" in str(doc["$schema"])
    (run_,) = doc["runs"]  # type: ignore[misc]
    driver = run_["tool"]["driver"]
    assert driver["name"] == "mlverify" and driver["version"] and driver["informationUri"]
    ids = [r["id"] for r in driver["rules"]]
    assert len(ids) == len(set(ids))
    for rule in driver["rules"]:
        for key in ("shortDescription", "fullDescription", "help"):
            assert rule[key]["text"]
        assert rule["properties"]["security-severity"]
    assert run_["results"]
    for res in run_["results"]:
        assert ids[res["ruleIndex"]] == res["ruleId"]
        assert res["level"] in ("error", "warning", "note")
        assert res["message"]["text"]
        (loc,) = res["locations"]
        art = loc["physicalLocation"]["artifactLocation"]
        assert not art["uri"].startswith("/") and "://" not in art["uri"]
        assert loc["physicalLocation"]["region"]["startLine"] >= 1
        assert re.fullmatch(r"[0-9a-f]{16,}", res["partialFingerprints"]["primaryLocationLineHash"])


def test_report_writes_sarif_and_summary(
    results: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")  # $GITHUB_STEP_SUMMARY is appended to
    sarif = tmp_path / "out.sarif"
    r = run(capsys, "report", results, "--sarif", sarif, "--markdown", summary)
    assert r.code == 1 and "1 allowed, 1 denied" in r.err
    assert "DENIED" in r.out and "ALLOWED" in r.out
    _assert_github_sarif(json.loads(sarif.read_text()))
    md = summary.read_text()
    assert md.startswith("earlier step\n## mlverify check")
    assert "**1 allowed, 1 denied**" in md and ":x: **denied**" in md
    assert "| Artifact | Verdict | Policy | Digest |" in md
    assert "### Reasons" in md and "os.system" in md
    r = run(capsys, "report", results, "--fail-on", "never")
    assert r.code == 0


def test_report_rejects_other_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    r = run(capsys, "report", bad)
    assert r.code == 2 and "not the output of `mlverify check --format json`" in r.err
    assert len(r.err.strip().splitlines()) == 1


def check_markdown(results: list[CheckResult]) -> str:
    from mlverify._internal.report import RenderOptions, ReportFormat, reporter

    return reporter(ReportFormat.MARKDOWN).check(results, RenderOptions())


def test_markdown_escapes_table_cells() -> None:
    reason = Reason("deny", "scan.finding", "a | b <script>\nnext", "fix | it")
    decision = Decision("m|x", "p", "p.yaml", "enforce", False, (reason,))
    md = check_markdown([CheckResult("m|x", (decision,), {"artifact": {"root_digest": "abc"}})])
    assert "<script>" not in md and "m\\|x" in md and "a \\| b &lt;script&gt; next" in md
    assert check_markdown([]).count("Nothing was checked") == 1


def test_action_yml() -> None:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert {"paths", "policy", "format", "fail-mode", "sarif-file"} <= set(action["inputs"])
    steps = action["runs"]["steps"]
    assert all(s.get("shell") == "bash" for s in steps if "run" in s)
    script = "\n".join(s["run"] for s in steps if "run" in s)
    assert "GITHUB_STEP_SUMMARY" in script and "--sarif" in script
    # inputs reach scripts through env, never by ${{ }} inside the script (injection)
    assert "${{" not in script


def test_action_scripts_run_locally(results: Path, tmp_path: Path) -> None:
    """The Report step's bash, as GitHub would run it (env from the inputs)."""
    action = yaml.safe_load((REPO / "action.yml").read_text())
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "report")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "RESULTS": str(results),
        "SARIF": str(tmp_path / "a.sarif"),
        "FORMAT": "text",
        "FAIL_MODE": "deny",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        # the code under test (a worktree on PYTHONPATH), not only the installed one
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
    }
    r = subprocess.run(["bash", "-c", step["run"]], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "::error::" in r.stdout
    assert "allowed=false" in (tmp_path / "output.txt").read_text()
    assert "## mlverify check" in (tmp_path / "summary.md").read_text()
    json.loads((tmp_path / "a.sarif").read_text())
    env["FAIL_MODE"] = "never"
    r = subprocess.run(["bash", "-c", step["run"]], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_workflows() -> None:
    wf = yaml.safe_load((REPO / ".github/workflows/mlverify.yml").read_text())
    job = wf["jobs"]["check-models"]
    assert job["permissions"]["security-events"] == "write"
    uses = [s.get("uses", "") for s in job["steps"]]
    assert "./" in uses and any(u.startswith("github/codeql-action/upload-sarif") for u in uses)
    release = (REPO / ".github/workflows/release-model.yml").read_text()
    rel = yaml.safe_load(release)
    assert rel["jobs"]["release"]["permissions"]["id-token"] == "write"
    assert (
        "mlverify sign --sigstore" in release and "mlverify attest provenance --sigstore" in release
    )
    assert "policies/examples/github-release-keyless.yaml" in release
    policy = (REPO / "policies/examples/github-release-keyless.yaml").read_text()
    assert "release-model.yml" in policy  # the policy admits exactly this workflow


def test_sarif_multitool_accepts_it(results: Path, tmp_path: Path) -> None:
    """GitHub's own rules (SARIF Multitool `validate --rule-kind Sarif;Gh;Ghas`), when the
    tool is available: `npm install @microsoft/sarif-multitool-linux` and point
    MLVERIFY_SARIF_MULTITOOL at node_modules/@microsoft/sarif-multitool-linux/Sarif.Multitool."""
    tool = os.environ.get("MLVERIFY_SARIF_MULTITOOL")
    if not tool or not Path(tool).is_file():
        pytest.skip("SARIF Multitool not available (set MLVERIFY_SARIF_MULTITOOL)")
    sarif = tmp_path / "out.sarif"
    subprocess.run(
        [sys.executable, "-m", "mlverify", "report", str(results), "--sarif", str(sarif)],
        capture_output=True,
        check=False,
        cwd=tmp_path,
    )
    out = tmp_path / "validation.sarif"
    r = subprocess.run(
        [tool, "validate", "--rule-kind", "Sarif;Gh;Ghas", str(sarif), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    issues = json.loads(out.read_text())["runs"][0]["results"]
    assert issues == [], issues


@pytest.mark.parametrize("command", ["scan", "check"])
def test_sarif_multitool_accepts_scan_and_check_sarif(tmp_path: Path, command: str) -> None:
    """The same GitHub rules on `mlverify scan/check --format sarif` of a malicious sample."""
    tool = os.environ.get("MLVERIFY_SARIF_MULTITOOL")
    if not tool or not Path(tool).is_file():
        pytest.skip("SARIF Multitool not available (set MLVERIFY_SARIF_MULTITOOL)")
    from tests.core.helpers import evil_pickle

    evil_pickle(tmp_path / "model.bin")
    sarif = tmp_path / "out.sarif"
    args = [command, "model.bin", "--format", "sarif", "--output", str(sarif)]
    if command == "check":
        args.insert(1, "--no-cache")
    done = subprocess.run(
        [sys.executable, "-m", "mlverify", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr  # findings / denied, and the SARIF written
    out = tmp_path / "validation.sarif"
    r = subprocess.run(
        [tool, "validate", "--rule-kind", "Sarif;Gh;Ghas", str(sarif), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(out.read_text())["runs"][0]["results"] == []


def _multitool_issues(tool: str, sarif: Path, tmp_path: Path) -> list[Any]:
    out = tmp_path / f"validation-{sarif.stem}.sarif"
    r = subprocess.run(
        [tool, "validate", "--rule-kind", "Sarif;Gh;Ghas", str(sarif), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    issues: list[Any] = json.loads(out.read_text())["runs"][0]["results"]
    return issues


def test_sarif_multitool_accepts_member_and_remote_locations(tmp_path: Path) -> None:
    """Results in an archive member (logical location), in a model directory, and of a
    remote reference (a relative URI made from it) pass GitHub's rules too."""
    tool = os.environ.get("MLVERIFY_SARIF_MULTITOOL")
    if not tool or not Path(tool).is_file():
        pytest.skip("SARIF Multitool not available (set MLVERIFY_SARIF_MULTITOOL)")
    import zipfile

    from mlverify._internal.report import RenderOptions, reporter
    from tests.integrations.conftest import EVIL_PICKLE

    model = make_evil_model(tmp_path / "models")
    with zipfile.ZipFile(model / "arch.zip", "w") as z:
        z.writestr("inner/data.pkl", EVIL_PICKLE)
    for command in ("scan", "check"):
        sarif = tmp_path / f"{command}.sarif"
        args = [command, "models/evil", "--format", "sarif", "--output", str(sarif)]
        done = subprocess.run(
            [sys.executable, "-m", "mlverify", *args], capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 1, done.stderr
        doc = json.loads(sarif.read_text())
        assert any("logicalLocations" in r["locations"][0] for r in doc["runs"][0]["results"])
        assert _multitool_issues(tool, sarif, tmp_path) == []
    ref = "oci://127.0.0.1:5000/models/evil@sha256:" + "a" * 64
    reasons = (
        Reason("deny", "scan.finding", "bad", "fix", "arch.zip", "inner/data.pkl"),
        Reason("warn", "signature.absent", "unsigned", "sign it"),
    )
    result = CheckResult(
        ref,
        (Decision(ref, "p", "p.yaml", "enforce", False, reasons),),
        {"artifact": {"kind": "directory", "root_digest": "sha256:" + "b" * 64}},
    )
    sarif = tmp_path / "remote.sarif"
    sarif.write_text(reporter("sarif").check([result], RenderOptions()))
    assert _multitool_issues(tool, sarif, tmp_path) == []
