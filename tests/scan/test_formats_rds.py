"""R serialization (.rds / .RData): read as serialize.c reads it, code objects are findings.

Samples are written from bytes by ``tests/scan/rds_builders.py`` (R's XDR writer rules);
payloads are harmless and nothing is ever unserialized by R here.
"""

from __future__ import annotations

import gzip
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mlverify._internal.scan import Limits, ScanReport
from mlverify._internal.scan.formats.rds import recognise
from mlverify._internal.scan.model import Severity
from tests.scan import rds_builders as rb
from tests.scan.conftest import Scan, rules, subjects

CLOSURE = rb.closure([("cmd", rb.MISSING)], rb.call("system", rb.Sym("cmd"), intern=True))


def _named(**items: object) -> rb.Vec:
    return rb.Vec(rb.VEC, list(items.values()), [("names", rb.Vec(rb.STR, list(items)))])


def _only(report: ScanReport, rule: str) -> list[str]:
    return [f.message for f in report.findings if f.rule_id == rule]


def _internal_errors(report: ScanReport) -> list[str]:
    return [f.message for f in report.findings if "rds scanner could not read" in f.message]


# -- benign data ----------------------------------------------------------------------------
@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("compress", [None, "gzip", "bzip2", "xz"])
def test_plain_data_is_clean(scan_bytes: Scan, version: int, compress: str | None) -> None:
    w = rb.Writer()  # an S4 object: its slots are attributes
    w.pairlist(rb.LIST, [("class", rb.Vec(rb.STR, ["Track"])), ("x", 1.0)])
    value = _named(
        frame=rb.benign_frame(),
        counts=rb.Vec(rb.INT, list(range(100))),
        cplx=rb.Vec(rb.CPLX, []),
        raw=rb.Vec(rb.RAW, list(b"bytes")),
        nested=rb.Cons(rb.LIST, [("a", 1), ("b", "two")]),
        s4=rb.Raw(rb.flags(rb.S4, obj=True, attr=True) + w.bytes()),
        seq=rb.altrep_intseq(10) if version == 3 else 1,
    )
    report = scan_bytes(rb.rds(value, version, compress), "model.rds")
    assert report.status.value == "clean", report.findings
    assert "rds" in report.formats


def test_a_workspace_of_data_is_clean(scan_bytes: Scan) -> None:
    data = rb.rdata([("df", rb.benign_frame()), ("seq", rb.altrep_intseq(5)), ("x", 1.5)])
    report = scan_bytes(data, "ws.RData")
    assert report.status.value == "clean" and "rdata" in report.formats
    assert recognise(gzip.decompress(data)) == "rdata"
    report = scan_bytes(rb.rdata([("df", rb.benign_frame())], version=2, compress=None))
    assert report.status.value == "clean" and "rdata" in report.formats


def test_shared_symbols_and_environments_are_followed_by_reference(scan_bytes: Scan) -> None:
    env = rb.Env([("a", 1), ("b", rb.Vec(rb.STR, ["x"]))])
    # the second env and every repeated symbol (names, class) are REFSXP
    value = _named(e1=env, e2=env, f1=rb.benign_frame(), f2=rb.benign_frame())
    data = rb.rds(value)
    assert rb.i32(rb.REF | 1 << 8) in data or b"\x00\x00\x01\xff" in data
    report = scan_bytes(data)
    assert report.status.value == "clean", report.findings


def test_a_data_table_self_reference_is_low(scan_bytes: Scan) -> None:
    extptr = rb.Raw(rb.i32(rb.EXTPTR) + rb.i32(rb.NILVALUE) + rb.i32(rb.NILVALUE))
    frame = rb.benign_frame()
    frame.attrs.append((".internal.selfref", extptr))
    report = scan_bytes(rb.rds(frame))
    assert rules(report) == {"MLV1303"}
    assert report.max_severity == Severity.LOW
    weak = scan_bytes(rb.rds(rb.Vec(rb.VEC, [rb.Raw(rb.i32(rb.WEAKREF))])))
    assert rules(weak) == {"MLV1303"}


