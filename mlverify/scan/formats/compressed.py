"""Single compressed streams (joblib's zlib/gzip/bz2/xz/lzma; lz4 unsupported)."""

from __future__ import annotations

import zlib

from mlverify.scan.context import ScanContext
from mlverify.scan.rules import UNSUPPORTED, Rule
from mlverify.scan.source import DecompressedSource, LimitExceeded, Source

RULES: tuple[Rule, ...] = ()


def _codec_of(head: bytes) -> str | None:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:3] == b"\x5d\x00\x00":
        return "lzma"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return None


class CompressedScanner:
    name = "compressed"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return _codec_of(head) is not None or head[:4] == b"\x04\x22\x4d\x18"

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        head = src.head(8)
        codec = _codec_of(head)
        if codec is None:
            ctx.format("lz4")
            ctx.add(
                UNSUPPORTED,
                src.label,
                0,
                "lz4",
                "lz4-compressed content (joblib lz4): not decompressed, not scanned",
            )
            return
        label = f"{src.label}!{codec}" if src.label else f"<{codec}>"
        dec = DecompressedSource(src, codec, label, ctx.limits)
        try:
            inner = dec.head(4096)
        except LimitExceeded:
            raise
        except (zlib.error, EOFError, ValueError, OSError) as e:
            if codec in ("gzip", "xz", "bz2"):
                ctx.format(codec)
                ctx.add(
                    UNSUPPORTED, src.label, 0, codec, f"{codec} stream cannot be decompressed: {e}"
                )
            return
        if not inner:
            return
        ctx.format(codec)
        if not ctx.scan(dec, depth + 1):
            return
