"""The classes of issue 10, each built from opcode bytes with a harmless payload (never run).

Every sample puts ``os.system('true')`` where a CPython loader would run it, behind the
construct under test; the scanner must name it. Benign variants of each construct are in
test_benign*.py (real files written by the real libraries).
"""

from __future__ import annotations

import io
import struct
import time
import zipfile

import pytest

from mlverify._internal.scan import Limits, Severity
from tests.scan.builders import EVIL4, binbytes, call0, call4, g0, p4, s0, sg, u
from tests.scan.conftest import Scan, rules, subjects

PAYLOAD0 = call0("os", "system", "true")  # protocol-0 opcodes: GLOBAL, MARK, STRING, TUPLE, REDUCE
PAYLOAD4 = call4("os", "system", "true")


def caught(report: object) -> bool:
    from mlverify._internal.scan import ScanReport

    assert isinstance(report, ScanReport)
    return any(f.subject == "os.system" and f.severity >= Severity.HIGH for f in report.findings)


# -- 1. parser differentials ----------------------------------------------------------
# text operands CPython accepts (the C loader, the pure-Python one, or both), each in
# front of a payload: a walker that reads them differently stops early and misses it
OPERANDS = [
    b"I0x1\n0",  # base 0: hex (both)
    b"I0o7\n0",  # octal prefix (both)
    b"I0b1\n0",  # binary prefix (both)
    b"I017\n0",  # strtol octal (C only)
    b"I1\x00junk\n0",  # NUL ends the C string (C only)
    b"I 1_0 \n0",  # whitespace and underscores (both)
    b"I+5\n0",
    b"I" + b"9" * 5000 + b"\n0",  # over the digit limit of newer Pythons (older ones: no limit)
    b"L0x1L\n0",
    b"L0x1\n0",  # the trailing L is optional
    b"L 7_7 L\n0",
    b"L1\x00zL\n0",  # C only
    b"F1e999\n0",  # pure Python: inf (C raises)
    b"F 1.5\n0",  # pure Python only
    b"F1.5\x00x\n0",  # C only
    b"Finfinity\n0",
    b"K\x01p 0_0\n0g0\n0",  # memo keys: whitespace, underscores
    b"K\x01p0\x00x\n0g0\n0",  # C only
    b"V\\u0041\n0",
    b"S'a\\x41'\n0",
    b'S"\\q"\n0',  # an invalid escape is accepted (with a warning)
]


@pytest.mark.parametrize("operand", OPERANDS, ids=lambda b: repr(b[:16]))
@pytest.mark.parametrize("header", [b"", b"\x80\x02", b"\x80\x04"])
def test_operand_forms_do_not_hide_what_follows(
    scan_bytes: Scan, operand: bytes, header: bytes
) -> None:
    report = scan_bytes(header + operand + PAYLOAD0 + b".")
    assert caught(report), report
    assert "MLV108" not in rules(report), report  # read to its end


def test_operand_forms_inside_a_torch_zip(scan_bytes: Scan) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02I0x1\n0L0x1L\n0" + PAYLOAD0 + b".")
        z.writestr("archive/version", b"3\n")
    assert caught(scan_bytes(buf.getvalue(), "model.pt"))


def test_frame_boundaries_an_operand_straddles(scan_bytes: Scan) -> None:
    # the C loader treats FRAME as a prefetch hint: operands may cross frame ends
    body = u("os") + u("system") + b"\x93" + u("true") + b"\x85R."
    frame = b"\x95" + struct.pack("<Q", 3)  # ends inside the first string
    assert caught(scan_bytes(b"\x80\x04" + frame + body))


def test_invalid_operands_stop_the_walk_and_are_reported(scan_bytes: Scan) -> None:
    # every loader raises at I0x\n: what comes after never runs, but the file is not a
    # complete pickle, which is a finding (MEDIUM) rather than "data" or a pass
    report = scan_bytes(b"\x80\x02I0x\n0" + PAYLOAD0 + b".")
    assert "MLV108" in rules(report) and report.max_severity is not None
    assert report.max_severity >= Severity.MEDIUM