# -- code -----------------------------------------------------------------------------------
def test_a_list_with_a_closure_is_high_with_its_names(scan_bytes: Scan) -> None:
    report = scan_bytes(rb.rds(_named(weights=rb.Vec(rb.REAL, [1.0]), predict=CLOSURE)))
    (f,) = [f for f in report.findings if f.rule_id == "MLV1302"]
    assert f.severity == Severity.HIGH
    assert "closure" in f.message and "system" in f.message and "intern" in f.message


def test_the_cve_2024_27322_promise_is_high(scan_bytes: Scan) -> None:
    # the published shape: a pairlist whose value is an unevaluated promise
    prom = rb.promise(rb.call("system", "true"))
    report = scan_bytes(rb.rds(rb.Cons(rb.LIST, [("x", prom)]), compress="gzip"), "x.rds")
    (f,) = [f for f in report.findings if f.rule_id == "MLV1301"]
    assert f.severity == Severity.HIGH and f.subject == "x" and "system" in f.message
    assert f.member == "<gzip>"
    # in an attribute of a plain vector, and in a workspace
    vec = rb.Vec(rb.INT, [1], [("hook", prom)])
    assert "MLV1301" in rules(scan_bytes(rb.rds(vec)))
    assert "MLV1301" in rules(scan_bytes(rb.rdata([("x", prom)])))
    # a promise inside a closure is reported as a promise too
    inner = rb.closure([], rb.Cons(rb.LANG, [(None, rb.Sym("{")), (None, prom)]))
    assert {"MLV1301", "MLV1302"} <= rules(scan_bytes(rb.rds(inner)))


def test_byte_code_is_high_and_its_constants_are_read(scan_bytes: Scan) -> None:
    report = scan_bytes(rb.rds(_named(f=rb.bytecode_closure(), after=rb.benign_frame())))
    msgs = _only(report, "MLV1302")
    assert msgs and "system" in msgs[0]
    assert report.max_severity == Severity.HIGH
    assert not _only(report, "MLV1305")  # read to its end, shared cells included


def test_byte_code_shared_cell_out_of_range_cannot_be_followed(scan_bytes: Scan) -> None:
    raw = rb.bytecode_closure().data
    bad = raw.replace(rb.i32(rb.BCREPREF) + rb.i32(0), rb.i32(rb.BCREPREF) + rb.i32(7))
    assert bad != raw
    assert {"MLV1302", "MLV1305"} <= rules(scan_bytes(rb.rds(rb.Raw(bad))))


@pytest.mark.parametrize(
    "value",
    [
        rb.call("system", "true"),
        # a formula: model.frame and predict evaluate its terms
        rb.Cons(
            rb.LANG,
            [(None, rb.Sym("~")), (None, rb.Sym("y")), (None, rb.call("system", "x"))],
            [("class", rb.Vec(rb.STR, ["formula"])), (".Environment", rb.GLOBAL)],
        ),
        rb.Vec(rb.EXPR, [rb.call("system", "true")]),
        rb.Cons(rb.DOT, [(None, rb.promise(rb.Sym("x")))]),
    ],
    ids=["call", "formula", "expression", "dots"],
)
def test_calls_expressions_and_dots_are_high(scan_bytes: Scan, value: object) -> None:
    report = scan_bytes(rb.rds(_named(v=value)))
    assert report.max_severity == Severity.HIGH and rules(report) & {"MLV1301", "MLV1302"}


def test_an_environment_hook_is_named(scan_bytes: Scan) -> None:
    env = rb.Env([(".onLoad", CLOSURE), ("data", 1)], locked=True)
    report = scan_bytes(rb.rds(_named(obj=env)))
    assert ".onLoad" in subjects(report)
    # an R5 / R6-like object: methods in an environment with a class attribute
    r6 = rb.Env([("run", CLOSURE)], attrs=[("class", rb.Vec(rb.STR, ["Job", "R6"]))])
    assert "run" in subjects(scan_bytes(rb.rds(r6)))


