"""Format bypasses from a hostile review, each built from text (never loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlverify._internal.scan import Severity, scan_paths


def _worst(path: Path) -> Severity | None:
    return max((f.severity for r in scan_paths([path]) for f in r.findings), default=None)


@pytest.mark.parametrize(
    "template",
    [
        # names bound by {% with %} are the template's own values, not context data
        '{% with c="_"*2~"class"~"_"*2, o="o"~"s" %}{{ namespace()[c][o] }}{% endwith %}'
        "{% for m in messages %}{{ m.content }}{% endfor %}",
        # a call block's parameters hold what the macro passes
        '{% macro m() %}{{ caller("_"*2~"class"~"_"*2) }}{% endmacro %}'
        "{% call(c) m() %}{{ namespace()[c] }}{% endcall %}",
    ],
    ids=["with", "call-block"],
)
def test_chat_template_bindings(tmp_path: Path, template: str) -> None:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    worst = _worst(tmp_path)
    assert worst is not None and worst >= Severity.MEDIUM


@pytest.mark.parametrize(
    "yaml_text",
    [
        "model:\n  encoder: \"${oc.decode:'{_target_: builtins.print, _args_: [x]}'}\"\n",
        "t: _tar\nmodel:\n  encoder: \"${oc.decode:'{${t}get_: builtins.print}'}\"\n",
    ],
    ids=["decode", "built-key"],
)
def test_hydra_targets_built_at_resolve_time(tmp_path: Path, yaml_text: str) -> None:
    (tmp_path / "config.yaml").write_text(yaml_text)
    worst = _worst(tmp_path)
    assert worst is not None and worst >= Severity.MEDIUM


def test_hydra_target_allowed_only_as_pickle_reconstruction(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("m:\n  _target_: lightgbm.basic.Booster\n")
    worst = _worst(tmp_path)
    assert worst is not None and worst >= Severity.MEDIUM


def test_legacy_list_auto_map(tmp_path: Path) -> None:
    cfg = {"tokenizer_class": "T", "auto_map": ["tokenization_evil.EvilTokenizer", None]}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    worst = _worst(tmp_path)
    assert worst is not None and worst >= Severity.MEDIUM
