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
    m = helper.make_model(graph, opset_imports=opsets, functions=functions)
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


# -- TorchScript: a name bound to a module is that module ------------------------------
@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A real scripted module (torch.jit.save of our own benign class): the archive, its
    code member and that member's source."""
    torch = pytest.importorskip("torch")
    import zipfile

    class Block(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
            self.convs = torch.nn.ModuleList([torch.nn.Conv1d(1, 1, 1) for _ in range(2)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[name-defined]
            ys = [x * i for i in range(3)]
            y = torch.stack(ys).sum(0)
            for c in self.convs:
                y = c(y.unsqueeze(1)).squeeze(1)
            h, w = y.shape
            out = self.lin(y).relu() + float(h * w)
            return torch.where(out > 0, out, torch.zeros_like(out))

    path = tmp_path_factory.mktemp("ts") / "real.pt"
    torch.jit.save(torch.jit.script(Block()), str(path))
    with zipfile.ZipFile(path) as z:
        code = [n for n in z.namelist() if "/code/" in n and n.endswith(".py")]
        name = next(n for n in code if "def forward" in z.read(n).decode())
        return path, name, z.read(name).decode()


def _rewrite(base: Path, member: str, source: str, out: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(base) as z, zipfile.ZipFile(out, "w") as o:
        for n in z.namelist():
            o.writestr(n, source.encode() if n == member else z.read(n))
    return out


def test_real_scripted_module_has_no_op_finding(scripted: tuple[Path, str, str]) -> None:
    report = scan_file(scripted[0])
    assert {f.rule_id for f in report.findings} == {"MLV803"}, report.findings


_ALIASES = {
    "assign_chain": "t = torch\n    u = t\n    u.save(x, '/tmp/out')",
    "tuple_unpack": "a, (t, b) = 1, (torch, 2)\n    t.save(x, '/tmp/out')",
    "starred": "a, *t = 1, torch\n    t[0].save(x, '/tmp/out')",
    "augassign": "t = []\n    t += [torch]\n    t[0].from_file('/etc/passwd', False, 1)",
    "annassign": "t: Any = torch\n    t.save(x, '/tmp/out')",
    "for_target": "for t in [torch]:\n        t.save(x, '/tmp/out')",
    "with_as": "with torch as t:\n        t.save(x, '/tmp/out')",
    "walrus": "if (t := torch):\n        t.save(x, '/tmp/out')",
    "comprehension": "g = [m.from_file for m in [torch]][0]\n    g('/etc/passwd', False, 1)",
    "default_param": "def f(v=torch):\n        return v.save(x, '/tmp/out')\n    f()",
    "self_attr": "self.t = torch\n    self.t.save(x, '/tmp/out')",
    "returned": "def f():\n        return torch\n    f().save(x, '/tmp/out')",
    "returned_name": "def f():\n        return torch\n    t = f()\n    t.save(x, '/tmp/out')",
    "passed": "def f(m):\n        return m.save(x, '/tmp/out')\n    f(torch)",
    "dict_item": "d = {'k': torch}\n    d['k'].save(x, '/tmp/out')",
    "item_store": "d = {}\n    d['k'] = torch.from_file\n    d['k']('/etc/passwd', False, 1)",
    "module_dict": "torch.__dict__['save'](x, '/tmp/out')",
    "dunder_getattr": "torch.__getattr__('save')(x, '/tmp/out')",
    "getattr_alias": "t = torch\n    getattr(t, 'save')(x, '/tmp/out')",
    "getattr_computed": "t = torch\n    getattr(t, 's' + 'ave')(x, '/tmp/out')",
    "ops_alias": "o = ops.aten\n    o.from_file('/etc/passwd', False, 1)",
    "ops_result": "o = ops.aten.add(x, x)\n    o.from_file('/etc/passwd', False, 1)",
    "ifexp": "t = torch if x else None\n    t.save(x, '/tmp/out')",
    "lambda": "g = lambda: torch\n    g().save(x, '/tmp/out')",
    "except_as": "try:\n        pass\n    except torch as t:\n        t.save(x, '/tmp/out')",
    "import_as": "import torch as t\n    t.save(x, '/tmp/out')",
    "import_os": "import os\n    os.system('true')",
    "setattr_const": "setattr(self, 't', torch)\n    self.t.save(x, '/tmp/out')",
    "setattr_computed": "setattr(self, 'a' + 'b', torch)\n    self.ab.save(x, '/tmp/out')",
    "dunder_setattr": "self.__setattr__('t', torch)\n    self.t.save(x, '/tmp/out')",
}


@pytest.mark.parametrize("name", sorted(_ALIASES))
def test_torchscript_alias_reaches_the_op(
    name: str, scripted: tuple[Path, str, str], tmp_path: Path
) -> None:
    base, member, src = scripted
    line = next(ln for ln in src.splitlines() if ln.strip().startswith("return "))
    body = "    " + _ALIASES[name] + "\n" + line
    out = _rewrite(base, member, src.replace(line, body), tmp_path / f"{name}.pt")
    report = scan_file(out)
    assert "MLV301" not in rules(report), [f.message for f in report.findings]
    assert Severity.HIGH in _sev(report, "MLV801"), [f.message for f in report.findings]


def test_global_binding_reaches_other_functions(
    scripted: tuple[Path, str, str], tmp_path: Path
) -> None:
    base, member, src = scripted
    extra = "\ndef setter():\n  global T\n  T = torch\n\ndef user(x):\n  T.save(x, '/tmp/out')\n"
    report = scan_file(_rewrite(base, member, src + extra, tmp_path / "g.pt"))
    assert Severity.HIGH in _sev(report, "MLV801")


# -- SavedModel: a checkpoint op is judged by where its path comes from ----------------


def _checkpoint(report: object) -> list[tuple[str, Severity]]:
    return [(f.subject, f.severity) for f in report.findings if f.rule_id == "MLV901"]  # type: ignore[attr-defined]


def test_tf2_saver_shape_passes(scan_bytes: Scan) -> None:
    from tests.scan.format_samples import _tf2_shape

    assert scan_bytes(_tf2_shape([]), "saved_model.pb").findings == ()


def test_savev2_with_a_constant_path_in_a_function_is_high(scan_bytes: Scan) -> None:
    from tests.scan.format_samples import _node, _tf2_shape, tf_const

    extra = [
        _node("p", "Const", value=tf_const(b"/tmp/evil")),
        _node("n", "Const", value=tf_const(b"v")),
        _node("sv", "SaveV2", "p:output:0", "n:output:0", "n:output:0", "x"),
    ]
    report = scan_bytes(_tf2_shape(extra), "saved_model.pb")
    assert _checkpoint(report) == [("SaveV2", Severity.HIGH)]
    assert "'/tmp/evil'" in report.findings[0].message


@pytest.mark.parametrize("op", ["RestoreV2", "Save", "SaveSlices", "Restore", "RestoreSlice"])
def test_checkpoint_op_with_a_constant_path_in_the_graph_is_high(op: str, scan_bytes: Scan) -> None:
    from tests.scan.format_samples import _node, _tf2_shape, tf_const

    graph = (_node("p", "Const", value=tf_const(b"/etc/passwd")), _node("r", op, "p", "p", "p"))
    report = scan_bytes(_tf2_shape([], graph), "saved_model.pb")
    assert _checkpoint(report) == [(op, Severity.HIGH)]


def test_merge_into_a_constant_destination_is_high(scan_bytes: Scan) -> None:
    from tests.scan.format_samples import _node, _tf2_shape, tf_const

    graph = (
        _node("d", "Const", value=tf_const(b"/home/user/.bashrc")),
        _node("m", "MergeV2Checkpoints", "saver_filename", "d"),
    )
    report = scan_bytes(_tf2_shape([], graph), "saved_model.pb")
    assert _checkpoint(report) == [("MergeV2Checkpoints", Severity.HIGH)]


def test_saver_function_also_fed_a_serving_input_is_high(scan_bytes: Scan) -> None:
    from tests.scan.format_samples import SAVE_FN, _node, _tf2_shape, tf_func

    # a serving client would choose the path: the save function's prefix is anyone's
    graph = (_node("c", "StatefulPartitionedCall", "serving_default_x", "x", f=tf_func(SAVE_FN)),)
    report = scan_bytes(_tf2_shape([], graph), "saved_model.pb")
    assert ("SaveV2", Severity.HIGH) in _checkpoint(report)


def test_saver_function_referenced_otherwise_is_high(scan_bytes: Scan) -> None:
    from tests.scan.format_samples import RESTORE_FN, _node, _tf2_shape, tf_func

    graph = (_node("w", "While", "serving_default_x", body=tf_func(RESTORE_FN)),)
    report = scan_bytes(_tf2_shape([], graph), "saved_model.pb")
    assert ("RestoreV2", Severity.HIGH) in _checkpoint(report)


def test_saver_def_naming_a_constant_is_high(scan_bytes: Scan) -> None:
    from tests.scan.format_samples import (
        SAVE_FN,
        TF2_SAVER_ARGS,
        _node,
        saved_model,
        tf2_saver_functions,
        tf_const,
        tf_func,
    )

    graph = [
        _node("saver_filename", "Const", value=tf_const(b"/etc/cron.d/x")),
        _node("c", "StatefulPartitionedCall", "saver_filename", "v", f=tf_func(SAVE_FN)),
    ]
    data = saved_model(graph, tf2_saver_functions(), saver="saver_filename:0", args=TF2_SAVER_ARGS)
    assert ("SaveV2", Severity.HIGH) in _checkpoint(scan_bytes(data, "saved_model.pb"))


def test_a_path_joined_with_a_traversal_is_high(scan_bytes: Scan) -> None:
    from tests.scan.format_samples import _node, _tf2_shape, tf_const

    graph = (
        _node("sfx", "Const", value=tf_const(b"/../../../../etc/x")),
        _node("j", "StringJoin", "saver_filename", "sfx"),
        _node("s", "SaveV2", "j", "j", "j"),
    )
    report = scan_bytes(_tf2_shape([], graph), "saved_model.pb")
    assert _checkpoint(report) == [("SaveV2", Severity.HIGH)]


def _tf1(default: bytes) -> bytes:
    """The TF1 Saver's shape: save/Const, a PlaceholderWithDefault over a default name."""
    from tests.scan.format_samples import _node, saved_model, tf_const

    graph = [
        _node("save/filename/input", "Const", value=tf_const(default)),
        _node("save/filename", "PlaceholderWithDefault", "save/filename/input"),
        _node("save/Const", "PlaceholderWithDefault", "save/filename"),
        _node("save/SaveV2", "SaveV2", "save/Const", "names", "slices", "v"),
        _node("save/control_dependency", "Identity", "save/Const", "^save/SaveV2"),
        _node("save/RestoreV2", "RestoreV2", "save/Const", "names", "slices"),
        _node("names", "Const", value=tf_const(b"v")),
        _node("slices", "Const", value=tf_const(b"")),
    ]
    return saved_model(graph, {}, saver="save/Const:0")


def test_tf1_saver_passes_and_a_path_default_does_not(scan_bytes: Scan) -> None:
    assert scan_bytes(_tf1(b"model"), "saved_model.pb").findings == ()
    report = scan_bytes(_tf1(b"/home/user/.ssh/authorized_keys"), "saved_model.pb")
    assert _checkpoint(report) == [("SaveV2", Severity.HIGH), ("RestoreV2", Severity.HIGH)]


def test_text_form_checkpoint_op_is_not_followed(scan_bytes: Scan) -> None:
    text = (
        b"saved_model_schema_version: 1\nmeta_graphs {\n  graph_def {\n"
        b'    node { name: "p" op: "Const" }\n    node { name: "s" op: "SaveV2" input: "p" }\n'
        b"  }\n}\n"
    )
    report = scan_bytes(text, "saved_model.pbtxt")
    assert _checkpoint(report) == [("SaveV2", Severity.HIGH)]


def test_json_shaped_text_of_another_name_that_fails_to_parse_is_unsupported(
    scan_bytes: Scan,
) -> None:
    raw = b'{"_target_": "os.system", // a comment (json5)\n "cmd": "true"}'
    assert "MLV301" in rules(scan_bytes(raw, "settings.txt"))
    # a Jinja template opens with { too: not a config
    tmpl = b"{% for m in messages %}{{ m['content'] }}{% endfor %}\\n"
    assert "MLV301" not in rules(scan_bytes(tmpl, "chat_template.jinja"))


# -- TorchScript mobile bytecode: operator tables are judged ----------------------------
class _Recorder:
    """The part of ScanContext the judge uses: keeps (rule, severity, subject)."""

    def __init__(self) -> None:
        self.found: list[tuple[str, Severity, str]] = []

    def add(self, rule: object, label: str, offset: object, subject: str, message: str,
            severity: Severity | None = None) -> None:  # fmt: skip
        self.found.append((rule.id, severity or rule.severity, subject))  # type: ignore[attr-defined]


def _bytecode(*ops: str) -> bytes:
    """A lite-interpreter bytecode.pkl's shape (as _save_for_lite_interpreter writes it),
    pickled from our own tuples of strings: nothing in it is a callable."""
    import pickle

    table = tuple((op, "", 2) for op in ops)
    code = (("instructions", (("OP", 0, 0), ("RET", 0, 0))), ("operators", table))
    method = ("__torch__.M.forward", (*code, ("constants", ()), ("register_size", 2)))
    return pickle.dumps((8, method), protocol=2)


def _judge_bytecode(data: bytes) -> list[tuple[str, Severity, str]]:
    from mlverify._internal.scan.formats.torchscript import judge_bytecode_member
    from mlverify._internal.scan.source import bytes_source

    rec = _Recorder()
    judge_bytecode_member(bytes_source(data, "m/bytecode.pkl"), rec, "m/bytecode.pkl")  # type: ignore[arg-type]
    return rec.found


def test_mobile_bytecode_ops_are_judged() -> None:
    assert _judge_bytecode(_bytecode("aten::relu", "aten::add")) == []
    found = _judge_bytecode(_bytecode("aten::relu", "aten::from_file", "evil::run"))
    assert ("MLV801", Severity.HIGH, "ops.aten.from_file") in found
    assert ("MLV802", Severity.MEDIUM, "ops.evil.run") in found


def test_real_lite_interpreter_bytecode_is_clean(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import zipfile

    class Lite(torch.nn.Module):  # type: ignore[misc,name-defined]
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[name-defined]
            return torch.relu(x) + 1

    path = tmp_path / "m.ptl"
    torch.jit.script(Lite())._save_for_lite_interpreter(str(path))
    with zipfile.ZipFile(path) as z:
        raw = z.read(next(n for n in z.namelist() if n.endswith("bytecode.pkl")))
    assert _judge_bytecode(raw) == []
    assert _judge_bytecode(raw[:-5])[0][0] == "MLV301"  # cut short: not verified


def test_the_zip_scanner_judges_bytecode_members(tmp_path: Path) -> None:
    """The judge is wired in: a lite-interpreter archive's bytecode.pkl op tables."""
    import io
    import zipfile

    from mlverify._internal.scan.engine import scan_file

    def archive(data: bytes) -> Path:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("m/data.pkl", b"\x80\x02}q\x00.")
            z.writestr("m/bytecode.pkl", data)
            z.writestr("m/constants.pkl", b"\x80\x02).")
        path = tmp_path / f"m{len(data)}.ptl"
        path.write_bytes(buf.getvalue())
        return path

    evil = scan_file(archive(_bytecode("aten::relu", "aten::from_file")))
    assert any(f.rule_id == "MLV801" and f.subject == "ops.aten.from_file" for f in evil.findings)
    benign = scan_file(archive(_bytecode("aten::relu", "aten::add")))
    assert not any(f.rule_id == "MLV801" for f in benign.findings)
