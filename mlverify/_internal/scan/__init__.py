"""Static scanning of model files: find code without ever running it.

Formats are detected from bytes; pickles are walked opcode by opcode; verdicts
come from the versioned data in ``data/pickle_allowlist.json`` (exact, harvested) and
``data/pickle_denylist.json``.
Nothing here imports numpy, torch or any loader.
"""

from mlverify._internal.scan.engine import scan_file, scan_paths
from mlverify._internal.scan.model import Finding, Limits, ScanReport, Severity, Status

__all__ = ["Finding", "Limits", "ScanReport", "Severity", "Status", "scan_file", "scan_paths"]
