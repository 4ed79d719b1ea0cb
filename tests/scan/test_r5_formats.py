"""Red-team r5: TorchScript aliasing, SavedModel checkpoint paths, configs that cannot be
parsed to their end, ONNX decoy functions. Samples are built from bytes or written by the
real libraries with benign structure; none is ever loaded or run."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlverify._internal.scan import Severity
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


# -- configs: what cannot be parsed to its end is never clean ---------------------------
_DEEP = 5000  # past Python's recursion limit: json.loads and yaml give up


def _deep_json(body: str) -> bytes:
    return ("{" + body + ', "pad": ' + "[" * _DEEP + "]" * _DEEP + "}").encode()


def test_deep_hf_config_is_unsupported_not_clean(scan_bytes: Scan) -> None:
    raw = _deep_json('"auto_map": {"AutoModel": "modeling_evil.EvilModel"}')
    report = scan_bytes(raw, "config.json")
    assert "MLV301" in rules(report)
    assert "nests deeper" in " ".join(f.message for f in report.findings)


def test_deep_keras_config_in_a_zip_is_unsupported(scan_bytes: Scan) -> None:
    import io
    import zipfile

    lam = '"class_name": "Lambda", "config": {"function": {"class_name": "__lambda__"}}'
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.json", '{"keras_version": "3.15.1"}')
        z.writestr("config.json", _deep_json(lam))
        z.writestr("model.weights.h5", b"")
    report = scan_bytes(buf.getvalue(), "m.keras")
    assert "MLV301" in rules(report)


def test_shallow_configs_are_still_judged(scan_bytes: Scan) -> None:
    raw = b'{"auto_map": {"AutoModel": "modeling_evil.EvilModel"}, "pad": [[[]]]}'
    assert "MLV1002" in rules(scan_bytes(raw, "config.json"))


def test_config_a_lenient_loader_might_read_is_unsupported(scan_bytes: Scan) -> None:
    raw = b'{"_target_": "os.system", "cmd": "true",}\n// a comment\n'
    assert "MLV301" in rules(scan_bytes(raw, "conf.json"))


def test_free_text_with_a_hint_is_not_a_config(scan_bytes: Scan) -> None:
    raw = b"notes: the class_name key:\n - a: b\n c\n"
    assert "MLV301" not in rules(scan_bytes(raw, "NOTES.txt"))
