"""Imports in bytes the walker could not follow: a search by opcode shape.

When the walker stops where a loader may go on (a joblib wrapper it cannot size, a budget),
the stream is already a finding; this search then reads the rest of it and names the
imports a loader could meet there (GLOBAL/INST lines, STACK_GLOBAL after two string
opcodes), so the report says what is at stake. It is a complement, never a reason to pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_GLOBAL = re.compile(rb"[ci]([A-Za-z_][\w.]{0,255})\n([A-Za-z_][\w.]{0,255})\n")
_MEMO = re.compile(rb"\x94|q[\x00-\xff]|r[\x00-\xff]{4}|p\d{1,9}\n")
OVERLAP = 1024


def _string_at(data: bytes, i: int) -> tuple[str, int] | None:
    """A string opcode at ``data[i]``: (text, end) or None."""
    op = data[i : i + 1]
    try:
        if op in (b"\x8c", b"U"):
            n = data[i + 1]
            end = i + 2 + n
            raw = data[i + 2 : end]
        elif op in (b"X", b"T"):
            n = int.from_bytes(data[i + 1 : i + 5], "little")
            if n > 512:
                return None
            end = i + 5 + n
            raw = data[i + 5 : end]
        else:
            return None
    except IndexError:
        return None
    if end > len(data):
        return None
    try:
        return raw.decode("utf-8"), end
    except UnicodeDecodeError:
        return raw.decode("latin-1"), end


def _skip_memo(data: bytes, j: int) -> int:
    m = _MEMO.match(data, j)
    return m.end() if m else j


def find_imports(data: bytes) -> Iterator[tuple[int, str, str]]:
    """(offset, module, name) of import-shaped opcodes in ``data``."""
    for m in _GLOBAL.finditer(data):
        yield m.start(), m.group(1).decode(), m.group(2).decode()
    for op in (b"\x8c", b"X", b"U", b"T"):
        i = data.find(op)
        while i >= 0:
            first = _string_at(data, i)
            if first is not None:
                j = _skip_memo(data, first[1])
                second = _string_at(data, j)
                if second is not None:
                    k = _skip_memo(data, second[1])
                    if data[k : k + 1] == b"\x93":
                        yield i, first[0], second[0]
            i = data.find(op, i + 1)
