"""Tar archives, read by Python's own ``tarfile`` (the parser the loaders use).

``torch.load`` (legacy tar checkpoints), ``pandas.read_pickle`` and
``tarfile`` users accept every header ``tarfile`` accepts: v7 headers without
the ``ustar`` magic, PAX records that override a header's size or name, GNU
long names and sparse members. So the scanner lets ``tarfile`` itself parse
the headers, over a bounded, seekable view of the file (reads are capped, the
archive is never extracted), walks the members lazily within the member
bounds and scans each member's data as ``extractfile`` would hand it out
(sparse members materialised with their holes, bounded by the budget).

torch's legacy tar format stores raw tensor bytes between the pickles of its
``storages`` and ``tensors`` members; they are walked as ``legacy_load`` reads
them: one pickle, the byte count, the raw bytes skipped, the next pickle.
"""

from __future__ import annotations

import posixpath
import struct
import tempfile
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from mlverify._internal.scan import dispatch
from mlverify._internal.scan.archivepath import Member
from mlverify._internal.scan.context import add_by_id
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.pickle import PickleWalker
from mlverify._internal.scan.source import (
    CHUNK,
    FileSource,
    LimitExceeded,
    Source,
    budget_of,
    materialize,
)

if TYPE_CHECKING:
    import tarfile

    from mlverify._internal.scan.context import ScanContext
    from mlverify._internal.scan.pickle import WalkResult

#: bytes ``tarfile`` may read at once (PAX records, GNU long names, sparse maps)
READ_MAX = 64 * 1024 * 1024

#: the element size of each storage class a legacy ``storages`` record may name
#: (``torch._utils._element_size(cls._dtype)``)
_SIZES = {
    "BFloat16": 2, "Bool": 1, "Byte": 1, "Char": 1, "ComplexDouble": 16, "ComplexFloat": 8,
    "Double": 8, "Float": 4, "Half": 2, "Int": 4, "Long": 8, "Short": 2,
}  # fmt: skip
_Q_SIZES = {"QInt32": 4, "QInt8": 1, "QUInt2x4": 1, "QUInt4x2": 1, "QUInt8": 1}
STORAGE_SIZES: dict[str, int] = {
    **{f"torch.{k}Storage": v for k, v in {**_SIZES, **_Q_SIZES}.items()},
    **{f"torch.cuda.{k}Storage": v for k, v in _SIZES.items()},
    "torch.Storage": 4,
}


def is_tar(head: bytes) -> bool:
    """What ``tarfile.open(mode="r:")`` takes for a tar: a first header it can parse."""
    if len(head) < 512 or head[:512] == _ZERO_BLOCK:
        return False  # an all-zero block opens as an empty archive: nothing to scan
    if not _checksum_may_match(head):
        return False  # the cheap test first: most files are not tars (tarfile is imported late)
    import tarfile

    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except (tarfile.HeaderError, ValueError, OverflowError):
        return False
    return True


def _checksum_may_match(block: bytes) -> bool:
    """The header checksum test of ``tarfile.nti``/``calc_chksums``, without ``tarfile``
    (False only where ``TarInfo.frombuf`` would reject the block too)."""
    field = block[148:156]
    if field[0] in (0o200, 0o377):
        return True  # base-256: left to tarfile
    raw = field.split(b"\0", 1)[0]
    if raw.translate(None, _INT8_CHARS) and not dispatch.general():
        return False  # a byte int(x, 8) never takes, after strip() or not: a ValueError below
    try:
        text = raw.decode("ascii")
        want = int(text.strip() or "0", 8)
    except ValueError:
        return False
    if len(block) >= 512 and not dispatch.general():
        # the signed sum is the unsigned one less 256 for each byte of 128 or more
        rest = block[:148] + block[156:512]
        unsigned = 256 + sum(rest)
        signed = unsigned - 256 * (504 - len(rest.translate(None, _HIGH_BYTES)))
        return want in (unsigned, signed)
    unsigned = 256 + sum(block[:148]) + sum(block[156:512])
    signed = (
        256 + sum(struct.unpack_from("148b", block)) + sum(struct.unpack_from("356b", block, 156))
    )
    return want in (unsigned, signed)


