"""Scan files: detect formats from bytes, run every matching scanner, collect findings."""

from __future__ import annotations

import os
import stat
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from mlverify._internal.errors import InputError
from mlverify._internal.files import name_too_long, too_long
from mlverify._internal.scan import dispatch
from mlverify._internal.scan.context import Probe
from mlverify._internal.scan.formats import SCANNERS
from mlverify._internal.scan.model import Finding, Limits, ScanReport, Severity, Status
from mlverify._internal.scan.policy import Policy, get_policy
from mlverify._internal.scan.rules import (
    NESTED_PAYLOAD,
    PICKLE_INDIRECT_CALL,
    RESOURCE_LIMIT,
    UNSUPPORTED,
    Rule,
)
from mlverify._internal.scan.source import (
    FileContent,
    FileSource,
    LimitExceeded,
    Source,
    bytes_source,
)

HEAD = 4096
#: files up to this size are read whole and scanned from memory
WHOLE_MAX = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_DEFAULT_LIMITS = Limits()
NESTED_TEXT_MAX = 256 * 1024 * 1024  # bytes of encoded text decoded for a nested scan


class Context:
    """State of one file's scan: findings, formats seen, limits, policy.

    Implements ``mlverify._internal.scan.context.ScanContext``, all the format scanners see.
    """

    def __init__(self, path: str, limits: Limits, policy: Policy) -> None:
        self.path = path
        self.limits = limits
        self.policy = policy
        self.findings: list[Finding] = []
        self.formats: list[str] = []
        self.members = 0
        self._seen: set[tuple[str, str, int | None, str]] = set()

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
        key = (rule.id, member, offset, subject)
        if key in self._seen:
            return
        self._seen.add(key)
        sev = rule.severity if severity is None else severity
        self.findings.append(
            Finding(rule.id, sev, self.path, member, offset, subject, message, chain)
        )

    def format(self, name: str) -> None:
        if name not in self.formats:
            self.formats.append(name)

    def scan(self, src: Source, depth: int, *, deep: bool = True) -> bool:
        """Run every scanner that recognises ``src``; True if any did."""
        if depth > self.limits.max_depth:
            self.add(
                RESOURCE_LIMIT,
                src.label,
                0,
                "nesting",
                f"containers nest deeper than {self.limits.max_depth} levels; not scanned further",
            )
            return True
        self.members += 1
        try:
            head = src.head(HEAD)
        except LimitExceeded as e:
            self.add(RESOURCE_LIMIT, src.label, 0, "decompression", str(e))
            return True
        except (zlib.error, EOFError, ValueError, OSError) as e:
            if isinstance(e, OSError) and src.label == "":
                raise
            return False
        found = False
        for scanner in SCANNERS:
            try:
                if not scanner.detect(head, src, deep):
                    continue
                found = True
                scanner.scan(src, self, depth)
            except LimitExceeded as e:
                found = True
                self.add(RESOURCE_LIMIT, src.label, None, scanner.name, str(e))
            except (RecursionError, MemoryError, ValueError, KeyError, IndexError, TypeError,
                    AttributeError, struct.error, zlib.error, EOFError) as e:  # fmt: skip
                if os.environ.get("MLVERIFY_DEBUG"):
                    raise
                # a scanner bug or an input it cannot take (when detecting or scanning):
                # never a silent pass
                found = True
                self.add(
                    UNSUPPORTED, src.label, None, scanner.name,
                    f"the {scanner.name} scanner could not read this content "
                    f"({type(e).__name__}: {str(e)[:120]})",
                )  # fmt: skip
        return found

    def nested(self, parent: Source, depth: int) -> Probe:
        """A callback for the pickle walker: scan string/bytes values as files."""

        def probe(
            data: bytes | Source | None, offset: int, length: int, kind: str, forced: bool
        ) -> None:
            label = f"{parent.label}@{offset}" if parent.label else f"@{offset}"
            if isinstance(data, Source):
                data.label = label
                sub: Source = data
            elif data is not None:
                sub = bytes_source(data, label)
            elif parent.seekable and kind == "latin1":
                # bytes written as _codecs.encode(text, "latin1") (protocol < 3): the text
                # is UTF-8 in the stream; the loader gets its latin-1 encoding
                if length > NESTED_TEXT_MAX:
                    msg = (
                        f"a {length}-byte encoded value is over the bound the scanner decodes; "
                        "what a loader deserialises from it is not checked"
                    )
                    self.add(RESOURCE_LIMIT, parent.label, offset, kind, msg)
                    return
                text = parent.read_at(offset, length).decode("utf-8", "replace")
                sub = bytes_source(text.encode("latin-1", "replace"), label)
            elif parent.seekable:
                sub = parent.sub(offset, length, label)
            else:
                if forced:
                    self.add(PICKLE_INDIRECT_CALL, parent.label, offset, kind,
                             "an allowed loader deserialises a value the scanner could not "
                             "keep (a stream that cannot seek): it cannot be checked")  # fmt: skip
                return
            before = len(self.findings)
            # what torch.load does with bytes an allowed loader hands it: a zip if they open
            # like one, else a pickle read by the plain unpickler, whatever else they look like
            if forced and sub.head(4) != b"PK\x03\x04":
                if depth + 1 > self.limits.max_depth:
                    found = self.scan(sub, depth + 1, deep=False)  # reports the depth limit
                else:
                    from mlverify._internal.scan.formats.pickle import walk_pickle

                    self.format("pickle")
                    walk_pickle(sub, self, depth + 1, joblib=False)
                    found = True
            else:
                found = self.scan(sub, depth + 1, deep=False)
            if found:
                self.add(
                    NESTED_PAYLOAD,
                    parent.label,
                    offset,
                    kind,
                    f"a {length}-byte {kind} value holds a loadable format; scanned as {label}",
                    f"{len(self.findings) - before} finding(s) inside",
                )

        return probe


