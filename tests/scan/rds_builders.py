"""An XDR writer for R serialization streams (serialize.c's WriteItem), for test samples.

R is not installed here, so samples are written from bytes exactly as R writes them:
symbols and environments go into a reference table and are written as REFSXP the second
time, pairlists are cells of (attributes, tag, car) ending in NILVALUE_SXP. Payloads of
code samples are harmless (``system("true")`` as a call, never evaluated).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.scan.format_samples import Sample

SYM, LIST, CLO, ENV, PROM, LANG, SPECIAL, BUILTIN, CHAR, LGL = range(1, 11)
INT, REAL, CPLX, STR, DOT, VEC, EXPR, BCODE, EXTPTR, WEAKREF, RAW, S4 = (
    13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 24, 25,
)  # fmt: skip
REF, NILVALUE, GLOBALENV, UNBOUND, MISSINGARG, BASENS = 255, 254, 253, 252, 251, 250
NAMESPACE, PACKAGE, PERSIST, BCREPDEF, BCREPREF, EMPTYENV, BASEENV = (
    249, 248, 247, 244, 243, 242, 241,
)  # fmt: skip
ATTRLANG, ATTRLIST, ALTREP = 240, 239, 238
NA_INT = -(2**31)


def i32(*vals: int) -> bytes:
    return b"".join(struct.pack(">i", v) for v in vals)


def flags(t: int, *, obj: bool = False, attr: bool = False, tag: bool = False,
          levs: int = 0) -> bytes:  # fmt: skip
    return i32(t | (256 if obj else 0) | (512 if attr else 0) | (1024 if tag else 0) | levs << 12)


# -- values ---------------------------------------------------------------------------------
@dataclass
class Sym:
    name: str


@dataclass
class Raw:
    """Bytes written as they are (an item the writer does not model)."""

    data: bytes


@dataclass
class Vec:
    type: int  # LGL / INT / REAL / CPLX / RAW / STR / VEC / EXPR
    items: Sequence[object]
    attrs: list[tuple[str, object]] = field(default_factory=list)


@dataclass
class Cons:
    type: int  # LIST / LANG / CLO / PROM / DOT
    cells: Sequence[tuple[str | None, object]]  # (tag, car)
    attrs: list[tuple[str, object]] = field(default_factory=list)
    tail: object = None  # the last CDR (None: NILVALUE)


@dataclass
class Env:
    frame: list[tuple[str, object]]
    enclos: object = "global"
    attrs: list[tuple[str, object]] = field(default_factory=list)
    locked: bool = False


@dataclass
class Special:
    code: int  # NILVALUE / GLOBALENV / BASEENV / EMPTYENV / MISSINGARG / UNBOUND / BASENS


@dataclass
class Closure:
    """A CLOSXP: written with TAG the environment, CAR the formals, CDR the body."""

    formals: list[tuple[str, object]]
    body: object
    env: object


@dataclass
class Promise:
    """A PROMSXP as R writes an unevaluated one: TAG env, CAR value (unbound), CDR code."""

    code: object
    env: object
    value: object


NIL = Special(NILVALUE)
GLOBAL = Special(GLOBALENV)
MISSING = Special(MISSINGARG)


class Writer:
    """Writes one stream; symbols and environments are shared through the reference table."""

    def __init__(self) -> None:
        self.refs: dict[object, int] = {}
        self.out: list[bytes] = []

    def _ref(self, key: object) -> bool:
        idx = self.refs.get(key)
        if idx is None:
            return False
        self.out.append(i32(REF | idx << 8) if idx < 1 << 23 else i32(REF) + i32(idx))
        return True

    def _add(self, key: object) -> None:
        self.refs[key] = len(self.refs) + 1

    def charsxp(self, s: str | None) -> None:
        if s is None:
            self.out.append(flags(CHAR) + i32(-1))
        else:
            raw = s.encode()
            enc = 1 << 6 if raw.isascii() else 1 << 3  # ASCII_MASK / UTF8_MASK levels
            self.out.append(flags(CHAR, levs=enc) + i32(len(raw)) + raw)

    def pairlist(
        self,
        t: int,
        cells: Sequence[tuple[str | None, object]],
        attrs: Sequence[tuple[str, object]] = (),
        tail: object = None,
    ) -> None:
        for i, (tag, car) in enumerate(cells):
            a = bool(attrs) and i == 0
            self.out.append(flags(t if i == 0 else LIST, attr=a, tag=tag is not None))
            if a:
                self.pairlist(LIST, list(attrs))
            if tag is not None:
                self.item(Sym(tag))
            self.item(car)
        self.item(NIL if tail is None else tail)

    def item(self, v: object) -> None:
        if v is None or v is NIL:
            self.out.append(i32(NILVALUE))
        elif isinstance(v, Special):
            self.out.append(i32(v.code))
        elif isinstance(v, Raw):
            self.out.append(v.data)
        elif isinstance(v, Sym):
            if self._ref(("sym", v.name)):
                return
            self.out.append(flags(SYM))
            self.charsxp(v.name)
            self._add(("sym", v.name))
        elif isinstance(v, str):
            self.item(Vec(STR, [v]))
        elif isinstance(v, bool):
            self.item(Vec(LGL, [int(v)]))
        elif isinstance(v, int):
            self.item(Vec(INT, [v]))
        elif isinstance(v, float):
            self.item(Vec(REAL, [v]))
        elif isinstance(v, Vec):
            self.out.append(flags(v.type, attr=bool(v.attrs),
                                  obj=any(k == "class" for k, _ in v.attrs)))  # fmt: skip
            self.out.append(i32(len(v.items)))
            if v.type in (LGL, INT):
                self.out.append(b"".join(i32(int(x)) for x in v.items))  # type: ignore[call-overload]
            elif v.type == REAL:
                self.out.append(b"".join(struct.pack(">d", float(x)) for x in v.items))  # type: ignore[arg-type]
            elif v.type == RAW:
                self.out.append(bytes(v.items))  # type: ignore[arg-type]
            elif v.type == STR:
                for s in v.items:
                    self.charsxp(s)  # type: ignore[arg-type]
            else:
                for x in v.items:
                    self.item(x)
            if v.attrs:
                self.pairlist(LIST, v.attrs)
        elif isinstance(v, Cons):
            if v.type == LIST and not v.cells:
                self.item(NIL)
                return
            self.pairlist(v.type, v.cells, v.attrs, v.tail)
        elif isinstance(v, Closure):
            self.out.append(flags(CLO, tag=True))
            self.item(v.env)
            self.pairlist(LIST, v.formals) if v.formals else self.item(NIL)
            self.item(v.body)
        elif isinstance(v, Promise):
            self.out.append(flags(PROM, tag=v.env is not None))
            if v.env is not None:
                self.item(v.env)
            self.item(v.value)
            self.item(v.code)
        elif isinstance(v, Env):
            if self._ref(("env", id(v))):
                return
            self.out.append(i32(ENV) + i32(int(v.locked)))
            self._add(("env", id(v)))
            self.item(GLOBAL if v.enclos == "global" else v.enclos)
            self.pairlist(LIST, list(v.frame)) if v.frame else self.item(NIL)
            self.item(NIL)  # no hash table
            self.pairlist(LIST, v.attrs) if v.attrs else self.item(NIL)
        else:
            raise TypeError(v)

    def bytes(self) -> bytes:
        return b"".join(self.out)


def header(version: int = 3) -> bytes:
    out = b"X\n" + i32(version, 0x040401, 0x030500 if version == 3 else 0x020300)
    if version == 3:
        out += i32(5) + b"UTF-8"
    return out


def rds(value: object, version: int = 3, compress: str | None = None) -> bytes:
    w = Writer()
    w.item(value)
    data = header(version) + w.bytes()
    return compressed(data, compress)


def rdata(objects: list[tuple[str, object]], version: int = 3,
          compress: str | None = "gzip") -> bytes:  # fmt: skip
    w = Writer()
    w.pairlist(LIST, list(objects))
    data = f"RDX{version}\n".encode() + header(version) + w.bytes()
    return compressed(data, compress)


def compressed(data: bytes, how: str | None) -> bytes:
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "bzip2":
        return bz2.compress(data)
    if how == "xz":
        return lzma.compress(data)
    return data


# -- R objects -----------------------------------------------------------------------------
def call(head: str | object, *args: object, **named: object) -> Cons:
    cells: list[tuple[str | None, object]] = [(None, Sym(head) if isinstance(head, str) else head)]
    cells += [(None, a) for a in args] + [(k, a) for k, a in named.items()]
    return Cons(LANG, cells)


def closure(formals: list[tuple[str, object]], body: object, env: object = GLOBAL) -> Closure:
    return Closure(formals, body, env)


def promise(code: object, env: object = GLOBAL, value: object = Special(UNBOUND)) -> Promise:
    return Promise(code, env, value)


def data_frame(columns: dict[str, object], nrow: int) -> Vec:
    """A data.frame as R writes it: a list with names, class and compact row names."""
    return Vec(VEC, list(columns.values()), [
        ("names", Vec(STR, list(columns))),
        ("class", Vec(STR, ["data.frame"])),
        ("row.names", Vec(INT, [NA_INT, -nrow])),
    ])  # fmt: skip


def factor(levels: list[str], codes: list[int]) -> Vec:
    return Vec(INT, codes, [("levels", Vec(STR, levels)), ("class", Vec(STR, ["factor"]))])


def benign_frame() -> Vec:
    return data_frame(
        {
            "x": Vec(REAL, [1.5, 2.5, 3.5]),
            "n": Vec(INT, [1, 2, NA_INT]),
            "s": Vec(STR, ["a", None, "c"]),
            "f": factor(["lo", "hi"], [1, 2, 1]),
            "ok": Vec(LGL, [1, 0, NA_INT]),
        },
        3,
    )


def altrep_intseq(n: int) -> Raw:
    """``1:n`` as R >= 3.5 writes it in version 3: ALTREP compact_intseq of base."""
    w = Writer()
    w.out.append(i32(ALTREP))
    w.pairlist(LIST, [(None, Sym("compact_intseq")), (None, Sym("base")), (None, Vec(INT, [INT]))])
    w.item(Vec(REAL, [float(n), 1.0, 1.0]))
    w.item(NIL)
    return Raw(w.bytes())


def bytecode_closure() -> Raw:
    """A byte-compiled ``function(x) system(x)``: CLOSXP whose body is BCODESXP with the
    source call in its constant pool, written with a shared cell (BCREPDEF / BCREPREF)."""
    w = Writer()
    w.out.append(flags(CLO, tag=True))
    w.item(GLOBAL)
    w.pairlist(LIST, [("x", MISSING)])
    w.out.append(i32(BCODE) + i32(1))  # BCODESXP, 1 shared cell
    w.item(Vec(INT, [12, 1, 2, 3]))  # the code vector (version first)
    w.out.append(i32(3))  # constants
    # constant 0: the source call system(x), its argument cell shared
    w.out.append(i32(BCREPDEF) + i32(0) + i32(LANG))
    w.item(NIL)  # tag
    w.out.append(i32(0))  # pad: the car is an ordinary item
    w.item(Sym("system"))
    w.out.append(i32(LIST))  # cdr: the argument list
    w.item(NIL)
    w.out.append(i32(0))
    w.item(Sym("x"))
    w.out.append(i32(0))
    w.item(NIL)
    # constant 1: a reference to the shared cell
    w.out.append(i32(BCREPREF) + i32(0))
    # constant 2: an ordinary item
    w.out.append(i32(STR))
    w.item(Vec(STR, ["true"]))
    return Raw(w.bytes())


# -- labelled samples (tests/scan/format_samples.all_samples) --------------------------------
def rds_samples(out: Path) -> list[Sample]:
    """R serialization samples: benign data written as R writes it, and code carriers."""
    from tests.scan.format_samples import Sample

    out.mkdir(parents=True, exist_ok=True)
    clo = closure([("cmd", MISSING)], call("system", Sym("cmd")))
    frame = benign_frame()

    def named(**items: object) -> Vec:
        return Vec(VEC, list(items.values()), [("names", Vec(STR, list(items)))])

    cases: dict[str, tuple[bytes, str | None]] = {
        "frame_gzip.rds": (rds(frame, compress="gzip"), None),
        "frame_v2.rds": (rds(frame, version=2), None),
        "frame_xz.rds": (rds(frame, compress="xz"), None),
        "workspace.RData": (rdata([("df", frame), ("seq", altrep_intseq(4))]), None),
        "list_closure.rds": (rds(named(w=1.5, predict=clo), compress="gzip"), "MLV1302"),
        "promise_cve_2024_27322.rds": (
            rds(Cons(LIST, [("x", promise(call("system", "true")))]), compress="gzip"),
            "MLV1301",
        ),
        "promise_workspace.RData": (rdata([("x", promise(call("system", "true")))]), "MLV1301"),
        "bytecode.rds": (rds(named(f=bytecode_closure()), compress="bzip2"), "MLV1302"),
        "env_onload.rds": (rds(Env([(".onLoad", clo)])), "MLV1302"),
        "formula.rds": (rds(call("~", Sym("y"), call("system", "id"))), "MLV1302"),
        "trailing.rds": (rds(frame) + b"\0\0\0\xfe", "MLV1305"),
        "truncated.rds": (gzip.compress(rds(named(f=clo))[:-9]), "MLV1305"),
        "ascii.rds": (b"A\n3\n263169\n197888\n5\nUTF-8\n254\n", "MLV301"),
    }
    samples = []
    for name, (data, rule) in cases.items():
        p = out / name
        p.write_bytes(data)
        samples.append(Sample("rds", name, p, rule))
    return samples