_HIGH_BYTES = bytes(range(128, 256))
#: what ``int(text.strip(), 8)`` can be given without a ValueError: octal digits, a sign,
#: the ``0o`` prefix, underscores, and the whitespace ``str.strip``/``int`` remove (ASCII
#: space, tab, line ends, vertical tab, form feed, and the separators 0x1C-0x1F)
_INT8_CHARS = b"01234567_+-oO \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_ZERO_BLOCK = bytes(512)


class _View:
    """A seekable, read-only view of a source for ``tarfile``; single reads are capped."""

    def __init__(self, src: FileSource) -> None:
        self.src = src
        self.pos = 0
        self.capped = False
        self.name = ""

    def read(self, n: int | None = -1) -> bytes:
        size = self.src.size or 0
        if n is None or n < 0:
            n = size - self.pos
        if n > READ_MAX:
            n = READ_MAX
            self.capped = True
        data = self.src.read_at(self.pos, n)
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.src.size or 0}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


#: bytes after the point where ``tarfile`` stops that are searched for more members
TAIL_MAX = 64 * 1024 * 1024


def scan_tar(src: Source, ctx: ScanContext, depth: int) -> None:
    """Scan every member ``tarfile`` reads from ``src``; limits and read errors are findings.

    ``tarfile`` (so torch and pandas) stops at the first zero block or damaged header;
    GNU tar ``-i`` and ``tarfile(ignore_zeros=True)`` read on. Members after that point are
    scanned too (searched up to ``TAIL_MAX`` bytes further) and are a finding.
    """
    import tarfile

    ctx.format("tar")
    fsrc = src if isinstance(src, FileSource) else materialize(src, ctx.limits.max_decompressed)
    view = _View(fsrc)
    try:
        tf = tarfile.open(fileobj=cast(IO[bytes], view), mode="r:")  # noqa: SIM115
    except (tarfile.TarError, ValueError, OSError, EOFError) as e:
        add_by_id(ctx,"MLV205", Severity.MEDIUM, src.label, 0, "tar",
                f"tarfile cannot open the archive ({e}); its members were not scanned")  # fmt: skip
        return
    walk = _Walk(src.label, fsrc, ctx, depth)
    end = walk.run(tf, view, after=False)
    size = fsrc.size or 0
    if end is not None and end < size:
        tail = _View(fsrc.sub(0, min(size, end + TAIL_MAX), src.label))
        tail.seek(end)
        try:
            tf2 = tarfile.open(fileobj=cast(IO[bytes], tail), mode="r:", ignore_zeros=True)  # noqa: SIM115
        except (tarfile.TarError, ValueError, OSError, EOFError):
            tf2 = None
        more = walk.run(tf2, tail, after=True) if tf2 is not None else None
        if more is not None and end + TAIL_MAX < size:
            add_by_id(ctx,"MLV302", Severity.HIGH, src.label, end, "tar",
                    f"{size - end} bytes follow the end of the tar archive: searched for "
                    f"members {TAIL_MAX} bytes far, the rest was not")  # fmt: skip
    from mlverify._internal.scan.archivepath import report_escapes

    report_escapes(ctx, walk.prefix, walk.names, "tar")
    for name, member in walk.legacy:
        walk_legacy(member, name, ctx, depth + 1)


