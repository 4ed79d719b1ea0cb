"""Differential tests: the walker against CPython's pure-Python unpickler, made inert.

The oracle is ``pickle._Unpickler`` with ``find_class`` and ``persistent_load`` replaced:
they import nothing and return inert recorders, so running it on the streams these tests
build (and only those) resolves no real name and executes nothing. This is the one use of
an unpickler in the project, in tests only. Properties, on generated and mutated streams:

* every name the oracle resolves and the allowlist does not allow is reported by the walker;
* every stream the oracle reads to its STOP, the walker reads to its end as well.

What the C unpickler accepts beyond the pure-Python one (its ``strtol`` forms) is covered by
explicit cases in test_pickle_exact.py.
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlverify._internal.scan.model import Limits
from mlverify._internal.scan.pickle import PickleWalker
from mlverify._internal.scan.policy import get_policy
from mlverify._internal.scan.source import bytes_source


class _Log:
    def __init__(self) -> None:
        self.imports: list[tuple[str, str]] = []


class Recorder:
    """An inert stand-in for anything the oracle would import, call or construct."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if isinstance(cls, Recorder):  # NEWOBJ: cls.__new__(cls, *args) on a stand-in
            return Recorder(f"{cls._name}.__new__()", cls._log)
        return object.__new__(cls)

    def __init__(self, name: str, log: _Log) -> None:
        self._name = name
        self._log = log

    def __call__(self, *args: Any, **kwargs: Any) -> Recorder:
        return Recorder(f"{self._name}()", self._log)

    def __setstate__(self, state: Any) -> None:
        pass

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Recorder(f"{self._name}.{attr}", self._log)


class Oracle(pickle._Unpickler):  # type: ignore[name-defined,misc]
    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.log = _Log()

    def find_class(self, module: str, name: str) -> Any:
        self.log.imports.append((module, name))
        return Recorder(f"{module}.{name}", self.log)

    def persistent_load(self, pid: Any) -> Any:
        return Recorder("persistent", self.log)


def oracle(data: bytes) -> tuple[list[tuple[str, str]], bool]:
    """(names resolved, read to STOP) by the inert pure-Python unpickler."""
    o = Oracle(data)
    try:
        o.load()
    except RecursionError:
        return o.log.imports, False
    except Exception:  # any error: the loader stops there
        return o.log.imports, False
    return o.log.imports, True


def walk(data: bytes) -> tuple[set[str], bool]:
    subjects: set[str] = set()
    broken_first = [False]

    def emit(rule: str, sev: Any, offset: int, subject: str, msg: str, chain: str) -> None:
        subjects.add(subject)
        if rule == "MLV108" and subject != "FRAME":  # a frame crossing is read to its end
            broken_first[0] = True

    src = bytes_source(data, "")
    res = PickleWalker(src.open(), get_policy(), Limits(), emit, reopen=src.open).walk()
    return subjects, res.pickles >= 1 and not broken_first[0]


def check(data: bytes) -> None:
    names, complete = oracle(data)
    subjects, walked = walk(data)
    policy = get_policy()
    for module, name in names:
        if not module:
            continue  # __import__("") raises: a loader imports nothing
        if policy.classify(module, name).kind == "allow":
            continue
        full = f"{module}.{name}"
        assert full in subjects, (full, data)
    if complete:
        assert walked, data


# -- generated streams ---------------------------------------------------------------
NAMES = [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("collections", "OrderedDict"),
    ("copyreg", "_reconstructor"), ("builtins", "object"), ("torch._utils", "_rebuild_tensor_v2"),
    ("numpy", "dtype"), ("acme.models", "Net"), ("__builtin__", "eval"), ("builtins", "getattr"),
]  # fmt: skip


