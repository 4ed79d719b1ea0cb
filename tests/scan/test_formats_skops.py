"""skops files: every type skops does not trust by default is a finding, exactly the names
``skops.io.get_untrusted_types`` lists (the oracle: it parses the schema, never constructs).

Benign files are written by ``skops.io.dump``; attacks are those files with their
``schema.json`` edited. Nothing is ever loaded with ``skops.io.load``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlverify._internal.scan import Limits, ScanReport
from mlverify._internal.scan.model import Severity
from tests.scan.conftest import Scan, rules
from tests.scan.skops_builders import node as _node
from tests.scan.skops_builders import parts as _parts
from tests.scan.skops_builders import skops_samples
from tests.scan.skops_builders import skops_zip as _skops_zip

sio = pytest.importorskip("skops.io")
np = pytest.importorskip("numpy")


def _untrusted(report: ScanReport) -> set[str]:
    return {f.subject for f in report.findings if f.rule_id == "MLV1401"}


def _oracle(data: bytes) -> set[str]:
    return set(sio.get_untrusted_types(data=data))


def _benign_objects() -> dict[str, object]:
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.RandomState(0)
    X, y = rng.rand(40, 3), (rng.rand(40) > 0.5).astype(int)
    fitted = {
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()),
        "ridge": Ridge(),
        "sgd": SGDClassifier(max_iter=5, tol=None),
        "nb": GaussianNB(),
        "knn": KNeighborsClassifier(n_neighbors=2),
        "svc": SVC(),
        "pca": PCA(n_components=2),
        "tree": DecisionTreeClassifier(max_depth=2),
        "gb": GradientBoostingClassifier(n_estimators=2),
        "hgb": HistGradientBoostingClassifier(max_iter=2),
    }
    out: dict[str, object] = {k: v.fit(X, y) for k, v in fitted.items()}
    out["column"] = ColumnTransformer([("oh", OneHotEncoder(), [0])]).fit(
        np.array([["a"], ["b"]], dtype=object)
    )
    out["ufunc"] = FunctionTransformer(np.log1p)
    out["values"] = {
        "rng": np.random.default_rng(1),
        "rs": np.random.RandomState(2),
        "arr": np.arange(6).reshape(2, 3),
        "obj": np.array(["a", None], dtype=object),
        "masked": np.ma.masked_array([1, 2], mask=[0, 1]),
        "dtype": np.dtype("float32"),
        "set": {1, 2},
        "tuple": (1, "x", None),
        "bytes": b"\0data",
        "slice": slice(1, 5, 2),
        "shared": [1.5, 1.5],
    }
    try:
        from scipy import sparse

        out["sparse"] = sparse.csr_matrix(np.eye(3))
    except ImportError:  # pragma: no cover
        pass
    return out


@pytest.fixture(scope="module")
def benign() -> dict[str, bytes]:
    return {name: sio.dumps(obj) for name, obj in _benign_objects().items()}


# -- real files -----------------------------------------------------------------------------
def test_real_files_report_exactly_what_skops_lists(
    benign: dict[str, bytes], scan_bytes: Scan
) -> None:
    assert len(benign) >= 12
    for name, data in benign.items():
        report = scan_bytes(data, f"{name}.skops")
        assert "skops" in report.formats, name
        assert _untrusted(report) == _oracle(data), name
        others = rules(report) - {"MLV1401"}
        assert not others, (name, report.findings)
    # a trusted-by-default model is clean; a tree model names skops' untrusted Tree
    assert scan_bytes(benign["pipeline"]).status.value == "clean"
    assert _untrusted(scan_bytes(benign["tree"])) == {"sklearn.tree._tree.Tree"}


# -- crafted schemas ------------------------------------------------------------------------
def _edit(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    schema, members = _parts(data)
    schema = copy.deepcopy(schema)
    change(schema)
    return _skops_zip(schema, members)


def _first(schema: dict[str, Any], loader: str) -> dict[str, Any]:
    stack: list[Any] = [schema]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if v.get("__loader__") == loader:
                return v
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    raise AssertionError(f"no {loader} in the schema")


def _set(node: dict[str, Any], **fields: Any) -> None:
    node.update(fields)


def _object(module: str, cls: str) -> Callable[[dict[str, Any]], None]:
    """Rename the schema's first ObjectNode to ``module.cls``."""
    return lambda s: _set(_first(s, "ObjectNode"), __module__=module, __class__=cls)


