"""R serialization: ``saveRDS``/``serialize`` streams (``.rds``) and ``save`` workspaces
(``.RData``/``.rda``).

The stream is read as R's ``src/main/serialize.c`` reads it (``ReadItem``, ``ReadBC``,
``ReadBCLang``, ``InStringVec``), iteratively with an explicit stack, every item to the end:
code objects (closures, calls, promises, byte code, expression vectors, ``...``) are findings
wherever they sit, reachable or not (an environment read inside a discarded attribute is still
reachable through a later reference). gzip/bzip2/xz compression (``saveRDS``'s default) is
undone by the compressed-stream scanner, which scans the content again, so only the plain
forms are recognised here. The XDR form (``X``) is parsed; the ASCII (``A``) and native
binary (``B``) forms are recognised and reported unsupported.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from mlverify._internal.scan.context import Probe, ScanContext
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.pickle.walker import PROBE_FIRST
from mlverify._internal.scan.rules import RESOURCE_LIMIT, UNSUPPORTED, Rule
from mlverify._internal.scan.source import FileSource, Source, Stream

R_PROMISE = Rule(
    "MLV1301",
    "r-promise",
    Severity.HIGH,
    "An R serialized object holds a promise: R evaluates its code when the value is used.",
    "CVE-2024-27322: readRDS/load/unserialize restore promises unevaluated, and touching the "
    "loaded value runs the promise's expression. Do not load this file.",
)
R_CODE = Rule(
    "MLV1302",
    "r-code-object",
    Severity.HIGH,
    "An R serialized object carries code: a function, a call, byte code or an expression.",
    "Closures, calls (also formulas, which model.frame and predict evaluate), byte code and "
    "expression vectors are code shipped in data: methods, hooks and update()/predict() run "
    "them. A primitive function alone (a reference to R's own builtin) is medium.",
)
R_OPAQUE = Rule(
    "MLV1303",
    "r-opaque-object",
    Severity.LOW,
    "An R serialized object holds an external pointer or a weak reference.",
    "Neither can be restored (R reads an external pointer as NULL and a weak reference as "
    "empty): data.table writes one per table; their contents were scanned.",
)
R_PACKAGE_LOAD = Rule(
    "MLV1304",
    "r-package-load",
    Severity.LOW,
    "Reading an R serialized object loads a package or calls a package's restore hook.",
    "A namespace or package environment reference loads that installed package (its .onLoad "
    "runs); an ALTREP object outside base calls that package's unserialize method with the "
    "stored state (medium); a persistent reference calls the reader's refhook (medium).",
)
R_CANNOT_FOLLOW = Rule(
    "MLV1305",
    "r-cannot-follow",
    Severity.MEDIUM,
    "An R serialized stream cannot be followed to its end.",
    "A truncated stream, an unknown type, a bad version, an inconsistent reference or bytes "
    "after the serialized object: what was read was judged, the rest was not verified.",
)
RULES = (R_PROMISE, R_CODE, R_OPAQUE, R_PACKAGE_LOAD, R_CANNOT_FOLLOW)

# SEXP types (Rinternals.h) and the serialization pseudo-types (serialize.c)
_SYM, _LIST, _CLO, _ENV, _PROM, _LANG, _SPECIAL, _BUILTIN, _CHAR, _LGL = range(1, 11)
_INT, _REAL, _CPLX, _STR, _DOT = 13, 14, 15, 16, 17
_VEC, _EXPR, _BCODE, _EXTPTR, _WEAKREF, _RAW, _S4 = 19, 20, 21, 22, 23, 24, 25
_REF, _NILVALUE, _GLOBALENV, _UNBOUND, _MISSINGARG, _BASENS = 255, 254, 253, 252, 251, 250
_NAMESPACE, _PACKAGE, _PERSIST, _CLASSREF, _GENERICREF = 249, 248, 247, 246, 245
_BCREPDEF, _BCREPREF, _EMPTYENV, _BASEENV, _ATTRLANG, _ATTRLIST, _ALTREP = (
    244, 243, 242, 241, 240, 239, 238,
)  # fmt: skip
_SINGLETONS = frozenset(
    {_NILVALUE, _GLOBALENV, _UNBOUND, _MISSINGARG, _BASENS, _EMPTYENV, _BASEENV}
)
_CONS = frozenset({_LIST, _LANG, _CLO, _PROM, _DOT})
_FIXED = {_LGL: 4, _INT: 4, _REAL: 8, _CPLX: 16, _RAW: 1}
_KIND = {
    _CLO: "closure", _LANG: "call", _PROM: "promise", _DOT: "'...' object",
    _EXPR: "expression vector", _BCODE: "byte code",
}  # fmt: skip

#: ALTREP classes of base R that write a serialized state (altclasses.c)
_BASE_ALTREP = frozenset({
    "compact_intseq", "compact_realseq", "deferred_string", "wrap_integer", "wrap_logical",
    "wrap_real", "wrap_complex", "wrap_raw", "wrap_string", "wrap_list",
})  # fmt: skip

#: code objects reported one by one; past it they are counted in one more finding
MAX_REPORTED = 64
#: names kept per code object for its message
MAX_NAMES = 16
#: names longer than this are cut (the rest of the string is skipped)
NAME_KEEP = 200
#: raw vectors kept in memory for a nested scan; larger ones are copied to a spooled file
SMALL_RAW = 1 << 16
#: first bytes of the formats a raw vector is scanned for (the pickle walker's, and R's)
_PROBE_FIRST = PROBE_FIRST | frozenset(b"ARX\n")

_RDATA = re.compile(rb"RD([XAB])([123])\n")
#: R's InFormat looks at the first byte only ("X", "A", "B"; or "\nA" and one more byte),
#: then reads the version; ASCII integers are whitespace-separated words
_ASCII = re.compile(rb"(?s)(?:A.|\nA.)\s*([+-]?\d{1,9})\s+[+-]?\d+\s+[+-]?\d+\s")
_XDR_VERSIONS = (b"\0\0\0\x02", b"\0\0\0\x03")
_NATIVE_VERSIONS = (b"\x02\0\0\0", b"\x03\0\0\0", *_XDR_VERSIONS)


def recognise(head: bytes) -> str | None:
    """``rds`` / ``rdata`` when ``head`` opens an R serialization stream or workspace: what
    ``readRDS``/``unserialize`` (``InFormat``, then a version of 2 or 3) or ``load``
    (``R_ReadMagic``) accept."""
    if _RDATA.match(head):
        return "rdata"
    first, version = head[:1], head[2:6]
    if (first == b"X" and version in _XDR_VERSIONS) or (
        first == b"B" and version in _NATIVE_VERSIONS
    ):
        return "rds"
    m = _ASCII.match(head)
    if m and int(m.group(1)) in (2, 3):
        return "rds"
    return None


class RdsScanner:
    name = "rds"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return recognise(head) is not None

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        kind = recognise(src.head(16)) or "rds"
        ctx.format(kind)
        r = _Reader(src.open())
        probe = ctx.nested(src, depth) if depth < ctx.limits.max_depth else None
        w = _Walker(r, ctx.limits.max_stack, probe, src.seekable, ctx.limits.nested_min)
        try:
            if kind == "rdata":
                magic = r.need(5)
                if magic[3:4] == b"1":
                    msg = f"an R workspace of format version 1 ({magic[:4].decode()}): not parsed"
                    ctx.add(UNSUPPORTED, src.label, 0, "rdata", msg)
                    return
                want = magic[2:3]
            else:
                want = b""
            fmt = r.need(2)  # InFormat: the first byte decides, the second is not checked
            if fmt == b"\nA":  # ASCII left after an earlier stream: one more byte
                r.need(1)
                fmt = b"A\n"
            form = fmt[:1]
            if want and form != want:
                raise _Bad(f"the workspace declares format {want!r} but holds {form!r}")
            if form in (b"A", b"B"):
                name = "ASCII" if form == b"A" else "native binary"
                msg = f"an R serialization stream in the {name} form: not parsed (only XDR is)"
                ctx.add(UNSUPPORTED, src.label, 0, kind, msg)
                return
            if form != b"X":
                raise _Bad(f"unknown serialization format {form!r}")
            version = r.i32()
            r.i32()  # the writer's R version
            r.i32()  # the oldest R version that reads it
            if version not in (2, 3):
                raise _Bad(f"serialization format version {version} (R reads 2 and 3)")
            if version == 3:
                nelen = r.i32()
                if not 0 <= nelen <= 63:  # R_CODESET_MAX
                    raise _Bad(f"native encoding name of length {nelen}")
                r.need(nelen)
            w.walk()
            if r.more():
                raise _Bad("bytes follow the serialized object (R reads one object and stops)")
        except _Truncated:
            w.report(ctx, src.label)
            ctx.add(R_CANNOT_FOLLOW, src.label, r.tell(), kind,
                    "the R serialization stream ends inside an object (truncated, or a "
                    "length larger than the stream)")  # fmt: skip
            return
        except _Bad as e:
            w.report(ctx, src.label)
            ctx.add(R_CANNOT_FOLLOW, src.label, r.tell(), kind,
                    f"R serialization stream cannot be followed: {e}")  # fmt: skip
            return
        except _TooDeep:
            w.report(ctx, src.label)
            msg = (
                f"R objects nest more than {ctx.limits.max_stack} levels deep (Limits.max_stack):"
                " the stream was not read to its end"
            )
            ctx.add(RESOURCE_LIMIT, src.label, r.tell(), kind, msg)
            return
        except Exception:  # a bound of the inflating stream, corrupt data: the engine
            w.report(ctx, src.label)  # reports it; what was found before it stands
            raise
        w.report(ctx, src.label)


class _Truncated(Exception):
    pass


class _Bad(Exception):
    pass


class _TooDeep(Exception):
    pass


class _Reader:
    """Big-endian (XDR) reads over a forward stream, with the position."""

    def __init__(self, stream: Stream) -> None:
        self.s = stream
        self.buf = b""
        self.pos = 0
        self.base = 0

    def _fill(self, n: int) -> None:
        self.base += self.pos
        self.buf = self.buf[self.pos :] + self.s.read(max(n, 1 << 16))
        self.pos = 0

    def need(self, n: int) -> bytes:
        if len(self.buf) - self.pos < n:
            self._fill(n)
            if len(self.buf) < n:
                self.pos = len(self.buf)
                raise _Truncated
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def i32(self) -> int:
        if len(self.buf) - self.pos < 4:
            self._fill(4)
            if len(self.buf) < 4:
                self.pos = len(self.buf)
                raise _Truncated
        (v,) = struct.unpack_from(">i", self.buf, self.pos)
        self.pos += 4
        return int(v)

    def skip(self, n: int) -> None:
        avail = len(self.buf) - self.pos
        if n <= avail:
            self.pos += n
            return
        self.base += len(self.buf)
        self.buf, self.pos = b"", 0
        got = self.s.skip(n - avail)
        self.base += got
        if got < n - avail:
            raise _Truncated

    def more(self) -> bool:
        if self.pos < len(self.buf):
            return True
        self._fill(1)
        return len(self.buf) > 0

    def tell(self) -> int:
        return self.base + self.pos

    def string(self, n: int) -> str:
        """``n`` bytes as text, kept to NAME_KEEP characters (the rest skipped)."""
        keep = min(n, NAME_KEEP)
        raw = self.need(keep)
        if n > keep:
            self.skip(n - keep)
        return raw.decode("utf-8", "replace")


@dataclass
class _Code:
    rule: Rule
    kind: str
    offset: int
    binding: str | None
    severity: Severity | None = None
    names: list[str] = field(default_factory=list)
    detail: str = ""


# stack actions (first tuple item)
_ITEM, _ITEMS, _CHARS, _ENDCODE, _SYMDONE, _BC1, _BCCONSTS0, _BCCONSTS, _BCLANG = range(9)
_ALTDONE, _PKGDONE = 9, 10
_ENV_REF = "\0env"  # a reference-table entry that is not a symbol


class _Walker:
    """``ReadItem`` with an explicit stack. Roles passed with an item: ``("tag", cell)``
    (a pairlist cell's tag: its symbol names the cell), ``("bind", cell)`` (the cell's
    value: a code object there is bound to that name), ``("alt", rec)`` / ``("altsym", rec)``
    (an ALTREP class description: its symbols name the class and package)."""

    def __init__(
        self,
        r: _Reader,
        max_stack: int,
        probe: Probe | None = None,
        seekable: bool = False,
        nested_min: int = 16,
    ) -> None:
        self.r = r
        self.max_stack = max_stack
        self.probe = probe  # raw vectors that hold a format are scanned as nested files
        self.seekable = seekable
        self.nested_min = nested_min
        self.refs: list[str | None] = []  # symbol names (or None / _ENV_REF) by index - 1
        self.codes: list[_Code] = []
        self.more_codes = 0
        self.other: list[_Code] = []  # opaque objects, package loads
        self.more_other = 0
        self.worst_code = Severity.MEDIUM  # of the code objects not listed
        self.worst_other = Severity.LOW  # of the ones not listed
        self.depth = 0  # code objects open around the current item
        self.cur: _Code | None = None  # the outermost open code object

    # -- findings -----------------------------------------------------------------------
    def _keep(self, rec: _Code, into: list[_Code]) -> bool:
        if len(into) < MAX_REPORTED:
            into.append(rec)
            return True
        return False

    def _open_code(self, t: int, offset: int, role: tuple[object, ...] | None) -> None:
        binding = None
        if role is not None and role[0] == "bind":
            cell = role[1]
            assert isinstance(cell, list)
            binding = cell[0]
        rule = R_PROMISE if t == _PROM else R_CODE
        rec = _Code(rule, _KIND[t], offset, binding)
        if t == _PROM and self.depth > 0:
            self._code(rec)
        elif self.depth == 0:
            self._code(rec)
            self.cur = rec
        self.depth += 1

    def _name(self, name: str, role: tuple[object, ...] | None) -> None:
        if self.depth > 0 and self.cur is not None:
            names = self.cur.names
            if name not in names and len(names) < MAX_NAMES:
                names.append(name)
        if role is None:
            return
        if role[0] == "tag":
            cell = role[1]
            assert isinstance(cell, list)
            cell[0] = name
        elif role[0] == "altsym":
            rec = role[1]
            assert isinstance(rec, list)
            rec.append(name)

    def report(self, ctx: ScanContext, label: str) -> None:
        for c in self.codes:
            where = f" bound to {c.binding!r}" if c.binding else ""
            names = f"; names used: {', '.join(c.names)}" if c.names else ""
            if c.rule is R_PROMISE:
                msg = (
                    f"a promise{where}: its code runs when the loaded value is used "
                    f"(CVE-2024-27322){names}"
                )
            else:
                msg = f"R code shipped in data: a {c.kind}{where}{c.detail}{names}"
            subject = c.binding or c.kind
            ctx.add(c.rule, label, c.offset, subject[:200], msg, severity=c.severity)
        if self.more_codes:
            msg = f"{self.more_codes} more code objects (not listed one by one)"
            ctx.add(R_CODE, label, None, "more", msg, severity=self.worst_code)
        for c in self.other:
            ctx.add(c.rule, label, c.offset, c.kind[:200], c.detail, severity=c.severity)
        if self.more_other:
            msg = f"{self.more_other} more opaque objects or package references"
            ctx.add(R_OPAQUE, label, None, "more", msg, severity=self.worst_other)

    def _code(self, rec: _Code) -> None:
        if not self._keep(rec, self.codes):
            self.more_codes += 1
            sev = rec.rule.severity if rec.severity is None else rec.severity
            self.worst_code = max(self.worst_code, sev)

    def _other(self, rec: _Code) -> None:
        if not self._keep(rec, self.other):
            self.more_other += 1
            sev = rec.rule.severity if rec.severity is None else rec.severity
            self.worst_other = max(self.worst_other, sev)

    # -- the walk -----------------------------------------------------------------------
    def _length(self) -> int:
        n = self.r.i32()
        if n == -1:  # a long vector: upper and lower halves
            hi = self.r.i32() & 0xFFFFFFFF
            lo = self.r.i32() & 0xFFFFFFFF
            if hi > 65536:
                raise _Bad(f"invalid upper part of a long vector length ({hi})")
            return (hi << 32) + lo
        if n < 0:
            raise _Bad(f"negative vector length {n}")
        return n

    def walk(self) -> None:
        r = self.r
        stack: list[tuple[object, ...]] = [(_ITEM, None)]
        push = stack.append
        while stack:
            if len(stack) > self.max_stack:
                raise _TooDeep
            act = stack.pop()
            op = act[0]
            if op == _ITEM:
                self._item(act[1], stack)  # type: ignore[arg-type]
            elif op == _ITEMS:
                n = act[1]
                assert isinstance(n, int)
                if n > 1:
                    push((_ITEMS, n - 1))
                push((_ITEM, None))
            elif op == _CHARS:
                self._chars(act[1], act[2], stack)  # type: ignore[arg-type]
            elif op == _ENDCODE:
                self.depth -= 1
                if self.depth == 0:
                    self.cur = None
            elif op == _SYMDONE:
                name = act[1]
                assert isinstance(name, str)
                self.refs.append(name)
                self._name(name, act[2])  # type: ignore[arg-type]
            elif op == _BC1:
                push((_BCCONSTS0, act[1]))
                push((_ITEM, None))  # the code vector
            elif op == _BCCONSTS0:
                n = r.i32()
                if n < 0:
                    raise _Bad(f"byte code with {n} constants")
                if n:
                    push((_BCCONSTS, n, act[1]))
            elif op == _BCCONSTS:
                n, nreps = act[1], act[2]
                assert isinstance(n, int)
                if n > 1:
                    push((_BCCONSTS, n - 1, nreps))
                t = r.i32()
                if t == _BCODE:
                    push((_BC1, nreps))
                elif t in (_LANG, _LIST, _BCREPDEF, _BCREPREF, _ATTRLANG, _ATTRLIST):
                    push((_BCLANG, t, nreps))
                else:
                    push((_ITEM, None))
            elif op == _BCLANG:
                self._bclang(act[1], act[2], stack)  # type: ignore[arg-type]
            elif op == _ALTDONE:
                self._altdone(act[1], act[2])  # type: ignore[arg-type]
            elif op == _PKGDONE:
                self._pkgdone(act[1], act[2], act[3])  # type: ignore[arg-type]

    def _chars(self, n: int, capture: list[str] | None, stack: list[tuple[object, ...]]) -> None:
        """``n`` CHARSXP items (a character vector's elements, a string vector's)."""
        r = self.r
        while n > 0:
            n -= 1
            offset = r.tell()
            flags = r.i32()
            if flags & 0xFF != _CHAR:
                raise _Bad(f"a string element of type {flags & 0xFF} at {offset} (R needs CHARSXP)")
            length = r.i32()
            if length < -1:
                raise _Bad(f"string of length {length}")
            if capture is not None and len(capture) < 4:
                capture.append("NA" if length == -1 else r.string(length))
            elif length > 0:
                r.skip(length)
            if flags & 512:  # an attribute, read and discarded
                if n:
                    stack.append((_CHARS, n, capture))
                stack.append((_ITEM, None))
                return

    def _item(self, role: tuple[object, ...] | None, stack: list[tuple[object, ...]]) -> None:
        r = self.r
        push = stack.append
        offset = r.tell()
        flags = r.i32()
        t = flags & 0xFF
        hasattr = flags & 512
        if t in _SINGLETONS:
            return
        if t == _REF:
            idx = flags >> 8
            if idx == 0:
                idx = r.i32()
            if not 1 <= idx <= len(self.refs):
                raise _Bad(f"reference {idx} out of range ({len(self.refs)} read)")
            name = self.refs[idx - 1]
            if name is not None and name != _ENV_REF:
                self._name(name, role)
            return
        if t == _SYM:
            noff = r.tell()
            nflags = r.i32()
            if nflags & 0xFF != _CHAR:
                raise _Bad(f"a symbol's name of type {nflags & 0xFF} at {noff} (R needs CHARSXP)")
            length = r.i32()
            if length < -1:
                raise _Bad(f"symbol name of length {length}")
            name = "NA" if length == -1 else r.string(length)
            if nflags & 512:
                push((_SYMDONE, name, role))
                push((_ITEM, None))
            else:
                self.refs.append(name)
                self._name(name, role)
            return
        if t in _CONS:
            code = t != _LIST
            if code:
                self._open_code(t, offset, role)
                push((_ENDCODE,))
            alt = role is not None and role[0] == "alt"
            cell: list[str | None] = [None]
            push((_ITEM, role if alt else None))  # CDR
            if alt:
                push((_ITEM, ("altsym", role[1])))  # type: ignore[index]
            else:
                push((_ITEM, ("bind", cell) if flags & 1024 else None))  # CAR
            if flags & 1024:
                push((_ITEM, ("tag", cell)))
            if hasattr:
                push((_ITEM, None))
            return
        if t == _ENV:
            r.i32()  # locked
            self.refs.append(_ENV_REF)
            push((_ITEM, None))  # attributes
            push((_ITEM, None))  # hash table
            push((_ITEM, None))  # frame
            push((_ITEM, None))  # enclosure
            return
        if t in (_NAMESPACE, _PACKAGE, _PERSIST):
            if r.i32() != 0:
                raise _Bad("names in persistent strings are not supported (R refuses them)")
            n = r.i32()
            if n < 0:
                raise _Bad(f"a string vector of length {n}")
            capture: list[str] = []
            push((_PKGDONE, t, capture, offset))
            if n:
                push((_CHARS, n, capture))
            return
        if t == _ALTREP:
            rec: list[str] = []
            push((_ALTDONE, rec, offset))
            push((_ITEM, None))  # attributes
            push((_ITEM, None))  # state
            push((_ITEM, ("alt", rec)))  # class information
            return
        # the rest read their payload, then their attributes (when flagged)
        if t in (_EXPR, _BCODE):
            self._open_code(t, offset, role)
            push((_ENDCODE,))
        if hasattr:
            push((_ITEM, None))
        if t == _RAW:
            self._raw(self._length())
        elif t in _FIXED:
            r.skip(self._length() * _FIXED[t])
        elif t == _CHAR:
            length = r.i32()
            if length < -1:
                raise _Bad(f"string of length {length}")
            if length > 0:
                r.skip(length)
        elif t == _STR:
            n = self._length()
            if n:
                push((_CHARS, n, None))
        elif t in (_VEC, _EXPR):
            n = self._length()
            if n:
                push((_ITEMS, n))
        elif t == _BCODE:
            nreps = r.i32()
            if nreps < 0:
                raise _Bad(f"byte code with {nreps} shared cells")
            push((_BC1, nreps))
        elif t in (_EXTPTR, _WEAKREF):
            self.refs.append(None)
            what = "an external pointer" if t == _EXTPTR else "a weak reference"
            self._other(_Code(R_OPAQUE, what, offset, None, detail=(
                f"{what} (R restores it empty: it cannot carry a value across a save, which "
                "data.table's self-reference uses; its contents were scanned)"
            )))  # fmt: skip
            if t == _EXTPTR:
                push((_ITEM, None))  # tag
                push((_ITEM, None))  # protected value
        elif t in (_SPECIAL, _BUILTIN):
            length = r.i32()
            if not 0 <= length <= 4096:
                raise _Bad(f"a primitive's name of length {length}")
            name = r.string(length)
            if self.depth > 0:
                self._name(name, None)
            else:
                why = f" ({name!r}: R's own builtin, no code of the file's)"
                rec_c = _Code(R_CODE, "primitive function", offset, None, Severity.MEDIUM,
                              [name], why)  # fmt: skip
                if role is not None and role[0] == "bind":
                    cell_b = role[1]
                    assert isinstance(cell_b, list)
                    rec_c.binding = cell_b[0]
                self._code(rec_c)
        elif t == _S4:
            pass
        elif t in (_CLASSREF, _GENERICREF):
            raise _Bad(f"a class or generic reference (type {t}), which R cannot read")
        else:
            raise _Bad(f"unknown item type {t} at {offset}")

    def _raw(self, n: int) -> None:
        """A raw vector's bytes: a serialized object, a pickle, an archive... stored in R data
        is unserialized by the code that reads it (``unserialize(x$raw)``): scanned as a
        nested file when it may hold a format (its first byte, as the pickle walker does)."""
        r = self.r
        offset = r.tell()
        if self.probe is None or n < self.nested_min:
            r.skip(n)
            return
        if self.seekable:
            r.skip(n)  # the whole value is there: scanned from the file
            self.probe(None, offset, n, "raw", False)
            return
        first = r.need(1)
        r.pos -= 1
        if first[0] not in _PROBE_FIRST:
            r.skip(n)
        elif n <= SMALL_RAW:
            self.probe(r.need(n), offset, n, "raw", False)
        else:
            import tempfile

            with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as tmp:
                left = n
                while left:
                    chunk = r.need(min(left, 1 << 20))
                    tmp.write(chunk)
                    left -= len(chunk)
                tmp.seek(0)
                self.probe(FileSource(tmp, 0, n, ""), offset, n, "raw", False)  # type: ignore[arg-type]

    def _bclang(self, t: int, nreps: int, stack: list[tuple[object, ...]]) -> None:
        """``ReadBCLang``: calls and pairlists inside byte code constants, with shared cells."""
        r = self.r
        push = stack.append
        if t == -1:
            t = r.i32()
        if t == _BCREPREF:
            i = r.i32()
            if not 0 <= i < nreps:
                raise _Bad(f"byte code shared cell {i} out of range ({nreps})")
            return
        if t in (_BCREPDEF, _LANG, _LIST, _ATTRLANG, _ATTRLIST):
            if t == _BCREPDEF:
                pos = r.i32()
                if not 0 <= pos < nreps:
                    raise _Bad(f"byte code shared cell {pos} out of range ({nreps})")
                t = r.i32()  # any type: R allocates a cell of it
            push((_BCLANG, -1, nreps))  # CDR
            push((_BCLANG, -1, nreps))  # CAR
            push((_ITEM, None))  # tag
            if t in (_ATTRLANG, _ATTRLIST):
                push((_ITEM, None))
            return
        push((_ITEM, None))  # a pad word, then an ordinary item

    def _altdone(self, rec: list[str], offset: int) -> None:
        cls = rec[0] if rec else "?"
        pkg = rec[1] if len(rec) > 1 else "?"
        if pkg == "base" and cls in _BASE_ALTREP:
            return
        detail = (
            f"an ALTREP object of class {cls!r} from package {pkg!r}: R loads that package "
            "and calls its unserialize method with the stored state"
        )
        self._other(_Code(R_PACKAGE_LOAD, f"{pkg}::{cls}", offset, None, Severity.MEDIUM,
                          detail=detail))  # fmt: skip

    def _pkgdone(self, t: int, names: list[str], offset: int) -> None:
        self.refs.append(_ENV_REF)
        what = names[0] if names else "?"
        if t == _PERSIST:
            detail = (
                f"a persistent reference {what!r}: R asks the reader's refhook to restore it "
                "(readRDS without one refuses the file)"
            )
            sev = Severity.MEDIUM
        elif t == _NAMESPACE:
            detail = f"the namespace of package {what!r}: reading it loads that package"
            sev = Severity.LOW
        else:
            detail = f"the package environment {what!r}: reading it loads and attaches it"
            sev = Severity.LOW
        self._other(_Code(R_PACKAGE_LOAD, what, offset, None, sev, detail=detail))
