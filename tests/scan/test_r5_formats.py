"""Red-team r5: TorchScript aliasing, SavedModel checkpoint paths, configs that cannot be
parsed to their end, ONNX decoy functions. Samples are built from bytes or written by the
real libraries with benign structure; none is ever loaded or run."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlverify._internal.scan import Severity, scan_file
from tests.scan.conftest import Scan, rules


def _sev(report: object, rule: str) -> list[Severity]:
    return [f.severity for f in report.findings if f.rule_id == rule]  # type: ignore[attr-defined]


# -- ONNX: a custom op resolves to a local function by (domain, op_type, overload) -------
def _onnx_model(nodes: list[object], functions: list[object], domains: list[str]) -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,  # type: ignore[arg-type]
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in domains]
    m = helper.make_model(graph, opset_imports=opsets, functions=functions)  # type: ignore[arg-type]
    data: bytes = m.SerializeToString()
    assert onnx.load_from_string(data) is not None  # the library parses what it wrote
    return data


def _function(domain: str, name: str) -> object:
    from onnx import helper

    body = [helper.make_node("Relu", ["a"], ["b"])]
    return helper.make_function(domain, name, ["a"], ["b"], body, [helper.make_opsetid("", 17)])


def test_onnx_decoy_function_of_the_same_domain_defines_nothing(scan_bytes: Scan) -> None:
    from onnx import helper

    pyop = helper.make_node("PyOp", ["x"], ["y"], domain="ai.onnx.contrib")
    decoy = _function("ai.onnx.contrib", "Other")
    report = scan_bytes(_onnx_model([pyop], [decoy], ["ai.onnx.contrib"]))
    assert _sev(report, "MLV702") == [Severity.MEDIUM]
    assert "ai.onnx.contrib::PyOp" in report.findings[0].message


def test_onnx_op_defined_by_a_local_function_is_clean(scan_bytes: Scan) -> None:
    from onnx import helper

    call = helper.make_node("MyRelu", ["x"], ["y"], domain="local.fn")
    report = scan_bytes(_onnx_model([call], [_function("local.fn", "MyRelu")], ["local.fn"]))
    assert report.findings == ()


def test_onnx_custom_op_inside_a_local_function_keeps_its_finding(scan_bytes: Scan) -> None:
    from onnx import helper

    body = [helper.make_node("PyOp", ["a"], ["b"], domain="ai.onnx.contrib")]
    fn = helper.make_function(
        "local.fn",
        "Wrap",
        ["a"],
        ["b"],
        body,
        [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.contrib", 1)],
    )
    call = helper.make_node("Wrap", ["x"], ["y"], domain="local.fn")
    report = scan_bytes(_onnx_model([call], [fn], ["local.fn", "ai.onnx.contrib"]))
    assert _sev(report, "MLV702") == [Severity.MEDIUM]


def test_onnx_overload_must_match_too(scan_bytes: Scan) -> None:
    from onnx import helper

    call = helper.make_node("MyRelu", ["x"], ["y"], domain="local.fn", overload="v2")
    report = scan_bytes(_onnx_model([call], [_function("local.fn", "MyRelu")], ["local.fn"]))
    assert _sev(report, "MLV702") == [Severity.MEDIUM]


def test_onnx_unused_custom_opset_import_is_still_named(scan_bytes: Scan) -> None:
    from onnx import helper

    relu = helper.make_node("Relu", ["x"], ["y"])
    report = scan_bytes(_onnx_model([relu], [], ["evil.custom"]))
    assert rules(report) == {"MLV702"}


def _keep(path: Path) -> Path:
    return path
