"""The bounds of the non-pickle formats: a file past one is reported, never passed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlverify._internal.scan import scan_file
from tests.scan.conftest import rules
from tests.scan.format_samples import _pf, gguf_bytes


def test_a_config_past_the_bound_is_a_resource_finding(tmp_path: Path) -> None:
    from mlverify._internal.scan.formats.configs import MAX_CONFIG

    p = tmp_path / "config.json"
    big = {"auto_map": {"AutoModel": "m.M"}, "pad": "x" * (MAX_CONFIG + 10)}
    p.write_text(json.dumps(big))
    assert "MLV302" in rules(scan_file(p))


@pytest.mark.parametrize(
    ("tail", "finding"),
    [
        ("", False),  # plain data (a signature listing many files): searched, nothing found
        (', "auto_map": {"AutoModel": "m.M"}', True),  # a code-naming key at the very end
        (', "\\u0061uto_map": {"AutoModel": "m.M"}', True),  # spelled with an escape
    ],
)
def test_json_past_the_bound_under_any_name_is_searched_to_its_end(
    tmp_path: Path, tail: str, finding: bool
) -> None:
    from mlverify._internal.scan.formats.configs import MAX_CONFIG

    p = tmp_path / "model.sig"  # not a config's name: opens as JSON
    p.write_text('{"pad": "' + "x" * (MAX_CONFIG + 10) + '"' + tail + "}")
    assert ("MLV302" in rules(scan_file(p))) is finding


def test_a_template_past_the_bound_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    from mlverify._internal.scan.formats._jinja import MAX_TEMPLATE

    p = tmp_path / "m.gguf"
    p.write_bytes(gguf_bytes({"tokenizer.chat_template": "{{ 1 }}" * (MAX_TEMPLATE // 7 + 10)}))
    assert "MLV601" in rules(scan_file(p))


def test_protobuf_nesting_past_the_runtime_limit_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    graph = _pf(5, _pf(1, b"w"))  # an initializer
    for _ in range(40):  # graph -> node -> attribute -> graph: 3 levels a round
        graph = _pf(1, _pf(5, _pf(1, b"g") + _pf(6, graph)))
    p = tmp_path / "deep.onnx"
    p.write_bytes(_pf(1, 8) + _pf(7, graph))
    report = scan_file(p)
    assert "onnx" in report.formats and "MLV302" in rules(report)


def test_savedmodel_text_that_does_not_close_is_unsupported(tmp_path: Path) -> None:
    p = tmp_path / "saved_model.pbtxt"
    p.write_text('saved_model_schema_version: 1\nmeta_graphs {\n  graph_def { node { op: "X"')
    assert "MLV301" in rules(scan_file(p))