def _u(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def _text_int(n: int) -> list[bytes]:
    return [
        b"I%d\n" % n, b"I0x%x\n" % n, b"I0o%o\n" % n, b"I %d \n" % n, b"L%dL\n" % n,
        b"L0x%x\n" % n, b"J" + struct.pack("<i", n), b"K" + bytes([n & 0xFF]),
        b"\x8a\x01" + bytes([n & 0x7F]),
    ]  # fmt: skip


@st.composite
def fragment(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 17))
    if kind == 0:
        m, n = draw(st.sampled_from(NAMES))
        return b"c" + m.encode() + b"\n" + n.encode() + b"\n"
    if kind == 1:
        m, n = draw(st.sampled_from(NAMES))
        memo = draw(st.sampled_from([b"", b"\x94", b"q\x00", b"p0\n"]))
        return _u(m) + memo + _u(n) + memo + b"\x93"
    if kind == 2:
        return draw(st.sampled_from(_text_int(draw(st.integers(0, 300)))))
    if kind == 3:
        t = draw(st.sampled_from(["true", "x", "os", "system", "__reduce__"]))
        return draw(
            st.sampled_from(
                [_u(t), b"S'" + t.encode() + b"'\n", b"V" + t.encode() + b"\n",
                 b"X" + struct.pack("<I", len(t)) + t.encode(), b"U" + bytes([len(t)]) + t.encode()]
            )
        )  # fmt: skip
    if kind == 4:
        return b"("
    if kind == 5:
        return draw(st.sampled_from([b"t", b"\x85", b"\x86", b"\x87", b")"]))
    if kind == 6:
        return b"R"
    if kind == 7:
        return draw(st.sampled_from([b"\x81", b"\x92", b"o", b"b"]))
    if kind == 8:
        return draw(st.sampled_from([b"\x94", b"q" + bytes([draw(st.integers(0, 3))]),
                                     b"p%d\n" % draw(st.integers(0, 3))]))  # fmt: skip
    if kind == 9:
        k = draw(st.integers(0, 3))
        return draw(st.sampled_from([b"h" + bytes([k]), b"g%d\n" % k, b"j" + struct.pack("<I", k)]))
    if kind == 10:
        return b"\x95" + struct.pack("<Q", draw(st.integers(0, 40)))
    if kind == 11:
        return draw(st.sampled_from([b"0", b"2", b"1"]))
    if kind == 12:
        return draw(st.sampled_from([b"}", b"]", b"N", b"\x88", b"\x89", b"\x8f"]))
    if kind == 13:
        return draw(st.sampled_from([b"s", b"u", b"a", b"e", b"\x90", b"\x91", b"d", b"l"]))
    if kind == 14:
        return draw(st.sampled_from([b"Q", b"P1\n"]))
    if kind == 15:
        return draw(st.sampled_from([b"F1.5\n", b"G" + struct.pack(">d", 1.5), b"F1e5\n"]))
    if kind == 16:
        return draw(
            st.sampled_from(
                [b"C\x03abc", b"B\x03\x00\x00\x00abc", b"\x96" + struct.pack("<Q", 2) + b"ab"]
            )
        )
    return draw(st.binary(min_size=1, max_size=3))


ORACLE = settings(max_examples=400, deadline=5000, suppress_health_check=[HealthCheck.too_slow])


@ORACLE
@given(
    st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"\x80\x05"]),
    st.lists(fragment(), max_size=40),
)
def test_generated_streams(header: bytes, parts: list[bytes]) -> None:
    check(header + b"".join(parts) + b".")


SEEDS = [
    b"\x80\x04" + _u("os") + _u("system") + b"\x93" + _u("true") + b"\x85R.",
    b"cos\nsystem\n(S'true'\ntR.",
    b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00aK\x01s.",
    b"\x80\x02I0x1\n0cos\nsystem\n(S'true'\ntR.",
    pickle.dumps({"a": [1, 2.5, "x", b"y", (1, 2)], "b": {"c": None}}, protocol=0),
    pickle.dumps({"a": [1, 2.5, "x", b"y", (1, 2)], "b": {"c": None}}, protocol=2),
    pickle.dumps({"a": [1, 2.5, "x", b"y", (1, 2)], "b": {"c": None}}, protocol=5),
]


@ORACLE
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255), st.integers(0, 2)), max_size=6),
)
def test_mutated_streams(seed: bytes, edits: list[tuple[int, int, int]]) -> None:
    b = bytearray(seed)
    for pos, val, how in edits:
        i = pos % (len(b) + 1)
        if how == 0 and b:
            b[i % len(b)] = val
        elif how == 1:
            b.insert(i, val)
        elif b:
            del b[i % len(b)]
    check(bytes(b))


def test_the_oracle_is_inert() -> None:
    names, complete = oracle(b"cos\nsystem\n(S'echo never run'\ntR.")
    assert names == [("os", "system")] and complete