# -- 2 and 3. joblib arrays: exact sizing, never fail open, every loader -----------------
def _wrapper(state: bytes, *, init: bytes | None = None) -> bytes:
    """A joblib NumpyArrayWrapper (NEWOBJ, or REDUCE with ``init`` args) and its BUILD."""
    cls = sg("joblib.numpy_pickle", "NumpyArrayWrapper")
    obj = cls + (b"(" + init + b"tR" if init is not None else b")\x81")
    return obj + state + b"b"


def _dtype(spec: bytes) -> bytes:
    """numpy.dtype(spec, False, True) with a version-3 state, as numpy pickles it."""
    state = b"(K\x03" + u("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    return sg("numpy", "dtype") + spec + b"\x89\x88\x87R" + state + b"b"


def _state(shape: bytes, dtype: bytes, align: bool = True, style: str = "dict") -> bytes:
    items = (
        u("subclass") + sg("numpy", "ndarray") + u("shape") + shape + u("order") + u("C")
        + u("dtype") + dtype + u("allow_mmap") + b"\x89"
    )  # fmt: skip
    if align:
        items += u("numpy_array_alignment_bytes") + b"K\x10"
    d = b"}(" + items + b"u"
    if style == "dict":
        return d
    if style == "dict-none":
        return d + b"N\x86"
    return b"N" + d + b"\x86"  # (None, slotstate)


def _joblib(state_ops: bytes, array: bytes, *, init: bytes | None = None) -> bytes:
    return b"\x80\x04" + _wrapper(state_ops, init=init) + array + b"0" + PAYLOAD4 + b"."


F8 = _dtype(u("f8"))
ARRAY3 = b"\x05" + b"\xff" * 5 + b"\x00" * 24  # padding byte, padding, 3 float64


@pytest.mark.parametrize(
    ("state", "array"),
    [
        (_state(b"K\x03\x85", F8), ARRAY3),  # as joblib writes it
        (_state(b"]K\x03a", F8), ARRAY3),  # shape as a list
        (_state(b"K\x03\x85", F8, style="dict-none"), ARRAY3),  # (dict, None) state
        (_state(b"K\x03\x85", F8, style="slots"), ARRAY3),  # (None, slotstate)
        (_state(b"K\x03\x85", sg("numpy", "float64")), ARRAY3),  # dtype as a scalar type
        (_state(b"K\x03\x85", _dtype(sg("numpy", "float64"))), ARRAY3),  # dtype(scalar type)
        (_state(b"K\x03\x85", _dtype(u("float64"))), ARRAY3),  # another spelling
        (_state(b"K\x03\x85", F8, align=False), b"\x00" * 24),  # joblib <= 1.1: no padding
        (_state(b")", F8), b"\x05" + b"\xff" * 5 + b"\x00" * 8),  # shape () is one element
        (
            _state(b"\x8a\x05\x00\x00\x00\x00\x01\x8a\x05\x00\x00\x00\x00\x01\x86", F8),
            b"\x05" + b"\xff" * 5,
        ),  # 2**32 x 2**32 wraps to 0 elements in int64
    ],
    ids=[
        "plain",
        "list-shape",
        "dict-none",
        "slotstate",
        "scalar-type",
        "dtype-of-type",
        "spelling",
        "no-align",
        "scalar-shape",
        "int64-wrap",
    ],
)
def test_joblib_arrays_are_sized_as_joblib_sizes_them(
    scan_bytes: Scan, state: bytes, array: bytes
) -> None:
    report = scan_bytes(_joblib(state, array), "model.joblib")
    assert caught(report), report
    assert "MLV108" not in rules(report), report


def test_joblib_wrapper_built_by_reduce_with_init_arguments(scan_bytes: Scan) -> None:
    init = sg("numpy", "ndarray") + b"K\x03\x85" + u("C") + F8  # __init__ sets alignment 16
    report = scan_bytes(_joblib(b"}", ARRAY3, init=init), "model.joblib")
    assert caught(report) and "MLV108" not in rules(report), report


def test_joblib_object_arrays_are_an_inline_pickle(scan_bytes: Scan) -> None:
    inner = b"\x80\x05" + PAYLOAD4 + b"."
    report = scan_bytes(
        b"\x80\x04" + _wrapper(_state(b"K\x01\x85", _dtype(u("O8")))) + inner + b".",
        "model.joblib",
    )
    assert caught(report), report


@pytest.mark.parametrize(
    "state",
    [
        _state(b"K\x03\x85", _dtype(u("i4,f8"))),  # a comma spelling: not sized from a table
        _state(b"G\x7f\xf8\x00\x00\x00\x00\x00\x00\x85", F8),  # numpy.int64(nan) raises
    ],
    ids=["comma-dtype", "nan-dims"],
)
def test_joblib_array_the_scanner_cannot_size_is_medium_and_searched(
    scan_bytes: Scan, state: bytes
) -> None:
    report = scan_bytes(_joblib(state, ARRAY3), "model.joblib")
    assert "MLV108" in rules(report)
    assert report.max_severity is not None and report.max_severity >= Severity.MEDIUM
    assert "os.system" in subjects(report)  # found by searching the rest of the stream


def test_joblib_float_dims_are_sized_as_numpy_int64_truncates(scan_bytes: Scan) -> None:
    # BINFLOAT values are read exactly: numpy.int64(3.7) is 3, so joblib reads 3 float64
    report = scan_bytes(
        _joblib(_state(b"G@\r\x99\x99\x99\x99\x99\x9a\x85", F8), ARRAY3), "m.joblib"
    )
    assert "MLV108" not in rules(report), report
    assert "os.system" in subjects(report)


def test_array_bytes_run_as_opcodes_under_pickle_load(scan_bytes: Scan) -> None:
    # joblib skips the 24 array bytes, pickle.load / pandas.read_pickle run them
    hidden = PAYLOAD4  # 26 bytes: 3 float64 + 2 padding
    state = _state(b"K\x03\x85", F8, align=False)
    n = len(hidden)
    state = state.replace(b"K\x03\x85", b"K" + bytes([n]) + b"\x85")
    state = state.replace(u("f8"), u("u1"))
    data = b"\x80\x04" + _wrapper(state) + hidden + b"."
    report = scan_bytes(data, "model.joblib")
    hits = [f for f in report.findings if f.subject == "os.system"]
    assert hits and "pickle.load" in hits[0].chain, report


# -- 4 and 5. an exact allowlist, call-through ----------------------------------------------
@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("torch.nn.modules.linear", "Evil"),  # a capitalised name under an allowed package
        ("sklearn.utils", "Popen"),  # a re-export shape
        ("numpy", "Anything"),
        ("collections", "OrderedDictX"),
    ],
)
def test_names_outside_the_exact_allowlist_are_findings(
    scan_bytes: Scan, module: str, name: str
) -> None:
    report = scan_bytes(p4(sg(module, name) + b")R"))
    assert f"{module}.{name}" in subjects(report)
    assert report.max_severity is not None and report.max_severity >= Severity.MEDIUM


