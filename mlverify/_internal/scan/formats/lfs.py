"""Git LFS pointers: not the model (info); only exact pointers (``mlverify._internal.lfs``)."""

from __future__ import annotations

from mlverify._internal.lfs import parse_pointer
from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import UNSUPPORTED, Rule
from mlverify._internal.scan.source import Source

RULES: tuple[Rule, ...] = ()


class LfsPointerScanner:
    name = "git-lfs-pointer"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        # exactly a pointer (the whole content is in the head): anything else is content
        return parse_pointer(head) is not None

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
