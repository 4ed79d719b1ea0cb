"""The pickle bypass classes of red-team review r1, built from opcode bytes (never loaded).

Each class is closed by design, so each test varies the shape (opcode, position past the
simulated container's ``KEEP`` elements, wrapper) rather than replaying one sample; benign
look-alikes stay clean.
"""

from __future__ import annotations

import collections
import gzip
import io
import pickle
import zipfile
from pathlib import Path

import pytest

from mlverify._internal.scan import Limits, Severity
from mlverify._internal.scan.model import ScanReport
from mlverify._internal.scan.pickle import judge as judge_mod
from mlverify._internal.scan.pickle.walker import PickleWalker
from mlverify._internal.scan.policy import get_policy
from mlverify._internal.scan.source import bytes_source
from tests.scan.builders import EVIL4, g0, u
from tests.scan.conftest import Scan, rules

LOADER = g0("torch.storage", "_load_from_bytes")


def K(n: int) -> bytes:
    return b"K" + bytes([n])


def sbb(b: bytes) -> bytes:
    return b"C" + bytes([len(b)]) + b


def int_list(data: bytes) -> bytes:
    """bytes([...]): a list of ints no nested-payload probe sees as a pickle."""
    return g0("builtins", "bytes") + b"](" + b"".join(K(c) for c in data) + b"e\x85R"


def denied(report: ScanReport) -> bool:
    return any(f.severity >= Severity.MEDIUM for f in report.findings)


def junk(n: int) -> bytes:
    return b"".join(u(f"k{i}") + K(0) for i in range(n))


# -- B1: a class that calls its state: every key of a BUILD dict is judged ---------------
@pytest.mark.parametrize("before", [0, 63, 64, 200])
@pytest.mark.parametrize("opcode", ["DICT", "SETITEMS", "SETITEM"])
def test_build_state_keys_past_keep_are_judged(scan_bytes: Scan, before: int, opcode: str) -> None:
    vec = g0("numpy", "vectorize") + g0("numpy", "sin") + b"\x85R"
    if opcode == "DICT":
        state = b"(" + junk(before) + u("pyfunc") + LOADER + b"d"
    elif opcode == "SETITEMS":
        state = b"}(" + junk(before) + u("pyfunc") + LOADER + b"u"
    else:
        state = b"}(" + junk(before) + b"u" + u("pyfunc") + LOADER + b"s"
    data = b"\x80\x02" + vec + state + b"b" + int_list(EVIL4) + b"\x85R."
    report = scan_bytes(data)
    assert "MLV105" in rules(report) and denied(report)


def test_state_key_an_entry_calls_is_kept_past_keep(scan_bytes: Scan) -> None:
    # vectorize's 'pyfunc' after 100 keys, set to something that is not an allowed callable
    vec = g0("numpy", "vectorize") + g0("numpy", "sin") + b"\x85R"
    bad = g0("collections", "OrderedDict") + b")R"  # a dict instance: not callable data
    state = b"(" + junk(100) + u("pyfunc") + bad + b"d"
    report = scan_bytes(b"\x80\x02" + vec + state + b"b.")
    assert any(f.rule_id == "MLV105" and "numpy.vectorize" in f.message for f in report.findings), (
        report.findings
    )


def test_vectorize_with_many_plain_keys_and_an_allowed_pyfunc_is_clean(scan_bytes: Scan) -> None:
    vec = g0("numpy", "vectorize") + g0("numpy", "sin") + b"\x85R"
    state = b"(" + junk(100) + u("pyfunc") + g0("numpy", "sin") + b"d"
    assert not scan_bytes(b"\x80\x02" + vec + state + b"b.").findings


def test_real_vectorize_pickle_is_clean(scan_bytes: Scan) -> None:
    import numpy as np

    for proto in (2, 4, 5):
        assert not scan_bytes(pickle.dumps(np.vectorize(np.sin), protocol=proto)).findings


