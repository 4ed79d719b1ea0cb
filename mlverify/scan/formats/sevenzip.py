"""7z archives: recognised, never read (always unsupported, never passed)."""

from __future__ import annotations

from mlverify.scan.context import ScanContext
from mlverify.scan.rules import UNSUPPORTED, Rule
from mlverify.scan.source import Source

RULES: tuple[Rule, ...] = ()


class SevenZipScanner:
    name = "7z"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head[:6] == b"7z\xbc\xaf\x27\x1c"

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        ctx.format("7z")
        ctx.add(
            UNSUPPORTED,
            src.label,
            0,
            "7z",
            "7z archive: its members (possibly a torch checkpoint) were not scanned",
        )