class _Walk:
    """One archive's members, over one or more ``TarFile`` readings."""

    def __init__(self, label: str, fsrc: FileSource, ctx: ScanContext, depth: int) -> None:
        self.label = label
        self.prefix = label + "!" if label else ""
        self.fsrc = fsrc
        self.ctx = ctx
        self.depth = depth
        self.count = 0
        self.budget = budget_of(ctx, fsrc, ctx.limits)
        self.legacy: list[tuple[str, Source]] = []
        self.names: list[Member] = []  # every member's name and link, judged at the end

    def run(self, tf: tarfile.TarFile, view: _View, *, after: bool) -> int | None:
        """Scan the members ``tf`` lists; where it stopped (None: the scan must not go on)."""
        import tarfile

        ctx = self.ctx
        while True:
            at = tf.offset
            try:
                ti = tf.next()
            except (tarfile.TarError, ValueError, OSError, EOFError, OverflowError) as e:
                # loaders list the members first and fail here; a cut archive is only damaged
                if "unexpected end of data" not in str(e) and not after:
                    add_by_id(ctx,"MLV205", Severity.MEDIUM, self.label, at, "tar",
                            f"tarfile cannot read the header at offset {at} ({e}): loaders "
                            "fail here; the members before it were scanned")  # fmt: skip
                return None
            if view.capped:
                add_by_id(ctx,"MLV302", Severity.HIGH, self.label, at, "tar",
                        f"a tar header extension is larger than {READ_MAX} bytes; the rest of "
                        "the archive was not scanned")  # fmt: skip
                return None
            if ti is None:
                return tf.offset
            if not self._member(tf, ti, after):
                return None

    def _member(self, tf: tarfile.TarFile, ti: tarfile.TarInfo, after: bool) -> bool:
        import tarfile

        ctx = self.ctx
        limits = ctx.limits
        self.count += 1
        label = self.prefix + ti.name
        try:
            if self.count > limits.max_members:
                raise LimitExceeded(f"more than {limits.max_members} members (Limits.max_members)")
            if self.budget.exhausted:
                raise LimitExceeded("over budget: the file's work budget is spent")
            self.budget.member()
        except LimitExceeded as x:
            add_by_id(ctx,"MLV302", Severity.HIGH, label, ti.offset, "tar",
                    f"{x}; the rest of the archive was not scanned")  # fmt: skip
            return False
        tf.members = []  # type: ignore[attr-defined]  # scanned as they come: keep no list
        if after:
            add_by_id(ctx,"MLV205", Severity.MEDIUM, label, ti.offset, "tar",
                    "member after the point where tarfile stops (an end-of-archive block or "
                    "a damaged header): torch and pandas do not read it, GNU tar -i and "
                    "tarfile(ignore_zeros=True) do; scanned")  # fmt: skip
        name = posixpath.normpath(ti.name)
        link = "symlink" if ti.issym() else "hardlink" if ti.islnk() else ""
        self.names.append(Member(ti.name, ti.offset, link, ti.linkname if link else None))
        if ti.islnk() or ti.issym():
            if name in ("storages", "tensors", "pickle"):
                add_by_id(ctx,"MLV205", Severity.MEDIUM, label, ti.offset, "tar",
                        f"torch's legacy member {name!r} is a link to {ti.linkname!r}: "
                        "torch.load reads that file instead")  # fmt: skip
            return True
        if not (ti.isreg() or ti.type not in tarfile.SUPPORTED_TYPES):
            return True  # directories, devices, FIFOs: no data a loader reads
        member = _member(tf, ti, self.fsrc, label, ctx)
        if member is not None:
            ctx.scan(member, self.depth + 1)
            if name in ("storages", "tensors"):
                self.legacy.append((name, member))
        return True


def _member(
    tf: tarfile.TarFile, ti: tarfile.TarInfo, fsrc: FileSource, label: str, ctx: ScanContext
) -> Source | None:
    """The member's data as ``extractfile`` hands it out (sparse holes filled, bounded)."""
    import tarfile

    if not ti.issparse():
        return fsrc.sub(ti.offset_data, ti.size, label)
    limits = ctx.limits
    if ti.size > limits.max_decompressed:
        add_by_id(ctx,"MLV302", Severity.HIGH, label, ti.offset, "tar",
                f"sparse member expands to {ti.size} bytes: beyond Limits.max_decompressed; "
                "not scanned")  # fmt: skip
        return None
    budget = budget_of(ctx, fsrc, limits)
    out = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115
    total = 0
    f = tf.extractfile(ti)
    assert f is not None
    try:
        while chunk := f.read(CHUNK):
            budget.inflate(len(chunk))
            out.write(chunk)
            total += len(chunk)
    except (tarfile.TarError, ValueError, OSError, EOFError) as e:
        msg = f"sparse member data cannot be read whole ({e}): the part read is scanned"
        add_by_id(ctx, "MLV205", Severity.MEDIUM, label, ti.offset, "tar", msg)
    out.seek(0)
    return FileSource(cast(BinaryIO, out), 0, total, label)


