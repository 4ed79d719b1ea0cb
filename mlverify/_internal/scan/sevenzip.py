"""7z archives: every member is extracted (bounded by the file's budget) and scanned.

``py7zr`` reads the archive from a window of the scanned file, single-threaded;
members go, one after the other, into one spool file (memory up to 32 MiB, then
disk), whose size is charged to the file's :class:`~mlverify._internal.scan.source.Budget`
as it is written. An encrypted archive or member, an unknown coder, or an archive
py7zr cannot parse is "unsupported" (never a pass); members extracted before a
failure are still scanned.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlverify._internal.scan.rules import RESOURCE_LIMIT, UNSUPPORTED
from mlverify._internal.scan.source import (
    Budget,
    FileSource,
    LimitExceeded,
    Source,
    budget_of,
    materialize,
)

if TYPE_CHECKING:
    from mlverify._internal.scan.context import ScanContext

MAGIC = b"7z\xbc\xaf\x27\x1c"


class _Window(io.RawIOBase):
    """A seekable read-only file object over a :class:`FileSource`."""

    def __init__(self, src: FileSource) -> None:
        self._src = src
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._src.read_at(self._pos, len(b))
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._src.size or 0}
        self._pos = max(0, base[whence] + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


class _Spool:
    """Members written one after the other into one spool file, charged to the budget."""

    def __init__(self, budget: Budget) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
        self.budget = budget
        self.members: list[tuple[str, int, int]] = []  # name, offset, length
        self.current: object = None


def _factory(spool: _Spool, base: str) -> Any:
    """Writers into ``spool``; py7zr names each member's output path under ``base`` (an
    empty directory: its checks of names then depend on the names only, not on what
    the current directory holds), and the member is named relative to it."""
    from py7zr.io import Py7zIO, WriterFactory

    class Writer(Py7zIO):
        def __init__(self, name: str) -> None:
            self.index = len(spool.members)
            name = os.path.relpath(name, base) if os.path.isabs(name) else name
            spool.members.append((name, spool.file.tell(), 0))
            spool.current = self

        def write(self, s: bytes | bytearray) -> int:
            if spool.current is not self:
                raise LimitExceeded("7z members were written interleaved; not scanned")
            spool.budget.inflate(len(s))
            spool.file.write(s)
            name, off, n = spool.members[self.index]
            spool.members[self.index] = (name, off, n + len(s))
            return len(s)

        def read(self, size: int | None = None) -> bytes:
            return b""

        def seek(self, offset: int, whence: int = 0) -> int:
            return 0  # py7zr rewinds a member when it closes it; nothing to do

        def flush(self) -> None:
            pass

        def size(self) -> int:
            return spool.members[self.index][2]

    class Factory(WriterFactory):
        def create(self, filename: str) -> Py7zIO:
            return Writer(filename)

    return Factory()


def _step() -> int:
    return STEP


STEP = 4 * 1024 * 1024  # py7zr inflates this much per step (its default: 128 MB)
MAX_HEADER = 32 * 1024 * 1024  # decoded 7z header (py7zr: 256 MiB)
MAX_FILES = 1 << 17  # entries in one archive (py7zr: 8 M, some 200 bytes of memory each)


def _bound_py7zr() -> None:
    """py7zr's own bounds, tightened: a 40 KB archive may not make it hold gigabytes.

    These are module globals of py7zr read when it parses and extracts; they are set to
    the same constants on every scan (thread-safe).
    """
    import py7zr.archiveinfo
    import py7zr.py7zr

    py7zr.py7zr.get_memory_limit = _step  # type: ignore[attr-defined]
    py7zr.archiveinfo.MAX_HEADER_SIZE = MAX_HEADER
    py7zr.archiveinfo.MAX_NUMFILES = MAX_FILES


def scan_7z(src: Source, ctx: ScanContext, depth: int) -> None:
    ctx.format("7z")
    label = src.label

    def unsupported(why: str) -> None:
        ctx.add(UNSUPPORTED, label, 0, "7z", f"7z archive: {why}")

    try:
        import py7zr
        import py7zr.exceptions as x7
    except ImportError:
        unsupported("the py7zr package is not installed; its members were not scanned")
        return
    _bound_py7zr()
    fsrc = src if isinstance(src, FileSource) else materialize(src, ctx.limits.max_decompressed)
    budget = budget_of(ctx, fsrc, ctx.limits)
    spool = _Spool(budget)
    prefix = label + "!" if label else ""
    listed: list[tuple[str, bool]] = []
    try:
        window: Any = _Window(fsrc)
        left = max(budget.max_bytes - budget.inflated, 0)
        with py7zr.SevenZipFile(window, mode="r", max_extract_size=left) as z:
            infos = z.list()
            if len(infos) > ctx.limits.max_members:
                ctx.add(
                    RESOURCE_LIMIT, label, 0, "7z",
                    f"over budget: {len(infos)} members exceed Limits.max_members; not scanned",
                )  # fmt: skip
                return
            for _ in infos:
                budget.member()
            listed = [(f.filename, bool(f.is_symlink)) for f in z.files if not f.is_directory]
            if z.needs_password():
                unsupported("encrypted (needs a password): its members were not scanned")
                return
            with tempfile.TemporaryDirectory(prefix="mlverify-7z-") as base:
                z.extractall(path=Path(base), factory=_factory(spool, base))
    except LimitExceeded as e:
        ctx.add(RESOURCE_LIMIT, label, None, "7z", f"{e}; the rest was not scanned")
    except x7.DecompressionBombError as e:
        ctx.add(RESOURCE_LIMIT, label, None, "7z", f"over budget: {e}")
    except x7.PasswordRequired:
        unsupported("encrypted (needs a password): its members were not scanned")
    except x7.UnsupportedCompressionMethodError as e:
        unsupported(f"compressed with a method the scanner cannot read ({str(e)[:120]})")
    except Exception as e:  # py7zr on hostile input: Bad7zFile, CrcError, struct/index errors
        unsupported(f"cannot be read ({type(e).__name__}: {str(e)[:120]}); not fully scanned")
    try:
        _report_escapes(ctx, prefix, listed, spool)
        for name, off, n in spool.members:
            member = FileSource(spool.file, off, n, prefix + name)  # type: ignore[arg-type]
            ctx.scan(member, depth + 1)
    finally:
        spool.file.close()


#: the longest symlink target read back from a member's data
MAX_TARGET = 4096


def _report_escapes(
    ctx: ScanContext, prefix: str, listed: list[tuple[str, bool]], spool: _Spool
) -> None:
    """Names and symlinks that escape the extraction directory, judged as for zip and
    tar (``archivepath``): 7-Zip and p7zip extract what py7zr refuses. A symlink's
    target is its member's data (None when it was not extracted: it may point anywhere)."""
    from mlverify._internal.scan.archivepath import Member, report_escapes

    data = {name: (off, n) for name, off, n in spool.members}
    members = []
    for name, link in listed:
        target = None
        if link and name.lstrip("/") in data:
            off, n = data[name.lstrip("/")]
            if n <= MAX_TARGET:
                spool.file.seek(off)
                target = spool.file.read(n).decode("utf-8", "replace")
        members.append(Member(name, None, "symlink" if link else "", target))
    report_escapes(ctx, prefix, members, "7z")
