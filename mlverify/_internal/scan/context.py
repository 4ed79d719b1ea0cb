"""What a format scanner may use of the engine: the ``ScanContext`` protocol.

Format scanners (``mlverify._internal.scan.formats``) depend on this protocol only, never on
the engine, so the engine can import every format without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mlverify._internal.scan.model import Limits, Severity
    from mlverify._internal.scan.policy import Policy
    from mlverify._internal.scan.rules import Rule
    from mlverify._internal.scan.source import Source

#: called by the pickle walker for string/bytes values that may hold a format:
#: ``probe(data_or_source_or_None, offset, length, kind, forced)`` (``forced``: an allowed
#: loader deserialises the value, so it is read as that loader reads it)
Probe = Callable[["bytes | Source | None", int, int, str, bool], None]


class ScanContext(Protocol):
    """The state of one file's scan as a format scanner sees it."""

    path: str  # the file's display name
    limits: Limits
    policy: Policy

    def add(
        self,
        rule: Rule,
        member: str,
        offset: int | None,
        subject: str,
        message: str,
        chain: str = "",
        *,
        severity: Severity | None = None,
    ) -> None:
        """Record a finding of ``rule`` (at its default severity unless ``severity``)."""

    def format(self, name: str) -> None:
        """Record that the file (or a member) is in format ``name``."""

    def scan(self, src: Source, depth: int, *, deep: bool = True) -> bool:
        """Scan ``src`` as a file of its own (nested member); True if a format matched."""

    def nested(self, parent: Source, depth: int) -> Probe:
        """A pickle-walker callback that scans string/bytes values as nested files."""


class FormatScanner(Protocol):
    """One format: ``detect`` from the first bytes, then ``scan``."""

    name: str

    def detect(self, head: bytes, src: Source, deep: bool) -> bool: ...

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None: ...


def add_by_id(
    ctx: ScanContext,
    rule_id: str,
    severity: Severity,
    member: str,
    offset: int | None,
    subject: str,
    message: str,
    chain: str = "",
) -> None:
    """Report through ``ctx`` a finding a component names by rule id and severity (the
    archive readers, as the pickle walker does): the catalogue's rule for that id."""
    from mlverify._internal.scan.rules import by_id

    ctx.add(by_id(rule_id, severity, message), member, offset, subject, message, chain,
            severity=severity)  # fmt: skip
