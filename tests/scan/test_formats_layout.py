"""The format package's layout: one file per format, rules as constants, no engine import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mlverify._internal.scan.formats as formats_pkg
from mlverify._internal.scan.formats import SCANNERS, catalogue
from mlverify._internal.scan.rules import CORE

FORMATS_DIR = Path(formats_pkg.__file__).parent


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_formats_never_import_the_engine() -> None:
    for path in sorted(FORMATS_DIR.glob("*.py")):
        assert "mlverify._internal.scan.engine" not in _imports(path), path.name
    rules_and_context = FORMATS_DIR.parent / "rules.py", FORMATS_DIR.parent / "context.py"
    for path in rules_and_context:
        assert not any(m.startswith("mlverify._internal.scan.formats") for m in _imports(path)), (
            path
        )


def test_no_rule_id_literals_outside_rule_declarations() -> None:
    for path in sorted(FORMATS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        declared = {
            id(arg)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Rule"
            for arg in node.args[:1]
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith("MLV")
                and node.value[3:].isdigit()
            ):
                assert id(node) in declared, f"{path.name}:{node.lineno} uses {node.value!r}"


def test_rule_catalogue_is_unique_and_complete() -> None:
    rules = catalogue()
    assert len(rules) == len(CORE) + len(formats_pkg.FORMAT_RULES)
    names = [r.name for r in rules.values()]
    assert len(names) == len(set(names))
    assert len({s.name for s in SCANNERS}) == len(SCANNERS)


def test_importing_the_scanner_stays_light() -> None:
    code = (
        "import sys, mlverify._internal.scan.engine\n"
        "heavy = [m for m in ('numpy', 'torch', 'keras', 'h5py', 'onnx', 'jinja2',"
        " 'google.protobuf')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_detector_failure_is_unsupported_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlverify._internal.scan import scan_file
    from mlverify._internal.scan.formats import configs

    def boom(self: object, head: bytes, src: object, deep: bool) -> bool:
        raise ValueError("detector bug")

    monkeypatch.setattr(configs.ConfigScanner, "detect", boom)
    p = tmp_path / "config.json"
    p.write_text('{"a": 1}')
    report = scan_file(p)
    assert report.status.value == "unsupported"
    assert [f.rule_id for f in report.findings] == ["MLV301"]
