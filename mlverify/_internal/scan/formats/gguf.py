"""GGUF (llama.cpp): metadata walked to its end; every chat template judged as Jinja."""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import RESOURCE_LIMIT, UNSUPPORTED, Rule
from mlverify._internal.scan.source import Source

GGUF_TEMPLATE_INJECTION = Rule(
    "MLV601",
    "gguf-template-injection",
    Severity.HIGH,
    "A GGUF chat template uses Jinja constructs that reach Python internals.",
    "Server-side template injection: the template is rendered by the runtime.",
)
GGUF_TEMPLATE_UNPARSED = Rule(
    "MLV602",
    "chat-template-unparsed",
    Severity.MEDIUM,
    "A chat template cannot be parsed as Jinja: it was not verified.",
    "Runtimes with other Jinja dialects may still render it; review it by hand.",
)
RULES = (GGUF_TEMPLATE_INJECTION, GGUF_TEMPLATE_UNPARSED)

#: keys and array items (of strings or arrays) walked in one file's metadata: at least 8
#: bytes each, so only a file with over 512 MiB of metadata reaches it (a finding then)
MAX_VALUES = 64_000_000

#: ``tokenizer.chat_template`` and the named ``tokenizer.chat_template.<name>`` keys
TEMPLATE_KEY = "tokenizer.chat_template"


def judge_template(
    template: str, key: str, ctx: ScanContext, label: str, offset: int | None
) -> None:
    """Parse one chat template with Jinja and report what reaches Python internals."""
    try:
        from mlverify._internal.scan.formats import _jinja

        problems, error = _jinja.judge(template)
    except ImportError:
        msg = f"{key}: jinja2 is not installed, the chat template was not verified"
        ctx.add(UNSUPPORTED, label, offset, key, msg)
        return
    if error is not None:
        ctx.add(GGUF_TEMPLATE_UNPARSED, label, offset, key, f"{key}: {error}")
    for p in problems:
        ctx.add(
            GGUF_TEMPLATE_INJECTION,
            label,
            offset,
            p.subject,
            f"{key} (line {p.line}): {p.message}",
        )


class GgufScanner:
    name = "gguf"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head[:4] == b"GGUF"

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        ctx.format("gguf")
        r = _Reader(src.open())
        try:
            r.need(4)
            version = r.u32()
            if version not in (2, 3):
                ctx.add(UNSUPPORTED, src.label, 4, "gguf", f"GGUF version {version}")
                return
            r.u64()
            n_kv = r.u64()
            # every key/value is walked: each costs bytes (a truncated table is a finding),
            # and the values walked in all are bounded by MAX_VALUES (a finding past it)
            for _ in range(n_kv):
                r.count(1)
                key = r.string(1 << 16)
                vtype = r.u32()
                if key.startswith(TEMPLATE_KEY) and vtype == 8:
                    start = r.tell()
                    judge_template(r.string(64 * 1024 * 1024), key, ctx, src.label, start)
                else:
                    if key.startswith(TEMPLATE_KEY) and key != TEMPLATE_KEY + "s":
                        msg = f"{key}: the chat template is not a string (type {vtype}): not judged"
                        ctx.add(GGUF_TEMPLATE_UNPARSED, src.label, r.tell(), key[:120], msg)
                    r.skip_value(vtype)
        except _TooMany:
            msg = (
                f"GGUF metadata holds more than {MAX_VALUES} keys and array items: not read to "
                "its end, so what its loader reads past that was not checked"
            )
            ctx.add(RESOURCE_LIMIT, src.label, r.tell(), "gguf", msg)
        except _Truncated:
            ctx.add(
                UNSUPPORTED,
                src.label,
                r.tell(),
                "gguf",
                "GGUF metadata is truncated or malformed",
            )


class _Truncated(Exception):
    pass


class _TooMany(Exception):
    pass


class _Reader:
    _FIXED: ClassVar[dict[int, int]] = {
        0: 1,
        1: 1,
        2: 2,
        3: 2,
        4: 4,
        5: 4,
        6: 4,
        7: 1,
        10: 8,
        11: 8,
        12: 8,
    }

    def __init__(self, stream: Any) -> None:
        self.s = stream
        self.buf = b""
        self.pos = 0
        self.base = 0
        self.values = 0  # keys and array items walked

    def count(self, n: int) -> None:
        self.values += n
        if self.values > MAX_VALUES:
            raise _TooMany

    def need(self, n: int) -> bytes:
        if len(self.buf) - self.pos < n:
            self.base += self.pos
            self.buf = self.buf[self.pos :] + self.s.read(max(n, 1 << 16))
            self.pos = 0
            if len(self.buf) < n:
                raise _Truncated
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def tell(self) -> int:
        return self.base + self.pos

    def u32(self) -> int:
        return int(struct.unpack("<I", self.need(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.need(8))[0])

    def string(self, limit: int) -> str:
        n = self.u64()
        if n > limit:
            raise _Truncated
        return self.need(n).decode("utf-8", "replace")

    def skip_value(self, vtype: int, depth: int = 0) -> None:
        if vtype in self._FIXED:
            self.need(self._FIXED[vtype])
        elif vtype == 8:
            n = self.u64()
            if n > 1 << 30:
                raise _Truncated
            self.need(n) if n < 1 << 20 else self._skip(n)
        elif vtype == 9 and depth < 4:
            et = self.u32()
            count = self.u64()
            if et in self._FIXED:
                self._skip(count * self._FIXED[et])
            else:
                for _ in range(count):  # each item costs bytes; all of them are counted
                    self.count(1)
                    self.skip_value(et, depth + 1)
        else:
            raise _Truncated

    def _skip(self, n: int) -> None:
        avail = len(self.buf) - self.pos
        if n <= avail:
            self.pos += n
            return
        self.base += len(self.buf)
        self.buf, self.pos = b"", 0
        if self.s.skip(n - avail) < n - avail:
            raise _Truncated
