"""tar archives (legacy torch checkpoints, .nemo, SageMaker model.tar.gz): every member is
scanned as Python's ``tarfile`` reads it (``mlverify._internal.scan.tarreader``)."""

from __future__ import annotations

from mlverify._internal.scan.archivepath import ARCHIVE_PATH_ESCAPE
from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.rules import Rule
from mlverify._internal.scan.source import Source
from mlverify._internal.scan.tarreader import is_tar, scan_tar

#: a member name or link escaping the extraction directory (tar and zip members alike)
RULES: tuple[Rule, ...] = (ARCHIVE_PATH_ESCAPE,)


class TarScanner:
    name = "tar"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return is_tar(head)

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        scan_tar(src, ctx, depth)
