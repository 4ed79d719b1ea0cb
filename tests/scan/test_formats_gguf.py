"""GGUF chat templates: parsed by Jinja into its AST and judged; real templates pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlverify._internal.scan import scan_file
from tests.scan.conftest import rules
from tests.scan.format_samples import Sample, gguf_bytes, gguf_samples

pytest.importorskip("jinja2")


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    return gguf_samples(tmp_path_factory.mktemp("gguf"))


def test_every_attack_is_caught_and_every_real_template_passes(samples: list[Sample]) -> None:
    assert sum(s.malicious for s in samples) >= 30
    assert sum(not s.malicious for s in samples) >= 8
    missed, flagged = [], []
    for s in samples:
        report = scan_file(s.path)
        if s.malicious and s.rule not in rules(report):
            missed.append((s.name, sorted(rules(report))))
        if not s.malicious and report.findings:
            flagged.append((s.name, [f.message for f in report.findings]))
    assert missed == [] and flagged == []


def test_a_template_jinja_cannot_parse_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    p.write_bytes(gguf_bytes({"tokenizer.chat_template": "{% for x in %}{{ x }}"}))
    report = scan_file(p)
    assert rules(report) == {"MLV602"} and report.status.value == "findings"


def test_truncated_metadata_is_unsupported(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    p.write_bytes(gguf_bytes({"tokenizer.chat_template": "{{ 1 }}"})[:70])
    assert "MLV301" in rules(scan_file(p))


def test_without_jinja2_templates_are_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    p = tmp_path / "m.gguf"
    p.write_bytes(gguf_bytes({"tokenizer.chat_template": "{{ 1 }}"}))
    monkeypatch.setitem(sys.modules, "jinja2", None)
    report = scan_file(p)
    assert report.status.value == "unsupported" and rules(report) == {"MLV301"}
