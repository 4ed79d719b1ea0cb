"""A tolerant zip reader of our own: every member any real loader would open.

Loaders read the central directory with different rules: Python's ``zipfile``
(numpy ``.npz``, pandas, joblib) finds it right before the end record (or the
zip64 record right before the locator), shifts every offset by the data
prepended to the archive and reads records until ``size_cd`` bytes are used;
miniz (``torch.load``'s ``PyTorchStreamReader``) reads it at the recorded
offset (the zip64 record at the locator's offset) and reads as many records as
the end record counts. The scanner reads the directory under each reader's
rules and scans the union of the members (deduplicated by local header,
method and size), never skipping one because of its name; where the readers
disagree, or records follow the ones a reader counts, that is a finding. Other
differences are reported too: local/central name mismatch, flag bits, data
before or after the archive, overlapping members.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlverify._internal.scan import dispatch
from mlverify._internal.scan.model import Limits, Severity
from mlverify._internal.scan.rules import RESOURCE_LIMIT, UNSUPPORTED
from mlverify._internal.scan.source import (
    CorruptData,
    DecompressedSource,
    FileSource,
    LimitExceeded,
    Source,
    budget_of,
    codec_available,
)

if TYPE_CHECKING:
    from mlverify._internal.scan.context import ScanContext

EOCD_SIG = b"PK\x05\x06"
Z64_LOC_SIG = b"PK\x06\x07"
Z64_EOCD_SIG = b"PK\x06\x06"
CD_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"

ZIPFILE = "Python's zipfile (numpy.load, pandas, joblib)"
MINIZ = "miniz (torch.load)"
#: how far from the end each reader looks for the end record (zipfile: a 64 KiB comment;
#: miniz scans 4 KiB blocks backwards until it passed 64 KiB + 22 bytes: 16 blocks more)
_ZIPFILE_WINDOW = (1 << 16) + 22
_MINIZ_WINDOW = 4096 + 16 * 4093
_CD_READ_MAX = 64 * 1024 * 1024  # bytes of central directory read per reader


@dataclass
class ZipProblem:
    rule: str
    severity: Severity
    offset: int
    member: str
    message: str


@dataclass
class ZipEntry:
    name: str
    flags: int
    method: int
    csize: int
    usize: int
    crc: int
    header_offset: int  # of the local header, in file coordinates
    data_offset: int = -1
    local_name: str | None = None
    overlaps: str | None = None  # an earlier member whose bytes this one shares
    readers: set[str] = field(default_factory=set)  # the readers that open this member
    unix_mode: int = 0  # recorded by a Unix host (0: none); unzip restores symlinks by it

    @property
    def is_symlink(self) -> bool:
        return self.unix_mode & 0o170000 == 0o120000


@dataclass
class ZipArchive:
    entries: list[ZipEntry] = field(default_factory=list)
    problems: list[ZipProblem] = field(default_factory=list)
    start: int = 0  # where the archive's first local header is


@dataclass
class _Dir:
    """Where one reader finds the central directory, and how it reads it."""

    reader: str
    eocd: int  # the end record's offset
    start: int  # of the first central directory record
    size: int  # central directory bytes (zipfile reads records until they are used up)
    count: int  # records (miniz reads this many)
    delta: int  # added to every local header offset (zipfile: data prepended to the archive)
    end: int  # end of the archive (end record and its comment)


def _last_sig(src: FileSource, window: int) -> int | None:
    """The last end record signature with a whole record after it, in the last ``window``."""
    size = src.size or 0
    start = max(0, size - window)
    tail = src.read_at(start, size - start)
    if b"\x05" not in tail and not dispatch.general():
        return None  # no byte of the signature's rarest kind: no signature (a cheap search)
    i = tail.rfind(EOCD_SIG, 0, max(0, len(tail) - 18))
    return start + i if i >= 0 else None


def find_eocd(src: FileSource) -> int | None:
    """An end record some reader uses (miniz looks furthest back)."""
    return _last_sig(src, _MINIZ_WINDOW)


def _eocd_fields(src: FileSource, at: int) -> tuple[int, int, int, int, int, int]:
    """(entries on this disk, total entries, cd size, cd offset, comment length, disks)"""
    (_, disk, cd_disk, n_here, n_total, cd_size, cd_off, clen) = struct.unpack(
        "<4sHHHHIIH", src.read_at(at, 22)
    )
    return n_here, n_total, cd_size, cd_off, clen, disk | cd_disk


def _zipfile_dir(src: FileSource) -> _Dir | None:
    """``zipfile._EndRecData`` and ``_RealGetContents`` (CPython 3.11)."""
    size = src.size or 0
    if size < 22:
        return None
    eocd: int | None = size - 22
    last = src.read_at(size - 22, 22)
    if not (last[:4] == EOCD_SIG and last[-2:] == b"\0\0"):
        start = max(size - _ZIPFILE_WINDOW, 0)
        tail = src.read_at(start, size - start)
        i = tail.rfind(EOCD_SIG)
        eocd = start + i if i >= 0 and len(tail) - i >= 22 else None
    if eocd is None:
        return None
    _n_here, count, cd_size, cd_off, clen, _ = _eocd_fields(src, eocd)
    concat = eocd - cd_size - cd_off
    loc = src.read_at(eocd - 20, 20) if eocd >= 20 else b""
    if len(loc) == 20 and loc[:4] == Z64_LOC_SIG and eocd >= 76:
        z64 = src.read_at(eocd - 76, 56)  # zipfile: the record right before the locator
        if z64[:4] == Z64_EOCD_SIG:
            count, cd_size, cd_off = struct.unpack("<QQQ", z64[32:56])
            concat = eocd - cd_size - cd_off - 76
    return _Dir(ZIPFILE, eocd, cd_off + concat, cd_size, count, concat, eocd + 22 + clen)


def _miniz_dir(src: FileSource) -> _Dir | None:
    """``mz_zip_reader_read_central_dir`` (miniz 3, as torch's ``PyTorchStreamReader``)."""
    size = src.size or 0
    eocd = _last_sig(src, _MINIZ_WINDOW)
    if eocd is None:
        return None
    _n_here, count, cd_size, cd_off, clen, _ = _eocd_fields(src, eocd)
    if eocd >= 76:
        loc = src.read_at(eocd - 20, 20)
        if loc[:4] == Z64_LOC_SIG:
            z64_off = struct.unpack("<Q", loc[8:16])[0]
            if z64_off > size - 56:
                return None  # miniz: not an archive
            z64 = src.read_at(z64_off, 56)
            if z64[:4] == Z64_EOCD_SIG:  # miniz: the record the locator names
                count, cd_size, cd_off = struct.unpack("<QQQ", z64[32:56])
    return _Dir(MINIZ, eocd, cd_off, cd_size, count, 0, eocd + 22 + clen)


def _decode(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & 0x800 else "cp437", "replace")


class _Window:
    """Central directory bytes from ``start``, read as they are needed (at most 64 MiB)."""

    def __init__(self, src: FileSource, start: int) -> None:
        self.src = src
        self.start = start
        self.data = bytearray()
        self.done = False

    def get(self, p: int, n: int) -> bytes:
        while p + n > len(self.data) and not self.done and len(self.data) < _CD_READ_MAX:
            want = min(max(p + n - len(self.data), 1 << 20), _CD_READ_MAX - len(self.data))
            chunk = self.src.read_at(self.start + len(self.data), want)
            self.data += chunk
            self.done = len(chunk) < want
        return bytes(self.data[p : p + n])


def _read_dir(
    src: FileSource, d: _Dir, limits: Limits, arc: ZipArchive, failures: list[ZipProblem]
) -> tuple[list[ZipEntry], bool]:
    """The records ``d.reader`` reads, then any valid records right after them.

    zipfile reads records until ``size`` bytes are used, miniz reads ``count``
    records; both rules are followed here (so records one reader skips are
    still scanned) and records beyond the reader's own rule are a finding.
    """
    size = src.size or 0
    out: list[ZipEntry] = []
    if d.start < 0 or d.start >= size:
        if d.count or d.size:
            failures.append(
                ZipProblem(
                    "MLV205",
                    Severity.MEDIUM,
                    d.eocd,
                    "",
                    f"central directory offsets are out of range (as {d.reader} reads them)",
                )
            )
            return out, False
        return out, True
    w = _Window(src, d.start)
    p = i = extra = 0
    while p < d.size or i < d.count:
        own = p < d.size if d.reader == ZIPFILE else i < d.count
        rec = w.get(p, 46)
        if len(rec) < 46 or rec[:4] != CD_SIG:
            if own:
                failures.append(
                    ZipProblem(
                        "MLV205",
                        Severity.MEDIUM,
                        d.start + p,
                        "",
                        f"central directory is truncated (as {d.reader} reads it)",
                    )
                )
                return out, False
            break
        if len(out) >= limits.max_members:
            arc.problems.append(
                ZipProblem(
                    "MLV302",
                    Severity.HIGH,
                    d.start + p,
                    "",
                    f"more than {limits.max_members} members (Limits.max_members): "
                    "the rest of the archive was not scanned",
                )
            )
            break
        (made_by, flags, method, crc, csize, usize, nlen, xlen, clen, external, lho) = (
            struct.unpack("<4xH2xHH4xIIIHHH4xII", rec)
        )
        name = _decode(w.get(p + 46, nlen), flags)
        usize, csize, lho = _zip64(w.get(p + 46 + nlen, xlen), usize, csize, lho)
        p += 46 + nlen + xlen + clen
        i += 1
        extra += not own
        e = ZipEntry(name, flags, method, csize, usize, crc, lho + d.delta)
        if made_by >> 8 == 3:  # a Unix host: the mode is the external attributes' high half
            e.unix_mode = external >> 16
        e.readers.add(d.reader)
        out.append(e)
    if extra:
        rule = "its recorded size" if d.reader == ZIPFILE else "the count in the end record"
        arc.problems.append(
            ZipProblem(
                "MLV205",
                Severity.MEDIUM,
                d.start,
                "",
                f"{extra} central directory record(s) follow {rule}: {d.reader} does not read "
                "them, other zip readers do; scanned",
            )
        )
    return out, True


def read_zip(src: FileSource, limits: Limits) -> ZipArchive:
    """Parse the archive as each reader does; never raises on malformed input.

    ``entries`` is the union of the members the readers open (deduplicated by
    local header offset, method and compressed size); problems are returned.
    """
    arc = ZipArchive()
    size = src.size or 0
    dirs = [d for d in (_zipfile_dir(src), _miniz_dir(src)) if d is not None]
    if not dirs:
        arc.problems.append(
            ZipProblem("MLV205", Severity.MEDIUM, 0, "", "no end-of-central-directory record")
        )
        _scan_local_headers(src, arc, limits)
        _check_locals(src, arc, size)
        _check_overlaps(arc.entries, arc.problems)
        return arc
    seen: dict[tuple[int, int, int], ZipEntry] = {}
    views: dict[str, list[ZipEntry]] = {}  # the members of each reader that opens the archive
    failures: list[ZipProblem] = []
    read: list[list[ZipEntry]] = []  # the members of each reader, opening or failing
    for d in dirs:
        if d.end < size:
            arc.problems.append(
                ZipProblem(
                    "MLV204",
                    Severity.LOW,
                    d.end,
                    "",
                    f"{size - d.end} bytes after the end of the zip archive",
                )
            )
        view: list[ZipEntry] = []
        in_view: set[tuple[int, int, int]] = set()
        records, ok = _read_dir(src, d, limits, arc, failures)
        read.append(view)
        if ok:
            views[d.reader] = view
        for e in records:
            key = (e.header_offset, e.method, e.csize)
            if key in in_view:  # a second record of the same member: its bytes are shared
                arc.problems.append(_shared(e, seen[key].name))
                continue
            in_view.add(key)
            if key in seen:
                seen[key].readers.add(d.reader)
                e = seen[key]
            else:
                seen[key] = e
                arc.entries.append(e)
            view.append(e)
    _disagreement(views, arc)
    if not views:  # no reader opens the archive
        arc.problems.extend(failures)
    if not arc.entries:
        _scan_local_headers(src, arc, limits)
        read = [arc.entries]
    starts = [e.header_offset for e in arc.entries]
    arc.start = min(starts) if starts else min(max(d.start, 0) for d in dirs)
    if arc.start > 0:
        arc.problems.append(
            ZipProblem(
                "MLV204",
                Severity.LOW,
                0,
                "",
                f"{arc.start} bytes of other data before the first zip member",
            )
        )
    _check_locals(src, arc, size)
    for view in read:
        _check_overlaps(view, arc.problems)
    return arc


def _disagreement(views: dict[str, list[ZipEntry]], arc: ZipArchive) -> None:
    if len(views) < 2:
        return
    (ra, va), (rb, vb) = list(views.items())[:2]
    ia, ib = {id(e) for e in va}, {id(e) for e in vb}
    only = [e for e in arc.entries if (id(e) in ia) != (id(e) in ib)]
    if only:
        names = ", ".join(repr(e.name) for e in only[:3]) + (", ..." if len(only) > 3 else "")
        arc.problems.append(
            ZipProblem(
                "MLV205",
                Severity.MEDIUM,
                only[0].header_offset,
                "",
                f"zip readers disagree on the members: {ra} opens {len(va)}, {rb} opens "
                f"{len(vb)}; {len(only)} only one of them opens ({names}): all are scanned",
            )
        )


def _zip64(extra: bytes, usize: int, csize: int, lho: int) -> tuple[int, int, int]:
    i = 0
    while i + 4 <= len(extra):
        tag, ln = struct.unpack("<HH", extra[i : i + 4])
        body = extra[i + 4 : i + 4 + ln]
        if tag == 1:
            j = 0
            if usize == 0xFFFFFFFF and j + 8 <= len(body):
                usize = struct.unpack("<Q", body[j : j + 8])[0]
                j += 8
            if csize == 0xFFFFFFFF and j + 8 <= len(body):
                csize = struct.unpack("<Q", body[j : j + 8])[0]
                j += 8
            if lho == 0xFFFFFFFF and j + 8 <= len(body):
                lho = struct.unpack("<Q", body[j : j + 8])[0]
            break
        i += 4 + ln
    return usize, csize, lho


def _check_locals(src: FileSource, arc: ZipArchive, size: int) -> None:
    for e in arc.entries:
        hdr = src.read_at(e.header_offset, 30)
        if len(hdr) < 30 or hdr[:4] != LOCAL_SIG:
            arc.problems.append(
                ZipProblem(
                    "MLV205", Severity.MEDIUM, e.header_offset, e.name, "local header missing"
                )
            )
            continue
        lflags, _lmethod = struct.unpack("<HH", hdr[6:10])
        nlen, xlen = struct.unpack("<HH", hdr[26:30])
        lname = _decode(src.read_at(e.header_offset + 30, nlen), lflags)
        e.local_name = lname
        e.data_offset = e.header_offset + 30 + nlen + xlen
        if lname != e.name:
            arc.problems.append(
                ZipProblem(
                    "MLV203",
                    Severity.MEDIUM,
                    e.header_offset,
                    e.name,
                    f"local header names {lname!r}, central directory names {e.name!r}",
                )
            )
        if (e.flags | lflags) & 0x61:
            bits = []
            if (e.flags | lflags) & 0x1:
                bits.append("encrypted (0x1)")
            if (e.flags | lflags) & 0x20:
                bits.append("patched data (0x20)")
            if (e.flags | lflags) & 0x40:
                bits.append("strong encryption (0x40)")
            arc.problems.append(
                ZipProblem(
                    "MLV201",
                    Severity.LOW,
                    e.header_offset,
                    e.name,
                    "flag bits set: "
                    + ", ".join(bits)
                    + "; read as stored data like torch.load does",
                )
            )
        if e.data_offset + e.csize > size:
            arc.problems.append(
                ZipProblem(
                    "MLV205",
                    Severity.MEDIUM,
                    e.header_offset,
                    e.name,
                    "member data runs past end of file",
                )
            )


def _shared(e: ZipEntry, owner: str) -> ZipProblem:
    return ZipProblem(
        "MLV302",
        Severity.HIGH,
        e.header_offset,
        e.name,
        f"member shares its bytes with {owner!r} (overlapping members, a zip-bomb "
        "technique): not scanned again",
    )


def _check_overlaps(entries: list[ZipEntry], problems: list[ZipProblem]) -> None:
    """Members whose bytes (local header to end of data) overlap an earlier member's.

    Overlapping members are how small zips inflate without bound (one kernel
    shared by many members, nested archives re-read over and over); the first
    member of each overlapping run is scanned, the ones sharing its bytes are a
    finding and are not scanned again.
    """
    spans = sorted(
        (e.header_offset, e.data_offset + max(e.csize, 0), i)
        for i, e in enumerate(entries)
        if e.data_offset >= 0
    )
    end, owner = -1, ""
    for start, stop, i in spans:
        e = entries[i]
        if start < end and e.overlaps is None:
            e.overlaps = owner
            problems.append(_shared(e, owner))
        if stop > end:
            end, owner = stop, e.name


def _scan_local_headers(src: FileSource, arc: ZipArchive, limits: Limits) -> None:
    """No usable central directory: walk local headers front to back."""
    size = src.size or 0
    off = 0
    head = src.read_at(0, 4)
    if head != LOCAL_SIG:
        return
    while off + 30 <= size and len(arc.entries) < limits.max_members:
        hdr = src.read_at(off, 30)
        if hdr[:4] != LOCAL_SIG:
            break
        flags, method = struct.unpack("<HH", hdr[6:10])
        crc, csize, usize, nlen, xlen = struct.unpack("<IIIHH", hdr[14:30])
        name = _decode(src.read_at(off + 30, nlen), flags)
        extra = src.read_at(off + 30 + nlen, xlen)
        usize, csize, _ = _zip64(extra, usize, csize, 0)
        e = ZipEntry(name, flags, method, csize, usize, crc, off, off + 30 + nlen + xlen, name)
        if flags & 0x8 and csize == 0:
            arc.problems.append(
                ZipProblem(
                    "MLV301", Severity.MEDIUM, off, name, "member size is only in a data descriptor"
                )
            )
            break
        arc.entries.append(e)
        off = e.data_offset + csize


#: zip compression methods the scanner reads (what zipfile, torch.load and numpy read)
METHODS = {8: "deflate", 12: "bz2", 14: "zip-lzma", 93: "zstd"}


def member_sources(
    fsrc: FileSource, arc: ZipArchive, ctx: ScanContext, prefix: str
) -> Iterator[tuple[ZipEntry, Source]]:
    """Each member to scan, with its (decompressing) source; limits are findings.

    Members that overlap an earlier one are skipped (``read_zip`` reported
    them); every member and every inflated byte is charged to the file's budget.
    """
    limits = ctx.limits
    budget = budget_of(ctx, fsrc, limits)
    total = 0
    for e in arc.entries:
        if e.data_offset < 0 or e.overlaps is not None:  # a name ending in "/" is read too
            continue
        label = prefix + e.name
        try:
            if budget.exhausted:
                raise LimitExceeded("over budget: the file's work budget is spent")
            budget.member()
        except LimitExceeded as x:
            ctx.add(
                RESOURCE_LIMIT, label, e.header_offset, "zip",
                f"{x}; the rest of the archive was not scanned",
            )  # fmt: skip
            return
        if e.usize > limits.max_decompressed or (
            e.csize and e.usize > limits.ratio_floor and e.usize > limits.max_ratio * e.csize
        ):
            ctx.add(
                RESOURCE_LIMIT, label, e.header_offset, "zip",
                f"member inflates {e.csize} -> {e.usize} bytes: beyond the bomb limits; "
                "the rest of the archive was not scanned",
            )  # fmt: skip
            return
        total += e.usize
        if total > limits.max_decompressed:
            ctx.add(
                RESOURCE_LIMIT, label, e.header_offset, "zip",
                "archive inflates beyond the configured total; the rest was not scanned",
            )  # fmt: skip
            return
        raw = fsrc.sub(e.data_offset, e.csize, label)
        codec = METHODS.get(e.method)
        if e.method == 0:
            yield e, raw
        elif codec is not None and codec_available(codec):
            member = DecompressedSource(raw, codec, label, limits, budget)
            try:
                member.head(4096)
            except CorruptData as x:
                ctx.add(
                    UNSUPPORTED, label, e.header_offset, "zip",
                    f"member data cannot be decompressed ({x}): not scanned",
                )  # fmt: skip
                continue
            yield e, member
        else:
            ctx.add(
                UNSUPPORTED, label, e.header_offset, "zip",
                f"member compressed with method {e.method}, which the scanner cannot read",
            )  # fmt: skip