# -- B2: a computed key may be any name -----------------------------------------------
COMPUTED_SETSTATE = g0("builtins", "str") + b"(" + sbb(b"__setstate__") + u("ascii") + b"tR"


@pytest.mark.parametrize("opcode", ["DICT", "SETITEMS", "SETITEM"])
@pytest.mark.parametrize("before", [0, 70])
def test_computed_key_planting_a_method_is_a_finding(
    scan_bytes: Scan, opcode: str, before: int
) -> None:
    ns = g0("argparse", "Namespace") + b")R"
    pair = COMPUTED_SETSTATE + LOADER
    if opcode == "DICT":
        state = b"(" + junk(before) + pair + b"d"
    elif opcode == "SETITEMS":
        state = b"}(" + junk(before) + pair + b"u"
    else:
        state = b"}(" + junk(before) + b"u" + pair + b"s"
    data = b"\x80\x02" + ns + state + b"b" + int_list(EVIL4) + b"b."
    report = scan_bytes(data)
    assert any(f.rule_id == "MLV106" and f.subject == "computed key" for f in report.findings)
    assert denied(report)


def test_computed_key_with_a_callable_that_is_not_sensitive_is_still_planted(
    scan_bytes: Scan,
) -> None:
    # numpy.sin is allowed and harmless to call, but under __setstate__ BUILD calls it with
    # the next state: a method replaced is MLV106 whatever the callable
    ns = g0("argparse", "Namespace") + b")R"
    state = b"(" + COMPUTED_SETSTATE + g0("numpy", "sin") + b"d"
    report = scan_bytes(b"\x80\x02" + ns + state + b"b.")
    assert "MLV106" in rules(report)


def test_computed_key_with_plain_value_is_clean(scan_bytes: Scan) -> None:
    ns = g0("argparse", "Namespace") + b")R"
    state = b"(" + COMPUTED_SETSTATE + K(3) + b"d"
    assert not scan_bytes(b"\x80\x02" + ns + state + b"b.").findings


# -- B3: BUILD on values the judge does not model ------------------------------------------
PLANT = b"(" + u("__setstate__") + LOADER + b"db"


@pytest.mark.parametrize(
    "obj",
    [
        b"(" + u("storage") + g0("torch", "FloatStorage") + u("0") + u("cpu") + K(1) + b"tQ",
        b"(" + K(1) * 70 + b"t",  # a tuple too big to keep
        b"\x8f",  # EMPTY_SET
        b"(K\x01\x91",  # FROZENSET
        b"\x8a\x41" + b"\x01" * 65,  # a LONG too big to keep
    ],
    ids=["persistent", "big-tuple", "set", "frozenset", "long"],
)
def test_build_on_an_unmodelled_value_is_judged(scan_bytes: Scan, obj: bytes) -> None:
    data = b"\x80\x02" + obj + PLANT + int_list(EVIL4) + b"b."
    report = scan_bytes(data)
    assert {"MLV105", "MLV106"} <= rules(report), report.findings


def test_build_on_a_torch_storage_inside_a_torch_zip(scan_bytes: Scan) -> None:
    pid = b"(" + u("storage") + g0("torch", "FloatStorage") + u("0") + u("cpu") + K(1) + b"tQ"
    pkl = b"\x80\x02" + pid + PLANT + int_list(EVIL4) + b"b."
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", b"\0\0\0\0")
        z.writestr("archive/version", "3\n")
    report = scan_bytes(bio.getvalue(), "model.pt")
    assert "MLV106" in rules(report) and denied(report)


# -- B4: construct-only classes: keyword arguments and item assignment --------------------
def _memmap_kwargs(kwargs: bytes) -> bytes:
    return b"\x80\x04" + g0("numpy", "memmap") + b")" + kwargs + b"\x92"


