"""The JSON documents: what ``check --format json`` and ``scan --format json`` print.

These are the interchange other tools (and ``mlverify report``) read: keys are added,
never renamed. :func:`check_document` is the one place the check document is built.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlverify._internal.report import RenderOptions
from mlverify._internal.version import __version__

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.scan.model import ScanReport


def check_document(results: Sequence[CheckResult]) -> dict[str, Any]:
    """``{"results": [...], "allowed": ..., "exit_code": ...}``: the verdict and the exit
    code come from the same results."""
    from mlverify._internal.atlas import annotate

    code = max((r.exit_code for r in results), default=0)
    doc = {"results": [r.to_json() for r in results], "allowed": code == 0, "exit_code": code}
    return annotate(doc)  # every finding, reason and undecided result names its ATLAS ids


def scan_document(reports: Sequence[ScanReport]) -> dict[str, Any]:
    from mlverify._internal.scan.policy import data_version

    return {
        "tool": "mlverify",
        "version": __version__,
        "policy_version": data_version(),
        "files": [r.to_dict() for r in reports],
    }


class JsonReporter:
    media_type = "application/json"

    def check(self, results: Sequence[CheckResult], options: RenderOptions) -> str:
        return json.dumps(check_document(results), indent=2, sort_keys=True) + "\n"

    def scan(self, reports: Sequence[ScanReport], options: RenderOptions) -> str:
        return json.dumps(scan_document(reports), indent=2) + "\n"


REPORTER = JsonReporter()
