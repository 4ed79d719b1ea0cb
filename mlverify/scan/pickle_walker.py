"""A pickle opcode walker of our own: simulate, never execute.

The walker reads raw bytes (protocols 0-5), keeps a light model of the
unpickler's stack and memo, and records every import (GLOBAL, STACK_GLOBAL,
INST, OBJ's class, EXT*) together with how it is used: called by REDUCE,
constructed by NEWOBJ/NEWOBJ_EX/INST/OBJ, given state by BUILD, passed as an
argument. Import helpers (``getattr``, ``importlib.import_module``,
``pydoc.locate``, ...) with constant arguments are resolved to what they reach.

Large strings and bytes are skipped by offset (their first bytes are probed
for nested formats); memory stays bounded by ``Limits``. Streams may hold
several pickles back to back; a truncated or invalid stream is analysed up to
the break, which is reported.
"""

from __future__ import annotations

import codecs
import contextlib
import re
import struct
from collections.abc import Callable
from typing import Any

from mlverify.scan.model import Limits, Severity
from mlverify.scan.policy import Policy, Verdict, canonical
from mlverify.scan.source import FileSource, Source, Stream

_IDENT_LINE = re.compile(rb"[A-Za-z_][\w.]*\Z")
NESTED_PICKLE = re.compile(rb"\(?[ci][A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n")


