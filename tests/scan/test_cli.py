"""`mlverify scan` end to end: exit codes, formats, SARIF shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlverify._internal.cli import main
from tests.scan.builders import EVIL0, p4, sg


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["scan", *args])
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "evil.bin").write_bytes(EVIL0)
    (tmp_path / "models" / "ok.pkl").write_bytes(p4(b"N"))
    (tmp_path / "models" / "unknown.pkl").write_bytes(p4(sg("acme", "Net") + b")\x81"))
    (tmp_path / "readme.txt").write_text("hello\n")
    return tmp_path


def test_exit_codes_and_threshold(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([str(tree)], capsys)
    assert code == 1 and "os.system" in out and "4 file(s)" in err
    code, _, _ = run([str(tree / "models" / "ok.pkl"), str(tree / "readme.txt")], capsys)
    assert code == 0
    code, _, _ = run([str(tree / "models" / "unknown.pkl")], capsys)
    assert code == 1
    code, _, _ = run([str(tree / "models" / "unknown.pkl"), "--fail-on", "high"], capsys)
    assert code == 0
    code, _, _ = run([str(tree / "models" / "unknown.pkl"), "--allow", "acme.Net"], capsys)
    assert code == 0


def test_usage_and_operational_errors(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([str(tree / "missing.pt")], capsys)
    assert code == 2 and "no such file" in err and len(err.strip().splitlines()) == 1
    code, _, err = run([str(tree), "--fail-on", "bogus"], capsys)
    assert code == 2
    code, _, err = run([str(tree), "--allow", "noDot"], capsys)
    assert code == 2


def test_json_report(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run([str(tree), "--format", "json"], capsys)
    doc = json.loads(out)
    by_name = {Path(f["path"]).name: f for f in doc["files"]}
    assert by_name["readme.txt"]["status"] == "data"
    assert by_name["ok.pkl"]["status"] == "clean"
    evil = by_name["evil.bin"]
    assert evil["max_severity"] == "critical"
    f = evil["findings"][0]
    assert {"rule_id", "severity", "member", "offset", "subject", "message", "chain"} <= set(f)


def test_sarif_report(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    out_file = tree / "scan.sarif"
    code, out, _ = run(["models", "--format", "sarif", "--output", str(out_file)], capsys)
    assert code == 1 and out == ""
    doc = json.loads(out_file.read_text())
    assert doc["version"] == "2.1.0"
    run_ = doc["runs"][0]
    rule_ids = [r["id"] for r in run_["tool"]["driver"]["rules"]]
    for r in run_["tool"]["driver"]["rules"]:
        assert float(r["properties"]["security-severity"]) >= 0
    for res in run_["results"]:
        assert rule_ids[res["ruleIndex"]] == res["ruleId"]
        loc = res["locations"][0]["physicalLocation"]
        assert not loc["artifactLocation"]["uri"].startswith("/")
        assert loc["region"]["startLine"] == 1
        assert res["partialFingerprints"]["primaryLocationLineHash"]
    # fingerprints are stable across runs
    code, out2, _ = run(["models", "--format", "sarif"], capsys)
    assert json.loads(out2)["runs"][0]["results"] == run_["results"]


def test_cli_start_path_imports_nothing_heavy() -> None:
    code = (
        "import sys; from mlverify._internal.cli import main;"
        " import mlverify._internal.cli.scan_cmd, mlverify._internal.scan.engine,"
        " mlverify._internal.scan.formats;"
        "bad=[m for m in ('numpy','torch','fickling','joblib','sklearn') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