def status_of(formats: list[str], findings: list[Finding]) -> Status:
    if not findings:
        return Status.CLEAN if formats else Status.DATA
    unsupported = UNSUPPORTED.id
    if any(f.severity > Severity.INFO and f.rule_id != unsupported for f in findings):
        return Status.FINDINGS
    if any(f.rule_id == unsupported for f in findings):
        return Status.UNSUPPORTED
    return Status.CLEAN if formats else Status.DATA


def scan_file(
    path: Path | str, limits: Limits | None = None, display: str | None = None
) -> ScanReport:
    """Scan one file. Raises InputError if it cannot be opened or read."""
    return scan_read(path, limits, display)[0]


def scan_read(
    path: Path | str, limits: Limits | None = None, display: str | None = None
) -> tuple[ScanReport, os.stat_result, bytes | None]:
    """:func:`scan_file`, with the status of the file opened (taken before it was read)
    and, for a file read whole, the very bytes scanned (None: scanned from the file), so
    that a caller can hash what was scanned rather than read the file again."""
    t0 = time.perf_counter()
    ctx, st, data = scan_context(path, limits, display)
    return report_of(ctx, st.st_size, time.perf_counter() - t0), st, data


def scan_context(
    path: Path | str, limits: Limits | None = None, display: str | None = None
) -> tuple[Context, os.stat_result, bytes | None]:
    """The scan of :func:`scan_read` as its :class:`Context` (what a report is made of:
    :func:`report_of`), for a caller that has no use for a report of a file with nothing
    in it (most files of a dataset)."""
    limits = limits or _DEFAULT_LIMITS
    label = display if display is not None else str(path)
    ctx = Context(label, limits, get_policy(limits.extra_allow))
    try:
        # O_NONBLOCK: a FIFO swapped in after the walk is refused below, never a hang
        fd = os.open(path, _OPEN_FLAGS)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InputError(
                    f"{path}: not a regular file (a FIFO or device?); pass a model file"
                )
            size = st.st_size
            # a small file is read once, whole, and scanned from memory: the very bytes
            # every scanner would read from the file, without a system call per read
            data = os.read(fd, size + 1) if size <= WHOLE_MAX and not dispatch.general() else None
            if data is not None and len(data) == size:
                os.close(fd)
                fd = -1
                _scan_top(ctx, FileContent(data), size, label)
            else:  # large (or changing under us: read as before, from the file)
                data = None
                with open(fd, "rb", closefd=False) as f:
                    _scan_top(ctx, f, size, label)
        finally:
            if fd >= 0:
                os.close(fd)
    except OSError as e:
        if name_too_long(e):
            raise too_long(path) from None
        raise InputError(
            f"{path}: cannot read the file ({e.strerror or e}); check the path and permissions"
        ) from None
    return ctx, st, data