@pytest.mark.parametrize(
    "kwargs",
    [
        b"}(" + u("filename") + u("/tmp/x.pth") + u("mode") + u("w+") + b"u",
        b"(" + u("filename") + u("/tmp/x.pth") + b"d",
        # a key the scanner cannot evaluate: the simulated dict is not empty
        b"("
        + g0("builtins", "str")
        + b"("
        + sbb(b"filename")
        + u("ascii")
        + b"tR"
        + u("/tmp/x.pth")
        + b"d",
        g0("builtins", "dict") + b")R",  # a dict computed at load time
    ],
    ids=["setitems", "dict", "computed-key", "computed-dict"],
)
def test_newobj_ex_keyword_arguments_of_a_construct_only_class(
    scan_bytes: Scan, kwargs: bytes
) -> None:
    report = scan_bytes(_memmap_kwargs(kwargs) + b".")
    assert any(f.rule_id == "MLV105" and f.subject == "numpy.memmap" for f in report.findings)


def test_newobj_ex_with_no_arguments_is_reconstruction(scan_bytes: Scan) -> None:
    report = scan_bytes(_memmap_kwargs(b"}") + b".")
    assert "MLV105" not in rules(report)


@pytest.mark.parametrize("op", [b"s", b"u", b"a", b"e"])
def test_item_assignment_on_a_construct_only_object_calls_its_method(
    scan_bytes: Scan, op: bytes
) -> None:
    obj = g0("copyreg", "__newobj__") + b"(" + g0("numpy", "memmap") + b"tR"
    if op == b"s":
        body = obj + K(0) + K(105) + b"s"
    elif op == b"u":
        body = obj + b"(" + K(0) + K(105) + b"u"
    elif op == b"a":
        body = obj + K(105) + b"a"
    else:
        body = obj + b"(" + K(105) + b"e"
    report = scan_bytes(b"\x80\x02" + body + b".")
    assert any(f.rule_id == "MLV105" and f.subject == "numpy.memmap" for f in report.findings)


def test_item_assignment_on_an_imported_global_is_a_finding(scan_bytes: Scan) -> None:
    body = g0("collections", "OrderedDict") + b"(" + u("k") + K(1) + b"u"
    assert "MLV106" in rules(scan_bytes(b"\x80\x02" + body + b"."))


def test_real_dict_and_list_subclasses_are_clean(scan_bytes: Scan) -> None:
    od = collections.OrderedDict((f"k{i}", [i, (i, "x")]) for i in range(100))
    dd = collections.defaultdict(list, {"a": [1, 2], "b": [3]})
    counter = collections.Counter("mississippi")
    for proto in (0, 1, 2, 4, 5):
        assert not scan_bytes(pickle.dumps([od, dd, counter], protocol=proto)).findings


# -- B5: a header-less stream that runs a payload and then breaks is a pickle --------------
PAYLOAD0 = b"cos\nsystem\n(S'true'\ntR"


@pytest.mark.parametrize(
    "tail",
    [b"ca b\nc d\n", b"c\n\n", b"c\x01\n\x02\n", b"cfoo-bar\nbaz-q\n", b"c123\n456\n",
     b"c..\n..\n", b"\xff", b"(", b""],
)  # fmt: skip
def test_stream_that_runs_then_breaks_is_a_pickle(scan_bytes: Scan, tail: bytes) -> None:
    report = scan_bytes(PAYLOAD0 + tail)
    assert "pickle" in report.formats and "MLV101" in rules(report)


def test_call_after_an_odd_import_is_a_pickle(scan_bytes: Scan) -> None:
    # the loader calls whatever 'a b' names if a module of that name exists
    report = scan_bytes(b"ca b\nc d\n(S'x'\ntR" + b"c\x01\n\x02\n")
    assert "pickle" in report.formats and denied(report)


