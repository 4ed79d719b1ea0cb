"""Git LFS pointers: not the model (info)."""

from __future__ import annotations

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import UNSUPPORTED, Rule
from mlverify._internal.scan.source import Source

RULES: tuple[Rule, ...] = ()


class LfsPointerScanner:
    name = "git-lfs-pointer"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head.startswith(b"version https://git-lfs.github.com/spec/v1")

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        ctx.format("git-lfs-pointer")
        ctx.add(
            UNSUPPORTED,
            src.label,
            0,
            "git-lfs",
            "a Git LFS pointer, not the model: fetch the object (git lfs pull) and scan it",
            severity=Severity.INFO,
        )