ATTACKS: dict[str, tuple[str, Callable[[dict[str, Any]], None], set[str], Severity]] = {
    "object_os_system": (
        "pipeline",
        _object("os", "system"),
        {"os.system"},
        Severity.CRITICAL,
    ),
    "function_eval": (
        "ufunc",
        lambda s: _set(_first(s, "FunctionNode"), __module__="builtins", __class__="eval"),
        {"builtins.eval"},
        Severity.CRITICAL,
    ),
    "method_of_trusted_estimator": (
        "ufunc",
        lambda s: _first(s, "DictNode")["content"].__setitem__(
            "func",
            _node(
                "FunctionTransformer",
                "sklearn.preprocessing._function_transformer",
                "MethodNode",
                content={"func": "fit", "obj": copy.deepcopy(s)},
            ),
        ),
        {
            "sklearn.preprocessing._function_transformer.FunctionTransformer",
            "sklearn.preprocessing._function_transformer.FunctionTransformer.fit",
        },
        Severity.MEDIUM,
    ),
    "operator_methodcaller": (
        "ufunc",
        lambda s: _first(s, "DictNode")["content"].__setitem__(
            "func",
            _node(
                "methodcaller",
                "operator",
                "OperatorFuncNode",
                attrs=_node("tuple", "builtins", "TupleNode", content=[]),
            ),
        ),
        {"operator.methodcaller"},
        Severity.HIGH,
    ),
    "bit_generator_not_a_generator": (
        "values",
        lambda s: _set(
            _first(s, "RandomGeneratorNode")["content"]["bit_generator"]["content"][
                "bit_generator"
            ],
            content=json.dumps("seed"),
        ),
        {"numpy.random.seed"},
        Severity.MEDIUM,
    ),
    "type_builtins_type": (
        "values",
        lambda s: _first(s, "DictNode")["content"].__setitem__(
            "t", _node("type", "builtins", "TypeNode")
        ),
        {"builtins.type"},
        Severity.HIGH,
    ),
    "partial": (
        "ufunc",
        lambda s: _first(s, "DictNode")["content"].__setitem__(
            "func",
            _node(
                "partial",
                "functools",
                "PartialNode",
                content={
                    "func": _node("log1p", "numpy", "FunctionNode"),
                    "args": _node("tuple", "builtins", "TupleNode", content=[]),
                    "kwds": _node(
                        "dict",
                        "builtins",
                        "DictNode",
                        content={},
                        key_types=_node("list", "builtins", "ListNode", content=[]),
                    ),
                    "namespace": _node("str", "builtins", "JsonNode", content="null"),
                },
            ),
        ),
        {"functools.partial"},
        Severity.MEDIUM,
    ),
    "dict_subclass": (
        "values",
        lambda s: _set(_first(s, "DictNode"), __module__="collections", __class__="UserDict"),
        {"collections.UserDict"},
        Severity.MEDIUM,
    ),
    "reduce_constructor": (
        "ufunc",
        lambda s: _first(s, "DictNode")["content"].__setitem__(
            "func",
            _node(
                "Popen",
                "subprocess",
                "ConstructorFromReduceNode",
                content=_node("tuple", "builtins", "TupleNode", content=[]),
            ),
        ),
        {"subprocess.Popen"},
        Severity.CRITICAL,
    ),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_crafted_types_are_findings_as_skops_lists_them(
    name: str, benign: dict[str, bytes], scan_bytes: Scan
) -> None:
    base, change, expected, severity = ATTACKS[name]
    data = _edit(benign[base], change)
    report = scan_bytes(data, "model.skops")
    assert expected <= _untrusted(report), report.findings
    assert _untrusted(report) - _untrusted(scan_bytes(benign[base])) == _oracle(data) - _oracle(
        benign[base]
    )
    assert report.max_severity == severity, report.findings


def _v0(func: dict[str, Any]) -> bytes:
    schema = _node("FunctionTransformer", "sklearn.preprocessing._function_transformer",
                   "ObjectNode", protocol=0, content=_node("dict", "builtins", "DictNode",
                   content={"func": func}, key_types=_node("list", "builtins", "ListNode",
                   content=[_node("str", "builtins", "JsonNode", content='"str"')])))  # fmt: skip
    return _skops_zip(schema)


def test_protocol_zero_functions_are_judged_by_what_they_import(scan_bytes: Scan) -> None:
    # skops' protocol-0 FunctionNode imports content.module_path + content.function: a
    # trusted-looking __module__/__class__ does not decide
    disguised = _v0(_node("log1p", "numpy", "FunctionNode",
                          content={"module_path": "os", "function": "system"}))  # fmt: skip
    report = scan_bytes(disguised)
    assert _untrusted(report) == _oracle(disguised) == {"os.system"}
    assert report.max_severity == Severity.CRITICAL
    ufuncs = "scipy.special._special_ufuncs"
    expit = _v0(
        _node("x", "y", "FunctionNode", content={"module_path": ufuncs, "function": "expit"})
    )
    assert _untrusted(scan_bytes(expit)) == _oracle(expit) == set()
    # protocol 0 trusts the SciPy ufuncs only
    log1p = _v0(_node("x", "y", "FunctionNode",
                      content={"module_path": "numpy", "function": "log1p"}))  # fmt: skip
    assert _untrusted(scan_bytes(log1p)) == _oracle(log1p) == {"numpy.log1p"}
    broken = _v0(_node("log1p", "numpy", "FunctionNode"))
    assert "MLV1402" in rules(scan_bytes(broken))


def test_nodes_where_skops_does_not_look_are_judged_too(
    benign: dict[str, bytes], scan_bytes: Scan
) -> None:
    data = _edit(
        benign["ridge"], lambda s: s.__setitem__("extra", _node("system", "os", "ObjectNode"))
    )
    assert "os.system" in _untrusted(scan_bytes(data))


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda s: s.__setitem__("protocol", 99), "protocol 99"),
        (lambda s: s.__setitem__("protocol", "2"), "not an integer"),
        (lambda s: s.__setitem__("protocol", True), "not an integer"),
        (lambda s: s.__setitem__("protocol", -1), "protocol -1"),
        (lambda s: _set(_first(s, "ObjectNode"), __loader__="EvilNode"), "unknown skops loader"),
        (lambda s: _first(s, "ObjectNode").pop("__module__"), "without a string"),
        (lambda s: _set(_first(s, "NdArrayNode"), file="absent.npy"), "lacks"),
        (
            lambda s: _first(s, "DictNode")["content"].__setitem__(
                "c", _node("x", "y", "CachedNode", __id__=12345)
            ),
            "never saved",
        ),
    ],
)
def test_malformed_schemas_are_findings(
    benign: dict[str, bytes], scan_bytes: Scan, change: Callable[[dict[str, Any]], None], why: str
) -> None:
    report = scan_bytes(_edit(benign["pipeline"], change))
    msgs = [f.message for f in report.findings if f.rule_id == "MLV1402"]
    assert any(why in m for m in msgs), report.findings
    assert report.max_severity is not None and report.max_severity >= Severity.MEDIUM