def test_call_through_requires_allowed_callables(scan_bytes: Scan) -> None:
    # copyreg._reconstructor constructs its first argument: here a computed value
    computed = sg("collections", "OrderedDict") + b")R"
    body = sg("copyreg", "_reconstructor") + b"(" + computed + sg("builtins", "object") + b"NtR"
    report = scan_bytes(p4(body))
    assert "MLV105" in rules(report), report


def test_partial_of_an_allowed_class_called_is_clean(scan_bytes: Scan) -> None:
    partial = sg("functools", "partial") + b"(" + sg("collections", "OrderedDict") + b"tR"
    report = scan_bytes(p4(partial + b")R"))
    assert not report.findings, report


def test_partial_of_a_computed_callable_called_is_a_finding(scan_bytes: Scan) -> None:
    computed = sg("collections", "OrderedDict") + b")R"
    partial = sg("functools", "partial") + b"(" + computed + b"tR"
    report = scan_bytes(p4(partial + b")R"))
    assert "MLV105" in rules(report), report


def test_getattr_only_fetches_known_methods(scan_bytes: Scan) -> None:
    body = sg("builtins", "getattr") + b"(" + sg("collections", "OrderedDict") + u("fromkeys")
    report = scan_bytes(p4(body + b"tR)R"))
    assert report.max_severity is not None and report.max_severity >= Severity.HIGH
    assert "MLV104" in rules(report), report


def test_getattr_imported_but_unused_is_a_finding(scan_bytes: Scan) -> None:
    report = scan_bytes(p4(sg("builtins", "getattr")))
    assert "builtins.getattr" in subjects(report)


