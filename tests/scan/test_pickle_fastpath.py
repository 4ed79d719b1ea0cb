"""The opcode loop's fast paths against its general paths: the same findings, always.

``PickleWalker(fast=True)`` (the default) fuses the opcodes picklers write together (a dict's
``EMPTY_DICT MEMOIZE MARK``, a key's ``BINGET`` and the number after it, a string and its
``MEMOIZE``, ``SETITEMS`` of scalars in C loops); ``fast=False`` takes one opcode at a time
through the general paths. Both must report the same findings (rule, severity, offset,
subject, message, chain), offer the same values to the nested scan and stop at the same
place, on dense data with hostile opcodes mixed in, on real pickles of every protocol, and on
byte-level mutations of both (breaks inside fused runs, at frame and buffer ends).
"""

from __future__ import annotations

import pickle
import random
import struct
from typing import Any

import pytest

from mlverify._internal.scan.model import Limits
from mlverify._internal.scan.pickle import PickleWalker
from mlverify._internal.scan.policy import get_policy
from mlverify._internal.scan.source import bytes_source
from tests.scan.builders import sg, u

Outcome = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], tuple[Any, ...]]


def walk(data: bytes, fast: bool, limits: Limits | None = None) -> Outcome:
    found: list[tuple[Any, ...]] = []
    offered: list[tuple[Any, ...]] = []

    def emit(*finding: Any) -> None:
        found.append(finding)

    def nested(value: Any, offset: int, length: int, kind: str, forced: bool) -> None:
        offered.append((value if isinstance(value, bytes) else None, offset, length, kind, forced))

    res = PickleWalker(
        bytes_source(data, "").open(),
        get_policy(),
        limits or Limits(),
        emit,
        nested,
        reopen=lambda: bytes_source(data, "").open(),
        fast=fast,
    ).walk()
    return found, offered, (res.pickles, res.imports, res.broken, res.end, res.cannot_follow)


def same(data: bytes, limits: Limits | None = None) -> Outcome:
    fast = walk(data, True, limits)
    general = walk(data, False, limits)
    assert fast == general, data[:200]
    return fast


# -- a generator of dense, mostly valid protocol-4 streams with hostile parts ---------------
_JOBLIB = ["shape", "dtype", "order", "filename", "numpy_array_alignment_bytes", "allow_mmap"]
_KEYS = ["id", "score", "name", "k", "__setstate__", "append", "x" * 20, "é", *_JOBLIB]
_HOSTILE = [
    sg("os", "system"),
    sg("builtins", "getattr"),
    sg("torch.storage", "_load_from_bytes"),
    sg("collections", "OrderedDict") + b")R",  # an allowed call: a Call value
    sg("os", "system") + b"(" + u("true") + b"tR",
    b"\x8c\x01a\x8c\x01b\x93",  # an unknown import
]


def _scalar(r: random.Random) -> bytes:
    c = r.randrange(9)
    if c == 0:
        return b"K" + bytes([r.randrange(256)])
    if c == 1:
        return b"M" + struct.pack("<H", r.randrange(65536))
    if c == 2:
        return b"J" + struct.pack("<i", r.randrange(-(2**31), 2**31))
    if c == 3:
        return b"G" + struct.pack(">d", r.choice([0.5, -1e300, float("nan"), 3.0]))
    if c == 4:
        return r.choice([b"N", b"\x88", b"\x89"])
    if c == 5:
        return u(r.choice(_KEYS)) + (b"\x94" if r.random() < 0.7 else b"")
    if c == 6:
        return b"\x8c" + bytes([n := r.randrange(40)]) + bytes(r.randrange(256) for _ in range(n))
    if c == 7:
        return b"C\x10" + b"\x80\x04" + b"c" * 14  # bytes offered to the nested scan
    return b"\x8c\x11" + b"\x80\x04\x95" + b"\x00" * 14