@pytest.mark.parametrize("wrap", ["gzip", "torch-zip"])
def test_wrapped_stream_that_runs_then_breaks(scan_bytes: Scan, wrap: str) -> None:
    raw = PAYLOAD0 + b"ca b\nc d\n"
    if wrap == "gzip":
        data, name = gzip.compress(raw), "model.pkl.gz"
    else:
        bio = io.BytesIO()
        with zipfile.ZipFile(bio, "w") as z:
            z.writestr("archive/data.pkl", raw)
            z.writestr("archive/version", "3\n")
        data, name = bio.getvalue(), "model.pt"
    assert "MLV101" in rules(scan_bytes(data, name))


@pytest.mark.parametrize(
    "text",
    [b"city,population\nParis,2M\n", b"import os\nimport sys\n", b"c\n\n", b"(\n)\n",
     b"include foo-bar\n"],
)  # fmt: skip
def test_text_without_effects_is_data(scan_bytes: Scan, text: bytes) -> None:
    report = scan_bytes(text, "notes.txt")
    assert "pickle" not in report.formats and not report.findings


# -- D1: escape search is memoised and bounded by the input -------------------------------
def _bomb(n: int) -> bytes:
    p = b"\x80\x04cnumpy\nmean\nq\x00" + b"(" + b"K\x01" * 64 + b"tq\x01"
    for lvl in range(2, 6):
        p += b"(" + (b"h" + bytes([lvl - 1])) * 64 + b"tq" + bytes([lvl])
    return p + b"](h\x00" + b"h\x05" * n + b"e."


def _walk(data: bytes) -> tuple[PickleWalker, list[tuple[str, Severity]]]:
    found: list[tuple[str, Severity]] = []

    def emit(rule: str, sev: Severity, off: int, subject: str, msg: str, chain: str) -> None:
        found.append((rule, sev))

    w = PickleWalker(bytes_source(data, "").open(), get_policy(), Limits(), emit)
    w.walk()
    return w, found


def test_escape_search_work_is_linear_in_the_input() -> None:
    for n in (10_000, 100_000):
        data = _bomb(n)
        w, found = _walk(data)
        assert w.judge._work < 4 * len(data), (n, w.judge._work)
        assert not found