def test_python2_names_are_judged_as_loaded(scan_bytes: Scan) -> None:
    # __builtin__ maps to builtins for protocol < 3; a protocol-4 header changes nothing
    for data in (
        b"\x80\x02" + PAYLOAD0.replace(b"os\nsystem", b"__builtin__\neval") + b".",
        b"\x80\x04" + call4("__builtin__", "eval", "1") + b".",
    ):
        report = scan_bytes(data)
        assert report.max_severity == Severity.CRITICAL, report


# -- 6. nested payloads decided by an allowed loader, not by their first byte --------------
def test_bytes_an_allowed_loader_deserialises_are_scanned_whatever_they_start_with(
    scan_bytes: Scan,
) -> None:
    inner = b"N0" + PAYLOAD4 + b"."  # NONE, POP, payload: starts with a byte no probe expects
    body = sg("torch.storage", "_load_from_bytes") + b"(" + binbytes(inner) + b"tR"
    report = scan_bytes(p4(body))
    assert caught(report), report


# -- BUILD, persistent ids, extensions ---------------------------------------------------
def test_unregistered_extension_codes_are_findings(scan_bytes: Scan) -> None:
    report = scan_bytes(b"\x80\x02\x82\x07)R.")
    assert "MLV110" in rules(report)


def test_old_joblib_wrapper_naming_a_file_outside_the_artifact(scan_bytes: Scan) -> None:
    cls = g0("joblib.numpy_pickle_compat", "NDArrayWrapper")
    state = b"(dp0\n" + s0("filename") + s0("../../elsewhere/x.npy") + b"s"
    report = scan_bytes(b"\x80\x02" + cls + b")\x81" + state + b"b.")
    assert "MLV112" in rules(report), report


# -- 9. bounded work on tiny hostile files ---------------------------------------------------
def _shared_tuples(levels: int) -> bytes:
    body = b")\x94"  # () memoised as 0
    for i in range(1, levels + 1):
        body += b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86\x94"
    return body


@pytest.mark.parametrize(
    "data",
    [
        # a dict keyed by a tuple whose structure is shared 2**200 ways
        b"\x80\x04}" + _shared_tuples(200)[:0] + _shared_tuples(200) + b"Ns.",
        # the same tuple as REDUCE arguments, BUILD state and persistent id
        b"\x80\x04"
        + _shared_tuples(200)
        + sg("collections", "OrderedDict")
        + b"h\xc8R"
        + b"h\xc8b"
        + b"h\xc8Q.",
    ],
    ids=["dict-key", "args-state-pid"],
)
def test_structure_sharing_bombs_finish(scan_bytes: Scan, data: bytes) -> None:
    t0 = time.perf_counter()
    scan_bytes(data)
    assert time.perf_counter() - t0 < 30  # a hang guard, not a benchmark


def test_dtype_fields_sharing_structure_finish(scan_bytes: Scan) -> None:
    # a structured dtype whose 60 fields all hold the same nested dtype, 6 levels deep
    state_tail = b"J\xff\xff\xff\xffK\x01K\x00t"
    d = _dtype(u("f8")) + b"\x94"
    memo = 0
    for _level in range(6):
        fields = b"}(" + b"".join(
            u(f"f{i}") + b"h" + bytes([memo]) + b"K\x00\x86" for i in range(60)
        )
        fields += b"u"
        spec = sg("numpy", "dtype") + u("V8") + b"\x89\x88\x87R"
        st = b"(K\x03" + u("|") + b"N" + b"N" + fields + b"K\x08" + state_tail
        d = spec + st + b"b\x94"
        memo += 1  # noqa: SIM113 - the memo index of the dtype just built
    data = b"\x80\x04" + _wrapper(_state(b"K\x01\x85", d)) + b"\x00" * 30 + b"0" + PAYLOAD4 + b"."
    t0 = time.perf_counter()
    scan_bytes(data, "model.joblib")
    assert time.perf_counter() - t0 < 30


def test_limits_are_findings_not_hangs(scan_bytes: Scan) -> None:
    many = b"\x80\x04" + b"K\x01" * 50_000 + b"."
    report = scan_bytes(many, limits=Limits(max_stack=1000))
    assert "MLV108" in rules(report)


def test_evil_baseline(scan_bytes: Scan) -> None:
    assert caught(scan_bytes(EVIL4))