def report_of(ctx: Context, size: int, seconds: float = 0.0) -> ScanReport:
    """The report of a file's scan from its context."""
    findings = ctx.findings
    if len(findings) > 1:
        findings.sort(key=lambda x: (-x.severity, x.member, x.offset or 0))
    return ScanReport(
        path=ctx.path,
        size=size,
        formats=tuple(ctx.formats),
        findings=tuple(findings),
        status=status_of(ctx.formats, findings),
        seconds=seconds,
        members_scanned=ctx.members,
    )


def _scan_top(ctx: Context, f: BinaryIO, size: int, label: str) -> None:
    top = FileSource(f, 0, size, "")
    top.path = label  # the name in the artifact (a cache blob's own name is a hash)
    ctx.scan(top, 0)


def iter_files(paths: Iterable[Path]) -> Iterator[tuple[Path, str, str]]:
    """Files under ``paths`` (directories recursively, sorted), with display names and, for
    an entry that is not scanned, why ("" for a file to scan).

    Every directory is walked, ``.git`` ones too: a loader can be pointed at any file. A
    symlink to a directory is not followed (it may lead anywhere, or loop), a dangling link,
    a FIFO, a socket or a device has no file to scan: each is yielded with the reason, so a
    scan reports it rather than count it as nothing. A named root is followed as named. A
    path the system refuses as too long (to stat, to list) is an :class:`InputError`."""
    try:
        yield from _iter_files(paths)
    except OSError as e:
        if not name_too_long(e):
            raise
        raise too_long(e.filename if e.filename is not None else "") from None


def _iter_files(paths: Iterable[Path]) -> Iterator[tuple[Path, str, str]]:
    for root in paths:
        if root.is_dir():
            errors: list[OSError] = []  # directories that cannot be listed: results too
            for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
                yield from _unlisted(errors)
                dirnames.sort()
                links = [n for n in dirnames if (Path(dirpath) / n).is_symlink()]
                for name in sorted([*links, *filenames]):
                    p = Path(dirpath) / name
                    if name in links and name not in filenames:
                        why = (
                            f"a symlink to a directory (to {_link_target(p)}): not followed, so "
                            "the files it leads to were not scanned; replace it with the "
                            "directory, or scan the target itself"
                        )
                        yield p, p.as_posix(), why
                    elif p.is_file():
                        yield p, p.as_posix(), ""
                    else:
                        yield p, p.as_posix(), _not_a_file(p)
            yield from _unlisted(errors)
        elif root.is_file():
            yield root, root.as_posix(), ""
        elif root.exists():
            raise InputError(
                f"{root}: not a regular file or directory (a FIFO or device?); pass a model file"
            )
        else:
            raise InputError(f"{root}: no such file or directory; check the path")


def _unlisted(errors: list[OSError]) -> Iterator[tuple[Path, str, str]]:
    while errors:
        e = errors.pop(0)
        if name_too_long(e):
            raise e  # a path too long to open: refused (iter_files), not a finding
        p = Path(str(e.filename))
        why = f"a directory that cannot be listed ({e.strerror or e}): its files were not scanned"
        yield p, p.as_posix(), why


def _link_target(p: Path) -> str:
    try:
        return repr(os.readlink(p))[:200]
    except OSError as e:
        return f"unreadable: {e.strerror or e}"


def _not_a_file(p: Path) -> str:
    if p.is_symlink() and not p.exists():
        return (
            f"a dangling symlink (to {_link_target(p)}): no file to scan; a loader fails or "
            "reads whatever is created there later"
        )
    return "not a regular file (a FIFO, socket or device): not scanned"


def not_scanned(display: str, why: str) -> ScanReport:
    """The report of a directory entry the scan did not follow: a finding, never nothing."""
    finding = Finding(UNSUPPORTED.id, Severity.HIGH, display, "", None, "directory-entry", why)
    return ScanReport(display, 0, (), (finding,), Status.UNSUPPORTED)


def scan_paths(paths: Iterable[Path], limits: Limits | None = None) -> list[ScanReport]:
    return [
        not_scanned(d, why) if why else scan_file(p, limits, display=d)
        for p, d, why in iter_files(paths)
    ]
