"""A tolerant zip reader of our own: central directory first, local headers checked.

It reads what loaders such as ``torch.load`` read (the central directory,
prefix data allowed, flag bits and CRCs ignored) and reports every place where
another zip reader could see something else: local/central name mismatch,
flag bits, data before or after the archive, overlapping members.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlverify.scan.model import Limits, Severity
from mlverify.scan.rules import RESOURCE_LIMIT, UNSUPPORTED
from mlverify.scan.source import (
    CorruptData,
    DecompressedSource,
    FileSource,
    LimitExceeded,
    Source,
    budget_of,
    codec_available,
)

if TYPE_CHECKING:
    from mlverify.scan.context import ScanContext

EOCD_SIG = b"PK\x05\x06"
Z64_LOC_SIG = b"PK\x06\x07"
Z64_EOCD_SIG = b"PK\x06\x06"
CD_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"


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


@dataclass
class ZipArchive:
    entries: list[ZipEntry] = field(default_factory=list)
    problems: list[ZipProblem] = field(default_factory=list)
    start: int = 0  # where the archive's first local header is


def find_eocd(src: FileSource) -> int | None:
    size = src.size or 0
    n = min(size, 65535 + 22)
    tail = src.read_at(size - n, n)
    i = tail.rfind(EOCD_SIG)
    while i >= 0:
        if i + 22 <= len(tail):
            return size - n + i
        i = tail.rfind(EOCD_SIG, 0, i)
    return None


def _decode(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & 0x800 else "cp437", "replace")


def read_zip(src: FileSource, limits: Limits) -> ZipArchive:
    """Parse the archive; never raises on malformed input (problems are returned)."""
    arc = ZipArchive()
    size = src.size or 0
    eocd = find_eocd(src)
    if eocd is None:
        arc.problems.append(
            ZipProblem("MLV205", Severity.MEDIUM, 0, "", "no end-of-central-directory record")
        )
        _scan_local_headers(src, arc, limits)
        return arc
    rec = src.read_at(eocd, 22)
    (_, _disk, _cd_disk, _n_here, n_total, cd_size, cd_off, comment_len) = struct.unpack(
        "<4sHHHHIIH", rec
    )
    end_of_archive = eocd + 22 + comment_len
    loc = src.read_at(eocd - 20, 20) if eocd >= 20 else b""
    if len(loc) == 20 and loc[:4] == Z64_LOC_SIG:
        z64_off = struct.unpack("<Q", loc[8:16])[0]
        z64 = src.read_at(z64_off, 56)
        if len(z64) != 56 or z64[:4] != Z64_EOCD_SIG:
            # prefix data shifts the zip64 record too: look just before the locator
            z64_off = eocd - 20 - 56
            z64 = src.read_at(z64_off, 56) if z64_off >= 0 else b""
        if len(z64) == 56 and z64[:4] == Z64_EOCD_SIG:
            n_total, cd_size, cd_off = struct.unpack("<QQQ", z64[32:56])
            eocd = z64_off
    if end_of_archive < size:
        arc.problems.append(
            ZipProblem(
                "MLV204",
                Severity.LOW,
                end_of_archive,
                "",
                f"{size - end_of_archive} bytes after the end of the zip archive",
            )
        )
    # data before the archive shifts every offset (self-extracting style, polyglots)
    cd_start = eocd - cd_size
    delta = cd_start - cd_off
    if cd_start < 0 or delta < 0:
        arc.problems.append(
            ZipProblem(
                "MLV205", Severity.MEDIUM, eocd, "", "central directory offsets are out of range"
            )
        )
        _scan_local_headers(src, arc, limits)
        return arc
    if n_total > limits.max_members:
        arc.problems.append(
            ZipProblem("MLV302", Severity.HIGH, eocd, "", f"{n_total} members exceed the limit")
        )
        n_total = limits.max_members
    cd = src.read_at(cd_start, min(cd_size, 64 * 1024 * 1024))
    p = 0
    for _ in range(n_total):
        if p + 46 > len(cd) or cd[p : p + 4] != CD_SIG:
            arc.problems.append(
                ZipProblem(
                    "MLV205", Severity.MEDIUM, cd_start + p, "", "central directory is truncated"
                )
            )
            break
        (flags, method, crc, csize, usize, nlen, xlen, clen, lho) = struct.unpack(
            "<8xHH4xIIIHHH8xI", cd[p : p + 46]
        )
        name = _decode(cd[p + 46 : p + 46 + nlen], flags)
        extra = cd[p + 46 + nlen : p + 46 + nlen + xlen]
        usize, csize, lho = _zip64(extra, usize, csize, lho)
        p += 46 + nlen + xlen + clen
        arc.entries.append(ZipEntry(name, flags, method, csize, usize, crc, lho + delta))
    starts = [e.header_offset for e in arc.entries]
    arc.start = min(starts) if starts else cd_start
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
    return arc


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
    _check_overlaps(arc)


def _check_overlaps(arc: ZipArchive) -> None:
    """Members whose bytes (local header to end of data) overlap an earlier member's.

    Overlapping members are how small zips inflate without bound (one kernel
    shared by many members, nested archives re-read over and over); the first
    member of each overlapping run is scanned, the ones sharing its bytes are a
    finding and are not scanned again.
    """
    spans = sorted(
        (e.header_offset, e.data_offset + max(e.csize, 0), i)
        for i, e in enumerate(arc.entries)
        if e.data_offset >= 0
    )
    end, owner = -1, ""
    for start, stop, i in spans:
        e = arc.entries[i]
        if start < end:
            e.overlaps = owner
            arc.problems.append(
                ZipProblem(
                    "MLV302",
                    Severity.HIGH,
                    e.header_offset,
                    e.name,
                    f"member shares its bytes with {owner!r} (overlapping members, a zip-bomb "
                    "technique): not scanned again",
                )
            )
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
        if e.data_offset < 0 or e.name.endswith("/") or e.overlaps is not None:
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