# -- 8. npy headers: object dtypes however spelled ------------------------------------------
def _npy(descr: object, body: bytes, major: int = 1, shape: str = "(1,)") -> bytes:
    header = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    if major == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body
    return b"\x93NUMPY" + bytes([major, 0]) + struct.pack("<I", len(header)) + header + body


@pytest.mark.parametrize("descr", ["object", "|O", "O8", "object_", "<O", "not-a-known-spelling"])
def test_npy_object_dtypes_however_spelled(scan_bytes: Scan, descr: str) -> None:
    assert caught(scan_bytes(_npy(descr, EVIL4), "x.npy"))


def test_npy_structured_field_holding_objects(scan_bytes: Scan) -> None:
    data = _npy([("a", "<f8"), ("b", "object")], EVIL4)
    assert caught(scan_bytes(data, "x.npy"))


def test_python2_npy_header_with_long_suffixes_is_data(scan_bytes: Scan) -> None:
    report = scan_bytes(_npy("<f8", b"\x00" * 24, shape="(3L,)"), "x.npy")
    assert not report.findings, report


# -- detection: a header-less stream is a pickle when a loader would do anything with it ------
def test_headerless_stream_the_walker_cannot_follow_is_scanned(scan_bytes: Scan) -> None:
    data = _wrapper(_state(b"K\x03\x85", _dtype(u("i4,f8")))) + ARRAY3 + b"0" + PAYLOAD0 + b"."
    report = scan_bytes(data, "model.joblib")
    assert "MLV108" in rules(report) and "os.system" in subjects(report), report


def test_headerless_allowed_loader_before_a_break_is_scanned(scan_bytes: Scan) -> None:
    # allowed imports only, then a break: the loader still ran _load_from_bytes first
    inner = b"N0" + PAYLOAD4 + b"."
    body = g0("torch.storage", "_load_from_bytes") + b"(" + binbytes(inner) + b"tR" + b"\xff"
    assert caught(scan_bytes(body))


def test_partial_of_a_loader_still_scans_what_it_loads(scan_bytes: Scan) -> None:
    inner = b"N0" + PAYLOAD4 + b"."
    part = sg("functools", "partial") + b"(" + sg("torch.storage", "_load_from_bytes") + b"tR"
    assert caught(scan_bytes(p4(part + b"(" + binbytes(inner) + b"tR")))


# -- red-team classes: BUILD planting methods, wrappers hiding call-through, identity ---------
def test_build_planting_a_setstate_is_a_finding(scan_bytes: Scan) -> None:
    # BUILD 1 makes __setstate__ an instance attribute; BUILD 2 would call it
    loader = g0("torch.storage", "_load_from_bytes")
    filler = b"".join(u(f"k{i}") + b"N" for i in range(70))  # past the kept 64 keys
    obj = g0("argparse", "Namespace") + b")\x81"
    data = b"\x80\x02" + obj + b"}(" + filler + u("__setstate__") + loader + b"ub" + b"Nb."
    report = scan_bytes(data)
    assert "MLV106" in rules(report), report


def test_known_method_name_planted_by_build_is_a_finding(scan_bytes: Scan) -> None:
    obj = sg("torch.optim.lr_scheduler", "CyclicLR") + b")\x81"
    state = b"}" + u("_triangular_scale_fn") + sg("torch.storage", "_load_from_bytes") + b"sb"
    report = scan_bytes(p4(obj + state))
    assert "MLV106" in rules(report), report


def test_a_wrapper_may_not_hide_what_its_callee_loads(scan_bytes: Scan) -> None:
    vec = sg("numpy", "vectorize") + b"(" + sg("torch.storage", "_load_from_bytes") + b"tR"
    report = scan_bytes(p4(vec + b"]" + binbytes(b"N0" + PAYLOAD4 + b".") + b"a\x85R"))
    assert "MLV105" in rules(report) or caught(report), report


def test_an_object_that_may_be_a_joblib_wrapper_is_cannot_follow(scan_bytes: Scan) -> None:
    naw = sg("joblib.numpy_pickle", "NumpyArrayWrapper")
    ident = sg("torch._tensor", "_rebuild_from_type_v2") + b"(" + naw + naw + b")NtR"
    data = b"\x80\x04" + ident + b"}b" + b"B\x05\x00\x00\x00" + b"0" + PAYLOAD4 + b"."
    report = scan_bytes(data, "model.joblib")
    assert report.max_severity is not None and report.max_severity >= Severity.MEDIUM, report