class _Gen:
    """Writes records as picklers do, tracking how many memo entries exist."""

    def __init__(self, r: random.Random) -> None:
        self.r = r
        self.memo = 1  # the outer list

    def value(self, hostile: float) -> bytes:
        r = self.r
        if self.memo and r.random() < 0.35:
            return b"h" + bytes([r.randrange(min(self.memo, 256))])
        if r.random() < hostile:
            return r.choice(_HOSTILE)
        v = _scalar(r)
        if v.startswith(b"\x8c") and v.endswith(b"\x94") and len(v) == v[1] + 3:
            self.memo += 1
        return v

    def record(self, hostile: float) -> bytes:
        r = self.r
        out = [b"}"]
        if r.random() < 0.9:
            out.append(b"\x94")
            self.memo += 1
        out.append(b"(")
        for _ in range(r.choice([0, 1, 4, 4, 4, 8, 40])):
            if r.random() < 0.8:
                key = b"h" + bytes([r.randrange(min(self.memo, 256))]) if self.memo else b"N"
                if r.random() < 0.5:
                    key = u(r.choice(_KEYS)) + b"\x94"
                    self.memo += 1
            else:
                key = self.value(hostile)
            out += [key, self.value(hostile)]
        out.append(b"u" if r.random() < 0.97 else b"s")
        return b"".join(out)

    def stream(self, records: int, hostile: float) -> bytes:
        body = [b"]\x94("]
        for i in range(records):
            body.append(self.record(hostile))
            if i % 100 == 99:
                body.append(b"e(")
        body.append(b"e")
        r = self.r
        if r.random() < 0.3:  # BUILD a dict state on an allowed object
            body.append(sg("collections", "OrderedDict") + b")R" + self.record(hostile) + b"b")
        return b"\x80\x04" + b"".join(body) + b"."


def _framed(body: bytes, r: random.Random) -> bytes:
    """Protocol 4 framing of the opcodes after PROTO, frames cut at random places (some
    inside operands: the straddles the walker must notice)."""
    out = [body[:2]]
    i = 2
    while i < len(body):
        n = r.choice([7, 64, 300, 4000, 70000])
        out.append(b"\x95" + struct.pack("<Q", min(n, len(body) - i)) + body[i : i + n])
        i += n
    return b"".join(out)


