"""7z archives: every member scanned through py7zr (``mlverify._internal.scan.sevenzip``)."""

from __future__ import annotations

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.rules import Rule
from mlverify._internal.scan.source import Source

RULES: tuple[Rule, ...] = ()


class SevenZipScanner:
    name = "7z"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head[:6] == b"7z\xbc\xaf\x27\x1c"

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        from mlverify._internal.scan.sevenzip import scan_7z

        scan_7z(src, ctx, depth)
