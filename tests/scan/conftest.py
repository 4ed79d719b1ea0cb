from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mlverify._internal.scan import Limits, ScanReport
from tests.scan.differential import same_scan

Scan = Callable[..., ScanReport]


@pytest.fixture
def scan_bytes(tmp_path: Path) -> Scan:
    counter = iter(range(10**6))

    def run(data: bytes, name: str | None = None, limits: Limits | None = None) -> ScanReport:
        p = tmp_path / (name or f"sample{next(counter)}.bin")
        p.write_bytes(data)
        return same_scan(p, limits)  # and the general detection path agrees

    return run


def rules(report: ScanReport) -> set[str]:
    return {f.rule_id for f in report.findings}


def subjects(report: ScanReport) -> set[str]:
    return {f.subject for f in report.findings}
