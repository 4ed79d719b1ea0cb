"""Report formats: one interface, one enum, one file per format.

Every front end (``check``, ``scan``, ``report``; ``serve`` later) renders through
:func:`reporter`; the choices a command offers come from :class:`ReportFormat`. A
format is a module of this package named like its enum value (``text`` ->
``report/text.py``; ``json`` -> ``report/json_doc.py``, not shadowing the standard
library) whose ``REPORTER`` object satisfies :class:`Reporter`. Adding a format is
that one file and one enum member; a format written as a function over the check JSON
document (the interchange: CycloneDX, OCSF, ...) sets
``REPORTER = DocumentReporter(render_function, media_type)`` (``report/document.py``).

Renderers are pure: they take results and return the whole document as text; where
it goes (stdout, ``--output``, a step summary) is the front end's business. Names
that come from artifacts are escaped by each format for its reader (terminal
control characters in text, table syntax and HTML in Markdown).
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.scan.model import ScanReport


class ReportFormat(str, enum.Enum):
    """The formats every command offers (``--format``)."""

    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    MARKDOWN = "markdown"
    CYCLONEDX = "cyclonedx"  #: CycloneDX 1.6 ML-BOM
    OCSF = "ocsf"  #: OCSF events, JSON lines

    @classmethod
    def names(cls) -> list[str]:
        return [f.value for f in cls]


#: module of this package for a format, where it differs from the format's name
_MODULE = {ReportFormat.JSON: "json_doc"}


@dataclass(frozen=True)
class RenderOptions:
    explain: bool = False  #: check text: the evidence behind each decision too
    show_all: bool = False  #: scan text / markdown: every file, not only those to look at
    title: str = ""  #: markdown heading ("" for the command's own name)


class Reporter(Protocol):
    """One report format, for check results and for scan reports."""

    @property
    def media_type(self) -> str:
        """Media type of the rendered document (for a service answering in this format)."""
        ...

    def check(self, results: Sequence[CheckResult], options: RenderOptions) -> str:
        """The whole document for these check results (every artifact has one)."""
        ...

    def scan(self, reports: Sequence[ScanReport], options: RenderOptions) -> str:
        """The whole document for these per-file scan reports."""
        ...


def reporter(fmt: ReportFormat | str) -> Reporter:
    """The reporter of ``fmt`` (a :class:`ReportFormat` or its name)."""
    try:
        chosen = ReportFormat(fmt)
    except ValueError:
        from mlverify._internal.errors import UsageError

        raise UsageError(
            f"report format {str(fmt)!r}: expected one of {', '.join(ReportFormat.names())}"
        ) from None
    module = importlib.import_module(f"{__name__}.{_MODULE.get(chosen, chosen.value)}")
    found: Reporter = module.REPORTER
    return found


if TYPE_CHECKING:  # mypy checks every kind of reporter is a Reporter; no import at run time

    def _conforms() -> None:
        from mlverify._internal.report.document import DocumentReporter
        from mlverify._internal.report.json_doc import REPORTER as J
        from mlverify._internal.report.markdown import REPORTER as M
        from mlverify._internal.report.sarif import REPORTER as S
        from mlverify._internal.report.text import REPORTER as T

        _: list[Reporter] = [T, J, S, M, DocumentReporter(str, "text/plain")]