# -- torch's legacy tar format -----------------------------------------------------------
def walk_one_pickle(src: FileSource, offset: int, ctx: ScanContext, depth: int) -> WalkResult:
    """Walk the one pickle at ``offset`` of ``src`` (findings at file offsets); ``.end``
    is where it ended, relative to ``offset``; ``.pickles`` is 0 if it broke."""
    piece = src.sub(offset, (src.size or 0) - offset, src.label)
    label = src.label

    def emit(rule: str, sev: Severity, off: int, subject: str, msg: str, chain: str) -> None:
        add_by_id(ctx, rule, sev, label, off, subject, msg, chain)

    w = PickleWalker(
        piece.open(),
        ctx.policy,
        ctx.limits,
        emit,
        ctx.nested(piece, depth),
        offset,
        joblib=False,
        max_pickles=1,  # one pickle.load call
    )
    return w.walk()


def walk_legacy(member: Source, name: str, ctx: ScanContext, depth: int) -> None:
    """Walk a legacy ``storages`` or ``tensors`` member as ``torch.serialization.legacy_load``
    reads it: a count, then per record a pickle followed by raw bytes; ``storages`` ends with
    one more pickle (the storage views).

    The count is a value the walker does not keep, so records are told by content: a
    ``storages`` record names its storage class (whose element size sizes the raw bytes);
    a pickle naming none is the storage-views pickle, which must end the member. What
    cannot be sized is "cannot follow": a loader reads on from there.
    """
    if not isinstance(member, FileSource):
        return
    size = member.size or 0
    label = member.label
    pos = index = 0
    while pos < size:
        if index > ctx.limits.max_members:
            add_by_id(ctx,"MLV302", Severity.HIGH, label, pos, "torch-legacy",
                    f"more than {ctx.limits.max_members} records in {name!r}; not followed "
                    "further")  # fmt: skip
            return
        res = walk_one_pickle(member, pos, ctx, depth)
        if not res.pickles or res.cannot_follow:
            return  # the walker reported where the loader stops or what it cannot follow
        end = pos + res.end
        index += 1
        if index == 1:  # the record count
            pos = end
            continue
        if name == "tensors":
            head = member.read_at(end, 4)
            if len(head) < 4:
                return
            ndim = int.from_bytes(head, "little", signed=True)
            if ndim < 0:
                return  # struct.unpack fails: the loader stops here
            pos = end + 4 + 4 + 16 * ndim + 8
            continue
        sizes = {STORAGE_SIZES[n] for n in res.names if n in STORAGE_SIZES}
        if not sizes and end >= size:
            return  # the storage views: the last pickle torch reads from this member
        if len(sizes) != 1 or res.imports != len(res.names):
            why = (
                "names no storage class torch can size, and data follows it"
                if not sizes
                else "names storage classes of different element sizes (or more imports "
                "than the scanner keeps)"
            )
            add_by_id(ctx,"MLV108", Severity.MEDIUM, label, pos, "torch-legacy",
                    f"cannot follow torch's legacy {name!r} member past offset {end}: the "
                    f"record pickle at offset {pos} {why}; torch.load reads on from here, so "
                    "the file cannot be shown safe")  # fmt: skip
            return
        count = member.read_at(end, 8)
        if len(count) < 8:
            return
        n = int.from_bytes(count, "little", signed=True)
        if n < 0:
            return
        pos = end + 8 + n * sizes.pop()
