"""safetensors: no code, but the header is checked against the data it describes."""

from __future__ import annotations

import itertools
import json
import struct
from typing import Any

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import Rule
from mlverify._internal.scan.source import Source

SAFETENSORS_INVALID = Rule(
    "MLV401",
    "safetensors-invalid",
    Severity.MEDIUM,
    "A safetensors header is inconsistent (bounds, offsets, overlaps, dtypes).",
    "safetensors carries no code, but a malformed header targets parser bugs.",
)
RULES = (SAFETENSORS_INVALID,)

_ST_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
    "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8,
    "C64": 8, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1,
}  # fmt: skip
_ST_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsScanner:
    name = "safetensors"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        if len(head) < 10:
            return False
        n = struct.unpack("<Q", head[:8])[0]
        return head[8:9] == b"{" and n >= 2 and (src.size is None or n <= src.size - 8)

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        ctx.format("safetensors")
        label = src.label
        stream = src.open()
        n = struct.unpack("<Q", stream.read(8))[0]
        bad = SAFETENSORS_INVALID
        if n > _ST_MAX_HEADER:
            msg = f"header length {n} exceeds the 100 MiB bound"
            ctx.add(bad, label, 0, "header", msg, severity=Severity.HIGH)
            return
        raw = stream.read(n)
        if len(raw) < n:
            ctx.add(bad, label, 8, "header", "header is truncated")
            return
        try:
            header = json.loads(raw)
        except (ValueError, RecursionError):
            ctx.add(bad, label, 8, "header", "header is not valid JSON")
            return
        if not isinstance(header, dict):
            ctx.add(bad, label, 8, "header", "header is not a JSON object")
            return
        data_len = (src.size - 8 - n) if src.size is not None else None
        spans: list[tuple[int, int, str]] = []
        for name, info in header.items():
            if name == "__metadata__":
                if not isinstance(info, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in info.items()
                ):
                    msg = "__metadata__ is not a str->str map"
                    ctx.add(bad, label, 8, name, msg, severity=Severity.LOW)
                continue
            problem = _st_tensor_problem(info, data_len)
            if problem:
                ctx.add(bad, label, 8, str(name)[:80], f"tensor {str(name)[:80]!r}: {problem}")
                continue
            b, e = info["data_offsets"]
            spans.append((b, e, str(name)))
        spans.sort()
        for (_b1, e1, n1), (b2, _e2, n2) in itertools.pairwise(spans):
            if b2 < e1:
                msg = f"tensor {n2[:80]!r} overlaps {n1[:80]!r} ({b2} < {e1})"
                ctx.add(bad, label, 8, n2[:80], msg)


def _st_tensor_problem(info: Any, data_len: int | None) -> str | None:
    if not isinstance(info, dict):
        return "entry is not an object"
    dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in _ST_DTYPES:
        return f"unknown dtype {str(dtype)[:20]!r}"
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return "shape is not a list of non-negative integers"
    if (
        not isinstance(offs, list)
        or len(offs) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
    ):
        return "data_offsets is not [begin, end]"
    b, e = offs
    if b < 0 or e < b:
        return f"data_offsets [{b}, {e}] are inverted or negative"
    if data_len is not None and e > data_len:
        return f"data_offsets end {e} is past the data ({data_len} bytes)"
    count = 1
    for d in shape:
        count *= d
    size = count * _ST_DTYPES[dtype]
    if dtype in ("F4",):
        size = (count + 1) // 2
    if e - b != size:
        return f"{e - b} bytes for shape {shape} of {dtype} ({size} expected)"
    return None
