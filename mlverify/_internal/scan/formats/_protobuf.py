"""Protocol Buffers, read the way the runtimes read them, from a seekable source.

Not a format of its own: the wire reader and schema-driven walker that the ONNX and
SavedModel formats share. Fields are taken in any order and any number of times,
varints may be non-minimal (up to 10 bytes), unknown fields and fields of an
unexpected wire type are skipped as protobuf parsers skip them (groups included), and
large length-delimited values (tensor bytes) are skipped by offset, never read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from mlverify._internal.scan import dispatch
from mlverify._internal.scan.source import FileSource

#: message type -> field number -> the message type it holds, or "string" (collected,
#: first 4 KiB), "blob" (collected whole, up to MAX_BLOB) or "varint"
Schema = dict[str, dict[int, str]]
#: (message type, string fields by number, offset, parent type, parent field number)
Visit = Callable[[str, dict[int, list[str]], int, str, int], None]

MAX_DEPTH = 100  # protobuf's default recursion limit: deeper messages do not parse
MAX_FIELDS = 50_000_000
MAX_BLOB = 64 * 1024 * 1024
_WINDOW = 1 << 20


class Malformed(Exception):
    """The bytes are not a valid protobuf encoding."""


class DepthExceeded(Exception):
    """Messages nest past ``MAX_DEPTH`` (or a string passes ``MAX_BLOB``)."""


class Wire:
    """Reads fields from a ``FileSource`` through a 1 MiB window."""

    def __init__(
        self, src: FileSource, window: int = _WINDOW, max_fields: int = MAX_FIELDS
    ) -> None:
        self.src = src
        self.size = src.size or 0
        self._buf = b""
        self._at = 0
        self._window = window
        self.max_fields = max_fields  # fields read in all, groups' insides included
        self.fields_read = 0

    def _count(self) -> None:
        self.fields_read += 1
        if self.fields_read > self.max_fields:
            raise Malformed(f"more than {self.max_fields} fields")

    def _bytes(self, off: int, n: int) -> bytes:
        if not (self._at <= off and off + n <= self._at + len(self._buf)):
            self._at = off
            self._buf = self.src.read_at(off, max(n, self._window))
        return self._buf[off - self._at : off - self._at + n]

    def varint(self, off: int, end: int) -> tuple[int, int]:
        data = self._bytes(off, min(10, end - off))
        value = 0
        for i, b in enumerate(data):
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                return value & ((1 << 64) - 1), off + i + 1
        raise Malformed(f"varint at {off} does not end")

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        """Yield (field number, wire type, value or offset, length) for [start, end)."""
        off = start
        while off < end:
            self._count()
            key, off = self.varint(off, end)
            num, wt = key >> 3, key & 7
            if num == 0:
                raise Malformed(f"field number 0 at {off}")
            if wt == 0:
                val, off = self.varint(off, end)
                yield num, wt, val, 0
            elif wt == 2:
                ln, off = self.varint(off, end)
                if off + ln > end:
                    raise Malformed(f"field {num} at {off} runs past its message")
                yield num, wt, off, ln
                off += ln
            elif wt == 1:
                off += 8
            elif wt == 5:
                off += 4
            elif wt == 3:
                off = self._skip_group(num, off, end)
            else:
                raise Malformed(f"wire type {wt} at {off}")
            if off > end:
                raise Malformed(f"field {num} runs past its message")

    def _skip_group(self, num: int, off: int, end: int) -> int:
        depth = 1
        while off < end:
            self._count()
            key, off = self.varint(off, end)
            n, wt = key >> 3, key & 7
            if wt == 3:
                depth += 1
            elif wt == 4:
                depth -= 1
                if depth == 0:
                    if n != num:
                        raise Malformed(f"group {num} closed as {n}")
                    return off
            elif wt == 0:
                off = self.varint(off, end)[1]
            elif wt == 2:
                ln, off = self.varint(off, end)
                off += ln
            elif wt == 1:
                off += 8
            elif wt == 5:
                off += 4
            else:
                raise Malformed(f"wire type {wt} in a group")
        raise Malformed(f"group {num} does not end")

    def text(self, off: int, ln: int, limit: int = 4096) -> str:
        return self._bytes(off, min(ln, limit)).decode("utf-8", "replace")


def top_level(src: FileSource, limit: int = 4096) -> dict[int, set[int]] | None:
    """Wire types seen per top-level field, if the source parses as one message.

    Cheap enough to run on every file: small reads, at most ``limit`` fields (a message
    with more fields than that, all valid so far, counts as parsing). Parsed once per
    source (the ONNX, SavedModel and Keras metadata detectors all ask; the caller only
    reads the answer).
    """
    key = ("pb.top_level", limit)
    if key in src.memo and not dispatch.general():
        return src.memo[key]  # type: ignore[return-value]
    if dispatch.general() or (src.size or 0) > _WHOLE:
        seen = _top_level(src, limit)
    else:
        seen = _top_level_bytes(src.read_at(0, src.size or 0), limit)
    src.memo[key] = seen
    return seen


#: sources up to this size are parsed for ``top_level`` from one read of all their bytes
_WHOLE = 1 << 16


def _varint(data: bytes, off: int, end: int) -> tuple[int, int]:
    """``Wire.varint`` over bytes (``end`` at most ``len(data)``)."""
    value = 0
    shift = 0
    stop = min(off + 10, end)
    while off < stop:
        b = data[off]
        off += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, off
        shift += 7
    raise Malformed("a varint does not end")


def _top_level_bytes(data: bytes, limit: int) -> dict[int, set[int]] | None:
    """``_top_level`` of a source whose bytes are ``data``: the same walk (the same fields
    counted, the same errors), without the window reads and the generator."""
    end = len(data)
    max_fields = 4 * limit
    fields_read = 0
    yielded = 0
    seen: dict[int, set[int]] = {}
    off = 0
    try:
        while off < end:
            fields_read += 1
            if fields_read > max_fields:
                return None
            b = data[off]
            if b < 0x80:  # a one-byte key (most are)
                key, off = b, off + 1
            else:
                key, off = _varint(data, off, end)
            num, wt = key >> 3, key & 7
            if num == 0:
                return None
            if wt == 0 or wt == 2:
                val, off = _varint(data, off, end)
                if wt == 2 and off + val > end:
                    return None
                if yielded >= limit:
                    break
                yielded += 1
                s = seen.get(num)
                if s is None:
                    seen[num] = {wt}
                else:
                    s.add(wt)
                if wt == 2:
                    off += val
            elif wt == 1:
                off += 8
            elif wt == 5:
                off += 4
            elif wt == 3:
                off, fields_read = _skip_group_bytes(data, num, off, end, fields_read, max_fields)
            else:
                return None
            if off > end:
                return None
    except Malformed:
        return None
    return seen


def _skip_group_bytes(
    data: bytes, num: int, off: int, end: int, fields_read: int, max_fields: int
) -> tuple[int, int]:
    """``Wire._skip_group`` over bytes: the offset after the group, and the fields read."""
    depth = 1
    while off < end:
        fields_read += 1
        if fields_read > max_fields:
            raise Malformed("too many fields")
        key, off = _varint(data, off, end)
        n, wt = key >> 3, key & 7
        if wt == 3:
            depth += 1
        elif wt == 4:
            depth -= 1
            if depth == 0:
                if n != num:
                    raise Malformed("a group closed by another number")
                return off, fields_read
        elif wt == 0:
            off = _varint(data, off, end)[1]
        elif wt == 2:
            ln, off = _varint(data, off, end)
            off += ln
        elif wt == 1:
            off += 8
        elif wt == 5:
            off += 4
        else:
            raise Malformed("a wire type no group holds")
    raise Malformed("a group does not end")


def _top_level(src: FileSource, limit: int) -> dict[int, set[int]] | None:
    wire = Wire(src, window=512, max_fields=4 * limit)
    seen: dict[int, set[int]] = {}
    try:
        for i, (num, wt, _v, _l) in enumerate(wire.fields(0, wire.size)):
            if i >= limit:
                break
            seen.setdefault(num, set()).add(wt)
    except Malformed:
        return None
    return seen


def walk(src: FileSource, schema: Schema, root: str, visit: Visit) -> None:
    """Visit every message reachable from ``root`` (the whole source) per ``schema``."""
    wire = Wire(src)
    stack: list[tuple[str, int, int, str, int, int]] = [(root, 0, wire.size, "", 0, 0)]
    while stack:
        typ, start, end, parent, pfield, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DepthExceeded(f"{typ} nested deeper than {MAX_DEPTH} at offset {start}")
        spec = schema.get(typ, {})
        strings: dict[int, list[str]] = {}
        for num, wt, val, ln in wire.fields(start, end):
            kind = spec.get(num)
            if kind is None:
                continue
            if wt == 2 and kind == "string":
                strings.setdefault(num, []).append(wire.text(val, ln))
            elif wt == 2 and kind == "blob":
                if ln > MAX_BLOB:
                    raise DepthExceeded(f"a {ln}-byte string at offset {val} passes {MAX_BLOB}")
                strings.setdefault(num, []).append(wire.text(val, ln, ln))
            elif wt == 0 and kind == "varint":
                strings.setdefault(num, []).append(str(val))
            elif wt == 2 and kind not in ("string", "blob", "varint"):
                stack.append((kind, val, val + ln, typ, num, depth + 1))
        visit(typ, strings, start, parent, pfield)


def first_key(head: bytes) -> tuple[int, int] | None:
    """(field number, wire type) of the first field, however its varint is encoded."""
    value = 0
    for i, b in enumerate(head[:10]):
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value >> 3, value & 7
    return None
