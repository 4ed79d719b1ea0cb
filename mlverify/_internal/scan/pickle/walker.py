"""The decoding half of the pickle scanner: the opcode loop, simulate, never execute.

The walker reads raw bytes (protocols 0-5) exactly as CPython's unpicklers read them (the
C ``_pickle`` and the pure-Python ``pickle._Unpickler``; operands as ``operands.py``
parses them, ``FRAME`` as a prefetch hint the way the C loader treats it), keeps a light
model of the stack and memo, and hands every import, call, BUILD and persistent id to the
judge (``judge.py``). It never stops earlier than a loader could:

* where every CPython loader raises (``LoaderError``) the walk of that pickle ends; in the
  first pickle of a stream that is itself a finding (MEDIUM: the file is not a whole
  pickle), after a complete pickle it is trailing data;
* where the walker cannot tell how a loader goes on (``CannotFollow``: a joblib array it
  cannot size, a limit of ours) the stream is a MEDIUM finding wherever it happens, and the
  rest of the stream is searched for imports (``resync.py``);
* a file with joblib array wrappers is read twice, as joblib reads it (array bytes skipped)
  and as ``pickle.load``/``pandas.read_pickle`` read it (those bytes run as opcodes).

Large strings and bytes are skipped by offset (and offered to the nested-format scan);
memory stays bounded by ``Limits``.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Callable
from itertools import repeat
from typing import Any

from mlverify._internal.scan.model import Limits, Severity
from mlverify._internal.scan.pickle import operands as ops
from mlverify._internal.scan.pickle.frames import linearize
from mlverify._internal.scan.pickle.joblib import (
    JUDGED_KEYS,
    CannotFollow,
    array_layout,
    maybe_wrapper,
    ndarray_wrapper_problem,
    wrapper_of,
)
from mlverify._internal.scan.pickle.judge import Emit, Judge
from mlverify._internal.scan.pickle.operands import LoaderError
from mlverify._internal.scan.pickle.records import RecordBudget, Records
from mlverify._internal.scan.pickle.resync import OVERLAP, find_imports
from mlverify._internal.scan.pickle.values import (
    ANY,
    ARRAY,
    BUFFER,
    COMPUTED_KEY,
    DATA,
    KEEP,
    KEEP_STR,
    PERSISTENT,
    PLAIN,
    SCALAR_KEYS,
    SCALARS,
    SET,
    Blob,
    Call,
    Opaque,
    Ref,
    Trunc,
    kept_value,
    plants_method,
    render,
    slim,
)
from mlverify._internal.scan.policy import Policy
from mlverify._internal.scan.source import FileSource, Source, Stream, bytes_source

_STREAM_ERRORS = (EOFError, ValueError, OSError)  # source.CorruptData is a ValueError

#: the nested-format callback: (data or a Source or None, stream offset, length, kind, forced)
Nested = Callable[[bytes | Source | None, int, int, str, bool], None]

VALID_OPCODES = frozenset(
    b"(.012FIJKLMNPQRSTUVXabcd}eghijl]opqrstu)G" + bytes(range(0x80, 0x99)) + b"BC"
)

#: first bytes of formats worth a nested scan of an arbitrary string (pickle, zip, npy,
#: compressors, ...); the arguments of allowed loaders are scanned whatever they start with
PROBE_FIRST = frozenset(b"\x80ci(P\x93\x1fB\xfdx]7\x89GZ\x04\x08\x18\x388HXh")


class WalkResult:
    """What a walk saw: complete pickles, distinct imports, where it stopped."""

    __slots__ = (
        "broken",
        "calls",
        "cannot_follow",
        "end",
        "importable",
        "imports",
        "names",
        "opcodes",
        "pickles",
    )

    def __init__(self) -> None:
        self.names: list[str] = []  # the first few imports seen, allowed or not
        self.cannot_follow = False
        self.pickles = 0
        self.opcodes = 0
        self.imports = 0
        self.broken = False
        self.end = 0
        self.calls = 0  # calls of imported or computed callables reached
        self.importable = False  # an import of a name made of Python identifiers reached

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
            raise LoaderError(f"memo key {k} was never stored") from None

    def __len__(self) -> int:
        return len(self.dense) + len(self.sparse)


class _Limit(Exception):
    pass


def _put_items(
    target: dict[Any, Any],
    items: list[Any],
    behaviour: frozenset[str],
    kept: frozenset[str],
    maybe_str: Callable[[Any], bool],
) -> None:
    """Set key/value ``items`` in a simulated dict: the first ``KEEP`` scalar keys, and
    beyond them every key the judge reads (``kept``: joblib's wrapper attributes, the state
    keys entries call) and every key naming a method a loader calls, when its value could
    be called (a dict that BUILD applies would plant it: the judge must see it however big
    the dict). A key a simulated dict cannot hold (computed, a tuple) is ``COMPUTED_KEY``:
    when it may be a ``str`` at load time its value is kept there if it could be called
    (it may be planted under any name), so the judge never loses it."""
    for i in range(0, len(items) - 1, 2):
        k = items[i]
        v = items[i + 1]
        if k.__class__ not in SCALAR_KEYS:
            prev = target.get(COMPUTED_KEY, v)
            if prev is v or prev.__class__ in PLAIN:
                name = maybe_str(k) and v.__class__ not in PLAIN
                target[COMPUTED_KEY] = v if name else DATA
        elif len(target) < KEEP or k in target or k in kept or plants_method(k, v, behaviour):
            target[k] = kept_value(k, v, JUDGED_KEYS)


def _pop_mark(stack: list[Any], marks: list[int]) -> list[Any]:
    if not marks:
        raise LoaderError("MARK expected")
    m = marks.pop()
    items = stack[m:]
    del stack[m:]
    return items


def _below_mark(stack: list[Any], marks: list[int], n: int) -> None:
    if len(stack) - (marks[-1] if marks else 0) < n:
        _underflow()


def _memo_value(stack: list[Any], share: Callable[[str, str], str]) -> Any:
    """What the memo stores of the value on top of the stack: a short string is shared with
    equal strings stored before (on the stack too), a long one slim."""
    v = stack[-1]
    if v.__class__ is not str:
        return v
    if len(v) > KEEP_STR:
        return slim(v)
    v = stack[-1] = share(v, v)
    return v


def _bad_setitems(stack: list[Any]) -> None:
    if not stack:
        _underflow()
    raise LoaderError("SETITEMS with an odd number of items")


def _set_items(
    target: Any,
    items: list[Any],
    behaviour: frozenset[str],
    kept: frozenset[str],
    maybe_str: Callable[[Any], bool],
    judge: Judge,
    op_off: int,
) -> None:
    """SETITEMS of ``items`` on ``target`` (the general path): a simulated dict is filled;
    on any other object it is a call of that object's ``__setitem__``; every item that is
    not a scalar is judged as it enters (escaping loaders and callables)."""
    if target.__class__ is dict:
        _put_items(target, items, behaviour, kept, maybe_str)
    else:
        judge.mutates(target, "__setitem__", op_off, items)
    if not SCALARS.issuperset(map(type, items)):
        judge.stored(items, op_off)


def _latin1(s: str) -> bytes:
    return s.encode("latin-1", "replace")


def _underflow() -> Any:
    raise LoaderError("stack underflow")


_I4 = struct.Struct("<i")
_F8 = struct.Struct(">d")
#: BININT BINFLOAT BININT1 BININT2: how to read the value, how long the opcode is
_SCALAR_READ = {
    0x4A: _I4.unpack_from,
    0x47: _F8.unpack_from,
    0x4B: struct.Struct("<B").unpack_from,
    0x4D: struct.Struct("<H").unpack_from,
}
_SCALAR_WIDTH = {0x4A: 5, 0x47: 9, 0x4B: 2, 0x4D: 3}


class PickleWalker:
    """Walks every pickle in a stream, reporting through ``emit``.

    ``reopen`` gives a fresh stream over the same bytes: with it, a stream holding joblib
    arrays is read a second time as ``pickle.load`` would read it. ``probe`` walks are
    format detection only (no second reading, no search after a stop).
    """

    def __init__(
        self,
        stream: Stream,
        policy: Policy,
        limits: Limits,
        emit: Emit,
        nested: Nested | None = None,
        base_offset: int = 0,
        *,
        reopen: Callable[[], Stream] | None = None,
        probe: bool = False,
        joblib: bool = True,
        view: str = "",
        max_pickles: int = 0,
        fast: bool = True,
    ) -> None:
        self.stream = stream
        self.policy = policy
        self.limits = limits
        self.nested = nested
        self.base = base_offset
        self.reopen = reopen
        self.probe = probe
        self.joblib = joblib
        self.max_pickles = max_pickles  # 0: every stacked pickle (one pickle.load: 1)
        self.fast = fast  # the fused opcode paths (False: the general ones, for the tests)
        self.record_budget = RecordBudget()  # shape work, for the whole stream
        self.judge = Judge(policy, emit, nested, base_offset, limits.max_findings)
        self.judge.view = view
        self.buf = b""
        self.pos = 0
        self.buf_start = 0  # stream offset of buf[0]
        self.eof = False
        self.result = WalkResult()
        self.arrays = 0  # joblib arrays skipped as joblib reads them
        self.eof_line = False  # the last line read ran into the end of the stream
        self.straddled = False  # a value crossed a frame's end (the C file reader differs)

    # -- buffer ----------------------------------------------------------
    def _fill(self, need: int, *, through: bool = False) -> bool:
        """Make ``need`` bytes available at ``self.pos``; False at end of stream.
        ``through``: bytes a walk passes over (one text opcode's argument), which a
        trial walk's budget does not count."""
        avail = len(self.buf) - self.pos
        if avail >= need:
            return True
        if self.eof:
            return False
        parts = [self.buf[self.pos :]]
        self.buf_start += self.pos
        got = avail
        while got < need:
            chunk = self._read(max(need - got, 1 << 16), through=through)
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
            raise LoaderError(f"the stream cannot be read: {e}") from None
        self.buf_start += skipped
        if skipped < rest:
            self.eof = True
            raise LoaderError("data runs past the end of the stream")

    def _read(self, n: int, *, through: bool = False) -> bytes:
        read = getattr(self.stream, "read_through", self.stream.read) if through else None
        try:
            return read(n) if read is not None else self.stream.read(n)
        except _STREAM_ERRORS as e:
            raise LoaderError(f"the stream cannot be read: {e}") from None

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
                # a huge protocol-0 line: stream through it without keeping it (bytes
                # passed over, as a skip is: a trial walk's budget is for opcodes)
                while True:
                    self.buf_start += len(self.buf)
                    self.buf = self._read(1 << 20, through=True)
                    self.pos = 0
                    if not self.buf:
                        # at the end of the stream loaders take the rest as the line (as
                        # below): a line too long to keep, and the last one
                        self.eof = True
                        self.eof_line = True
                        return None
                    i = self.buf.find(b"\n")
                    if i >= 0:
                        self.pos = i + 1
                        return None
            if not self._fill(len(self.buf) - self.pos + 1, through=True):
                # at the end of the stream both loaders take the rest as the line and strip
                # its last byte as if it were the newline (a GLOBAL there still imports)
                rest = self.buf[self.pos :]
                self.pos = len(self.buf)
                self.eof_line = True
                return rest[:-1]

    # -- nested values ---------------------------------------------------
    def _probe(self, data: bytes | None, offset: int, length: int, kind: str) -> None:
        """Offer a string/bytes value (stream ``offset``) to the nested-format scan."""
        if self.nested is None or length < self.limits.nested_min:
            return
        if data is not None and data[0] not in PROBE_FIRST:
            return
        self.nested(data, offset, length, kind, False)

    def _spool_blob(self, offset: int, n: int, kind: str) -> None:
        """A large value in a stream that cannot seek: copy it aside for a nested scan."""
        if self.nested is None:
            self._skip(n)
            return
        with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as tmp:
            left = n
            while left:
                avail = len(self.buf) - self.pos
                if not avail:
                    if not self._fill(1):
                        raise LoaderError("data runs past the end of the stream")
                    continue
                take = min(avail, left)
                tmp.write(self.buf[self.pos : self.pos + take])
                self.pos += take
                left -= take
            tmp.seek(0)
            self.nested(FileSource(tmp, 0, n, ""), offset, n, kind, False)  # type: ignore[arg-type]

    def _joblib_array(self, obj: Call) -> None:
        """joblib reads array bytes (or a whole pickle) right after a wrapper's BUILD."""
        states = obj.state if isinstance(obj.state, list) else [obj.state]
        layout = array_layout(obj, states, self.policy.defining)
        self.arrays += 1
        if layout.objects:
            # a fresh pure-Python unpickler on the same stream (no array reading inside)
            saved = self.joblib
            self.joblib = False
            try:
                self._walk_one()
            finally:
                self.joblib = saved
            return
        if layout.padding:
            if not self._fill(1):
                raise LoaderError("array padding runs past the end")
            pad = self.buf[self.pos]
            self.pos += 1
            self._skip(pad)
        self._skip(layout.nbytes)

    # -- stops -----------------------------------------------------------
    def _resync(self, why: str) -> None:
        """Search the rest of the stream for imports (bounded by ``Limits.max_resync``)."""
        if self.probe:
            return
        left = self.limits.max_resync
        data = self.buf[self.pos :]
        start = self._tell()
        seen = 0
        while True:
            for off, module, name in find_imports(data):
                v = self.policy.classify(module, name)
                if v.kind == "allow":
                    continue
                seen += 1
                rule = "MLV101" if v.kind == "deny" else "MLV102"
                sev = v.severity if v.kind != "getattr" else Severity.HIGH
                self.judge._emit(
                    rule,
                    max(sev, Severity.MEDIUM),
                    start + off,
                    f"{module}.{name}",
                    f"import-shaped opcodes for {module}.{name} in bytes the scanner could "
                    f"not follow ({v.reason})",
                    f"found by searching the rest of the stream after: {why}",
                )
                if seen > 100:
                    return
            if left <= 0:
                return
            try:
                chunk = self.stream.read(min(1 << 20, left))
            except _STREAM_ERRORS:
                return
            if not chunk:
                return
            left -= len(chunk)
            keep = data[-OVERLAP:]
            start += len(data) - len(keep)
            data = keep + chunk

    def _walk_next(self) -> bool:
        """Walk one pickle; False when the stream stops being followed."""
        res = self.result
        judge = self.judge
        try:
            self._walk_one()
        except CannotFollow as e:
            res.broken = True
            res.cannot_follow = True
            res.end = self._tell()
            judge.flush()
            judge._emit(
                "MLV108",
                Severity.MEDIUM,
                res.end,
                "stream",
                f"cannot follow the pickle stream past offset {self.base + res.end}: {e}; "
                "a loader reads on from here, so the file cannot be shown safe",
                "",
            )
            self._resync(str(e))
            return False
        except LoaderError as e:
            res.broken = True
            res.end = self._tell()
            judge.flush()
            if res.pickles == 0 and not judge.view:
                judge._emit(
                    "MLV108",
                    Severity.MEDIUM,
                    res.end,
                    "stream",
                    f"the pickle stream breaks at offset {self.base + res.end}: {e}; "
                    "loaders run the opcodes before the break (analysed) and then fail: "
                    "not a complete pickle",
                    "",
                )
                self._resync(str(e))
            return False
        res.pickles += 1
        return True

    def _frame_view(self) -> None:
        """A value crossed a frame's end: read the stream as the C unpickler reading a file
        object reads it (``frames.py``), and say that loaders disagree on this file."""
        self.judge._emit(
            "MLV108",
            Severity.MEDIUM,
            self.result.end,
            "FRAME",
            "a value crosses the end of its FRAME: the C unpickler reading a file skips the "
            "rest of the frame, the pure-Python one raises, pickle.loads reads on (no pickler "
            "writes this); the stream was also read as the C file reader reads it",
            "",
        )
        if self.reopen is None:
            return
        cap = self.limits.max_resync
        stream = self.reopen()
        parts: list[bytes] = []
        size = 0
        while size <= cap:
            chunk = self._read_from(stream, 1 << 20)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        if size > cap:
            return  # the MEDIUM finding stands: too big to re-read
        linear = linearize(b"".join(parts), size + 16)
        PickleWalker(
            bytes_source(linear, "").open(),
            self.policy,
            self.limits,
            self.judge.emit,
            self.nested,
            self.base,
            joblib=False,
            fast=self.fast,
            view="the C unpickler reading a file object (torch.load, pickle.load(f)), which "
            "takes a value that crosses a frame's end from after the frame",
        ).walk()

    @staticmethod
    def _read_from(stream: Stream, n: int) -> bytes:
        try:
            return stream.read(n)
        except _STREAM_ERRORS:
            return b""

    def walk(self) -> WalkResult:
        """Walk all pickles in the stream (stacked pickles included)."""
        res = self.result
        judge = self.judge
        going = True
        while going and self._fill(1):
            if self.max_pickles and res.pickles + res.broken >= self.max_pickles:
                break
            start = self._tell()
            if res.pickles and self.buf[self.pos] not in VALID_OPCODES:
                res.end = start
                break  # trailing bytes after the last pickle: data, not opcodes
            try:
                going = self._walk_next()
            finally:
                judge.flush()  # whatever stops the walk, what was seen is reported
            res.end = self._tell()
        res.imports = judge.imports
        res.names = judge.first_names
        res.calls = judge.calls
        res.importable = judge.importable
        dropped = judge.dropped()
        if dropped:
            judge.emit(
                "MLV302",
                Severity.HIGH,
                self.base + res.end,
                "findings",
                f"{dropped} more findings in this pickle stream were not kept "
                f"(Limits.max_findings = {self.limits.max_findings})",
                "",
            )
        if self.straddled and not self.probe and not judge.view:
            self._frame_view()
        if self.arrays and self.reopen is not None and not self.probe and not judge.view:
            PickleWalker(
                self.reopen(),
                self.policy,
                self.limits,
                judge.emit,
                self.nested,
                self.base,
                joblib=False,
                fast=self.fast,
                view="pickle.load or pandas.read_pickle (joblib's array bytes run as opcodes)",
            ).walk()
        return res

    def _refill(self, pos: int, blen: int, fe: int) -> tuple[bytes, int, int, int, int, int]:
        """The opcode loop's buffer state (buf, pos, blen, bs, safe, fe) once ``pos`` passed
        ``safe``: at least 9 bytes ahead in the buffer when the stream has them, and the
        frame ended when ``pos`` reached its end."""
        bs = self.buf_start
        if pos > blen:  # (an opcode's argument read past the end: checked here)
            raise LoaderError("truncated: an opcode argument runs past the end")
        if 0 <= fe <= bs + pos:  # the first opcode at or past the frame's end
            if bs + pos != fe:
                self.straddled = True  # the last value crossed the frame's end
            fe = -1
        self.pos = pos
        self._fill(9)
        buf, pos, bs = self.buf, self.pos, self.buf_start
        blen = len(buf)
        safe = blen - 9 if fe < 0 else min(blen - 9, fe - bs - 1)
        return buf, pos, blen, bs, safe, fe

    def _walk_one(self) -> None:
        judge = self.judge
        stack: list[Any] = []
        marks: list[int] = []
        push = stack.append
        v: Any = None
        memo = _Memo()
        fe = -1  # where the current frame ends (stream offset), -1 outside frames
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
        scalar_keys = SCALAR_KEYS
        scalar_set = SCALARS
        behaviour = self.policy.behaviour_names
        kept = self.policy.state_keys | JUDGED_KEYS  # dict keys the judge reads
        maybe_str = judge.maybe_str
        unpack_i4 = _I4.unpack_from
        unpack_f8 = _F8.unpack_from
        nested = self.nested
        fast = self.fast
        scalar_read = _SCALAR_READ
        scalar_width = _SCALAR_WIDTH
        judged = JUDGED_KEYS
        data = repeat(DATA)  # zip(keys, data): each key with DATA
        strings: dict[str, str] = {}  # the short strings stored in the memo, shared by value
        share = strings.setdefault
        records = Records(stack, dense, share, self.record_budget)

        try:
            while True:
                if pos > safe:  # (a short body: a long jump here would not be specialised)
                    buf, pos, blen, bs, safe, fe = self._refill(pos, blen, fe)
                    if pos >= blen:
                        raise LoaderError("truncated: the stream ends before STOP")
                    if len(stack) + len(memo) > limit:
                        raise _Limit("the pickle stack and memo pass the configured bound")
                    if len(strings) > 1 << 16:
                        strings.clear()  # sharing saves memory; it is not needed for meaning
                op = buf[pos]
                pos += 1
                # the opcodes of plain data first, by their frequency in real pickles; the
                # ``fast`` paths (off for the differential test) fuse the opcodes that
                # picklers write together and give the same result as the general ones
                if op == 0x68:  # BINGET (the most frequent opcode of real pickles)
                    k = buf[pos]
                    pos += 1
                    try:
                        push(dense[k])
                    except IndexError:
                        push(memo.get(k))
                    if fast and pos <= safe and buf[pos] in scalar_read:
                        # BININT* or BINFLOAT (a dict's value after its key), fused
                        op = buf[pos]
                        push(scalar_read[op](buf, pos + 1)[0])
                        pos += scalar_width[op]
                elif op == 0x8C and fast and pos + buf[pos] < safe:  # SHORT_BINUNICODE
                    n = buf[pos]
                    pos += 1 + n  # (a loader reads the string, then decodes it)
                    try:
                        sv = buf[pos - n : pos].decode("utf-8", "surrogatepass")
                    except UnicodeDecodeError:
                        raise LoaderError("invalid UTF-8 in a string") from None
                    if n >= 16 and nested is not None:
                        self._probe(_latin1(sv), bs + pos - n, n, "str")
                    if buf[pos] == 0x94 and not sparse:  # MEMOIZE (n <= 255 <= KEEP_STR)
                        sv = share(sv, sv)
                        dense.append(sv)
                        pos += 1
                    push(sv)
                elif op == 0x4A:  # BININT
                    push(unpack_i4(buf, pos)[0])
                    pos += 4
                elif op == 0x7D:  # EMPTY_DICT
                    if fast and buf[pos] == 0x94 and buf[pos + 1] == 0x28 and not sparse:
                        # MEMOIZE MARK: a dict of scalars of a shape seen before (records.py)
                        end = records.read(buf, pos, safe + 1)
                        if end:
                            pos = end
                            continue
                    v = {}
                    push(v)
                    if fast and pos <= safe and buf[pos] == 0x94 and not sparse:  # MEMOIZE
                        dense.append(v)
                        pos += 1
                        if pos <= safe and buf[pos] == 0x28:  # MARK
                            marks.append(len(stack))
                            pos += 1
                elif op == 0x47:  # BINFLOAT
                    push(unpack_f8(buf, pos)[0])
                    pos += 8
                elif op == 0x75:  # SETITEMS
                    if not marks:
                        raise LoaderError("MARK expected")
                    m = marks.pop()
                    items = stack[m:]
                    del stack[m:]
                    if not stack or len(items) % 2:
                        _bad_setitems(stack)
                    target = stack[-1]
                    keys = items[0::2]
                    if (
                        fast
                        and target.__class__ is dict
                        and len(target) + len(keys) <= KEEP
                        and scalar_set.issuperset(map(type, items))
                        and judged.isdisjoint(keys)
                    ):
                        # scalars only, all kept: kept_value of each is DATA
                        target.update(zip(keys, data))  # noqa: B905 (data is endless)
                    else:
                        _set_items(target, items, behaviour, kept, maybe_str, judge, bs + pos - 1)
                elif op == 0x28:  # MARK
                    marks.append(len(stack))
                elif op == 0x94:  # MEMOIZE
                    if not stack:
                        _underflow()
                    v = stack[-1]
                    if v.__class__ is str:
                        v = _memo_value(stack, share)
                    if sparse:
                        memo.put(len(dense) + len(sparse), v)
                    else:
                        dense.append(v)
                elif op == 0x4B:  # BININT1
                    push(buf[pos])
                    pos += 1
                elif op == 0x4D:  # BININT2
                    push(buf[pos] | (buf[pos + 1] << 8))
                    pos += 2
                elif op == 0x71:  # BINPUT
                    if not stack:
                        _underflow()
                    k = buf[pos]
                    pos += 1
                    v = stack[-1]
                    if v.__class__ is str:
                        v = _memo_value(stack, share)
                    if k < len(dense):
                        dense[k] = v
                    else:
                        memo.put(k, v)
                elif op == 0x65 or op == 0x90:  # APPENDS ADDITEMS
                    op_off = bs + pos - 1
                    items = _pop_mark(stack, marks)
                    if not stack:
                        _underflow()
                    target = stack[-1]
                    if op == 0x65 and target.__class__ is list:
                        if len(target) < KEEP:
                            target.extend(items[: KEEP - len(target)])
                    elif target is not SET or op == 0x65:
                        judge.mutates(target, "extend" if op == 0x65 else "add", op_off)
                    if not scalar_set.issuperset(map(type, items)):
                        judge.stored(items, op_off)
                elif op == 0x73:  # SETITEM (a walker more permissive than a loader is sound)
                    v = stack.pop()
                    k = stack.pop()
                    target = stack[-1]
                    if target.__class__ is dict:
                        if len(target) < KEEP and k.__class__ in scalar_keys:
                            target[k] = kept_value(k, v, judged)
                        else:
                            _put_items(target, [k, v], behaviour, kept, maybe_str)
                    else:
                        judge.mutates(target, "__setitem__", bs + pos - 1, [k, v])
                    if v.__class__ not in scalar_set or k.__class__ not in scalar_set:
                        judge.stored((k, v), bs + pos - 1)
                elif op == 0x87:  # TUPLE3
                    c_ = stack.pop()
                    b_ = stack.pop()
                    v = stack[-1] = (stack[-1], b_, c_)
                    if fast and pos <= safe and buf[pos] == 0x94 and not sparse:  # MEMOIZE
                        dense.append(v)
                        pos += 1
                elif op == 0x86:  # TUPLE2
                    b_ = stack.pop()
                    v = stack[-1] = (stack[-1], b_)
                    if fast and pos <= safe and buf[pos] == 0x94 and not sparse:  # MEMOIZE
                        dense.append(v)
                        pos += 1
                elif op in (0x8C, 0x43, 0x55):  # SHORT_BINUNICODE SHORT_BINBYTES SHORT_BINSTRING
                    n = buf[pos]
                    pos += 1
                    if pos + n > blen:
                        self.pos = pos
                        if not self._fill(n):
                            raise LoaderError("truncated string")
                        buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                        safe = blen - 9 if fe < 0 else min(blen - 9, fe - bs - 1)
                    raw = buf[pos : pos + n]
                    pos += n
                    if op == 0x8C:
                        try:
                            sv = raw.decode("utf-8", "surrogatepass")
                        except UnicodeDecodeError:
                            raise LoaderError("invalid UTF-8 in a string") from None
                        push(sv)
                        if n >= 16 and nested is not None:
                            self._probe(_latin1(sv), self.buf_start + pos - n, n, "str")
                    elif op == 0x43:
                        push(raw)
                        if n >= 16 and nested is not None:
                            self._probe(raw, self.buf_start + pos - n, n, "bytes")
                    else:
                        push(raw.decode("latin-1"))
                        if n >= 16 and nested is not None:
                            self._probe(raw, self.buf_start + pos - n, n, "str")
                elif op == 0x5D:  # EMPTY_LIST
                    push([])
                elif op == 0x29:  # EMPTY_TUPLE
                    push(())
                elif op == 0x61:  # APPEND
                    v = stack.pop()
                    target = stack[-1]
                    if target.__class__ is list:
                        if len(target) < KEEP:
                            target.append(v)
                    else:
                        judge.mutates(target, "append", bs + pos - 1)
                    if v.__class__ not in scalar_set:
                        judge.stored((v,), bs + pos - 1)
                elif op == 0x85:  # TUPLE1
                    stack[-1] = (stack[-1],)
                elif op == 0x4E:  # NONE
                    push(None)
                elif op == 0x88:  # NEWTRUE
                    push(True)
                elif op == 0x89:  # NEWFALSE
                    push(False)
                elif op == 0x72:  # LONG_BINPUT
                    if not stack:
                        _underflow()
                    k = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16 | buf[pos + 3] << 24
                    pos += 4
                    memo.put(k, _memo_value(stack, share))
                elif op == 0x6A:  # LONG_BINGET
                    k = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16 | buf[pos + 3] << 24
                    pos += 4
                    push(dense[k] if k < len(dense) else memo.get(k))
                elif op == 0x95:  # FRAME: a prefetch hint (the C loader reads across frames)
                    if fe >= 0 and bs + pos - 1 != fe:
                        self.straddled = True  # a frame that starts inside another
                    fe = bs + pos + 8 + int.from_bytes(buf[pos : pos + 8], "little")
                    pos += 8
                    safe = min(blen - 9, fe - bs - 1)
                elif op in (0x58, 0x42, 0x54, 0x8D, 0x8E, 0x96):
                    # BINUNICODE BINBYTES BINSTRING BINUNICODE8 BINBYTES8 BYTEARRAY8
                    w = 4 if op in (0x58, 0x42, 0x54) else 8
                    if pos + w > blen:
                        self.pos = pos
                        if not self._fill(w):
                            raise LoaderError("truncated length")
                        buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                        safe = blen - 9 if fe < 0 else min(blen - 9, fe - bs - 1)
                    n = int.from_bytes(buf[pos : pos + w], "little", signed=(op == 0x54))
                    pos += w
                    if n < 0:
                        raise LoaderError("negative string length")
                    kind = "str" if op in (0x58, 0x8D, 0x54) else "bytes"
                    data_off = self.buf_start + pos
                    if n <= small:
                        if pos + n > blen:
                            self.pos = pos
                            if not self._fill(n):
                                raise LoaderError("truncated string")
                            buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                            safe = blen - 9 if fe < 0 else min(blen - 9, fe - bs - 1)
                        raw = buf[pos : pos + n]
                        pos += n
                        if op in (0x58, 0x8D):
                            try:
                                val: Any = raw.decode("utf-8", "surrogatepass")
                            except UnicodeDecodeError:
                                raise LoaderError("invalid UTF-8 in a string") from None
                        elif op == 0x54:
                            val = raw.decode("latin-1")
                        else:
                            val = raw  # bytes and bytearray alike (a loader may load either)
                        push(val)
                        if n >= 16 and nested is not None:
                            self._probe(
                                _latin1(val) if isinstance(val, str) else raw, data_off, n, kind
                            )
                    else:
                        self.pos = pos
                        if nested is not None and not self.stream.seekable:
                            self._spool_blob(data_off, n, kind)
                        else:
                            self._probe(None, data_off, n, kind)
                            self._skip(n)
                        buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                        safe = blen - 9 if fe < 0 else min(blen - 9, fe - bs - 1)
                        push(Blob(kind, data_off, n))
                elif op in (0x63, 0x69):  # GLOBAL INST
                    op_off = bs + pos - 1
                    self.pos = pos
                    mod_b = self._readline()
                    name_b = self._readline()
                    buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                    safe = blen - 9 if fe < 0 else min(blen - 9, fe - bs - 1)
                    if mod_b is None or name_b is None:
                        raise CannotFollow("a GLOBAL name too long to judge")
                    if not mod_b and self.eof_line:
                        raise LoaderError("truncated: the stream ends in a GLOBAL")
                    mod, name = ops.name_text(mod_b), ops.name_text(name_b)
                    opname = "GLOBAL" if op == 0x63 else "INST"
                    ref = judge.import_(mod, name, op_off, opname)
                    if op == 0x63:
                        push(ref)
                    else:
                        args = tuple(_pop_mark(stack, marks))
                        push(judge.call(ref, args, "INST", op_off))
                elif op == 0x93:  # STACK_GLOBAL
                    op_off = bs + pos - 1
                    _below_mark(stack, marks, 2)
                    name_v = stack.pop()
                    mod_v = stack.pop()
                    if mod_v.__class__ is str and name_v.__class__ is str:
                        push(judge.import_(mod_v, name_v, op_off, "STACK_GLOBAL"))
                    elif not (judge.maybe_str(mod_v) and judge.maybe_str(name_v)):
                        raise LoaderError("STACK_GLOBAL requires str")
                    else:
                        judge._emit(
                            "MLV103",
                            Severity.HIGH,
                            op_off,
                            "STACK_GLOBAL",
                            "STACK_GLOBAL imports a name the scanner cannot read (computed "
                            "at load time or too long)",
                            f"module={render(mod_v, 70)} name={render(name_v, 70)}",
                        )
                        push(
                            Call(Opaque("dynamic import"), (mod_v, name_v), "STACK_GLOBAL",
                                 op_off, None)
                        )  # fmt: skip
                elif op == 0x52:  # REDUCE
                    op_off = bs + pos - 1
                    _below_mark(stack, marks, 2)
                    args = stack.pop()
                    stack[-1] = judge.call(stack[-1], args, "REDUCE", op_off)
                elif op == 0x81:  # NEWOBJ
                    op_off = bs + pos - 1
                    _below_mark(stack, marks, 2)
                    args = stack.pop()
                    stack[-1] = judge.call(stack[-1], args, "NEWOBJ", op_off)
                elif op == 0x92:  # NEWOBJ_EX
                    op_off = bs + pos - 1
                    _below_mark(stack, marks, 3)
                    kwargs = stack.pop()
                    args = stack.pop()
                    stack[-1] = judge.call(stack[-1], args, "NEWOBJ_EX", op_off, kwargs)
                    judge.stored(list(kwargs.values()) if kwargs.__class__ is dict else (kwargs,),
                                 op_off)  # fmt: skip
                elif op == 0x6F:  # OBJ
                    op_off = bs + pos - 1
                    items = _pop_mark(stack, marks)
                    if not items:
                        _underflow()
                    push(judge.call(items[0], tuple(items[1:]), "OBJ", op_off))
                elif op == 0x62:  # BUILD
                    op_off = bs + pos - 1
                    _below_mark(stack, marks, 2)
                    state = stack.pop()
                    obj = stack[-1]
                    if (
                        self.joblib
                        and obj.__class__ is Call
                        and wrapper_of(obj, self.policy.defining)
                    ):
                        prev = obj.state
                        judge.build(obj, state, op_off)
                        obj.state = (prev if isinstance(prev, list) else
                                     ([] if prev is None else [prev])) + [state]  # fmt: skip
                        if fe > bs + pos:
                            # joblib reads the array from the file, which is past the frame
                            raise CannotFollow("a joblib array inside a FRAME")
                        fe = -1  # joblib's writer ends the frame before the array bytes
                        self.pos = pos
                        self._joblib_array(obj)
                        buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                        safe = blen - 9 if fe < 0 else min(blen - 9, fe - bs - 1)
                        stack[-1] = ARRAY
                    else:
                        judge.build(obj, state, op_off)
                        if self.joblib and maybe_wrapper(obj, self.policy.defining):
                            self.pos = pos
                            self.arrays += 1  # read the file as pickle.load does as well
                            raise CannotFollow(
                                f"BUILD on {render(obj, 60)}, which joblib may take for an array "
                                "wrapper (and then read array bytes the scanner cannot size)"
                            )
                        if obj.__class__ is Call:
                            problem = ndarray_wrapper_problem(obj, state, self.policy.defining)
                            if problem and problem.startswith("sibling:"):
                                judge._emit("MLV112", Severity.MEDIUM, op_off, problem[8:],
                                            f"joblib loads the file {problem[8:]!r} beside "
                                            "this one with allow_pickle=True (it may hold a "
                                            "pickle); the scanner does not follow it from "
                                            "here, so this file cannot be shown safe on its "
                                            "own", render(obj))  # fmt: skip
                            elif problem:
                                judge._emit("MLV112", Severity.HIGH, op_off, "NDArrayWrapper",
                                            problem, render(obj))  # fmt: skip
                elif op == 0x2E:  # STOP
                    if stack:
                        top = stack[-1]
                        judge.escaped("the unpickled object", top, bs + pos - 1)
                        if isinstance(top, Ref):
                            rec_ = judge.wants(top)
                            if rec_ is not None:
                                rec_.uses.append("returned as the unpickled object")
                    else:
                        _underflow()
                    self.pos = pos
                    self.result.opcodes += 1
                    return
                elif op == 0x30:  # POP
                    if len(stack) > (marks[-1] if marks else 0):
                        stack.pop()
                    elif marks:
                        _pop_mark(stack, marks)
                    else:
                        _underflow()
                elif op == 0x31:  # POP_MARK
                    _pop_mark(stack, marks)
                elif op == 0x32:  # DUP
                    _below_mark(stack, marks, 1)
                    push(stack[-1])
                elif op == 0x74:  # TUPLE
                    items = _pop_mark(stack, marks)
                    if len(items) <= KEEP:
                        push(tuple(items))
                    else:  # kept opaque: what it holds is judged here
                        judge.stored(items, bs + pos - 1)
                        push(Opaque("tuple"))
                elif op == 0x6C:  # LIST
                    items = _pop_mark(stack, marks)
                    if not scalar_set.issuperset(map(type, items)):
                        judge.stored(items, bs + pos - 1)
                    push(items[:KEEP])
                elif op == 0x64:  # DICT
                    items = _pop_mark(stack, marks)
                    if len(items) % 2:
                        raise LoaderError("DICT with an odd number of items")
                    d: dict[Any, Any] = {}
                    _put_items(d, items, behaviour, kept, maybe_str)
                    if not scalar_set.issuperset(map(type, items)):
                        judge.stored(items, bs + pos - 1)
                    push(d)
                elif op == 0x8F:  # EMPTY_SET
                    push(SET)
                elif op == 0x91:  # FROZENSET
                    items = _pop_mark(stack, marks)
                    if not scalar_set.issuperset(map(type, items)):
                        judge.stored(items, bs + pos - 1)
                    push(Opaque("frozenset"))
                elif op == 0x80:  # PROTO
                    if buf[pos] > 5:
                        raise LoaderError(f"unsupported pickle protocol {buf[pos]}")
                    pos += 1
                elif op in (0x51, 0x50):  # BINPERSID PERSID
                    op_off = bs + pos - 1
                    if op == 0x51:
                        _below_mark(stack, marks, 1)
                        pid = stack.pop()
                    else:
                        self.pos = pos
                        line = self._readline()
                        buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                        safe = blen - 9 if fe < 0 else min(blen - 9, fe - bs - 1)
                        if self.eof_line:
                            raise LoaderError("truncated: the stream ends in a PERSID")
                        pid = Opaque("long id") if line is None else line.decode("latin-1")
                    got = judge.persistent(pid, "PERSID" if op == 0x50 else "BINPERSID", op_off)
                    push(PERSISTENT if got is None else got)
                elif op in (0x82, 0x83, 0x84):  # EXT1 EXT2 EXT4
                    op_off = bs + pos - 1
                    w = 1 if op == 0x82 else (2 if op == 0x83 else 4)
                    code = int.from_bytes(buf[pos : pos + w], "little", signed=(w == 4))
                    pos += w
                    if code <= 0:
                        raise LoaderError("EXT specifies code <= 0")
                    push(judge.extension(code, op_off))
                elif op in (0x8A, 0x8B):  # LONG1 LONG4
                    w = 1 if op == 0x8A else 4
                    if pos + w > blen:
                        raise LoaderError("truncated length")
                    n = int.from_bytes(buf[pos : pos + w], "little", signed=(op == 0x8B))
                    pos += w
                    if n < 0:
                        raise LoaderError("negative length")
                    if n <= 64:
                        if pos + n > blen:
                            self.pos = pos
                            if not self._fill(n):
                                raise LoaderError("truncated long")
                            buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                            safe = blen - 9 if fe < 0 else min(blen - 9, fe - bs - 1)
                        push(int.from_bytes(buf[pos : pos + n], "little", signed=True))
                        pos += n
                    else:
                        self.pos = pos
                        self._skip(n)
                        buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                        safe = blen - 9 if fe < 0 else min(blen - 9, fe - bs - 1)
                        push(ANY)
                elif op in (0x49, 0x4C, 0x46, 0x53, 0x56, 0x67, 0x70):
                    # INT LONG FLOAT STRING UNICODE GET PUT: a text operand
                    op_off = bs + pos - 1
                    self.pos = pos
                    line = self._readline()
                    buf, pos, blen, bs = self.buf, self.pos, len(self.buf), self.buf_start
                    safe = blen - 9 if fe < 0 else min(blen - 9, fe - bs - 1)
                    if self.eof_line:
                        raise LoaderError("truncated: the stream ends in a text operand")
                    if op in (0x67, 0x70):
                        if line is None:
                            raise CannotFollow("a memo key too long to read")
                        if op == 0x67:
                            push(memo.get(ops.parse_memo_key(line, "GET")))
                        else:
                            key = ops.parse_memo_key(line, "PUT")
                            if not stack:
                                _underflow()
                            memo.put(key, _memo_value(stack, share))
                    elif line is None:
                        if op in (0x49, 0x4C, 0x46):
                            raise CannotFollow("a number too long to read")
                        push(Trunc("", small))
                    elif op == 0x49:
                        iv = ops.parse_int(line)
                        push(ANY if iv is None else iv)
                    elif op == 0x4C:
                        lv = ops.parse_long(line)
                        push(ANY if lv is None else lv)
                    elif op == 0x46:
                        ops.parse_float(line)  # validated as the loaders do, value not kept
                        push(ANY)
                    elif op == 0x53:
                        sval = ops.parse_string(line)
                        push(sval.decode("latin-1"))
                        if len(sval) >= 16:
                            self._probe(sval, op_off, len(sval), "str")
                    else:
                        push(ops.parse_unicode(line))
                elif op == 0x97:  # NEXT_BUFFER
                    push(BUFFER)
                elif op == 0x98:  # READONLY_BUFFER
                    _below_mark(stack, marks, 1)
                else:
                    raise LoaderError(f"invalid opcode 0x{op:02x}")
        except _Limit as e:
            self.pos = min(pos, len(self.buf))
            self.result.opcodes += 1
            raise CannotFollow(str(e)) from None
        except (LoaderError, CannotFollow):
            self.pos = min(pos, len(self.buf))
            self.result.opcodes += 1
            raise
        except (IndexError, KeyError, struct.error) as e:
            self.pos = min(pos, len(self.buf))
            self.result.opcodes += 1
            raise LoaderError(
                f"stack underflow or truncated argument ({type(e).__name__})"
            ) from None


__all__ = ["VALID_OPCODES", "CannotFollow", "PickleWalker", "WalkResult"]