def test_code_in_a_discarded_attribute_is_still_found(scan_bytes: Scan) -> None:
    # a CHARSXP's attribute is read and dropped, but an environment read there stays
    # reachable through a later reference: code anywhere in the stream is a finding
    w = rb.Writer()
    w.item(rb.Env([("f", CLOSURE)]))
    w2 = rb.Writer()
    w2.pairlist(rb.LIST, [("h", rb.Raw(w.bytes()))])
    hidden = rb.flags(rb.CHAR, attr=True) + rb.i32(1) + b"a" + w2.bytes()
    value = rb.Raw(rb.flags(rb.STR) + rb.i32(1) + hidden)
    report = scan_bytes(rb.rds(value))
    assert "MLV1302" in rules(report) and not _only(report, "MLV1305")


def test_a_primitive_alone_is_medium(scan_bytes: Scan) -> None:
    prim = rb.Raw(rb.i32(rb.BUILTIN) + rb.i32(3) + b"sum")
    report = scan_bytes(rb.rds(_named(fun=prim)))
    (f,) = report.findings
    assert f.rule_id == "MLV1302" and f.severity == Severity.MEDIUM and "sum" in f.message


def test_package_loads(scan_bytes: Scan) -> None:
    def strings(t: int, *names: str) -> rb.Raw:
        w = rb.Writer()
        for n in names:
            w.charsxp(n)
        return rb.Raw(rb.i32(t) + rb.i32(0) + rb.i32(len(names)) + w.bytes())

    ns = scan_bytes(rb.rds(_named(e=strings(rb.NAMESPACE, "stats", "4.4.1"))))
    assert rules(ns) == {"MLV1304"} and ns.max_severity == Severity.LOW
    assert "stats" in subjects(ns)
    pkg = scan_bytes(rb.rds(_named(e=strings(rb.PACKAGE, "package:evil"))))
    assert rules(pkg) == {"MLV1304"}
    hook = scan_bytes(rb.rds(_named(e=strings(rb.PERSIST, "conn"))))
    assert hook.max_severity == Severity.MEDIUM
    # an ALTREP class of another package: its unserialize method gets the state
    w = rb.Writer()
    w.out.append(rb.i32(rb.ALTREP))
    w.pairlist(rb.LIST, [(None, rb.Sym("mmap_real")), (None, rb.Sym("simplemmap")),
                         (None, rb.Vec(rb.INT, [rb.REAL]))])  # fmt: skip
    w.item(rb.Vec(rb.STR, ["/etc/passwd"]))
    w.item(rb.NIL)
    alt = scan_bytes(rb.rds(_named(x=rb.Raw(w.bytes()))))
    assert rules(alt) == {"MLV1304"} and alt.max_severity == Severity.MEDIUM
    assert "simplemmap::mmap_real" in subjects(alt)


def test_many_code_objects_are_counted(scan_bytes: Scan) -> None:
    report = scan_bytes(rb.rds(rb.Vec(rb.VEC, [CLOSURE] * 100)))
    assert len(_only(report, "MLV1302")) == 65  # 64 listed, one for the rest
    assert any("36 more" in m for m in _only(report, "MLV1302"))


# -- streams that cannot be followed --------------------------------------------------------
def test_trailing_bytes_cannot_be_followed(scan_bytes: Scan) -> None:
    report = scan_bytes(rb.rds(rb.benign_frame()) + b"\0\0\0\xfe")
    assert rules(report) == {"MLV1305"} and "follow" in _only(report, "MLV1305")[0]


def test_every_truncation_is_reported(scan_bytes: Scan, tmp_path: Path) -> None:
    from mlverify._internal.scan import scan_file

    full = rb.rds(_named(f=rb.bytecode_closure(), d=rb.benign_frame(), g=CLOSURE))
    for cut in range(6, len(full)):
        p = tmp_path / "t.rds"
        p.write_bytes(full[:cut])
        report = scan_file(p)
        assert report.status.value == "findings", cut
        assert report.max_severity is not None and report.max_severity >= Severity.MEDIUM
        assert not _internal_errors(report)
    assert scan_bytes(full).status.value == "findings"


