"""Compressed streams: every stream of gzip/bz2/xz/lzma/zlib, zstd and lz4 frames, joblib's
ZF container (the reading itself lives in ``mlverify._internal.scan.source``)."""

from __future__ import annotations

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.rules import Rule
from mlverify._internal.scan.source import Source, scan_compressed, sniff_codec

RULES: tuple[Rule, ...] = ()


class CompressedScanner:
    name = "compressed"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return sniff_codec(head) is not None

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        scan_compressed(src, ctx, depth)
