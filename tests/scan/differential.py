"""The fast detection path against the general one (``mlverify._internal.scan.dispatch``).

``same_scan`` scans a file both ways and fails on any difference: formats, findings (every
field), status, members scanned. Used by ``test_dispatch_equivalence.py`` and by the
``scan_bytes`` fixture, so every sample a test in this directory builds is compared too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlverify._internal.scan import Limits, ScanReport, scan_file
from mlverify._internal.scan.dispatch import general_path


def _key(r: ScanReport) -> tuple[Any, ...]:
    return (r.path, r.size, r.formats, r.findings, r.status, r.members_scanned)


def same_scan(path: Path, limits: Limits | None = None, display: str | None = None) -> ScanReport:
    """The fast path's report, once the general path is shown to give the same one."""
    fast = scan_file(path, limits, display)
    with general_path():
        general = scan_file(path, limits, display)
    assert _key(fast) == _key(general), (
        f"{path}: the fast dispatch differs from the general path:\n"
        f"  fast:    {_key(fast)}\n  general: {_key(general)}"
    )
    return fast
