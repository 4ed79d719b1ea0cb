"""A report format written as a function over the check JSON document (the interchange
``check --format json`` prints): CycloneDX, OCSF, ... become formats with one line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.report import RenderOptions
    from mlverify._internal.scan.model import ScanReport


@dataclass(frozen=True)
class DocumentReporter:
    """A format rendered from the check JSON document (``check --format json``), for
    check results only."""

    render: Callable[[dict[str, Any]], str]
    media_type: str
    name: str = ""

    def check(self, results: Sequence[CheckResult], options: RenderOptions) -> str:
        from mlverify._internal.report.json_doc import check_document

        return self.render(check_document(results))

    def scan(self, reports: Sequence[ScanReport], options: RenderOptions) -> str:
        from mlverify._internal.errors import UsageError

        raise UsageError(
            f"{self.name or 'this format'} renders check results, not scans",
            setting="format",
            remedy="use it for check results",
        )