@pytest.mark.parametrize(
    "body, why",
    [
        (rb.i32(99), "unknown item type 99"),
        (rb.i32(0), "unknown item type 0"),
        (rb.i32(rb.ATTRLANG), "unknown item type 240"),
        (rb.i32(rb.REF | 5 << 8), "reference 5 out of range"),
        (rb.i32(rb.REF) + rb.i32(-3), "reference -3 out of range"),
        (rb.i32(rb.INT) + rb.i32(-2), "negative vector length"),
        (rb.i32(rb.INT) + rb.i32(-1) + rb.i32(65537) + rb.i32(0), "upper part"),
        (rb.i32(rb.STR) + rb.i32(1) + rb.i32(rb.INT) + rb.i32(0), "R needs CHARSXP"),
        (rb.i32(rb.SYM) + rb.i32(rb.NILVALUE), "R needs CHARSXP"),
        (rb.i32(246), "class or generic reference"),
        (rb.i32(rb.NAMESPACE) + rb.i32(1), "names in persistent strings"),
    ],
)
def test_malformed_items_cannot_be_followed(scan_bytes: Scan, body: bytes, why: str) -> None:
    report = scan_bytes(rb.header() + body)
    msgs = _only(report, "MLV1305")
    assert msgs and why in msgs[0], report.findings


@pytest.mark.parametrize(
    "data",
    [
        b"X\n" + rb.i32(3, 1, 1, 64) + b"x" * 64 + rb.i32(rb.NILVALUE),  # encoding name > 63
        b"RDX3\n" + b"B\n" + b"\x03\0\0\0",  # declares XDR, holds native binary
        b"RDX2\nQ\n" + rb.i32(2),
    ],
)
def test_bad_headers_cannot_be_followed(scan_bytes: Scan, data: bytes) -> None:
    assert rules(scan_bytes(data)) == {"MLV1305"}


def test_other_versions_and_forms_are_not_data(scan_bytes: Scan) -> None:
    ascii_rds = b"A\n3\n263169\n197888\n5\nUTF-8\n254\n"
    for data in (ascii_rds, b"\n" + ascii_rds, b"B\n\x03\0\0\0" + b"\0" * 16, b"RDA3\n" + ascii_rds,
                 b"RDX1\n\0\0"):  # fmt: skip
        report = scan_bytes(data)
        assert report.status.value == "unsupported", data
        assert rules(report) == {"MLV301"}
    assert rules(scan_bytes(gzip.compress(ascii_rds))) == {"MLV301"}
    # version 4 is no stream R reads: not recognised (R refuses it before reading objects)
    assert recognise(b"X\n" + rb.i32(4)) is None


# -- hostile sizes --------------------------------------------------------------------------
def test_huge_claimed_lengths_end_quickly(scan_bytes: Scan) -> None:
    for body in (
        rb.i32(rb.REAL) + rb.i32(2**31 - 1),
        rb.i32(rb.RAW) + rb.i32(-1) + rb.i32(65536) + rb.i32(-1),
        rb.i32(rb.VEC) + rb.i32(2**31 - 1) + rb.i32(rb.NILVALUE) * 10,
        rb.i32(rb.STR) + rb.i32(2**31 - 1) + rb.i32(rb.CHAR) + rb.i32(2**31 - 1),
        rb.i32(rb.BCODE) + rb.i32(2**31 - 1) + rb.i32(rb.NILVALUE) + rb.i32(2**31 - 1),
    ):
        t0 = time.monotonic()
        report = scan_bytes(rb.header() + body)
        assert time.monotonic() - t0 < 5
        assert "MLV1305" in rules(report)