class Opaque:
    """A value the walker does not model."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"<{self.what}>"


ANY = Opaque("object")
PERSISTENT = Opaque("persistent object")
BUFFER = Opaque("out-of-band buffer")


class Blob:
    """A string or bytes value too long to keep: only where it is."""

    __slots__ = ("kind", "length", "offset")

    def __init__(self, kind: str, offset: int, length: int) -> None:
        self.kind = kind
        self.offset = offset
        self.length = length

    def __repr__(self) -> str:
        return f"<{self.kind} of {self.length} bytes at {self.offset}>"


class ImportRecord:
    """One distinct import of a stream, its verdict and how it is used."""

    __slots__ = ("count", "module", "name", "offset", "opcode", "uses", "verdict")

    def __init__(self, module: str, name: str, offset: int, opcode: str, verdict: Verdict) -> None:
        self.module = module
        self.name = name
        self.offset = offset
        self.opcode = opcode
        self.verdict = verdict
        self.count = 0
        self.uses: list[str] = []

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}" if self.module else self.name


class Ref:
    """The value an import pushes."""

    __slots__ = ("rec",)

    def __init__(self, rec: ImportRecord) -> None:
        self.rec = rec

    def __repr__(self) -> str:
        return self.rec.full


class Call:
    """The result of calling ``func`` with ``args`` (REDUCE, NEWOBJ, INST, ...)."""

    __slots__ = ("args", "func", "kind", "offset", "state", "target")

    def __init__(self, func: Any, args: Any, kind: str, offset: int, target: str | None) -> None:
        self.func = func
        self.args = args
        self.kind = kind
        self.offset = offset
        self.target = target  # dotted path this value stands for, when resolvable
        self.state: Any = None

    def __repr__(self) -> str:
        return render(self)


def render(v: Any, budget: int = 160) -> str:
    """A short Python-like rendering of a simulated value."""
    out = _render(v, 0)
    return out if len(out) <= budget else out[: budget - 3] + "..."


def _render(v: Any, depth: int) -> str:
    if depth > 4:
        return "..."
    if isinstance(v, Call):
        if isinstance(v.args, tuple):
            inner = ", ".join(_render(a, depth + 1) for a in v.args[:6])
            if len(v.args) > 6:
                inner += ", ..."
        else:
            inner = "*" + _render(v.args, depth + 1)
        return f"{_render(v.func, depth + 1)}({inner})"
    if isinstance(v, tuple):
        inner = ", ".join(_render(a, depth + 1) for a in v[:6])
        return f"({inner}{',' if len(v) == 1 else ''}{', ...' if len(v) > 6 else ''})"
    if isinstance(v, list):
        return "[" + ", ".join(_render(a, depth + 1) for a in v[:6]) + "]"
    if isinstance(v, dict):
        items = list(v.items())[:4]
        return (
            "{"
            + ", ".join(f"{_render(k, depth + 1)}: {_render(x, depth + 1)}" for k, x in items)
            + "}"
        )
    if isinstance(v, (str, bytes)):
        r = repr(v)
        return r if len(r) <= 60 else r[:57] + "..."
    return repr(v)


_STREAM_ERRORS = (EOFError, ValueError, OSError)  # source.CorruptData is a ValueError


class BrokenStream(Exception):
    """The loader would stop here with an error."""


class StreamEnd(Exception):
    """No more bytes where a new pickle would start."""


Emit = Callable[[str, Severity, int, str, str, str], None]
Nested = Callable[[bytes | Source | None, int, int, str], None]

# opcodes (ints) ----------------------------------------------------------
MARK, STOP, POP, POP_MARK, DUP = 0x28, 0x2E, 0x30, 0x31, 0x32
FLOAT, INT, BININT, BININT1, LONG, BININT2, NONE = 0x46, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E
PERSID, BINPERSID, REDUCE, STRING, BINSTRING, SHORT_BINSTRING = 0x50, 0x51, 0x52, 0x53, 0x54, 0x55
UNICODE, BINUNICODE, APPEND, BUILD, GLOBAL, DICT, EMPTY_DICT = (
    0x56,
    0x58,
    0x61,
    0x62,
    0x63,
    0x64,
    0x7D,
)
APPENDS, GET, BINGET, INST, LONG_BINGET, LIST, EMPTY_LIST = 0x65, 0x67, 0x68, 0x69, 0x6A, 0x6C, 0x5D
OBJ, PUT, BINPUT, LONG_BINPUT, SETITEM, TUPLE, EMPTY_TUPLE = (
    0x6F,
    0x70,
    0x71,
    0x72,
    0x73,
    0x74,
    0x29,
)
SETITEMS, BINFLOAT = 0x75, 0x47
PROTO, NEWOBJ, EXT1, EXT2, EXT4, TUPLE1, TUPLE2, TUPLE3 = (
    0x80,
    0x81,
    0x82,
    0x83,
    0x84,
    0x85,
    0x86,
    0x87,
)
NEWTRUE, NEWFALSE, LONG1, LONG4 = 0x88, 0x89, 0x8A, 0x8B
BINBYTES, SHORT_BINBYTES = 0x42, 0x43
SHORT_BINUNICODE, BINUNICODE8, BINBYTES8, EMPTY_SET, ADDITEMS = 0x8C, 0x8D, 0x8E, 0x8F, 0x90
FROZENSET, NEWOBJ_EX, STACK_GLOBAL, MEMOIZE, FRAME = 0x91, 0x92, 0x93, 0x94, 0x95
BYTEARRAY8, NEXT_BUFFER, READONLY_BUFFER = 0x96, 0x97, 0x98

VALID_OPCODES = frozenset(
    b"(.012FIJKLMNPQRSTUVXabcd}eghijl]opqrstu)G" + bytes(range(0x80, 0x99)) + b"BC"
)

#: first bytes of formats worth a nested scan (pickle, zip, npy, compressors, ...)
PROBE_FIRST = frozenset(b"\x80ci(P\x93\x1fB\xfdx]7\x89G")

KEEP = 64  # elements kept per simulated container
KEEP_STR = 256  # characters kept per string in the memo/stack


class WalkResult:
    """What a walk saw: complete pickles, distinct imports, where it stopped."""

    __slots__ = ("broken", "end", "imports", "opcodes", "pickles")

    def __init__(self) -> None:
        self.pickles = 0
        self.opcodes = 0
        self.imports = 0
        self.broken = False
        self.end = 0

    def __repr__(self) -> str:
        return (
            f"WalkResult(pickles={self.pickles}, imports={self.imports}, "
            f"broken={self.broken}, end={self.end})"
        )


class _Memo:
    """The unpickler memo with exact ``len`` (MEMOIZE uses it) and bounded storage."""

    __slots__ = ("dense", "sparse")

    def __init__(self) -> None:
        self.dense: list[Any] = []
        self.sparse: dict[int, Any] = {}

    def put(self, k: int, v: Any) -> None:
        dense = self.dense
        n = len(dense)
        if 0 <= k < n:
            dense[k] = v
        elif k == n:
            dense.append(v)
            if self.sparse:
                sp = self.sparse
                while len(dense) in sp:
                    dense.append(sp.pop(len(dense)))
        else:
            self.sparse[k] = v

    def get(self, k: int) -> Any:
        if 0 <= k < len(self.dense):
            return self.dense[k]
        try:
            return self.sparse[k]
        except KeyError:
            raise BrokenStream(f"memo key {k} was never stored") from None

    def __len__(self) -> int:
        return len(self.dense) + len(self.sparse)


def _slim(v: Any) -> Any:
    """What the memo keeps of a value (bounded)."""
    if isinstance(v, str) and len(v) > KEEP_STR:
        return v[:KEEP_STR]
    if isinstance(v, bytes) and len(v) > KEEP_STR:
        return ANY
    return v


class PickleWalker:
    """Walks every pickle in a stream, reporting through ``emit``."""

    def __init__(
        self,
        stream: Stream,
        policy: Policy,
        limits: Limits,
        emit: Emit,
        nested: Nested | None = None,
        base_offset: int = 0,
    ) -> None:
        self.stream = stream
        self.policy = policy
        self.limits = limits
        self.emit = emit
        self.nested = nested
        self.base = base_offset
        self.buf = b""
        self.pos = 0
        self.buf_start = 0  # stream offset of buf[0]
        self.eof = False
        self.records: dict[tuple[str, str], ImportRecord] = {}
        self.result = WalkResult()
        self._emitted = 0

    # -- buffer ----------------------------------------------------------
    def _fill(self, need: int) -> bool:
        """Make ``need`` bytes available at ``self.pos``; False at end of stream."""
        avail = len(self.buf) - self.pos
        if avail >= need:
            return True
        if self.eof:
            return False
        parts = [self.buf[self.pos :]]
        self.buf_start += self.pos
        got = avail
        while got < need:
            chunk = self._read(max(need - got, 1 << 16))
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            got += len(chunk)
        self.buf = b"".join(parts)
        self.pos = 0
        return got >= need

    def _skip(self, n: int) -> None:
        avail = len(self.buf) - self.pos
        if n <= avail:
            self.pos += n
            return
        rest = n - avail
        self.buf_start += len(self.buf)
        self.buf = b""
        self.pos = 0
        try:
            skipped = self.stream.skip(rest)
        except _STREAM_ERRORS as e:
            raise BrokenStream(f"the stream cannot be read: {e}") from None
        self.buf_start += skipped
        if skipped < rest:
            self.eof = True
            raise BrokenStream("data runs past the end of the stream")

    def _read(self, n: int) -> bytes:
        try:
            return self.stream.read(n)
        except _STREAM_ERRORS as e:
            raise BrokenStream(f"the stream cannot be read: {e}") from None

    def _tell(self) -> int:
        return self.buf_start + self.pos

    def _readline(self) -> bytes | None:
        """One newline-terminated line (without the newline); None if too long to keep."""
        while True:
            i = self.buf.find(b"\n", self.pos)
            if i >= 0:
                line = self.buf[self.pos : i]
                self.pos = i + 1
                return line
            if len(self.buf) - self.pos > self.limits.small_value:
                # a huge protocol-0 line: stream through it without keeping it
                while True:
                    self.buf_start += len(self.buf)
                    self.buf = self._read(1 << 20)
                    self.pos = 0
                    if not self.buf:
                        self.eof = True
                        raise BrokenStream("a text opcode's line never ends")
                    i = self.buf.find(b"\n")
                    if i >= 0:
                        self.pos = i + 1
                        return None
            if not self._fill(len(self.buf) - self.pos + 1):
                raise BrokenStream("a text opcode's line never ends")

    # -- findings --------------------------------------------------------
    def _emit(
        self, rule: str, sev: Severity, offset: int, subject: str, msg: str, chain: str
    ) -> None:
        self._emitted += 1
        if self._emitted <= 1000:
            self.emit(rule, sev, self.base + offset, subject, msg, chain)

    def _import(self, module: str, name: str, offset: int, opcode: str) -> Ref:
        key = (module, name)
        rec = self.records.get(key)
        if rec is None:
            verdict = self.policy.classify(module, name)
            rec = ImportRecord(module, name, offset, opcode, verdict)
            self.records[key] = rec
            self.result.imports += 1
        rec.count += 1
        return Ref(rec)

    def _wants(self, v: Any) -> ImportRecord | None:
        """The record of a non-allowlisted import behind ``v`` still collecting uses."""
        depth = 0
        while isinstance(v, Call) and depth < 8:
            v = v.func
            depth += 1
        if isinstance(v, Ref):
            rec = v.rec
            if len(rec.uses) < 3 and rec.verdict.kind != "allow":
                return rec
        return None

    def _stored(self, items: tuple[Any, ...], op_off: int) -> None:
        for it in items:
            rec = self._wants(it)
            if rec is not None:
                rec.uses.append(f"stored in a container at offset {self.base + op_off}")

    def _flush_imports(self) -> None:
        for rec in self.records.values():
            v = rec.verdict
            if v.kind == "allow":
                continue
            canon = ".".join(x for x in canonical(rec.module, rec.name) if x)
            label = rec.full if canon == rec.full else f"{rec.full} (= {canon})"
            chain = "; ".join(rec.uses) if rec.uses else f"imported by {rec.opcode}, not called"
            times = f" ({rec.count} times)" if rec.count > 1 else ""
            if v.kind == "deny":
                self._emit(
                    "MLV101",
                    v.severity,
                    rec.offset,
                    rec.full,
                    f"imports dangerous callable {label}{times}: {v.reason}",
                    chain,
                )
            else:
                self._emit(
                    "MLV102",
                    v.severity,
                    rec.offset,
                    rec.full,
                    f"imports {label}{times}, which is not on the allowlist",
                    chain,
                )
        self.records = {}

    # -- semantics -------------------------------------------------------
    def _target(self, v: Any) -> str | None:
        if isinstance(v, Ref):
            return v.rec.full
        if isinstance(v, Call):
            return v.target
        return None

    def _reach(self, target: str, call: Call, offset: int) -> None:
        """A call evaluates to (or calls) ``target``: flag it if it is not allowed."""
        verdict = self.policy.is_dangerous_target(target)
        if verdict.kind == "deny":
            self._emit(
                "MLV104",
                max(verdict.severity, Severity.HIGH),
                offset,
                target,
                f"call chain reaches {target}: {verdict.reason}",
                render(call) + f" at offset {self.base + offset}",
            )
        elif verdict.kind == "unknown":
            self._emit(
                "MLV103",
                Severity.HIGH,
                offset,
                target,
                f"an import helper reaches {target}, which is not on the allowlist",
                render(call),
            )

    def _call(self, func: Any, args: Any, kind: str, offset: int) -> Call:
        target: str | None = None
        call = Call(func, args, kind, offset, None)
        argt = args if isinstance(args, tuple) else ()
        if isinstance(func, Ref):
            rec = func.rec
            helper = self.policy.helper(rec.module, rec.name)
            if helper is not None:
                target = self._helper_target(helper, argt, call, offset)
                if target is not None and not target.startswith("attrgetter:"):
                    self._reach(target, call, offset)
            rec_ = self._wants(func)
            if rec_ is not None:
                rec_.uses.append(f"{render(call)} via {kind} at offset {self.base + offset}")
        elif isinstance(func, Call):
            # calling a computed value: attrgetter(...)(obj), getattr(...)(...), ...
            ft = func.target
            if ft is not None and ft.startswith("attrgetter:"):
                base = self._target(argt[0]) if argt else None
                target = f"{base}.{ft[11:]}" if base else None
                if target:
                    self._reach(target, call, offset)
                else:
                    self._emit(
                        "MLV105",
                        Severity.HIGH,
                        offset,
                        "REDUCE",
                        "calls an attrgetter on an object the scanner cannot resolve",
                        render(call),
                    )
            elif ft is not None:
                verdict = self.policy.is_dangerous_target(ft)
                if verdict.kind == "deny":
                    self._emit(
                        "MLV104",
                        Severity.CRITICAL,
                        offset,
                        ft,
                        f"calls {ft}, reached through a call chain: {verdict.reason}",
                        render(call),
                    )
                elif verdict.kind == "unknown":
                    self._emit(
                        "MLV105",
                        Severity.HIGH,
                        offset,
                        ft,
                        f"calls {ft}, reached through a call chain",
                        render(call),
                    )
            else:
                self._emit(
                    "MLV105",
                    Severity.HIGH,
                    offset,
                    kind,
                    "calls the result of another call (gadget chain shape)",
                    render(call),
                )
        else:
            self._emit(
                "MLV105",
                Severity.HIGH,
                offset,
                kind,
                f"calls a value that is not an import ({render(func, 60)})",
                render(call),
            )
        for a in argt[:KEEP]:
            if isinstance(a, (Ref, Call)):
                rec_ = self._wants(a)
                if rec_ is not None:
                    rec_.uses.append(f"argument of {render(call)} at offset {self.base + offset}")
        call.target = target
        return call

    def _helper_target(
        self, helper: str, args: tuple[Any, ...], call: Call, offset: int
    ) -> str | None:
        a0 = args[0] if args else None
        if helper in ("module", "dotted"):
            if isinstance(a0, str):
                return a0
        elif helper == "getattr":
            if len(args) >= 2 and isinstance(args[1], str):
                base = self._target(a0)
                if base is not None:
                    return f"{base}.{args[1]}"
                seg = args[1]
                verdict = self.policy.is_dangerous_target(f"object.{seg}")
                if verdict.kind == "deny":
                    self._emit(
                        "MLV104",
                        Severity.HIGH,
                        offset,
                        f"getattr(..., {seg!r})",
                        f"getattr reaches attribute {seg!r}: {verdict.reason}",
                        render(call),
                    )
                return None
        elif helper == "attrgetter":
            if isinstance(a0, str):
                return f"attrgetter:{a0}"
        elif helper == "module_name":
            if len(args) >= 2 and isinstance(a0, str) and isinstance(args[1], str):
                return f"{a0}.{args[1]}"
        else:
            return None
        self._emit(
            "MLV103",
            Severity.HIGH,
            offset,
            render(call.func),
            "an import helper receives a name the scanner cannot resolve",
            render(call),
        )
        return None

    def _probe(self, data: bytes | None, offset: int, length: int, kind: str) -> None:
        """Offer a string/bytes value (stream ``offset``) to the nested-format scan."""
        if self.nested is None or length < self.limits.nested_min:
            return
        if data is not None and data[0] not in PROBE_FIRST:
            return
        self.nested(data, offset, length, kind)

    def _spool_blob(self, offset: int, n: int, kind: str) -> None:
        """A large value in a stream that cannot seek: copy it aside if it may be a format."""
        if not self._fill(1):
            raise BrokenStream("data runs past the end of the stream")
        if self.buf[self.pos] not in PROBE_FIRST or self.nested is None:
            self._skip(n)
            return
        import tempfile

        with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as tmp:
            left = n
            while left:
                avail = len(self.buf) - self.pos
                if not avail:
                    if not self._fill(1):
                        raise BrokenStream("data runs past the end of the stream")
                    continue
                take = min(avail, left)
                tmp.write(self.buf[self.pos : self.pos + take])
                self.pos += take
                left -= take
            tmp.seek(0)
            self.nested(FileSource(tmp, 0, n, ""), offset, n, kind)  # type: ignore[arg-type]

    def _joblib_array(self, obj: Call, state: Any) -> None:
        """joblib writes array bytes (or a whole pickle) right after NumpyArrayWrapper's BUILD."""
        if not isinstance(state, dict):
            raise BrokenStream("NumpyArrayWrapper without a state dict")
        dtype = state.get("dtype")
        shape = state.get("shape")
        typestr, elsize, hasobject = _dtype_info(dtype)
        if hasobject:
            self._walk_one(inline=True)
            return
        if (
            typestr is None
            or not isinstance(shape, tuple)
            or not all(isinstance(d, int) for d in shape)
        ):
            raise BrokenStream("NumpyArrayWrapper with a dtype or shape the scanner cannot size")
        n = elsize
        for d in shape:
            n *= d
        if state.get("numpy_array_alignment_bytes") is not None:
            if not self._fill(1):
                raise BrokenStream("array padding runs past the end")
            pad = self.buf[self.pos]
            self.pos += 1
            self._skip(pad)
        self._skip(n)

    # -- main loop -------------------------------------------------------
    def walk(self) -> WalkResult:
        """Walk all pickles in the stream (stacked pickles included)."""
        res = self.result
        while True:
            if not self._fill(1):
                break
            start = self._tell()
            if res.pickles and self.buf[self.pos] not in VALID_OPCODES:
                res.end = start
                break  # trailing bytes after the last pickle: data, not opcodes
            try:
                self._walk_one()
                res.pickles += 1
            except BrokenStream as e:
                res.broken = True
                res.end = self._tell()
                self._flush_imports()
                if res.pickles == 0:
                    self._emit(
                        "MLV108",
                        Severity.LOW,
                        self._tell(),
                        "stream",
                        f"pickle stream breaks at offset {self.base + self._tell()}: {e}; "
                        "opcodes before the break were analysed",
                        "",
                    )
                break
            finally:
                self._flush_imports()
            res.end = self._tell()
        return res

    def _walk_one(self, inline: bool = False) -> None:
        stack: list[Any] = []
        marks: list[int] = []
        memo = _Memo()
        policy_emit = self._emit
        limit = self.limits.max_stack
        small = self.limits.small_value
        buf = self.buf
        pos = self.pos
        blen = len(buf)
        safe = blen - 9
        op_off = 0
        bs = self.buf_start
        dense = memo.dense
        sparse = memo.sparse
        tracked = (Ref, Call)
        unpack_i4 = _I4.unpack_from
        slimmed = _SLIMMED

        def pop_mark() -> list[Any]:
            if not marks:
                raise BrokenStream("MARK expected")
            m = marks.pop()
            items = stack[m:]
            del stack[m:]
            return items

        try:
            while True:
                if pos > safe:
                    self.pos = pos
                    self._fill(9)
                    buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                    safe = blen - 9
                    if pos >= blen:
                        raise BrokenStream("truncated: the stream ends before STOP")
                    if len(stack) + len(memo) > limit:
                        raise _Limit("pickle stack and memo pass the configured bound")
                op = buf[pos]
                pos += 1
                if op == 0x94:  # MEMOIZE
                    v = stack[-1]
                    if v.__class__ in slimmed and len(v) > KEEP_STR:
                        v = _slim(v)
                    if sparse:
                        memo.put(len(dense) + len(sparse), v)
                    else:
                        dense.append(v)
                elif op == 0x8C and pos + buf[pos] < safe:  # SHORT_BINUNICODE, in buffer
                    n = buf[pos]
                    try:
                        sv = buf[pos + 1 : pos + 1 + n].decode("utf-8", "surrogatepass")
                    except UnicodeDecodeError:
                        raise BrokenStream("invalid UTF-8 in a string") from None
                    pos += 1 + n
                    stack.append(sv)
                    if n >= 16 and self.nested is not None:
                        self._probe(_latin1(sv), bs + pos - n, n, "str")
                    if n <= KEEP_STR and buf[pos] == 0x94 and not sparse:  # fused MEMOIZE
                        dense.append(sv)
                        pos += 1
                elif op == 0x4A:  # BININT
                    stack.append(unpack_i4(buf, pos)[0])
                    pos += 4
                elif op == 0x4B:  # BININT1
                    stack.append(buf[pos])
                    pos += 1
                elif op == 0x68:  # BINGET
                    k = buf[pos]
                    pos += 1
                    try:
                        stack.append(dense[k])
                    except IndexError:
                        stack.append(memo.get(k))
                elif op == 0x7D:  # EMPTY_DICT
                    v = {}
                    stack.append(v)
                    if buf[pos] == 0x94 and not sparse:  # fused MEMOIZE
                        dense.append(v)
                        pos += 1
                elif op == 0x73:  # SETITEM
                    v = stack.pop()
                    k = stack.pop()
                    target = stack[-1]
                    if target.__class__ is dict and len(target) < KEEP:
                        try:  # noqa: SIM105 - hot path
                            target[k] = v
                        except TypeError:
                            pass
                    if v.__class__ in tracked:
                        self._stored((v,), bs + pos - 1)
                elif op == 0x87:  # TUPLE3
                    c_ = stack.pop()
                    b_ = stack.pop()
                    v = stack[-1] = (stack[-1], b_, c_)
                    if buf[pos] == 0x94 and not sparse:  # fused MEMOIZE
                        dense.append(v)
                        pos += 1
                elif op == 0x86:  # TUPLE2
                    b_ = stack.pop()
                    v = stack[-1] = (stack[-1], b_)
                    if buf[pos] == 0x94 and not sparse:  # fused MEMOIZE
                        dense.append(v)
                        pos += 1
                elif op == 0x28:  # MARK
                    marks.append(len(stack))
                elif op == 0x71:  # BINPUT
                    k = buf[pos]
                    pos += 1
                    v = stack[-1]
                    if (v.__class__ is str or v.__class__ is bytes) and len(v) > KEEP_STR:
                        v = _slim(v)
                    if k < len(dense):
                        dense[k] = v
                    else:
                        memo.put(k, v)
                elif op == 0x4D:  # BININT2
                    stack.append(buf[pos] | (buf[pos + 1] << 8))
                    pos += 2
                elif op in (0x65, 0x75, 0x90):  # APPENDS SETITEMS ADDITEMS
                    op_off = bs + pos - 1
                    items = pop_mark()
                    if not stack:
                        _underflow()
                    target = stack[-1]
                    if op == 0x65:
                        if isinstance(target, list) and len(target) < KEEP:
                            target.extend(items[: KEEP - len(target)])
                    elif op == 0x75 and isinstance(target, dict) and len(target) < KEEP:
                        for i in range(0, len(items) - 1, 2):
                            k = items[i]
                            if isinstance(k, (str, int, bytes, float, tuple)):
                                with contextlib.suppress(TypeError):
                                    target[k] = items[i + 1]
                    if any(it.__class__ in tracked for it in items):
                        self._stored(tuple(items), op_off)
                elif op in (0x8C, 0x43, 0x55):  # SHORT_BINUNICODE SHORT_BINBYTES SHORT_BINSTRING
                    n = buf[pos]
                    pos += 1
                    if pos + n > blen:
                        self.pos = pos
                        if not self._fill(n):
                            raise BrokenStream("truncated string")
                        buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                        safe = blen - 9
                    raw = buf[pos : pos + n]
                    pos += n
                    if op == 0x8C:
                        try:
                            sv = raw.decode("utf-8", "surrogatepass")
                        except UnicodeDecodeError:
                            raise BrokenStream("invalid UTF-8 in a string") from None
                        stack.append(sv)
                        if n >= 16 and self.nested is not None:
                            self._probe(_latin1(sv), self.buf_start + pos - n, n, "str")
                    elif op == 0x43:
                        stack.append(raw)
                        if n >= 16 and self.nested is not None:
                            self._probe(raw, self.buf_start + pos - n, n, "bytes")
                    else:
                        stack.append(raw.decode("latin-1"))
                        if n >= 16 and self.nested is not None:
                            self._probe(raw, self.buf_start + pos - n, n, "str")
                elif op == 0x5D:  # EMPTY_LIST
                    stack.append([])
                elif op == 0x29:  # EMPTY_TUPLE
                    stack.append(())
                elif op == 0x61:  # APPEND
                    op_off = bs + pos - 1
                    v = stack.pop()
                    target = stack[-1]
                    if target.__class__ is list and len(target) < KEEP:
                        target.append(v)
                    if v.__class__ in tracked:
                        self._stored((v,), bs + pos - 1)
                elif op == 0x85:  # TUPLE1
                    stack[-1] = (stack[-1],)
                elif op == 0x47:  # BINFLOAT
                    stack.append(ANY)
                    pos += 8
                elif op == 0x4E:  # NONE
                    stack.append(None)
                elif op == 0x88:  # NEWTRUE
                    stack.append(True)
                elif op == 0x89:  # NEWFALSE
                    stack.append(False)
                elif op == 0x72:  # LONG_BINPUT
                    if not stack:
                        _underflow()
                    k = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16 | buf[pos + 3] << 24
                    pos += 4
                    memo.put(k, _slim(stack[-1]))
                elif op == 0x6A:  # LONG_BINGET
                    k = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16 | buf[pos + 3] << 24
                    pos += 4
                    stack.append(dense[k] if k < len(dense) else memo.get(k))
                elif op == 0x95:  # FRAME
                    pos += 8
                elif op in (
                    0x58,
                    0x42,
                    0x54,
                    0x8D,
                    0x8E,
                    0x96,
                ):  # BINUNICODE BINBYTES BINSTRING BINUNICODE8 BINBYTES8 BYTEARRAY8
                    w = 4 if op in (0x58, 0x42, 0x54) else 8
                    if pos + w > blen:
                        self.pos = pos
                        if not self._fill(w):
                            raise BrokenStream("truncated length")
                        buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                        safe = blen - 9
                    n = int.from_bytes(buf[pos : pos + w], "little", signed=(op == 0x54))
                    pos += w
                    if n < 0:
                        raise BrokenStream("negative string length")
                    kind = "str" if op in (0x58, 0x8D, 0x54) else "bytes"
                    data_off = self.buf_start + pos
                    if n <= small:
                        if pos + n > blen:
                            self.pos = pos
                            if not self._fill(n):
                                raise BrokenStream("truncated string")
                            buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                            safe = blen - 9
                        raw = buf[pos : pos + n]
                        pos += n
                        if op in (0x58, 0x8D):
                            try:
                                val: Any = raw.decode("utf-8", "surrogatepass")
                            except UnicodeDecodeError:
                                raise BrokenStream("invalid UTF-8 in a string") from None
                        elif op == 0x54:
                            val = raw.decode("latin-1")
                        else:
                            val = raw if op != 0x96 else ANY
                        stack.append(val)
                        if n >= 16 and self.nested is not None:
                            self._probe(
                                _latin1(val) if isinstance(val, str) else raw, data_off, n, kind
                            )
                    else:
                        self.pos = pos
                        if self.nested is not None and not self.stream.seekable:
                            self._spool_blob(data_off, n, kind)
                        else:
                            self._probe(None, data_off, n, kind)
                            self._skip(n)
                        buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                        safe = blen - 9
                        stack.append(Blob(kind, data_off, n))
                elif op in (0x63, 0x69):  # GLOBAL INST
                    op_off = bs + pos - 1
                    self.pos = pos
                    mod_b = self._readline()
                    name_b = self._readline()
                    buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                    safe = blen - 9
                    if mod_b is None or name_b is None:
                        raise BrokenStream("GLOBAL name too long")
                    try:
                        mod, name = mod_b.decode("utf-8"), name_b.decode("utf-8")
                    except UnicodeDecodeError:
                        raise BrokenStream("GLOBAL name is not UTF-8") from None
                    opname = "GLOBAL" if op == 0x63 else "INST"
                    ref = self._import(mod, name, op_off, opname)
                    if op == 0x63:
                        stack.append(ref)
                    else:
                        args = tuple(pop_mark())
                        stack.append(self._call(ref, args, "INST", op_off))
                elif op == 0x93:  # STACK_GLOBAL
                    op_off = bs + pos - 1
                    if len(stack) - (marks[-1] if marks else 0) < 2:
                        _underflow()
                    name_v = stack.pop()
                    mod_v = stack.pop()
                    if isinstance(mod_v, str) and isinstance(name_v, str):
                        stack.append(self._import(mod_v, name_v, op_off, "STACK_GLOBAL"))
                    else:
                        policy_emit(
                            "MLV103",
                            Severity.HIGH,
                            op_off,
                            "STACK_GLOBAL",
                            "STACK_GLOBAL imports a name computed at load time",
                            f"module={render(mod_v, 70)} name={render(name_v, 70)}",
                        )
                        stack.append(
                            Call(
                                Opaque("dynamic import"),
                                (mod_v, name_v),
                                "STACK_GLOBAL",
                                op_off,
                                None,
                            )
                        )
                elif op == 0x52:  # REDUCE
                    op_off = bs + pos - 1
                    if len(stack) - (marks[-1] if marks else 0) < 2:
                        _underflow()
                    args = stack.pop()
                    func = stack[-1]
                    stack[-1] = self._call(func, args, "REDUCE", op_off)
                elif op == 0x81:  # NEWOBJ
                    op_off = bs + pos - 1
                    if len(stack) - (marks[-1] if marks else 0) < 2:
                        _underflow()
                    args = stack.pop()
                    cls = stack[-1]
                    stack[-1] = self._call(cls, args, "NEWOBJ", op_off)
                elif op == 0x92:  # NEWOBJ_EX
                    op_off = bs + pos - 1
                    if len(stack) - (marks[-1] if marks else 0) < 3:
                        _underflow()
                    kwargs = stack.pop()
                    args = stack.pop()
                    cls = stack[-1]
                    stack[-1] = self._call(cls, args, "NEWOBJ_EX", op_off)
                    if isinstance(kwargs, dict):
                        for kv in kwargs.values():
                            rec_ = self._wants(kv)
                            if rec_ is not None:
                                rec_.uses.append(f"keyword argument at offset {self.base + op_off}")
                elif op == 0x6F:  # OBJ
                    op_off = bs + pos - 1
                    items = pop_mark()
                    if not items:
                        _underflow()
                    stack.append(self._call(items[0], tuple(items[1:]), "OBJ", op_off))
                elif op == 0x62:  # BUILD
                    op_off = bs + pos - 1
                    if len(stack) - (marks[-1] if marks else 0) < 2:
                        _underflow()
                    state = stack.pop()
                    obj = stack[-1]
                    if isinstance(obj, Ref):
                        policy_emit(
                            "MLV106",
                            Severity.HIGH,
                            op_off,
                            obj.rec.full,
                            f"BUILD sets state on the imported global {obj.rec.full} itself",
                            f"{obj.rec.full}.__setstate__({render(state, 80)})",
                        )
                    elif isinstance(obj, Call):
                        obj.state = state
                        rec_ = self._wants(obj)
                        if rec_ is not None:
                            rec_.uses.append(f"BUILD (__setstate__) at offset {self.base + op_off}")
                        if isinstance(state, (dict, tuple)):
                            vals = state.values() if isinstance(state, dict) else state
                            for sv in list(vals)[:KEEP]:
                                if isinstance(sv, (Ref, Call)):
                                    rec_ = self._wants(sv)
                                    if rec_ is not None:
                                        rec_.uses.append(
                                            f"state of {render(obj, 60)} at offset "
                                            f"{self.base + op_off}"
                                        )
                        f = obj.func
                        if (
                            isinstance(f, Ref)
                            and f.rec.name in ("NumpyArrayWrapper",)
                            and f.rec.module.endswith("numpy_pickle")
                        ):
                            self.pos = pos
                            self._joblib_array(obj, state)
                            buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                            safe = blen - 9
                elif op == 0x2E:  # STOP
                    op_off = bs + pos - 1
                    if stack:
                        top = stack[-1]
                        if isinstance(top, Ref):
                            rec_ = self._wants(top)
                            if rec_ is not None:
                                rec_.uses.append("returned as the unpickled object")
                    self.pos = pos
                    self.result.opcodes += 1
                    return
                elif op == 0x30:  # POP
                    op_off = bs + pos - 1
                    if len(stack) > (marks[-1] if marks else 0):
                        stack.pop()
                    elif marks:
                        pop_mark()
                    else:
                        _underflow()
                elif op == 0x31:  # POP_MARK
                    op_off = bs + pos - 1
                    pop_mark()
                elif op == 0x32:  # DUP
                    op_off = bs + pos - 1
                    if not stack:
                        _underflow()
                    stack.append(stack[-1])
                elif op == 0x74:  # TUPLE
                    op_off = bs + pos - 1
                    items = pop_mark()
                    stack.append(tuple(items) if len(items) <= KEEP else Opaque("tuple"))
                elif op == 0x6C:  # LIST
                    op_off = bs + pos - 1
                    items = pop_mark()
                    stack.append(items[:KEEP])
                elif op == 0x64:  # DICT
                    op_off = bs + pos - 1
                    items = pop_mark()
                    d: dict[Any, Any] = {}
                    for i in range(0, min(len(items), 2 * KEEP) - 1, 2):
                        k = items[i]
                        if isinstance(k, (str, int, bytes, float, tuple)):
                            with contextlib.suppress(TypeError):
                                d[k] = items[i + 1]
                    stack.append(d)
                elif op == 0x8F:  # EMPTY_SET
                    op_off = bs + pos - 1
                    stack.append(Opaque("set"))
                elif op == 0x91:  # FROZENSET
                    op_off = bs + pos - 1
                    pop_mark()
                    stack.append(Opaque("frozenset"))
                elif op == 0x80:  # PROTO
                    op_off = bs + pos - 1
                    if buf[pos] > 5:
                        raise BrokenStream(f"unsupported pickle protocol {buf[pos]}")
                    pos += 1
                elif op in (0x51, 0x50):  # BINPERSID PERSID
                    op_off = bs + pos - 1
                    if op == 0x51:
                        if len(stack) - (marks[-1] if marks else 0) < 1:
                            _underflow()
                        pid = stack.pop()
                    else:
                        self.pos = pos
                        line = self._readline()
                        buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                        safe = blen - 9
                        pid = "<long id>" if line is None else line.decode("latin-1")
                    if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", "module")):
                        policy_emit(
                            "MLV107",
                            Severity.LOW,
                            op_off,
                            "PERSID" if op == 0x50 else "BINPERSID",
                            "hands a persistent id to the loader's persistent_load",
                            f"persistent_load({render(pid, 100)})",
                        )
                    for it in pid if isinstance(pid, tuple) else ():
                        if isinstance(it, (Ref, Call)):
                            rec_ = self._wants(it)
                            if rec_ is not None:
                                rec_.uses.append(
                                    f"part of a persistent id at offset {self.base + op_off}"
                                )
                    if isinstance(pid, tuple) and len(pid) > 1 and pid[0] == "module":
                        stack.append(pid[1])  # legacy torch: persistent_load returns the class
                    else:
                        stack.append(PERSISTENT)
                elif op in (0x82, 0x83, 0x84):  # EXT1 EXT2 EXT4
                    op_off = bs + pos - 1
                    w = 1 if op == 0x82 else (2 if op == 0x83 else 4)
                    code = int.from_bytes(buf[pos : pos + w], "little")
                    pos += w
                    policy_emit(
                        "MLV110",
                        Severity.HIGH,
                        op_off,
                        f"EXT{w} {code}",
                        f"imports extension code {code} from the copyreg registry",
                        "copyreg._extension_registry lookup",
                    )
                    stack.append(Call(Opaque(f"extension {code}"), (), "EXT", op_off, None))
                elif op in (0x8A, 0x8B):  # LONG1 LONG4
                    op_off = bs + pos - 1
                    w = 1 if op == 0x8A else 4
                    if pos + w > blen:
                        raise BrokenStream("truncated length")
                    n = int.from_bytes(buf[pos : pos + w], "little", signed=(op == 0x8B))
                    pos += w
                    if n < 0:
                        raise BrokenStream("negative length")
                    if n <= 64:
                        if pos + n > blen:
                            self.pos = pos
                            if not self._fill(n):
                                raise BrokenStream("truncated long")
                            buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                            safe = blen - 9
                        stack.append(int.from_bytes(buf[pos : pos + n], "little", signed=True))
                        pos += n
                    else:
                        self.pos = pos
                        self._skip(n)
                        buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                        safe = blen - 9
                        stack.append(ANY)
                elif op in (
                    0x49,
                    0x4C,
                    0x46,
                    0x53,
                    0x56,
                    0x67,
                    0x70,
                ):  # INT LONG FLOAT STRING UNICODE GET PUT
                    self.pos = pos
                    line = self._readline()
                    buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                    safe = blen - 9
                    if op in (0x67, 0x70):
                        if line is None:
                            raise BrokenStream("memo key too long")
                        try:
                            key = int(line)
                        except ValueError:
                            raise BrokenStream("memo key is not a number") from None
                        if key < 0:
                            raise BrokenStream("negative memo key")
                        if op == 0x67:
                            stack.append(memo.get(key))
                        else:
                            if not stack:
                                _underflow()
                            memo.put(key, _slim(stack[-1]))
                    elif line is None:
                        stack.append(Opaque("long text value"))
                    elif op in (0x49, 0x4C):
                        text = line[:-1] if op == 0x4C and line.endswith(b"L") else line
                        if text == b"00" and op == 0x49:
                            stack.append(False)
                        elif text == b"01" and op == 0x49:
                            stack.append(True)
                        else:
                            try:
                                stack.append(int(text) if len(text) < 4300 else ANY)
                            except ValueError:
                                raise BrokenStream("invalid integer literal") from None
                    elif op == 0x46:
                        try:
                            float(line)
                        except ValueError:
                            raise BrokenStream("invalid float literal") from None
                        stack.append(ANY)
                    elif op == 0x53:
                        if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):
                            try:
                                sval = codecs.escape_decode(line[1:-1])[0]
                            except ValueError:
                                raise BrokenStream("invalid STRING escape") from None
                            stack.append(sval.decode("latin-1"))
                            if len(sval) >= 16:
                                self._probe(sval, op_off, len(sval), "str")
                        else:
                            raise BrokenStream("the STRING opcode argument must be quoted")
                    else:
                        try:
                            stack.append(line.decode("raw-unicode-escape"))
                        except UnicodeDecodeError:
                            raise BrokenStream("invalid UNICODE literal") from None
                elif op == 0x97:  # NEXT_BUFFER
                    op_off = bs + pos - 1
                    stack.append(BUFFER)
                elif op == 0x98:  # READONLY_BUFFER
                    op_off = bs + pos - 1
                    if not stack:
                        _underflow()
                else:
                    raise BrokenStream(f"invalid opcode 0x{op:02x}")
                if pos > blen:
                    raise BrokenStream("truncated: an opcode argument runs past the end")
        except _Limit as e:
            self.pos = pos
            self.result.opcodes += 1
            policy_emit("MLV302", Severity.HIGH, op_off, "pickle", str(e), "")
            raise BrokenStream(str(e)) from None
        except BrokenStream:
            self.pos = min(pos, len(self.buf))
            self.result.opcodes += 1
            raise
        except (IndexError, KeyError, struct.error) as e:
            self.pos = min(pos, len(self.buf))
            self.result.opcodes += 1
            raise BrokenStream(
                f"stack underflow or truncated argument ({type(e).__name__})"
            ) from None


