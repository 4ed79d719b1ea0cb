"""Bounded fuzzing: the walker and the zip reader never crash, hang or raise."""

from __future__ import annotations

import io
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlverify._internal.scan.engine import Context
from mlverify._internal.scan.model import Limits
from mlverify._internal.scan.pickle import PickleWalker
from mlverify._internal.scan.policy import get_policy
from mlverify._internal.scan.source import bytes_source
from mlverify._internal.scan.zipreader import read_zip
from tests.scan.builders import EVIL0, EVIL4

SEEDS = [
    EVIL0,
    EVIL4,
    b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.",
    b"(lp0\nI1\na.",
]
OPS = st.sampled_from(
    list(b"(.012FIJKLMNPQRSTUVXabcd}eghijl]opqrstu)GBC") + list(range(0x80, 0x99))
)
# A generous per-example deadline: it still catches a hang or a blow-up, but not a GC
# pause or a busy CI core (a 500 ms deadline made the suite flaky under load).
FUZZ = settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow])


def _walk(data: bytes) -> None:
    ctx = Context("fuzz", Limits(max_depth=2), get_policy())
    src = bytes_source(data, "")
    PickleWalker(src.open(), ctx.policy, ctx.limits, lambda *a: None, ctx.nested(src, 0)).walk()
    ctx.scan(src, 0)


@FUZZ
@given(st.binary(max_size=400))
def test_walker_random_bytes(data: bytes) -> None:
    _walk(data)


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
)
def test_walker_mutated_pickles(seed: bytes, edits: list[tuple[int, int]]) -> None:
    b = bytearray(seed)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    _walk(bytes(b))


@FUZZ
@given(st.lists(st.one_of(OPS.map(lambda o: bytes([o])), st.binary(max_size=9)), max_size=60))
def test_walker_opcode_soup(parts: list[bytes]) -> None:
    _walk(b"\x80\x04" + b"".join(parts))


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", EVIL4)
        z.writestr("archive/data/0", b"\0" * 64)
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("b.pkl", EVIL0)
    return buf.getvalue()


ZIP = _zip()


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(ZIP) - 1), st.integers(0, 255)), max_size=8),
    st.integers(0, 40),
)
def test_zip_reader_mutations(edits: list[tuple[int, int]], cut: int) -> None:
    b = bytearray(ZIP)
    for pos, val in edits:
        b[pos] = val
    data = bytes(b[: len(b) - cut])
    read_zip(bytes_source(data, ""), Limits())
    ctx = Context("fuzz", Limits(max_depth=3), get_policy())
    ctx.scan(bytes_source(data, ""), 0)