def test_deep_nesting_is_read_without_recursion(scan_bytes: Scan) -> None:
    depth = 200_000
    # list(list(list(..., 1), 1), 1): every level leaves work on the stack
    body = (
        (rb.i32(rb.VEC) + rb.i32(2)) * depth
        + rb.i32(rb.NILVALUE)
        + (rb.i32(rb.INT) + rb.i32(1) + rb.i32(1)) * depth
    )
    report = scan_bytes(rb.header() + body)
    assert report.status.value == "clean", report.findings
    # a call nested that deep inside a closure is still found
    deep_call = rb.i32(rb.LANG) + rb.i32(rb.SYM) + rb.flags(rb.CHAR) + rb.i32(6) + b"system"
    body = (
        deep_call
        + (rb.i32(rb.LIST) + rb.i32(rb.LANG) + rb.i32(rb.REF | 1 << 8)) * 50_000
        + rb.i32(rb.NILVALUE) * 50_001
    )  # the innermost call's CDR, then every cell's
    report = scan_bytes(rb.header() + body)
    assert rules(report) == {"MLV1302"}, report.findings


def test_the_stack_bound_is_a_finding(scan_bytes: Scan) -> None:
    body = (rb.i32(rb.VEC) + rb.i32(2)) * 5000 + rb.i32(rb.NILVALUE) * 5001
    report = scan_bytes(rb.header() + body, limits=Limits(max_stack=1000))
    assert rules(report) == {"MLV302"}


def test_a_gzip_bomb_is_bounded(scan_bytes: Scan) -> None:
    body = rb.header() + rb.i32(rb.RAW) + rb.i32(2**31 - 1)
    co = gzip.compress(body + b"\0" * (64 << 20), compresslevel=9)
    assert len(co) < 200_000
    t0 = time.monotonic()
    report = scan_bytes(co, "bomb.rds")
    assert time.monotonic() - t0 < 30
    assert "MLV302" in rules(report)
    # what was found before the bound is still reported
    w = rb.Writer()
    w.item(rb.promise(rb.call("system", "true")))
    body = rb.header() + rb.i32(rb.VEC) + rb.i32(2) + w.bytes() + rb.i32(rb.RAW) + rb.i32(2**31 - 1)
    report = scan_bytes(gzip.compress(body + b"\0" * (64 << 20), compresslevel=9), "bomb.rds")
    assert {"MLV1301", "MLV302"} <= rules(report)


def test_a_large_plain_vector_is_skipped_fast(scan_bytes: Scan) -> None:
    body = rb.i32(rb.REAL) + rb.i32(8 << 20) + b"\0" * (64 << 20)
    t0 = time.monotonic()
    assert scan_bytes(rb.header() + body).status.value == "clean"
    assert time.monotonic() - t0 < 10


def test_mutated_streams_never_break_the_scanner(tmp_path: Path) -> None:
    from tests.scan.differential import same_scan

    rng = random.Random(13)
    seeds = [
        rb.rds(_named(f=rb.bytecode_closure(), d=rb.benign_frame(), p=rb.promise(rb.Sym("x")))),
        rb.rds(rb.Env([(".onLoad", CLOSURE)])),
        rb.rdata([("df", rb.benign_frame()), ("s", rb.altrep_intseq(3))], compress=None),
    ]
    p = tmp_path / "m.rds"
    for i in range(1500):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(6, len(data))
            data[at] = rng.randrange(256) if rng.random() < 0.7 else data[at] ^ 1
        p.write_bytes(bytes(data))
        report = same_scan(p)  # and both detection paths agree
        assert not _internal_errors(report), (i, report.findings)