class _Limit(Exception):
    pass


def _latin1(s: str) -> bytes:
    return s.encode("latin-1", "replace")


def _underflow() -> Any:
    raise BrokenStream("stack underflow")


_I4 = struct.Struct("<i")
_SLIMMED = frozenset({str, bytes})
_DTYPE = re.compile(r"([<>|=]?)([a-zA-Z]+)(\d*)\Z")


def _dtype_info(dtype: Any) -> tuple[str | None, int, bool]:
    """(typestr, itemsize, hasobject) of a simulated ``numpy.dtype(...)`` call."""
    if not isinstance(dtype, Call) or not isinstance(dtype.args, tuple) or not dtype.args:
        return None, 0, False
    typestr = dtype.args[0]
    if not isinstance(typestr, str):
        return None, 0, False
    m = _DTYPE.match(typestr)
    if not m:
        return None, 0, False
    letters, digits = m.group(2), m.group(3)
    if letters == "O":
        return typestr, 8, True
    state = dtype.state
    elsize = 0
    if isinstance(state, tuple) and len(state) >= 6 and isinstance(state[5], int) and state[5] > 0:
        elsize = state[5]
    fields = state[4] if isinstance(state, tuple) and len(state) >= 5 else None
    if isinstance(fields, dict):
        for fv in fields.values():
            if isinstance(fv, tuple) and fv and _dtype_info(fv[0])[2]:
                return typestr, elsize, True
    elif fields is not None and letters == "V":
        return None, 0, False
    if not elsize:
        if not digits:
            return None, 0, False
        elsize = int(digits) * (4 if letters == "U" else 1)
    return typestr, elsize, False
