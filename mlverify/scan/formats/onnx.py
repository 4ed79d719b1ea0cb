"""ONNX models."""

from __future__ import annotations

import re
from typing import Any

from mlverify.scan.context import ScanContext
from mlverify.scan.formats.savedmodel import _is_savedmodel
from mlverify.scan.model import Severity
from mlverify.scan.rules import UNSUPPORTED, Rule
from mlverify.scan.source import FileSource, Source

ONNX_EXTERNAL_PATH = Rule(
    "MLV701",
    "onnx-external-path",
    Severity.HIGH,
    "An ONNX tensor's external data location escapes the model directory.",
    "Absolute paths or '..' make the runtime read arbitrary files.",
)
ONNX_CUSTOM_DOMAIN = Rule(
    "MLV702",
    "onnx-custom-domain",
    Severity.LOW,
    "An ONNX model imports a custom operator domain.",
    "Custom operators need a native library registered with the runtime; review it.",
)
RULES = (ONNX_EXTERNAL_PATH, ONNX_CUSTOM_DOMAIN)


class _Truncated(Exception):
    pass


# -- ONNX ----------------------------------------------------------------------
_ONNX_STD_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training", "ai.onnx.training"}
)
_WIN_DRIVE = re.compile(r"^[A-Za-z]:")


class _PB:
    """A lazy protobuf wire reader over a seekable source (big fields are skipped)."""

    def __init__(self, src: FileSource) -> None:
        self.src = src

    def varint(self, off: int) -> tuple[int, int]:
        data = self.src.read_at(off, 10)
        value = shift = 0
        for i, b in enumerate(data):
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value, off + i + 1
            shift += 7
        raise _Truncated

    def fields(self, start: int, end: int) -> Any:
        """Yield (field number, wire type, value-or-(offset, length), next offset)."""
        off = start
        count = 0
        while off < end and count < 5_000_000:
            count += 1
            key, off = self.varint(off)
            num, wt = key >> 3, key & 7
            if wt == 0:
                val, off = self.varint(off)
                yield num, wt, val
            elif wt == 2:
                ln, off = self.varint(off)
                if off + ln > end:
                    raise _Truncated
                yield num, wt, (off, ln)
                off += ln
            elif wt == 1:
                off += 8
            elif wt == 5:
                off += 4
            else:
                raise _Truncated

    def text(self, span: tuple[int, int], limit: int = 4096) -> str:
        return self.src.read_at(span[0], min(span[1], limit)).decode("utf-8", "replace")


class OnnxScanner:
    name = "onnx"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        if (
            len(head) < 4
            or head[0] != 0x08
            or not 1 <= head[1] <= 20
            or not isinstance(src, FileSource)
            or _is_savedmodel(head)
        ):
            return False
        return head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42)

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        assert isinstance(src, FileSource)
        pb = _PB(src)
        size = src.size or 0
        ctx.format("onnx")
        try:
            for num, wt, val in pb.fields(0, size):
                if num == 8 and wt == 2:  # opset_import
                    for n2, w2, v2 in pb.fields(val[0], val[0] + val[1]):
                        if n2 == 1 and w2 == 2:
                            domain = pb.text(v2, 256)
                            if domain not in _ONNX_STD_DOMAINS:
                                ctx.add(
                                    ONNX_CUSTOM_DOMAIN,
                                    src.label,
                                    val[0],
                                    domain,
                                    f"uses the custom operator domain {domain!r}",
                                )
                elif num == 7 and wt == 2:  # graph
                    self._graph(pb, val, ctx, src.label, 0)
        except _Truncated:
            ctx.add(
                UNSUPPORTED,
                src.label,
                None,
                "onnx",
                "ONNX protobuf is truncated or malformed",
            )

    def _graph(
        self, pb: _PB, span: tuple[int, int], ctx: ScanContext, label: str, depth: int
    ) -> None:
        if depth > 8:
            return
        for num, wt, val in pb.fields(span[0], span[0] + span[1]):
            if wt != 2:
                continue
            if num in (5, 15):  # initializer, sparse_initializer
                self._tensor(pb, val, ctx, label)
            elif num == 1:  # node: subgraphs live in attributes (5) -> g (6) / graphs (11)
                for n2, w2, v2 in pb.fields(val[0], val[0] + val[1]):
                    if n2 == 5 and w2 == 2:
                        for n3, w3, v3 in pb.fields(v2[0], v2[0] + v2[1]):
                            if n3 in (6, 11) and w3 == 2:
                                self._graph(pb, v3, ctx, label, depth + 1)
                            elif n3 == 5 and w3 == 2:  # attribute tensor t
                                self._tensor(pb, v3, ctx, label)

    def _tensor(self, pb: _PB, span: tuple[int, int], ctx: ScanContext, label: str) -> None:
        for num, wt, val in pb.fields(span[0], span[0] + span[1]):
            if num != 13 or wt != 2:  # external_data entries
                continue
            key = value = ""
            for n2, w2, v2 in pb.fields(val[0], val[0] + val[1]):
                if n2 == 1 and w2 == 2:
                    key = pb.text(v2, 256)
                elif n2 == 2 and w2 == 2:
                    value = pb.text(v2)
            if key == "location":
                norm = value.replace("\\", "/")
                if norm.startswith("/") or _WIN_DRIVE.match(norm) or ".." in norm.split("/"):
                    ctx.add(
                        ONNX_EXTERNAL_PATH,
                        label,
                        val[0],
                        value[:200],
                        f"tensor external data location {value[:200]!r} escapes the model "
                        "directory",
                    )