def _mutate(data: bytes, r: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(r.randrange(1, 4)):
        i = r.randrange(len(b))
        c = r.randrange(3)
        if c == 0:
            b[i] = r.randrange(256)
        elif c == 1:
            del b[i : i + r.randrange(1, 9)]
        else:
            b[i:i] = bytes([r.choice(b"\x94(uhK}\x8cG\x95.")])
    return bytes(b)


@pytest.mark.parametrize("seed", range(24))
def test_generated_dense_streams(seed: int) -> None:
    r = random.Random(seed)
    data = _Gen(r).stream(r.choice([5, 50, 400]), hostile=r.choice([0.0, 0.02, 0.2]))
    same(data)
    same(_framed(data, r))
    for _ in range(10):
        same(_mutate(data, r))


def test_hostile_values_in_dense_data_are_found_by_both() -> None:
    r = random.Random(7)
    data = _Gen(r).stream(300, hostile=0.05)
    found, _, _ = same(data)
    assert any(f[0] == "MLV101" and f[3] == "os.system" for f in found), found


def _rows(r: random.Random, n: int) -> bytes:
    """A list of dicts of one shape or a few, as picklers write them, with hostile changes
    between and inside them: memo entries the shape reads replaced (by a string, by an
    import), invalid UTF-8, joblib keys where a key string was, a string long enough to
    probe, an import as a value."""
    keys = ["id", "score", "name", "k"]
    out = [b"\x80\x04]\x94(}\x94("]
    for j, k in enumerate(keys):  # the first dict names its keys: memo 2, 3, 4, 6
        out.append(u(k) + b"\x94" + (u("n0") + b"\x94" if j == 2 else b"J\x00\x00\x00\x00"))
    out.append(b"u")
    value = [b"K\x07", b"M\x07\x01", b"J\x07\x00\x01\x00", b"G" + b"\x01" * 8]
    usual = [r.choice(value) for _ in range(3)]
    bad_utf8 = r.random() < 0.3
    for i in range(n):
        c = r.random()
        if c < 0.02:
            out.append(u("x") + b"q\x02" + b"0")  # BINPUT: memo 2 is another string
        elif c < 0.04:
            out.append(sg("os", "system") + b"q\x03" + b"0")  # memo 3 is an import
        name = f"n{i % 7}".encode()
        if i == n - 3 and bad_utf8:
            name = b"\xff" * len(name)  # invalid UTF-8 where a string was: loaders stop
        elif c > 0.98:
            name = b"p" * 20  # probed as a nested file
        vals = usual if r.random() < 0.97 else [r.choice(value) for _ in range(3)]
        out.append(b"}\x94(")
        out.append(b"h\x02" + vals[0] + b"h\x03" + vals[1])
        if 0.97 < c <= 0.98:
            out.append(u("dtype") + b"\x94" + b"K\x01")  # a joblib key
        elif 0.96 < c <= 0.97:
            out.append(b"h\x04" + sg("os", "system"))  # an import as a value
        else:
            out.append(b"h\x04\x8c" + bytes([len(name)]) + name + b"\x94")
        out.append(b"h\x06" + vals[2] + b"u")
        if i % 100 == 99:
            out.append(b"e(")
    return b"".join(out) + b"e."


def test_dicts_of_one_shape_with_hostile_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlverify._internal.scan.pickle import records

    read = records.Records.read
    taken = [0]

    def counting(self: records.Records, buf: bytes, pos: int, end: int) -> int:
        got = read(self, buf, pos, end)
        taken[0] += bool(got)
        return got

    monkeypatch.setattr(records.Records, "read", counting)
    for seed in range(12):
        r = random.Random(seed)
        data = _rows(r, 600)
        found, _, _ = same(data)
        assert any(f[3] == "os.system" for f in found)
        same(_framed(data, r))
        for _ in range(8):
            same(_mutate(data, r))
    assert taken[0] > 5000  # the fast path read most dicts


def _real(protocol: int) -> bytes:
    rows = [
        {"id": i, "score": i / 7, "name": f"n{i % 50}", "k": 3 * i, "t": (i, -i), "b": None}
        for i in range(800)
    ]
    return pickle.dumps([rows, {"shape": (3, 4), "dtype": "<f8"}, "x" * 300], protocol=protocol)


@pytest.mark.parametrize("protocol", range(6))
def test_real_pickles_and_their_mutations(protocol: int) -> None:
    data = _real(protocol)
    found, _, end = same(data)
    assert not found and end[0] == 1  # one whole benign pickle, no findings
    r = random.Random(protocol)
    for _ in range(12):
        same(_mutate(data, r))


def test_small_bounds_stop_both_at_the_same_place() -> None:
    data = _real(4)
    same(data, Limits(max_stack=500))


def test_joblib_keys_in_a_dict_of_a_seen_shape_keep_their_values() -> None:
    # the first dict's shape (a memoised 8-character key, a 5-character value) is the shape
    # of the old joblib wrapper's state that follows: its filename must stay exact
    first = b"}\x94(" + u("abcdefgh") + b"\x94" + u("b.npy") + b"\x94u0"
    wrapper = sg("joblib.numpy_pickle", "NDArrayWrapper") + b")\x81"
    state = b"}\x94(" + u("filename") + b"\x94" + u("a.npy") + b"\x94u"
    found, _, _ = same(b"\x80\x04" + first + wrapper + state + b"b" + b"N0" * 8 + b".")
    assert [(f[0], f[3]) for f in found if f[0] == "MLV112"] == [("MLV112", "a.npy")], found


def test_the_shape_budget_is_the_streams_not_each_pickles() -> None:
    """Many small stacked pickles of ever-new dict shapes (red-team r2): each has its own
    memo, but the shape work (compiles, parses) is budgeted once for the whole stream, so
    the fast path never costs more than a bounded extra over the general one."""
    import itertools

    vals = [b"N", b"\x88", b"\x89", b"K\x01", b"M\x01\x02", b"J\x01\x02\x03\x04"]
    combos = itertools.cycle(itertools.product(range(16), range(16), range(6), range(6)))
    pickles = []
    for _ in range(300):
        recs = []
        for _ in range(64):
            a, b, x, y = next(combos)
            recs.append(
                b"}\x94(h" + bytes([1 + a]) + vals[x] + b"h" + bytes([1 + b]) + vals[y] + b"u"
            )
        pickles.append(b"\x80\x04" + b"N\x94" * 16 + b"]\x94(" + b"".join(recs) + b"e.")
    data = b"".join(pickles)
    walker = PickleWalker(
        bytes_source(data, "").open(),
        get_policy(),
        Limits(),
        lambda *f: None,
        lambda *a: None,
        reopen=lambda: bytes_source(data, "").open(),
    )
    res = walker.walk()
    assert res.pickles == 300
    budget = walker.record_budget
    assert budget.compiled <= 64 and budget.parses <= 65 + budget.hits // 8
    same(data)
