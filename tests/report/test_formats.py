"""Report formats: one enum, one interface, every format for check results and scans;
SARIF locations point at the file holding a finding; names from artifacts are escaped."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mlverify._internal.check import CheckResult
from mlverify._internal.policy.engine import Decision, Reason
from mlverify._internal.report import RenderOptions, ReportFormat, reporter
from mlverify._internal.report.sarif import artifact_uri
from tests.core.helpers import evil_pickle, run, safetensors

EVIL = b"cos\nsystem\n(S'true'\ntR."


def _model(root: Path) -> Path:
    """A directory with a clean file, a pickle and an archive holding a pickle."""
    model = root / "models" / "m"
    (model / "sub").mkdir(parents=True)
    safetensors(model / "model.safetensors")
    (model / "config.json").write_text("{}\n")
    evil_pickle(model / "sub" / "weights.pkl")
    with zipfile.ZipFile(model / "arch.zip", "w") as z:
        z.writestr("inner/data.pkl", EVIL)
    return model


def _sarif_locations(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for res in doc["runs"][0]["results"]:
        (loc,) = res["locations"]
        uri = loc["physicalLocation"]["artifactLocation"]["uri"]
        logical = loc.get("logicalLocations", [{}])[0].get("fullyQualifiedName", "")
        out.append((res["ruleId"], uri, logical))
    return sorted(out)


def test_enum_and_registry() -> None:
    from mlverify._internal.errors import UsageError
    from mlverify._internal.report.document import DocumentReporter

    assert ReportFormat.names() == ["text", "json", "sarif", "markdown", "cyclonedx", "ocsf"]
    for fmt in ReportFormat:
        r = reporter(fmt)
        assert r is reporter(fmt.value) and r.media_type
        assert isinstance(r.check([], RenderOptions()), str)
        if isinstance(r, DocumentReporter):  # rendered from check results only
            with pytest.raises(UsageError):
                r.scan([], RenderOptions())
        else:
            assert isinstance(r.scan([], RenderOptions()), str)
    with pytest.raises(
        Exception, match="expected one of text, json, sarif, markdown, cyclonedx, ocsf"
    ):
        reporter("yaml")


@pytest.mark.parametrize("fmt", ReportFormat.names())
def test_every_format_from_check_scan_and_report(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _model(tmp_path)
    r = run(capsys, "check", "--no-cache", "--format", fmt, "models/m")
    assert r.code == 1 and r.out
    r = run(capsys, "scan", "--format", fmt, "models/m")
    if fmt in ("cyclonedx", "ocsf"):  # formats of check results: a scan is refused, plainly
        assert r.code == 2 and "--format: " in r.err and len(r.err.splitlines()) == 1
    else:
        assert r.code == 1 and r.out
    run(capsys, "check", "--no-cache", "--format", "json", "--output", "r.json", "models/m")
    r = run(capsys, "report", "r.json", "--format", fmt)
    assert r.code == 1 and r.out
    if fmt in ("json", "sarif"):
        json.loads(r.out)


def test_sarif_points_at_the_file_and_the_archive_member(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _model(tmp_path)
    r = run(capsys, "check", "--no-cache", "--format", "sarif", "models/m")
    locations = _sarif_locations(json.loads(r.out))
    assert (
        "MLV-scan.finding",
        "models/m/arch.zip",
        "models/m/arch.zip!inner/data.pkl",
    ) in locations
    assert ("MLV-scan.finding", "models/m/sub/weights.pkl", "") in locations
    assert ("MLV-signature.absent", "models/m", "") in locations  # about the whole artifact
    r = run(capsys, "scan", "--format", "sarif", "models/m")
    scan_locations = {(u, g) for _, u, g in _sarif_locations(json.loads(r.out))}
    assert scan_locations == {
        ("models/m/arch.zip", "models/m/arch.zip!inner/data.pkl"),
        ("models/m/sub/weights.pkl", ""),
    }
    # a single-file artifact: its own path
    r = run(capsys, "check", "--no-cache", "--format", "sarif", "models/m/sub/weights.pkl")
    uris = {u for rule, u, _ in _sarif_locations(json.loads(r.out)) if rule == "MLV-scan.finding"}
    assert uris == {"models/m/sub/weights.pkl"}
    # absolute paths are made relative to the working directory
    r = run(capsys, "check", "--no-cache", "--format", "sarif", str(tmp_path / "models/m"))
    assert ("MLV-scan.finding", "models/m/sub/weights.pkl", "") in _sarif_locations(
        json.loads(r.out)
    )


def test_reasons_carry_the_file_in_the_json() -> None:
    """Consumers of the JSON get the location as data (added keys; none renamed)."""
    reason = Reason("deny", "scan.finding", "m", "r", "arch.zip", "inner/data.pkl")
    assert reason.to_json() == {
        "level": "deny",
        "code": "scan.finding",
        "message": "m",
        "remedy": "r",
        "file": "arch.zip",
        "member": "inner/data.pkl",
    }
    assert set(Reason("warn", "signature.absent", "m").to_json()) == {
        "level",
        "code",
        "message",
        "remedy",
    }
    decision = Decision("a", "p", "p.yaml", "enforce", False, (reason,))
    doc = CheckResult("a", (decision,), {}).to_json()
    assert CheckResult.from_json(json.loads(json.dumps(doc))).decisions == (decision,)


@pytest.mark.parametrize(
    ("name", "uri"),
    [
        ("oci://127.0.0.1:5000/models/x@sha256:ab", "127.0.0.1%3A5000/models/x@sha256%3Aab"),
        ("hf://acme/clf@main", "acme/clf@main"),
        ("models:/clf/3", "clf/3"),
        ("runs:/0123/model", "0123/model"),
        ("models/with space", "models/with%20space"),
        ("./models/m/", "models/m"),
    ],
)
def test_references_get_relative_uris(name: str, uri: str) -> None:
    got = artifact_uri(name)
    assert got == uri
    assert "://" not in got and not got.startswith("/")
    assert ":" not in got.split("/", 1)[0]  # no scheme-like first segment


def test_remote_sarif_names_the_reference() -> None:
    reason = Reason("deny", "scan.finding", "bad", "", "model.pkl", "")
    ref = "oci://127.0.0.1:5000/models/x@sha256:" + "a" * 64
    decision = Decision(ref, "p", "p.yaml", "enforce", False, (reason,))
    result = CheckResult(ref, (decision,), {"artifact": {"kind": "directory"}})
    doc = json.loads(reporter("sarif").check([result], RenderOptions()))
    (loc,) = doc["runs"][0]["results"][0]["locations"]
    assert loc["physicalLocation"]["artifactLocation"]["uri"] == (
        "127.0.0.1%3A5000/models/x@sha256%3A" + "a" * 64 + "/model.pkl"
    )
    assert loc["logicalLocations"][0]["fullyQualifiedName"] == f"{ref}/model.pkl"


def test_directory_scan_lists_what_needs_a_look(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _model(tmp_path)
    r = run(capsys, "scan", "models/m")
    assert r.code == 1
    assert "models/m/arch.zip: findings" in r.out and "models/m/sub/weights.pkl: findings" in r.out
    assert "model.safetensors" not in r.out and "config.json" not in r.out
    assert "2 clean or data file(s) not listed (--all lists them)" in r.out
    assert "4 file(s): 1 clean, 1 data, 2 findings" in r.err
    r = run(capsys, "scan", "--all", "models/m")
    assert "models/m/model.safetensors: clean" in r.out and "config.json: data" in r.out
    assert "not listed" not in r.out
    # one file named on its own is always shown
    r = run(capsys, "scan", "models/m/model.safetensors")
    assert r.code == 0 and "models/m/model.safetensors: clean [safetensors]" in r.out
    # machine formats are always complete
    r = run(capsys, "scan", "--format", "json", "models/m")
    assert len(json.loads(r.out)["files"]) == 4
    md = run(capsys, "scan", "--format", "markdown", "models/m").out
    assert "| Severity | Rule | Artifact | Where | Finding |" in md and "safetensors" not in md


def test_names_from_artifacts_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "m"
    model.mkdir()
    evil_pickle(model / "x\x1b[2K\rALLOWED|`<b>.pkl")
    r = run(capsys, "scan", "m")
    assert "\x1b" not in r.out and "\r" not in r.out and "\\x1b[2K\\x0dALLOWED" in r.out
    md = run(capsys, "scan", "--format", "markdown", "m").out
    assert "\x1b" not in md and "<b>" not in md and "\\|" in md and "`<" not in md
    r = run(capsys, "check", "--no-cache", "m")
    assert "\x1b" not in r.out and "\r" not in r.out
    md = run(capsys, "check", "--no-cache", "--format", "markdown", "m").out
    assert "\x1b" not in md and "<b>" not in md
    for line in md.splitlines():
        if line.startswith("| critical"):
            assert line.count(" | ") == 4, line  # no cell was split by a pipe in the name


def test_a_format_over_the_json_document_is_one_object() -> None:
    """How CycloneDX, OCSF and other renderers of the check document plug in."""
    from mlverify._internal.errors import UsageError
    from mlverify._internal.report.document import DocumentReporter

    seen: list[dict[str, Any]] = []

    def render(doc: dict[str, Any]) -> str:
        seen.append(doc)
        return "ok\n"

    fmt = DocumentReporter(render, "application/x-test", "test")
    decision = Decision("a", "p", "p.yaml", "enforce", True, ())
    assert fmt.check([CheckResult("a", (decision,), {})], RenderOptions()) == "ok\n"
    assert seen[0]["allowed"] is True and seen[0]["results"][0]["artifact"] == "a"
    assert seen[0] == json.loads(
        reporter("json").check([CheckResult("a", (decision,), {})], RenderOptions())
    )
    with pytest.raises(UsageError, match="renders check results, not scans"):
        fmt.scan([], RenderOptions())
