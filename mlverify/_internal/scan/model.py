"""Typed results of a scan: severities, findings and per-file reports."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(enum.IntEnum):
    """How bad a finding is; ordered so thresholds compare with ``>=``."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}") from None


@dataclass(frozen=True)
class Finding:
    """One thing a loader would do, or could not be checked, in one file.

    ``member`` is the path inside a container ("" for the file itself, nested
    containers joined with ``!``); ``offset`` is the byte offset inside that
    member (or the file); ``subject`` is the import or opcode involved;
    ``chain`` says how the subject is used (e.g. ``os.system('true') via REDUCE``).
    """

    rule_id: str
    severity: Severity
    path: str
    member: str
    offset: int | None
    subject: str
    message: str
    chain: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "rule_id": self.rule_id,
            "severity": self.severity.label,
            "path": self.path,
            "member": self.member,
            "offset": self.offset,
            "subject": self.subject,
            "message": self.message,
            "chain": self.chain,
        }


class Status(str, enum.Enum):
    """Overall state of one scanned file."""

    CLEAN = "clean"  # recognised format(s), nothing at or above info
    DATA = "data"  # no loader would execute these bytes (raw data, text, images)
    FINDINGS = "findings"  # at least one finding above info
    UNSUPPORTED = "unsupported"  # recognised but (partly) unreadable; see findings


@dataclass(frozen=True)
class ScanReport:
    """Everything learned about one file."""

    path: str
    size: int
    formats: tuple[str, ...]
    findings: tuple[Finding, ...]
    status: Status
    seconds: float = 0.0
    members_scanned: int = 0

    @property
    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "formats": list(self.formats),
            "status": self.status.value,
            "max_severity": self.max_severity.label if self.max_severity is not None else None,
            "members_scanned": self.members_scanned,
            "seconds": round(self.seconds, 6),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class Limits:
    """Bounds that keep a scan finite on hostile input."""

    max_depth: int = 6  # nested containers / nested pickles
    max_members: int = 100_000  # zip entries per archive
    max_decompressed: int = 8 * 1024**3  # bytes inflated from one compressed stream
    max_ratio: int = 250  # inflated / compressed, once past ``ratio_floor``
    ratio_floor: int = 32 * 1024**2
    max_stack: int = 20_000_000  # pickle stack + memo entries
    small_value: int = 1 << 16  # strings/bytes longer than this are skipped by offset
    max_resync: int = 1 << 30  # bytes searched for imports after the walker had to stop
    max_findings: int = 1000  # findings kept per pickle stream (the rest are counted)
    nested_min: int = 16  # bytes objects shorter than this are not probed for formats
    extra_allow: frozenset[str] = field(default_factory=frozenset)
    # one budget per scanned file, shared by all its nested containers and streams:
    # inflated bytes in all <= max(ratio_floor, max_ratio * file size) and this cap
    max_total_decompressed: int = 16 * 1024**3
    max_total_members: int = 300_000  # container members, compressed streams: in one file
