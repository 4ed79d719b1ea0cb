"""Pickle streams (protocols 0-5, legacy torch): the one place the pickle walker is called."""

from __future__ import annotations

from mlverify._internal.scan import dispatch
from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.model import Limits, Severity
from mlverify._internal.scan.pickle import VALID_OPCODES, PickleWalker
from mlverify._internal.scan.policy import get_policy
from mlverify._internal.scan.rules import Rule, by_id
from mlverify._internal.scan.source import Source, Stream, bytes_source

RULES: tuple[Rule, ...] = ()  # the walker's rules are core rules (mlverify._internal.scan.rules)

TORCH_LEGACY_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")


class _BudgetSpent(Exception):
    pass


class _Budget:
    """A stream that stops a trial walk after ``limit`` bytes read (skips are free)."""

    def __init__(self, inner: Stream, limit: int) -> None:
        self.inner = inner
        self.left = limit
        self.seekable = inner.seekable

    def read(self, n: int) -> bytes:
        if self.left <= 0:
            raise _BudgetSpent
        data = self.inner.read(min(n, self.left))
        self.left -= len(data)
        return data

    def skip(self, n: int) -> int:
        return self.inner.skip(n)

    def read_through(self, n: int) -> bytes:
        """Bytes a walk passes over to find where a text line ends (free, as skips are:
        one opcode's argument, not opcodes; bounded by the stream's length)."""
        return self.inner.read(n)

    def tell(self) -> int:
        return self.inner.tell()


#: opcodes that fail on the empty stack (and no mark) a stream starts with: a trial walk of
#: a stream opening with one stops at its first byte, before any effect (POP POP_MARK DUP
#: APPEND BUILD DICT APPENDS SETITEM LIST SETITEMS TUPLE OBJ REDUCE STOP ADDITEMS); text
#: often starts with one ("0", "a", "d", "e", "s", ...)
FAILS_AT_ONCE = frozenset(b"012abdeslutoR.\x90")


def _no_emit(rule: str, sev: Severity, offset: int, subject: str, msg: str, chain: str) -> None:
    pass  # detection only: the scan proper reports


_PROBE_LIMITS = Limits()  # the default limits (a trial walk never changes them)


def looks_like_pickle(head: bytes, src: Source | None = None, deep: bool = True) -> bool:
    """Would a loader read these bytes as a pickle that does something?

    Protocol 2+ pickles announce themselves; older or header-less streams are
    trial-walked (large values skipped by offset, so a payload placed after a
    big blob is still reached) for up to 16 KiB of opcodes. ``deep`` False: a value
    inside another file, which counts only when it is a whole pickle (the bytes allowed
    loaders deserialise are walked whatever they look like).
    """
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return True
    if not head or head[0] not in VALID_OPCODES or head[:2] == b"PK":
        return False  # a stream opening with "PK" is a zip header, not a pickle
    if head[0] in FAILS_AT_ONCE and not dispatch.general():
        return False  # the walk would stop at once: no pickle, no effect, not followed
    stream: Stream = (
        _Budget(src.open(), 16 * 1024)
        if src is not None and src.seekable
        else bytes_source(head, "").open()
    )
    w = PickleWalker(stream, get_policy(), _PROBE_LIMITS, _no_emit, probe=True)
    try:
        res = w.walk()
    except _BudgetSpent:
        return True  # 16 KiB of valid opcodes: a pickle
    if res.pickles and res.end >= 2:
        return True
    if not deep:
        return False
    if res.cannot_follow:
        return True  # the walker could not tell where a loader goes: scan it as a pickle
    # loaders execute opcodes as they read them: a call reached before the break ran, and so
    # did an import of a name a module can have (allowed ones too: they may load nested
    # bytes); a stream whose only effects are imports of names that are not Python
    # identifiers (no package installs such a module: a loader raises at the first) is data
    return res.calls > 0 or res.importable


class PickleScanner:
    name = "pickle"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return looks_like_pickle(head, src, deep)

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        head = src.head(len(TORCH_LEGACY_MAGIC))
        ctx.format("torch-legacy" if head == TORCH_LEGACY_MAGIC else "pickle")
        walk_pickle(src, ctx, depth)


def walk_pickle(src: Source, ctx: ScanContext, depth: int, *, joblib: bool = True) -> None:
    """Walk ``src`` as pickle stream(s), reporting into ``ctx`` under ``src.label``
    (``joblib``: as joblib's unpickler too, when it holds arrays)."""
    member = src.label

    def emit(rule: str, sev: Severity, offset: int, subject: str, msg: str, chain: str) -> None:
        ctx.add(by_id(rule, sev, msg), member, offset, subject, msg, chain, severity=sev)

    PickleWalker(
        src.open(),
        ctx.policy,
        ctx.limits,
        emit,
        ctx.nested(src, depth),
        reopen=src.open,
        joblib=joblib,
    ).walk()
