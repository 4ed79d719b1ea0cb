"""Every pickle technique of scanning.md, built from raw opcodes and scanned (never loaded)."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from mlverify._internal.scan import Severity
from tests.scan.builders import (
    EVIL0,
    EVIL4,
    binbytes,
    binbytes8_header,
    call0,
    call4,
    g0,
    p0,
    p4,
    s0,
    sg,
    u,
)
from tests.scan.conftest import Scan, rules, subjects

# (module, name) of every bypass callable named in scanning.md, and classic ones
BYPASS_CALLABLES = [
    ("pip", "main"), ("pip._internal.cli.main", "main"), ("runpy", "_run_code"),
    ("runpy", "run_path"), ("pydoc", "locate"), ("pkgutil", "resolve_name"),
    ("importlib", "import_module"), ("code", "InteractiveInterpreter"), ("bdb", "Bdb.run"),
    ("timeit", "timeit"), ("cProfile", "run"), ("profile", "run"), ("trace", "Trace"),
    ("pty", "spawn"), ("_posixsubprocess", "fork_exec"),
    ("asyncio", "create_subprocess_shell"), ("asyncio.subprocess", "create_subprocess_exec"),
    ("ctypes", "CDLL"), ("webbrowser", "open"), ("uuid", "_get_command_stdout"),
    ("imaplib", "IMAP4_stream"), ("distutils.spawn", "spawn"), ("doctest", "debug_script"),
    ("numpy.testing._private.utils", "runstring"), ("numpy.f2py", "compile"),
    ("torch.jit", "load"), ("torch", "load"), ("torch.serialization", "load"),
    ("torch.utils.collect_env", "run"), ("logging.config", "listen"), ("marshal", "loads"),
    ("types", "FunctionType"), ("operator", "attrgetter"),
    ("operator", "methodcaller"), ("builtins", "eval"),
    ("builtins", "exec"), ("builtins", "compile"), ("builtins", "open"),
    ("builtins", "__import__"), ("__builtin__", "eval"), ("os", "system"), ("posix", "system"),
    ("nt", "system"), ("subprocess", "Popen"), ("subprocess", "check_output"), ("sys", "exit"),
    ("shutil", "rmtree"), ("socket", "create_connection"), ("pickle", "loads"),
    ("_pickle", "loads"), ("numpy", "load"), ("joblib", "load"), ("dill", "loads"),
    ("platform", "popen"), ("pdb", "run"), ("multiprocessing", "Process"),
    ("os.path", "os.system"), ("torch", "os.system"), ("sklearn.pipeline", "os.system"),
    ("torch.serialization", "os"), ("numpy", "__builtins__.eval"),
]  # fmt: skip


@pytest.mark.parametrize(("module", "name"), BYPASS_CALLABLES)
@pytest.mark.parametrize("proto", [0, 4])
def test_dangerous_callables_are_high_or_critical(
    scan_bytes: Scan, module: str, name: str, proto: int
) -> None:
    data = p0(call0(module, name, "true")) if proto == 0 else p4(call4(module, name, "true"))
    report = scan_bytes(data)
    assert report.max_severity is not None and report.max_severity >= Severity.HIGH, report
    hit = [f for f in report.findings if f.rule_id == "MLV101"]
    assert hit and hit[0].subject == f"{module}.{name}"
    assert "via REDUCE" in hit[0].chain and "'true'" in hit[0].chain


def test_every_protocol_of_a_reduce_payload(scan_bytes: Scan) -> None:
    # the shapes pickle.dumps gives a __reduce__ to os.system, written opcode by opcode
    body1 = g0("posix", "system") + b"(X\x04\x00\x00\x00truetR"
    samples = {
        0: p0(call0("posix", "system", "true")),
        1: body1 + b".",
        2: b"\x80\x02" + g0("posix", "system") + b"X\x04\x00\x00\x00true\x85R.",
        3: b"\x80\x03" + g0("posix", "system") + b"X\x04\x00\x00\x00true\x85R.",
        4: b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00"
        + sg("posix", "system")
        + u("true")
        + b"\x85R.",
        5: b"\x80\x05\x95\x1d\x00\x00\x00\x00\x00\x00\x00"
        + sg("posix", "system")
        + u("true")
        + b"\x85R.",
    }
    for proto, data in samples.items():
        report = scan_bytes(data)
        assert report.max_severity == Severity.CRITICAL, proto
        f = next(f for f in report.findings if f.subject == "posix.system")
        assert "posix.system('true') via REDUCE" in f.chain, proto


@pytest.mark.parametrize(
    "string_op",
    [
        lambda s: u(s),  # SHORT_BINUNICODE
        lambda s: b"X" + struct.pack("<I", len(s)) + s.encode(),  # BINUNICODE
        lambda s: b"\x8d" + struct.pack("<Q", len(s)) + s.encode(),  # BINUNICODE8
        lambda s: b"U" + bytes([len(s)]) + s.encode(),  # SHORT_BINSTRING
        lambda s: b"T" + struct.pack("<i", len(s)) + s.encode(),  # BINSTRING
        lambda s: b"V" + s.encode() + b"\n",  # UNICODE (text)
        lambda s: s0(s),  # STRING (text)
    ],
)
def test_stack_global_names_from_any_string_opcode(
    scan_bytes: Scan, string_op: Callable[[str], bytes]
) -> None:
    mk = string_op
    body = mk("os") + mk("system") + b"\x93" + b"(" + mk("true") + b"tR"
    report = scan_bytes(p4(body))
    assert "os.system" in subjects(report)
    assert report.max_severity == Severity.CRITICAL


def test_stack_global_names_from_memo_with_memoize_len_trick(scan_bytes: Scan) -> None:
    # PUT at a sparse index, then MEMOIZE: MEMOIZE stores at len(memo), not at a counter
    body = (
        u("builtins") + b"\x94"  # memo[0]
        + u("os") + b"r" + struct.pack("<I", 5)  # memo[5] via LONG_BINPUT
        + b"00"  # POP POP
        + u("system") + b"\x94"  # memo[len(memo)] = memo[2]
        + b"0"
        + u("decoy") + b"q\x01"  # memo[1] = 'decoy'
        + b"0"
        + b"h\x05" + b"h\x02" + b"\x93"  # BINGET 5, BINGET 2, STACK_GLOBAL -> os.system
        + b"(" + u("true") + b"tR"
    )  # fmt: skip
    report = scan_bytes(p4(body))
    assert "os.system" in subjects(report)
    assert "builtins.decoy" not in subjects(report)


def test_memo_overwrite_resolves_latest_value(scan_bytes: Scan) -> None:
    body = u("collections") + b"q\x00" + b"0" + u("os") + b"q\x00" + b"0"
    body += b"h\x00" + u("system") + b"\x93" + b"(" + u("x") + b"tR"
    report = scan_bytes(p4(body))
    assert "os.system" in subjects(report)


def test_inst_and_obj(scan_bytes: Scan) -> None:
    inst = p0(b"(" + s0("true") + b"ios\nsystem\n")
    obj = p0(b"(" + g0("subprocess", "Popen") + s0("true") + b"o")
    for data in (inst, obj):
        report = scan_bytes(data)
        assert report.max_severity == Severity.CRITICAL
        assert any("INST" in f.chain or "OBJ" in f.chain for f in report.findings)


def test_newobj_and_newobj_ex(scan_bytes: Scan) -> None:
    newobj = p4(sg("subprocess", "Popen") + b"(" + u("true") + b"t\x81")
    newobj_ex = p4(sg("subprocess", "Popen") + b"(" + u("true") + b"t}\x92")
    for data in (newobj, newobj_ex):
        report = scan_bytes(data)
        assert report.max_severity == Severity.CRITICAL
        assert any("NEWOBJ" in f.chain for f in report.findings)


@pytest.mark.parametrize("ext", [b"\x82\x01", b"\x83\x01\x02", b"\x84\x01\x02\x03\x04"])
def test_extension_registry_imports(scan_bytes: Scan, ext: bytes) -> None:
    report = scan_bytes(p4(ext + b"(" + u("x") + b"tR"))
    assert "MLV110" in rules(report)
    assert report.max_severity is not None and report.max_severity >= Severity.HIGH


def test_getattr_chain_resolves_to_what_it_reaches(scan_bytes: Scan) -> None:
    body = g0("builtins", "getattr") + b"(" + call0("importlib", "import_module", "os")
    body += s0("system") + b"tR" + b"(" + s0("true") + b"tR"
    report = scan_bytes(p0(body))
    reach = [f for f in report.findings if f.rule_id == "MLV104"]
    assert any(f.subject == "os.system" and f.severity == Severity.CRITICAL for f in reach)
    assert any("import_module('os')" in f.chain for f in reach)


def test_getattr_on_harmless_looking_object(scan_bytes: Scan) -> None:
    # getattr(collections.OrderedDict, '__init__') -> dunder traversal
    body = g0("builtins", "getattr") + b"(" + g0("collections", "OrderedDict") + s0("__init__")
    body += b"tR" + s0("__globals__") + b"0" + b"N"
    report = scan_bytes(p0(body))
    assert report.max_severity is not None and report.max_severity >= Severity.HIGH


def test_attrgetter_chain(scan_bytes: Scan) -> None:
    body = (
        call0("operator", "attrgetter", "system") + b"(" + call0("importlib", "import_module", "os")
    )
    body += b"tR"
    report = scan_bytes(p0(body))
    assert any(f.rule_id == "MLV104" and f.subject == "os.system" for f in report.findings)


def test_sys_modules_lookup(scan_bytes: Scan) -> None:
    body = g0("builtins", "getattr") + b"(" + g0("sys", "modules") + s0("get") + b"tR"
    body += b"(" + s0("os") + b"tR"
    report = scan_bytes(p0(body))
    assert "sys.modules" in subjects(report)
    assert report.max_severity == Severity.CRITICAL


def test_ufunc_reconstruct_import_helper(scan_bytes: Scan) -> None:
    report = scan_bytes(p0(call0("numpy.core", "_ufunc_reconstruct", "os", "system")))
    assert any(f.rule_id == "MLV104" and f.subject == "os.system" for f in report.findings)


def test_dynamic_stack_global_is_high(scan_bytes: Scan) -> None:
    # module name computed by a call the scanner cannot evaluate
    body = call4("codecs", "decode", "bw==", "base64") + u("system") + b"\x93"
    report = scan_bytes(p4(body))
    assert "MLV103" in rules(report)
    # str() of a constant is evaluated exactly: the name it makes is judged
    report = scan_bytes(p4(call4("builtins", "str", "os") + u("system") + b"\x93"))
    assert "os.system" in subjects(report) and report.max_severity == Severity.CRITICAL


def test_nested_pickle_loads_on_embedded_bytes(scan_bytes: Scan) -> None:
    inner = EVIL4
    body = sg("pickle", "loads") + b"(" + binbytes(inner) + b"tR"
    report = scan_bytes(p4(body))
    assert "pickle.loads" in subjects(report)
    nested = [f for f in report.findings if f.subject == "os.system"]
    assert nested and nested[0].member.startswith("@")
    assert "MLV109" in rules(report)


@pytest.mark.parametrize("loader", [("numpy", "load"), ("torch", "load"), ("joblib", "load")])
def test_nested_loaders(scan_bytes: Scan, loader: tuple[str, str]) -> None:
    body = sg(*loader) + b"(" + sg("io", "BytesIO") + b"(" + binbytes(EVIL0) + b"tRtR"
    report = scan_bytes(p4(body))
    assert f"{loader[0]}.{loader[1]}" in subjects(report)
    assert "os.system" in subjects(report)


def test_nested_pickle_in_latin1_string_via_codecs(scan_bytes: Scan) -> None:
    inner = EVIL4.decode("latin-1")
    body = sg("_codecs", "encode") + b"(" + b"X" + struct.pack("<I", len(inner.encode()))
    body += inner.encode() + u("latin1") + b"tR"
    report = scan_bytes(p4(body))
    assert "os.system" in subjects(report)


def test_nested_depth_is_bounded(scan_bytes: Scan) -> None:
    data = EVIL4
    for _ in range(12):
        data = p4(binbytes(data))
    report = scan_bytes(data)
    assert "MLV302" in rules(report)


def test_stacked_pickles(scan_bytes: Scan) -> None:
    report = scan_bytes(p4(u("benign")) + EVIL4 + p0(b"N"))
    assert "os.system" in subjects(report)
    report = scan_bytes(p0(b"I1\n") + p0(b"N") + EVIL0)
    assert "os.system" in subjects(report)


def test_broken_stream_after_payload(scan_bytes: Scan) -> None:
    # the payload runs, then the stream breaks (no STOP): nullifAI style
    data = b"\x80\x02" + call0("os", "system", "true") + b"\xff\xfe garbage"
    report = scan_bytes(data)
    assert "os.system" in subjects(report)
    assert "MLV108" in rules(report)


def test_truncated_benign_stream_is_medium(scan_bytes: Scan) -> None:
    import pickle

    data = pickle.dumps({"a": list(range(100))}, protocol=4)[:-20]
    report = scan_bytes(data)
    assert rules(report) == {"MLV108"}
    assert report.max_severity == Severity.MEDIUM  # not a whole pickle: denied by default


def test_payload_after_huge_blob_is_found_without_reading_it(scan_bytes: Scan) -> None:
    n = 8 * 1024 * 1024
    data = b"\x80\x04" + binbytes8_header(n) + b"\0" * n + b"0" + call4("os", "system", "x") + b"."
    report = scan_bytes(data)
    assert "os.system" in subjects(report)
    f = next(f for f in report.findings if f.subject == "os.system")
    assert f.offset is not None and f.offset > n


def test_bytearray8_and_out_of_band_buffers(scan_bytes: Scan) -> None:
    body = (
        b"\x96"
        + struct.pack("<Q", 4)
        + b"abcd"
        + b"0"
        + b"\x97\x98"
        + b"0"
        + call4("os", "system", "x")
    )
    report = scan_bytes(b"\x80\x05" + body + b".")
    assert "os.system" in subjects(report)


def test_protocol0_text_opcodes(scan_bytes: Scan) -> None:
    body = b"(lp0\nI1\naL2L\naF3.5\naS'a\\x41'\np1\naV\\u00e9\nag1\na" + g0("os", "system")
    body += b"(g1\ntR"
    report = scan_bytes(p0(body))
    assert "os.system" in subjects(report)


def test_build_on_imported_global(scan_bytes: Scan) -> None:
    body = g0("torch.serialization", "_package_registry") + b"}" + s0("x") + s0("y") + b"sb"
    report = scan_bytes(p0(body))
    assert "MLV106" in rules(report)


def test_build_with_dangerous_state_value(scan_bytes: Scan) -> None:
    body = g0("collections", "OrderedDict") + b")R}" + s0("f") + g0("os", "system") + b"sb"
    report = scan_bytes(p0(body))
    assert "os.system" in subjects(report)
    assert any("state of" in f.chain or "stored" in f.chain for f in report.findings)


def test_persistent_ids(scan_bytes: Scan) -> None:
    report = scan_bytes(p0(b"Pfoo\n"))
    assert rules(report) == {"MLV107"}
    body = b"(" + s0("storage") + g0("os", "system") + b"tQ"
    report = scan_bytes(p0(body))
    assert "os.system" in subjects(report)


def test_unknown_import_is_medium_with_reason(scan_bytes: Scan) -> None:
    report = scan_bytes(p4(sg("mycompany.models", "Net") + b")\x81"))
    f = next(f for f in report.findings if f.rule_id == "MLV102")
    assert f.severity == Severity.MEDIUM and f.subject == "mycompany.models.Net"
    assert "NEWOBJ" in f.chain


def test_extra_allow_hook(scan_bytes: Scan) -> None:
    from mlverify._internal.scan import Limits

    data = p4(sg("mycompany.models", "Net") + b")\x81")
    report = scan_bytes(data, limits=Limits(extra_allow=frozenset({"mycompany.models.*"})))
    assert report.findings == ()
    # the hook never overrides the denylist
    report = scan_bytes(EVIL4, limits=Limits(extra_allow=frozenset({"os.*"})))
    assert report.max_severity == Severity.CRITICAL


def test_extension_lies(scan_bytes: Scan) -> None:
    for name in ("model.safetensors", "config.json", "weights.npy", "README", "x.onnx"):
        report = scan_bytes(EVIL0, name=name)
        assert report.max_severity == Severity.CRITICAL, name


def test_plain_text_and_random_data_are_data(scan_bytes: Scan) -> None:
    import random

    rnd = random.Random(1)
    for data in (
        b"hello world\n",
        b"I am a readme\n",
        bytes(rnd.randrange(256) for _ in range(5000)),
        b"",
    ):
        report = scan_bytes(data)
        assert report.status.value == "data", (data[:20], report)


def test_headerless_pickle_with_leading_blob(scan_bytes: Scan) -> None:
    # no PROTO opcode, a large BINBYTES first: detection must walk past the blob, not guess
    n = 2 * 1024 * 1024
    data = b"B" + struct.pack("<I", n) + b"\x07" * n + b"0" + call0("os", "system", "x") + b"."
    report = scan_bytes(data)
    assert "os.system" in subjects(report)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("torch", "PyTorchFileWriter"),  # capitalised, but writes files
        ("torch", "CompilationUnit"),  # compiles TorchScript source
        ("pandas", "HDFStore"),  # opens files
        ("numpy", "DataSource"),  # fetches URLs
        ("sklearn.pipeline", "Pipeline.__init__"),  # dotted names are never allowed by pattern
        ("transformers", "pipeline"),  # lowercase functions are not classes
    ],
)
def test_allowlist_patterns_stay_narrow(scan_bytes: Scan, module: str, name: str) -> None:
    report = scan_bytes(p4(call4(module, name, "x")))
    assert report.max_severity is not None and report.max_severity >= Severity.MEDIUM
