"""The text report names the ATLAS ids of every finding and deny or warn reason: the ids
the JSON carries for the same result, from the same map."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.core.helpers import evil_pickle, run

ROOT = Path(__file__).resolve().parents[2]
IDS = re.compile(r" \[((?:AML\.[TM]\d{4}(?:\.\d{3})? ?)+)\]$")


def _ids(refs: dict[str, list[dict[str, str]]]) -> str:
    return " ".join([t["id"] for t in refs["techniques"]] + [m["id"] for m in refs["mitigations"]])


def test_check_text_carries_the_json_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    evil_pickle(tmp_path / "m" / "model.pkl")
    text = run(capsys, "check", "--no-cache", "m").out
    doc = json.loads(run(capsys, "check", "--no-cache", "--format", "json", "m").out)
    reasons = [r for d in doc["results"][0]["decisions"] for r in d["reasons"]]
    weighty = [r for r in reasons if r["level"] != "info"]
    lines = [x for x in text.splitlines() if x.startswith(("  deny ", "  warn "))]
    assert len(lines) == len(weighty) >= 2
    for line, reason in zip(lines, weighty, strict=True):
        m = IDS.search(line)
        assert m is not None, line
        assert m.group(1) == _ids(reason["atlas"])
    pickle_line = next(x for x in lines if "MLV101" in x)
    assert "AML.T0011.000" in pickle_line and "AML.M0016" in pickle_line
    # info reasons are context: no ids; the verdict line stays as it was
    assert all(not IDS.search(x) for x in text.splitlines() if x.startswith("  ok "))
    assert text.splitlines()[0].startswith("DENIED: m (policy default)")


def test_scan_text_carries_the_rule_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil_pickle(tmp_path / "model.pkl")
    text = run(capsys, "scan", tmp_path / "model.pkl").out
    doc = json.loads(run(capsys, "check", "--no-cache", "--format", "json", tmp_path).out)
    finding = doc["results"][0]["evidence"]["findings"][0]
    line = next(x for x in text.splitlines() if finding["rule_id"] in x)
    m = IDS.search(line)
    assert m is not None and m.group(1) == _ids(finding["atlas"]), line


def test_an_undecided_artifact_carries_its_outcome_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.report import RenderOptions, reporter

    text = reporter("text").check(
        [CheckResult("gone", (), {}, "error", "no such file\x1b[2K")], RenderOptions()
    )
    assert text.splitlines()[0] == "ERROR: gone"
    assert "\\x1b[2K" in text and "\x1b" not in text  # still escaped
    assert IDS.search(text.splitlines()[1])
