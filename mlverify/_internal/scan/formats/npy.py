"""NumPy ``.npy`` arrays: an object dtype makes the body a pickle."""

from __future__ import annotations

import ast
import re
import struct
from typing import Any

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.formats.pickle import walk_pickle
from mlverify._internal.scan.rules import UNSUPPORTED, Rule
from mlverify._internal.scan.source import FileSource, Source, Stream

RULES: tuple[Rule, ...] = ()


class NpyScanner:
    name = "npy"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head[:6] == b"\x93NUMPY"

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        ctx.format("npy")
        head = src.head(12)
        major = head[6] if len(head) > 6 else 0
        if major == 1 and len(head) >= 10:
            hlen, start = struct.unpack("<H", head[8:10])[0], 10
        elif major in (2, 3) and len(head) >= 12:
            hlen, start = struct.unpack("<I", head[8:12])[0], 12
        else:
            ctx.add(UNSUPPORTED, src.label, 6, "npy", f"unknown .npy version {major}")
            return
        if hlen > 1 << 20:
            ctx.add(UNSUPPORTED, src.label, 8, "npy", ".npy header is implausibly long")
            return
        header_src = src.open()
        header_src.read(start)
        text = header_src.read(hlen)
        try:
            htext = text.decode("latin-1")
            if major == 1 and "L" in htext:  # Python 2 wrote longs as 3L (numpy filters them)
                htext = _PY2_LONG.sub(r"\1", htext)
            header = ast.literal_eval(htext)
            descr = header["descr"]
        except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
            ctx.add(UNSUPPORTED, src.label, start, "npy", ".npy header cannot be parsed")
            return
        if _npy_has_object(descr):
            ctx.format("pickle")
            body: Source
            if isinstance(src, FileSource):
                body = src.sub(start + hlen, (src.size or 0) - start - hlen, src.label)
            else:
                body = _Skipped(src, start + hlen)
            walk_pickle(body, ctx, depth)


def _npy_has_object(descr: Any, depth: int = 0) -> bool:
    """Does numpy.dtype(descr) of a .npy header hold Python objects (then numpy unpickles
    the body)? A spelling or shape the exact table does not know counts as objects."""
    from mlverify._internal.scan.pickle.joblib import spelling_has_object

    if depth > 20:
        return True
    if isinstance(descr, str):
        got = spelling_has_object(descr)
        return True if got is None else got
    if isinstance(descr, tuple) and len(descr) == 2:  # (base, shape): a subarray
        return _npy_has_object(descr[0], depth + 1)
    if isinstance(descr, list):
        for fld in descr:
            if not isinstance(fld, (list, tuple)) or len(fld) not in (2, 3):
                return True
            if _npy_has_object(fld[1], depth + 1):
                return True
        return False
    return True


_PY2_LONG = re.compile(r"(?<![\w.])(\d+)L\b")


class _Skipped(Source):
    """A non-seekable source without its first ``n`` bytes."""

    def __init__(self, inner: Source, n: int) -> None:
        super().__init__(inner.label)
        self.inner = inner
        self.n = n

    def open(self) -> Stream:
        s = self.inner.open()
        s.skip(self.n)
        return s