def test_broken_json_and_escaped_keys(scan_bytes: Scan) -> None:
    report = scan_bytes(_skops_zip(None, raw=b'{"protocol": 2, "__loader__": "ObjectNode", '))
    assert "MLV1402" in rules(report) and "skops" in report.formats
    deep = (
        b'{"protocol": 2, "__loader__": "ListNode", "content": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}"
    )
    report = scan_bytes(_skops_zip(None, raw=deep))
    assert "MLV1402" in rules(report)
    # JSON escapes spell the keys: json.loads (what skops reads with) decodes them
    raw = (
        b'{"protocol": 2, "\\u005f_loader__": "ObjectNode", "__class__": "system", '
        b'"__module__": "o\\u0073"}'
    )
    assert "os.system" in _untrusted(scan_bytes(_skops_zip(None, raw=raw)))


def test_other_zips_with_a_schema_are_not_skops(scan_bytes: Scan) -> None:
    report = scan_bytes(_skops_zip({"type": "object", "properties": {}}))
    assert "skops" not in report.formats and not report.findings
    nested = _skops_zip(
        {"x": 1}, {"sub/schema.json": json.dumps(_node("system", "os", "ObjectNode"))}
    )
    assert "skops" not in scan_bytes(nested).formats  # skops reads the top-level one only


