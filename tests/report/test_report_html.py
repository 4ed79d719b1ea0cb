"""`mlverify report RESULTS.json --html PAGE`: the posture page beside the other renderings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.helpers import run

pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parents[2]


def test_report_writes_the_posture_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = ROOT / "fixtures" / "models" / "tampered-classifier"
    run(capsys, "check", "--no-cache", "--format", "json", "--output", "r.json", model)
    r = run(capsys, "report", "r.json", "--html", "page.html", "--format", "json")
    assert r.code == 1  # the verdict still sets the exit code
    page = (tmp_path / "page.html").read_text()
    assert "tampered-classifier" in page and "AML.M0014" in page and "<script" not in page