# -- a real R, when there is one ------------------------------------------------------------
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not installed here")
def test_files_written_by_r(tmp_path: Path, scan_bytes: Scan) -> None:
    script = f"""
    d <- data.frame(x = c(1.5, 2), s = c("a", "b"), f = factor(c("u", "v")))
    saveRDS(d, "{tmp_path}/df.rds")
    saveRDS(list(a = 1:10, b = letters), "{tmp_path}/list.rds", compress = "xz")
    saveRDS(list(f = function(x) x + 1), "{tmp_path}/fun.rds")
    e <- new.env(); delayedAssign("x", Sys.time(), assign.env = e)
    saveRDS(e, "{tmp_path}/prom.rds")
    x <- 1; y <- "a"; save(x, y, file = "{tmp_path}/ws.RData")
    """
    subprocess.run(["Rscript", "-e", script], check=True, timeout=120)
    for name in ("df.rds", "list.rds", "ws.RData"):
        assert scan_bytes((tmp_path / name).read_bytes()).status.value == "clean", name
    assert "MLV1302" in rules(scan_bytes((tmp_path / "fun.rds").read_bytes()))
    assert "MLV1301" in rules(scan_bytes((tmp_path / "prom.rds").read_bytes()))


def test_the_labelled_samples(tmp_path: Path, scan_bytes: Scan) -> None:
    samples = rb.rds_samples(tmp_path)
    assert sum(s.malicious for s in samples) >= 8 and sum(not s.malicious for s in samples) >= 4
    for s in samples:
        report = scan_bytes(s.path.read_bytes(), s.path.name)
        if s.rule is None:
            assert report.status.value == "clean", (s.name, report.findings)
        else:
            assert s.rule in rules(report), (s.name, report.findings)


def test_the_format_byte_is_what_r_reads(scan_bytes: Scan) -> None:
    # InFormat decides on the first byte and never checks the second: "Xz" is XDR to R
    prom = rb.rds(rb.Cons(rb.LIST, [("x", rb.promise(rb.call("system", "true")))]))
    for second in (b"z", b"\0", b"\r", b"X"):
        data = b"X" + second + prom[2:]
        assert recognise(data) == "rds"
        assert "MLV1301" in rules(scan_bytes(data)), second
        assert "MLV1301" in rules(scan_bytes(gzip.compress(data)))
    ascii_rds = b"A\n3\n263169\n197888\n5\nUTF-8\n254\n"
    for data in (b"A " + ascii_rds[2:], b"\nA\n" + ascii_rds[2:], b"A\n  +3 263169\t197888\n"):
        assert recognise(data) == "rds", data
    # text that merely opens with "A" and a number is no stream
    for text in (b"A 3 day tour\n", b"A\n4\n1\n1\n", b"Xy\0\0\0\x04", b"B\n\x04\0\0\0"):
        assert recognise(text) is None, text


@pytest.mark.parametrize("compress", [None, "gzip"])
def test_raw_vectors_holding_a_format_are_scanned(scan_bytes: Scan, compress: str | None) -> None:
    from tests.scan.builders import EVIL4

    inner = rb.rds(_named(f=CLOSURE))  # unserialize(x$model) in the code that reads it
    pad = b"\0" * (100 << 10)  # past the in-memory bound: copied aside from a stream
    for payload, rule in ((inner, "MLV1302"), (EVIL4, "MLV101"), (inner + pad, "MLV1305")):
        value = _named(model=rb.Vec(rb.RAW, list(payload)), n=1)
        report = scan_bytes(rb.rds(value, compress=compress))
        assert rule in rules(report) and "MLV109" in rules(report), report.findings
    plain = _named(blob=rb.Vec(rb.RAW, list(b"\x01\x02" * 4096)))
    assert scan_bytes(rb.rds(plain, compress=compress)).status.value == "clean"


def test_the_unlisted_rest_keeps_its_worst_severity(scan_bytes: Scan) -> None:
    prim = rb.Raw(rb.i32(rb.BUILTIN) + rb.i32(3) + b"sum")
    prom = rb.promise(rb.call("system", "true"))
    report = scan_bytes(rb.rds(rb.Vec(rb.VEC, [prim] * 64 + [prom])))
    (more,) = [f for f in report.findings if f.subject == "more"]
    assert more.severity == Severity.HIGH and report.max_severity == Severity.HIGH
    report = scan_bytes(rb.rds(rb.Vec(rb.VEC, [prim] * 70)))
    assert report.max_severity == Severity.MEDIUM