def test_the_project_allowlist_applies_as_for_pickles(
    benign: dict[str, bytes], tmp_path: Path
) -> None:
    from tests.scan.differential import same_scan

    p = tmp_path / "tree.skops"
    p.write_bytes(benign["tree"])
    assert _untrusted(same_scan(p)) == {"sklearn.tree._tree.Tree"}
    allowed = same_scan(p, Limits(extra_allow=frozenset({"sklearn.tree._tree.Tree"})))
    assert allowed.status.value == "clean"
    assert same_scan(p, Limits(extra_allow=frozenset({"sklearn.tree.*"}))).status.value == "clean"
    # the denylist wins over a project allowance, as for pickles
    p.write_bytes(_edit(benign["pipeline"], _object("os", "system")))
    denied = same_scan(p, Limits(extra_allow=frozenset({"os.system"})))
    assert "os.system" in _untrusted(denied)


def test_the_shipped_trusted_sets_match_the_installed_skops() -> None:
    import importlib.metadata
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "harvest_skops_trusted.py"
    shipped = json.loads(
        (script.parents[1] / "mlverify/_internal/scan/data/skops_trusted.json").read_text()
    )
    if shipped["harvested_with"]["skops"] != importlib.metadata.version("skops"):
        pytest.skip("the installed skops is not the version the data was harvested with")
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_names_the_pickle_policy_allows_for_other_reasons_stay_findings(
    benign: dict[str, bytes], scan_bytes: Scan
) -> None:
    # pickle-allowlisted (functools.partial: checked there with its arguments), TorchScript
    # class names (judged in TorchScript archives, not here): skops' defaults decide
    for module, cls in (("functools", "partial"), ("__torch__.m", "Evil")):
        data = _edit(benign["pipeline"], _object(module, cls))
        assert f"{module}.{cls}" in _untrusted(scan_bytes(data))


def test_the_labelled_samples(tmp_path: Path, scan_bytes: Scan) -> None:
    samples = skops_samples(tmp_path)
    assert sum(s.malicious for s in samples) >= 4 and sum(not s.malicious for s in samples) >= 3
    for s in samples:
        report = scan_bytes(s.path.read_bytes(), s.path.name)
        if s.rule is None:
            assert report.status.value == "clean", (s.name, report.findings)
        else:
            assert s.rule in rules(report), (s.name, report.findings)


def test_an_oversized_schema_is_a_limit(monkeypatch: pytest.MonkeyPatch, scan_bytes: Scan) -> None:
    from mlverify._internal.scan.formats import skops

    monkeypatch.setattr(skops, "MAX_SCHEMA", 4096)
    schema = _node("list", "builtins", "ListNode", protocol=2, content=[])
    big = json.dumps(schema).encode() + b" " * 5000
    report = scan_bytes(_skops_zip(None, raw=big))
    assert "MLV302" in rules(report) and "skops" in report.formats
    assert scan_bytes(_skops_zip(schema)).status.value == "clean"


def test_the_cli_allow_flag_trusts_a_skops_type(
    benign: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlverify._internal.cli import main

    p = tmp_path / "tree.skops"
    p.write_bytes(benign["tree"])
    codes = []
    for extra in ([], ["--allow", "sklearn.tree._tree.Tree"]):
        with pytest.raises(SystemExit) as e:
            main(["scan", str(p), *extra])
            raise SystemExit(0)
        codes.append(int(e.value.code or 0))
    capsys.readouterr()
    assert codes == [1, 0]


def test_the_unlisted_rest_keeps_its_worst_severity(scan_bytes: Scan) -> None:
    nodes = [_node(f"C{i}", "pkg", "ObjectNode") for i in range(250)]
    nodes.append(_node("system", "os", "ObjectNode"))
    schema = _node("list", "builtins", "ListNode", protocol=2, content=nodes)
    report = scan_bytes(_skops_zip(schema))
    assert report.max_severity == Severity.CRITICAL
    assert any(f.subject == "more" for f in report.findings)