@pytest.mark.parametrize("line", [b"I\x00\n", b"I\x00\x00\n", b"I68\x00O\n", b"I 7\x00x\n"])
def test_c_strtol_stopping_at_a_nul(scan_bytes: Scan, line: bytes) -> None:
    # CPython <= 3.12's C loader accepts a number that strtol ends at a NUL (or no number)
    report = scan_bytes(line + b"0" + PAYLOAD0 + b".")
    assert caught(report) and "MLV108" not in rules(report), report


@pytest.mark.parametrize("frame_len", [64, 16384])
def test_a_value_crossing_a_frame_end_is_read_as_the_c_file_reader_reads_it(
    scan_bytes: Scan, frame_len: int
) -> None:
    # the C unpickler reading a file (torch.load hands it a BytesIO) takes a string that
    # crosses the frame's end from after the frame: the 5 "A"s inside the frame are skipped
    tail = b"\x8c\x0a" + b"A" * 5
    fill = frame_len - len(tail) - 6
    frame = b"B" + struct.pack("<I", fill) + b"\0" * fill + b"0" + tail
    pay = b"0" + PAYLOAD0 + b"."
    data = b"\x80\x04\x95" + struct.pack("<Q", frame_len) + frame + b"A" * 5
    data += b"B" + struct.pack("<I", len(pay)) + pay + b"."
    report = scan_bytes(data)
    assert caught(report) and "MLV108" in rules(report), report
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", data)
    assert caught(scan_bytes(buf.getvalue(), "model.pt"))


def test_real_framed_pickles_never_cross_a_frame(scan_bytes: Scan) -> None:
    import pickle

    data = pickle.dumps([{"k": "v" * 300, "n": i} for i in range(3000)], protocol=5)
    assert not scan_bytes(data).findings


def test_old_joblib_wrapper_naming_a_sibling_says_so(scan_bytes: Scan) -> None:
    cls = g0("joblib.numpy_pickle_compat", "NDArrayWrapper")
    state = b"(dp0\n" + s0("filename") + s0("model.pkl_01.npy") + b"s"
    report = scan_bytes(b"\x80\x02" + cls + b")\x81" + state + b"b.")
    hits = [f for f in report.findings if f.rule_id == "MLV112"]
    assert hits and hits[0].severity == Severity.MEDIUM and hits[0].subject == "model.pkl_01.npy"


def test_lzma_alone_with_any_dictionary_size_liblzma_accepts(scan_bytes: Scan) -> None:
    import lzma

    filt = [{"id": lzma.FILTER_LZMA1, "dict_size": 8192}]
    data = lzma.compress(EVIL4, format=lzma.FORMAT_ALONE, filters=filt)
    assert data[:3] != b"\x5d\x00\x00"  # not the default 8 MiB dictionary
    assert caught(scan_bytes(data, "model.pkl"))


def test_a_loader_past_the_kept_items_of_a_container_is_still_seen(scan_bytes: Scan) -> None:
    # 64 fillers, then the loader: deque(list, 4) and tuple() bring it back to the front as
    # the BUILD state of a partial, whose call then loads the bytes (third review)
    inner = b"N0" + PAYLOAD0 + b"."
    p = sg("functools", "partial") + sg("builtins", "int") + b"\x85R"
    p += sg("builtins", "tuple") + sg("collections", "deque") + b"](" + b"N" * 64
    p += sg("torch.storage", "_load_from_bytes") + binbytes(inner) + b"\x85NN"
    p += b"eK\x04\x86R\x85Rb)R"
    report = scan_bytes(p4(p))
    assert "MLV105" in rules(report) and report.max_severity is not None
    assert report.max_severity >= Severity.HIGH, report


def test_a_partial_called_after_build_is_judged_by_its_state(scan_bytes: Scan) -> None:
    # partial(int), BUILD (loader, (inner,), None, None): calling it calls the loader
    inner = b"N0" + PAYLOAD0 + b"."
    p = sg("functools", "partial") + sg("builtins", "int") + b"\x85R"
    p += b"(" + sg("torch.storage", "_load_from_bytes") + binbytes(inner) + b"\x85NNtb)R"
    report = scan_bytes(p4(p))
    assert report.max_severity is not None and report.max_severity >= Severity.HIGH, report