def test_escape_search_past_its_budget_is_medium(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(judge_mod, "_WORK_PER_BYTE", 0)
    monkeypatch.setattr(judge_mod, "_WORK_FREE", 1000)
    _, found = _walk(_bomb(2000))
    assert ("MLV302", Severity.MEDIUM) in found


def test_loader_nested_deeper_than_any_fixed_depth_is_found(scan_bytes: Scan) -> None:
    nested = LOADER + b"\x85" * 40  # ((((loader,),),)...)
    data = b"\x80\x02" + g0("numpy", "mean") + nested + b"\x85R."
    assert "MLV105" in rules(scan_bytes(data))


# -- other observations ----------------------------------------------------------------
@pytest.mark.parametrize(
    "container",
    [
        b"(" + K(1) * 70 + LOADER + b"t",  # TUPLE past KEEP
        b"(" + K(1) * 70 + LOADER + b"l",  # LIST past KEEP
        b"(" + LOADER + b"\x91",  # FROZENSET
        b"}(" + LOADER + K(1) + b"t" + K(0) + b"s",  # a tuple dict key
    ],
    ids=["tuple", "list", "frozenset", "key"],
)
def test_containers_kept_opaque_are_judged(scan_bytes: Scan, container: bytes) -> None:
    data = b"\x80\x04" + container + b"."
    assert "MLV105" in rules(scan_bytes(data))


def test_persistent_id_with_a_bytes_type_name_is_the_class(scan_bytes: Scan) -> None:
    # legacy torch decodes b'module' as 'module' and returns the class: calling it is a call
    pid = b"(" + sbb(b"module") + g0("numpy", "memmap") + b"tQ"
    report = scan_bytes(b"\x80\x02" + pid + b"(" + u("/tmp/x") + b"tR.")
    assert "MLV107" not in rules(report)
    assert any(f.rule_id == "MLV105" and f.subject == "numpy.memmap" for f in report.findings)


def test_sibling_file_of_an_old_joblib_wrapper_is_denied_alone(scan_bytes: Scan) -> None:
    cls = g0("joblib.numpy_pickle_compat", "NDArrayWrapper")
    state = b"}(" + u("filename") + u("arr.npy") + u("allow_mmap") + b"\x89ub"
    report = scan_bytes(b"\x80\x02" + cls + b")\x81" + state + b".", "model.pkl")
    assert any(f.rule_id == "MLV112" and f.severity >= Severity.MEDIUM for f in report.findings)


@pytest.mark.parametrize("key", [u("__setstate__"), COMPUTED_SETSTATE], ids=["str", "computed"])
def test_item_of_a_mapping_object_planting_a_method(scan_bytes: Scan, key: bytes) -> None:
    # a mapping whose __getattr__ reads its items (scipy's OptimizeResult) turns an item
    # into an attribute: the next BUILD calls it
    obj = g0("collections", "OrderedDict") + b")R"
    for setter in (b"(" + key + g0("numpy", "sin") + b"u", key + g0("numpy", "sin") + b"s"):
        report = scan_bytes(b"\x80\x02" + obj + setter + b".")
        assert "MLV106" in rules(report), report.findings


def test_the_sibling_inside_a_checked_directory_is_information(tmp_path: Path) -> None:
    """Checked as a directory, the sibling an old joblib dump names is scanned with it: its
    own content decides (a benign array allows, a pickle inside it denies)."""
    import mlverify

    cls = g0("joblib.numpy_pickle_compat", "NDArrayWrapper")
    state = b"}(" + u("filename") + u("arr.npy") + u("allow_mmap") + b"\x89ub"
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.pkl").write_bytes(b"\x80\x02" + cls + b")\x81" + state + b".")
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"
    header += b" " * (118 - len(header)) + b"\n"
    (model / "arr.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00" + header + b"\x00" * 16)
    assert not mlverify.check(model / "model.pkl").allowed  # alone: cannot be shown safe
    whole = mlverify.check(model)
    assert whole.allowed, [r.message for d in whole.decisions for r in d.reasons]
    levels = {f["severity"] for f in whole.evidence["findings"] if f["rule_id"] == "MLV112"}
    assert levels == {"info"}
    # the sibling holds a pickle that runs code: denied for that, in the sibling
    (model / "arr.npy").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    evil = mlverify.check(model)
    assert not evil.allowed
    assert any(f["file"] == "arr.npy" for f in evil.evidence["findings"])


@pytest.mark.parametrize(
    "state",
    [
        # BUILD sets the slot state over the dict: joblib reads the outside file
        b"(}(" + u("filename") + u("arr.npy") + b"u}(" + u("filename") + u("/tmp/x.pkl") + b"ut",
        # a computed key (str(bytes, encoding)) may be "filename": the last value wins
        b"}(" + u("filename") + u("arr.npy")
        + g0("builtins", "str") + b"(" + b"C\x08filename" + u("ascii") + b"tR" + u("/tmp/x.pkl")
        + b"u",
    ],
    ids=["slotstate-overrides", "computed-key"],
)  # fmt: skip
def test_the_wrapper_filename_is_the_one_build_leaves(tmp_path: Path, state: bytes) -> None:
    """red-team r3: the name judged is the one load_build leaves, not the first one read."""
    import mlverify

    cls = g0("joblib.numpy_pickle_compat", "NDArrayWrapper")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.pkl").write_bytes(b"\x80\x02" + cls + b")\x81" + state + b"b.")
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"
    header += b" " * (118 - len(header)) + b"\n"
    (model / "arr.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00" + header + b"\x00" * 16)
    r = mlverify.check(model)
    assert not r.allowed
    assert any(f["rule_id"] == "MLV112" and f["severity"] == "high" for f in r.evidence["findings"])
