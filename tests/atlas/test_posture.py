"""The posture page: real check results, rendered and read in a real headless Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlverify._internal.atlas.coverage import coverage_json
from mlverify._internal.policy.model import load_policies
from mlverify._internal.report.html import posture, render_html
from tests.atlas.browser import Browser, chromium_path
from tests.core.helpers import run

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if chromium_path() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    pytest.importorskip("websocket", reason="websocket-client drives Chromium's DevTools")
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield b
    finally:
        b.close()


def _docs(checks: dict[str, Any]) -> list[dict[str, Any]]:
    return [checks["signed"], checks["evil"], checks["warned"], checks["fixtures"]]


def test_posture_numbers(checks: dict[str, Any]) -> None:
    p = posture(_docs(checks))
    assert p["totals"] == {"allowed": 3, "denied": 2, "error": 0, "skipped": 0}
    assert {d["artifact"].rsplit("/", 1)[-1] for d in p["denied"]} == {
        "model.pkl",
        "tampered-classifier",
    }
    heat = {tid: (a, b) for tid, _, a, b in p["heatmap"]}
    # the pickle twice (denied; admitted by a warn-mode policy: attempted, not blocked)
    # and the tampered model (mismatch, denied); the unsigned fixture's warning is a gap,
    # not an attempt; the signed model attempted nothing
    assert heat["AML.T0011.000"] == (3, 2)
    assert heat["AML.T0018.002"] == (2, 1)  # only the pickle embeds code
    assert p["top_rules"][0][0] == "MLV101"


def test_page_in_chromium(checks: dict[str, Any], browser: Browser, tmp_path: Path) -> None:
    coverage = coverage_json(load_policies(["builtin:default"]))
    page = tmp_path / "posture.html"
    page.write_text(render_html(_docs(checks), coverage=coverage, generated="2026-12-01"))
    browser.open(page.as_uri())
    browser.screenshot(tmp_path / "posture.png")
    assert (tmp_path / "posture.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "posture.png").stat().st_size > 20_000

    def text(selector: str) -> str:
        value = browser.evaluate(f"document.querySelector({json.dumps(selector)}).textContent")
        assert isinstance(value, str), selector
        return " ".join(value.split())

    assert text("#total-allowed") == "3allowed" and text("#total-denied") == "2denied"
    denied = text("#denied")
    assert "model.pkl" in denied and "scan.finding" in denied and "MLV101" in denied
    assert "signature.mismatch" in denied and "the files differ" in denied
    # heat-map cells: SVG text elements in the page's DOM, one per technique and column
    assert text('[id="heat-AML.T0011.000-attempted"]') == "3"
    assert text('[id="heat-AML.T0011.000-blocked"]') == "2"
    cells = browser.evaluate("document.querySelectorAll('#heatmap svg [id^=heat-]').length")
    assert cells == 2 * len(posture(_docs(checks))["heatmap"])
    assert "AML.T0020" in text("#coverage") and "absent" in text('[id="coverage-AML.T0020"]')
    assert "MLV101" in text("#top-findings")
    through = text("#got-through")  # the pickle a warn-mode policy admitted
    assert "model.pkl" in through and "audit" in through and "MLV101" in through
    # nothing outside the page was requested: no external resource in the DOM
    external = browser.evaluate(
        "[...document.querySelectorAll('[src],link[href],image')]"
        ".map(e => e.getAttribute('src') || e.getAttribute('href')).filter(Boolean)"
    )
    assert external == []


def test_hostile_names_are_text_not_markup(browser: Browser, tmp_path: Path) -> None:
    evil = '<img src=x onerror="document.title=1"><script>document.title=2</script>$\\foo{$'
    doc = {
        "results": [
            {
                "artifact": evil,
                "status": "denied",
                "allowed": False,
                "decisions": [
                    {"policy": evil, "reasons": [{"level": "deny", "code": evil, "message": evil}]}
                ],
                "evidence": {"findings": [{"rule_id": evil}]},
            }
        ]
    }
    page = tmp_path / "evil.html"
    page.write_text(render_html([doc], title="t"))
    browser.open(page.as_uri())
    assert browser.evaluate("document.title") == "t"
    assert browser.evaluate("document.querySelectorAll('script, #denied img').length") == 0
    assert evil in browser.evaluate("document.querySelector('#denied').textContent")
    assert browser.evaluate("document.querySelector('#top-findings').textContent").startswith(
        "RuleFindings(unreadable rule id)"
    )


def test_posture_command(
    checks: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.html"
    r = run(capsys, "posture", "--html", out, checks["results"])  # a directory of results
    assert r.code == 0 and "5 result(s) from 4 file(s)" in r.err
    assert "<svg" in out.read_text() and "AML.T0011.000" in out.read_text()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.json").write_text("[")
    r = run(capsys, "posture", "--html", out, bad)
    assert r.code == 2 and "x.json" in r.err and len(r.err.strip().splitlines()) == 1
    r = run(capsys, "posture", "--html", out, tmp_path / "empty-dir-that-is-missing")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1


def test_missing_library_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else real(n, *a)
    )
    r = run(capsys, "posture", "--html", tmp_path / "p.html", tmp_path)
    assert r.code == 2 and "needs matplotlib" in r.err and "mlverify[reports]" in r.err
