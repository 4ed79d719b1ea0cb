"""Byte sources: windows over a file, decompressed streams, in-memory bytes.

Scanners never load a whole file: they read small heads, seek past data, and
stream compressed content through bounded decompressors. Every compressed
stream is read to its end across all its members/frames (as ``gzip.open``,
``bz2.open``, ``lzma.open``, ``lz4.frame.open`` and ``zstd`` readers do), and
every byte inflated is charged to one :class:`Budget` per scanned artifact.
"""

from __future__ import annotations

import io
import weakref
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, Protocol

from mlverify._internal.scan.model import Limits
from mlverify._internal.scan.rules import UNSUPPORTED

if TYPE_CHECKING:
    from mlverify._internal.scan.context import ScanContext

CHUNK = 1 << 20
#: compressed bytes given to an inflater at a time (a failure is replayed byte by byte)
FEED = 1 << 16
OUT = 1 << 16  # decompressed bytes made per inflater call


class LimitExceeded(Exception):
    """A safety bound was hit (decompression bomb, depth, size, work budget)."""


class CorruptData(ValueError):
    """Compressed data that cannot be decompressed."""


class Stream(Protocol):
    """A forward reader: what the pickle walker needs."""

    seekable: bool

    def read(self, n: int) -> bytes: ...

    def skip(self, n: int) -> int: ...

    def tell(self) -> int: ...


class WindowStream:
    """Reads ``[base, base + length)`` of a shared seekable file object."""

    seekable = True

    def __init__(self, f: BinaryIO, base: int, length: int) -> None:
        self._f = f
        self._base = base
        self._len = length
        self._pos = 0

    def read(self, n: int) -> bytes:
        n = min(n, self._len - self._pos)
        if n <= 0:
            return b""
        self._f.seek(self._base + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data

    def skip(self, n: int) -> int:
        n = max(0, min(n, self._len - self._pos))
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos


class Source:
    """Something to scan: a file, a member of a container, a nested value."""

    seekable = False
    size: int | None = None
    path = ""  # the scanned file as named in its artifact, on its top-level source only

    def __init__(self, label: str) -> None:
        self.label = label  # member path ("" for the file itself)
        #: what detectors parsed of this (immutable) content, shared between them
        self.memo: dict[object, object] = {}

    def open(self) -> Stream:
        raise NotImplementedError

    def head(self, n: int = 4096) -> bytes:
        return self.open().read(n)

    def read_at(self, offset: int, n: int) -> bytes:
        raise NotImplementedError

    def sub(self, offset: int, length: int, label: str) -> Source:
        raise NotImplementedError


class FileSource(Source):
    """A window of a seekable file object."""

    seekable = True

    def __init__(self, f: BinaryIO, base: int, length: int, label: str) -> None:
        super().__init__(label)
        self.f = f
        self.base = base
        self.size = length

    def open(self) -> WindowStream:
        assert self.size is not None
        return WindowStream(self.f, self.base, self.size)

    def read_at(self, offset: int, n: int) -> bytes:
        assert self.size is not None
        n = min(n, self.size - offset)
        if n <= 0 or offset < 0:
            return b""
        self.f.seek(self.base + offset)
        return self.f.read(n)

    def head(self, n: int = 4096) -> bytes:
        return self.read_at(0, n)

    def sub(self, offset: int, length: int, label: str) -> FileSource:
        assert self.size is not None
        offset = max(0, min(offset, self.size))
        length = max(0, min(length, self.size - offset))
        return FileSource(self.f, self.base + offset, length, label)


class FileContent(io.BytesIO):
    """The whole content of a scanned file, read once into memory: the file itself to the
    scanners (as a file object on disk is, see :func:`budget_of`)."""


def bytes_source(data: bytes, label: str) -> FileSource:
    return FileSource(io.BytesIO(data), 0, len(data), label)


# -- the per-artifact work budget ----------------------------------------------------
class Budget:
    """What one artifact may cost: inflated bytes (relative to its size) and members.

    Shared by every container nested in the artifact, so a bomb cannot multiply
    its cost through nesting or overlapping members: the total of all streams
    is at most ``max(ratio_floor, max_ratio * input size)`` bytes (and
    ``max_total_decompressed``), and at most ``max_total_members`` container
    members are scanned.
    """

    def __init__(self, limits: Limits, input_size: int) -> None:
        self._limits = limits
        self.max_members = limits.max_total_members
        self.inflated = 0
        self.members = 0
        self.input_size = 0
        self.max_bytes = 0
        self.grow(input_size)

    def grow(self, input_size: int) -> None:
        """A larger base: the scanned file itself, met after a value copied out of it."""
        if input_size > self.input_size:
            self.input_size = input_size
            self.max_bytes = min(
                self._limits.max_total_decompressed,
                max(self._limits.ratio_floor, self._limits.max_ratio * input_size),
            )

    @property
    def exhausted(self) -> bool:
        return self.inflated > self.max_bytes or self.members > self.max_members

    def inflate(self, n: int) -> None:
        self.inflated += n
        if self.inflated > self.max_bytes:
            raise LimitExceeded(
                f"over budget: more than {self.max_bytes} bytes decompressed in all from this "
                f"{self.input_size}-byte file (Limits.max_ratio x its size, at least "
                "Limits.ratio_floor)"
            )

    def member(self) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise LimitExceeded(
                f"over budget: more than {self.max_members} container members in one file "
                "(Limits.max_total_members)"
            )


_BUDGETS: weakref.WeakKeyDictionary[object, Budget] = weakref.WeakKeyDictionary()


def _file_size(src: Source) -> tuple[int, bool]:
    """The size of the file object under ``src``, and whether it is a file on disk.

    Content the scanner made (inflated streams, values copied out of a pickle, 7z
    members) lives in memory or spooled temporary files, never in a plain file
    object: only the scanned file itself is one.
    """
    while isinstance(src, DecompressedSource):
        src = src.compressed
    if isinstance(src, FileSource):
        on_disk = isinstance(src.f, (io.BufferedReader, io.FileIO, FileContent))
        try:
            return max(src.f.seek(0, io.SEEK_END), src.size or 0), on_disk
        except (OSError, ValueError):
            return src.size or 0, on_disk
    return src.size or 0, False


def budget_of(ctx: object, src: Source, limits: Limits) -> Budget:
    """The budget of the artifact being scanned by ``ctx`` (created on first use).

    Its base is the size of the scanned file; until a source in that file is met
    (a scan that starts inside a value the pickle walker copied out), the size of
    the copy, which is smaller.
    """
    size, on_disk = _file_size(src)
    b = _BUDGETS.get(ctx)
    if b is None:
        b = _BUDGETS[ctx] = Budget(limits, size)
    elif on_disk:
        b.grow(size)
    return b


# -- decompressors ---------------------------------------------------------------------
class Inflater(Protocol):
    """One compressed stream (``bz2.BZ2Decompressor``'s interface)."""

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Deflate:
    """A raw deflate stream (zip method 8). Asked for one byte, it is fed one byte at a time,
    so it cannot look ahead into data that fails (and discard the byte before the failure)."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(-15)
        self._tail = b""  # input not yet consumed: self._tail[self._at:]
        self._at = 0

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def needs_input(self) -> bool:
        return self._at >= len(self._tail)

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data + self._tail[self._at :] if self._d.eof else b""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if data:
            self._tail = self._tail[self._at :] + data if self._at < len(self._tail) else data
            self._at = 0
        if max_length != 1:
            out = self._d.decompress(self._tail[self._at :], max(max_length, 0))
            self._tail, self._at = (b"" if self._d.eof else self._d.unconsumed_tail), 0
            return out
        out = b""
        while not out and not self._d.eof:
            piece = self._tail[self._at : self._at + 1]
            out = self._d.decompress(piece, 1)
            used = len(piece) - len(self._d.unconsumed_tail)
            self._at += used
            if not out and not used:
                break
        return out


class _Wrapped:
    """A gzip member or zlib stream: header, raw deflate, trailer; checksums are not checked.

    ``gzip.open`` and joblib's zlib reader check the CRC only after handing out
    the data, so a pickle in a member with a wrong checksum still runs: the
    content is what the deflate data holds, whatever the trailer says.
    """

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._hdr = b""
        self._d: _Deflate | None = None
        self._tail = b""  # bytes after the deflate data: trailer, then the next stream

    def _header_length(self) -> int | None:
        h = self._hdr
        if not self._gzip:
            if len(h) >= 2 and (h[0] & 0x0F != 8 or h[1] & 0x20):
                raise CorruptData("not a zlib stream (method or preset dictionary)")
            return 2 if len(h) >= 2 else None
        if len(h) < 10:
            return None
        if h[:3] != b"\x1f\x8b\x08":
            raise CorruptData("not a gzip member (magic or method)")
        flags, pos = h[3], 10
        if flags & 4:  # FEXTRA
            if len(h) < pos + 2:
                return None
            pos += 2 + int.from_bytes(h[pos : pos + 2], "little")
        for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
            if flags & bit:
                end = h.find(b"\0", pos)
                if end < 0:
                    return None
                pos = end + 1
        if flags & 2:  # FHCRC
            pos += 2
        return pos if len(h) >= pos else None

    @property
    def eof(self) -> bool:
        return self._d is not None and self._d.eof and len(self._tail) >= self._trailer

    @property
    def _trailer(self) -> int:
        return 8 if self._gzip else 4

    @property
    def needs_input(self) -> bool:
        return self._d is None or self._d.needs_input

    @property
    def unused_data(self) -> bytes:
        return self._tail[self._trailer :]

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self._d is None:
            self._hdr += data
            n = self._header_length()
            if n is None:
                if len(self._hdr) > 1 << 20:
                    raise CorruptData("gzip header longer than 1 MiB")
                return b""
            self._d = _Deflate()
            data, self._hdr = self._hdr[n:], b""
        if self._d.eof:
            self._tail += data
            return b""
        out = self._d.decompress(data, max_length)
        if self._d.eof:
            self._tail += self._d.unused_data
        return out


ZSTD_SLICE = 512  # zstd inflates at most ~32 KiB per input byte: <= 16 MiB per call
ZSTD_MAX_WINDOW = 1 << 27  # the library default (128 MiB); larger windows are refused


class _Zstd:
    """A zstd frame; the library has no output bound per call, so input goes in slices."""

    def __init__(self) -> None:
        import zstandard

        self._d = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj()
        self._in = bytearray()
        self._out = bytearray()
        self._unused = b""

    @property
    def eof(self) -> bool:
        return bool(self._d.eof) and not self._out

    @property
    def needs_input(self) -> bool:
        return not self._in and not self._out

    @property
    def unused_data(self) -> bytes:
        return self._unused

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        self._in += data
        step = min(ZSTD_SLICE, max(max_length, 1))  # small outputs asked: small slices fed
        while self._in and len(self._out) < max_length and not self._d.eof:
            piece = bytes(self._in[:step])
            del self._in[:step]
            self._out += self._d.decompress(piece)
            if self._d.eof:
                self._unused = self._d.unused_data + bytes(self._in)
                self._in.clear()
        out = bytes(self._out[:max_length])
        del self._out[:max_length]
        return out


class _ZipLzma:
    """Zip method 14: version (2 bytes), properties size (2), LZMA properties, raw LZMA1."""

    def __init__(self) -> None:
        self._hdr = b""
        self._d: Inflater | None = None

    @property
    def eof(self) -> bool:
        return self._d is not None and self._d.eof

    @property
    def needs_input(self) -> bool:
        return self._d is None or self._d.needs_input

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data if self._d is not None else b""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self._d is None:
            import lzma

            self._hdr += data
            psize = int.from_bytes(self._hdr[2:4], "little")
            if len(self._hdr) < 4 + psize:
                return b""
            props = lzma._decode_filter_properties(  # type: ignore[attr-defined]
                lzma.FILTER_LZMA1, self._hdr[4 : 4 + psize]
            )
            self._d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[props])
            data, self._hdr = self._hdr[4 + psize :], b""
        return self._d.decompress(data, max_length)


def _lz4() -> Inflater:
    import lz4.frame

    return lz4.frame.LZ4FrameDecompressor()  # type: ignore[no-any-return]


def _bz2() -> Inflater:
    import bz2

    return bz2.BZ2Decompressor()


def _lzma(fmt: int) -> Callable[[], Inflater]:
    def make() -> Inflater:
        import lzma

        return lzma.LZMADecompressor(format=fmt)

    return make


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
LZ4_MAGIC = b"\x04\x22\x4d\x18"


def _is_skippable(b: bytes) -> bool:
    """A zstd / lz4 skippable frame (magic 0x184D2A50-0x184D2A5F)."""
    return len(b) >= 4 and b[0] & 0xF0 == 0x50 and b[1:4] == b"\x2a\x4d\x18"


class Codec:
    """How to read one kind of compressed stream, member after member."""

    def __init__(
        self,
        name: str,
        make: Callable[[bytes], Inflater | None],
        multi: bool = True,
        padding: bool = False,
    ) -> None:
        self.name = name
        self.make = make  # a fresh inflater for a stream starting with these bytes
        self.multi = multi  # read further streams after the first (all readers do)
        self.padding = padding  # zero bytes between streams are skipped (gzip, xz)


def _always(f: Callable[[], Inflater]) -> Callable[[bytes], Inflater | None]:
    return lambda _head: f()


def _frame(head: bytes) -> Inflater | None:
    """zstd and lz4 frames, which share skippable frames, in any order."""
    if head[:4] == ZSTD_MAGIC:
        return _Zstd()
    if head[:4] == LZ4_MAGIC or _is_skippable(head):
        return _lz4()
    return None


CODECS: dict[str, Codec] = {
    "zlib": Codec("zlib", _always(lambda: _Wrapped(gzip=False))),
    "gzip": Codec("gzip", _always(lambda: _Wrapped(gzip=True)), padding=True),
    "deflate": Codec("deflate", _always(_Deflate), multi=False),
    "bz2": Codec("bz2", _always(_bz2)),
    "xz": Codec("xz", _always(_lzma(1)), padding=True),  # lzma.FORMAT_XZ
    "lzma": Codec("lzma", _always(_lzma(2))),  # lzma.FORMAT_ALONE
    "zstd": Codec("zstd", _frame),
    "lz4": Codec("lz4", _frame),
    "zf": Codec(
        "zf", _always(lambda: _Wrapped(gzip=False)), multi=False
    ),  # joblib < 0.10 "ZF" files
    "zip-lzma": Codec("zip-lzma", _always(_ZipLzma), multi=False),
}


class _Decompressed:
    """A bounded decompressing reader over all streams of a compressed source.

    Output is made in calls of at most 64 KiB. An inflater that fails (bad data,
    a checksum) discards the output of the failing call, while a loader reading
    a few bytes at a time would have had those bytes first (and may have run a
    pickle in them): so on the first failure the input is decoded again from its
    start, one byte per call from where the failing call began, and everything
    before the failure is handed out.
    """

    seekable = False

    def __init__(
        self, open_raw: Callable[[], Stream], codec: Codec, limits: Limits, budget: Budget | None
    ) -> None:
        self._open_raw = open_raw
        self._codec = codec
        self._limits = limits
        self._budget = budget
        self._buf = b""
        self._pos = 0  # decompressed bytes handed out
        self._out = 0  # decompressed bytes produced (handed out or buffered)
        self._error: Exception | None = None
        self._replay = False
        self._skip_to = 0  # on the replay: output already produced, not handed out again
        self._start()

    def _start(self) -> None:
        self._raw = self._open_raw()
        self._dec: Inflater | None = None
        self._pending = b""  # raw bytes read but not yet given to an inflater
        self._in = 0  # compressed bytes read
        self._made = 0  # output made in this pass
        self._streams = 0
        self._done = False

    def _raw_read(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        data = self._raw.read(FEED)
        self._in += len(data)
        return data

    def _next_stream(self) -> bool:
        """Start the stream after the current one; False when no further stream starts."""
        if self._dec is not None:
            if not self._codec.multi:
                return False
            self._pending = (self._dec.unused_data or b"") + self._pending  # lz4: None
        self._fill_pending(8)
        if not self._pending:
            return False
        dec = self._codec.make(self._pending)
        if dec is None:
            return False  # trailing bytes that start no stream: every reader stops here
        if self._budget is not None and self._streams:
            self._budget.member()  # each further stream (gzip member, frame) is a member
        self._dec = dec
        self._streams += 1
        return True

    def _fill_pending(self, n: int) -> None:
        """At least ``n`` raw bytes pending (zero padding between streams dropped)."""
        while True:
            if self._codec.padding and self._dec is not None:
                self._pending = self._pending.lstrip(b"\0")
            if len(self._pending) >= n:
                return
            data = self._raw.read(FEED)
            self._in += len(data)
            if not data:
                return
            self._pending += data

    def _limit(self, want: int) -> int:
        if not self._replay or self._made >= self._skip_to + OUT:
            return want
        if self._made < self._skip_to:
            return min(want, self._skip_to - self._made)  # up to where the failing call began
        return 1  # then byte by byte through what the failing call would have made

    def _produce(self, want: int) -> bytes:
        """Up to ``want`` more bytes; b"" once every stream is read."""
        while not self._done:
            limit = self._limit(want)
            if self._dec is None or self._dec.eof:
                later = self._dec is not None
                if not self._next_stream():
                    self._done = True
                    break
                assert self._dec is not None
                try:
                    out = self._dec.decompress(self._raw_read(), limit)
                except Exception:
                    if later and limit == 1:
                        # bytes after a complete stream that start no stream: readers stop
                        self._done = True
                        break
                    raise
            elif self._dec.needs_input:
                chunk = self._raw_read()
                out = self._dec.decompress(chunk, limit)
                if not chunk and not out:
                    self._done = True  # truncated: what came out is what a loader sees
                    break
            else:
                out = self._dec.decompress(b"", limit)
            before = self._made
            self._made += len(out)
            if before < self._skip_to:
                out = out[self._skip_to - before :]
            if out:
                return out
        return b""

    def _fill(self, want: int) -> None:
        while len(self._buf) < want and not self._done and self._error is None:
            try:
                out = self._produce(OUT)
            except LimitExceeded:
                raise
            except Exception as e:  # zlib.error, lzma.LZMAError, OSError, EOFError, ZstdError
                if self._replay:
                    self._error = CorruptData(f"{type(e).__name__}: {e}")
                    break
                self._replay, self._skip_to = True, self._out
                self._start()
                continue
            if not out:
                break
            self._out += len(out)
            self._buf += out
            if self._budget is not None:
                self._budget.inflate(len(out))
            if self._out > self._limits.max_decompressed or (
                self._out > self._limits.ratio_floor
                and self._out > self._limits.max_ratio * max(self._in, 1)
            ):
                raise LimitExceeded(
                    f"over budget: a stream inflates to more than {self._out} bytes from "
                    f"{self._in} compressed (Limits.max_ratio, ratio_floor, max_decompressed)"
                )

    def read(self, n: int) -> bytes:
        self._fill(n)
        if not self._buf and self._error is not None:
            raise self._error
        data, self._buf = self._buf[:n], self._buf[n:]
        self._pos += len(data)
        return data

    def skip(self, n: int) -> int:
        done = 0
        while done < n:
            got = len(self.read(min(CHUNK, n - done)))
            if not got:
                break
            done += got
        return done

    def tell(self) -> int:
        return self._pos


def zf_header_length(head: bytes) -> int | None:
    """Bytes before the zlib data of a joblib < 0.10 ``ZF`` file, None if it is not one.

    joblib's ``read_zfile``: ``b"ZF"``, the length as ``int(<19 bytes>, 16)``,
    one optional space (joblib <= 0.8.4 on Python 2), then one zlib stream.
    """
    if head[:2] != b"ZF" or len(head) < 21:
        return None
    try:
        int(head[2:21], 16)
    except ValueError:
        return None  # joblib cannot read the length either: it fails before unpickling
    n = 22 if head[21:22] == b" " else 21
    return n if _zlib_header(head[n : n + 2]) else None  # else zlib.decompress fails first


def _skippable_end(head: bytes) -> int:
    """Offset of the first frame after leading skippable frames (within ``head``)."""
    off = 0
    while _is_skippable(head[off : off + 4]) and off + 8 <= len(head):
        off += 8 + int.from_bytes(head[off + 4 : off + 8], "little")
    return off


def _lzma_alone_header(head: bytes) -> bool:
    """A .lzma ("alone") header as liblzma's auto decoder (``lzma.open``, joblib) accepts it:
    a properties byte below 225, a dictionary size of 2**n or 2**n + 2**(n-1) (or -1), an
    uncompressed size under 2**38 or -1 (unknown)."""
    if len(head) < 13 or head[0] >= 225:
        return False
    d = int.from_bytes(head[1:5], "little")
    size = int.from_bytes(head[5:13], "little")
    if d != 0xFFFFFFFF:
        if d == 0:
            return False
        top = 1 << (d.bit_length() - 1)
        if d not in (top, top + (top >> 1)):
            return False
    return size == (1 << 64) - 1 or size < 1 << 38


def sniff_codec(head: bytes) -> str | None:
    """The compressed-stream format these first bytes start, or None."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and head[3:4]:
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if _lzma_alone_header(head):
        return "lzma"
    if head[:4] == ZSTD_MAGIC:
        return "zstd"
    if head[:4] == LZ4_MAGIC:
        return "lz4"
    if _is_skippable(head):
        nxt = head[_skippable_end(head) :][:4]
        return "lz4" if nxt == LZ4_MAGIC else "zstd"
    if head[:4] == b"\x02\x21\x4c\x18":
        return "lz4-legacy"
    if zf_header_length(head) is not None:
        return "zf"
    if _zlib_header(head):
        return "zlib"
    return None


def _zlib_header(h: bytes) -> bool:
    """Deflate (CM 8), a window of at most 32 KiB, a valid check, no preset dictionary."""
    return (
        len(h) >= 2
        and h[0] & 0x0F == 8
        and h[0] >> 4 <= 7
        and not h[1] & 0x20
        and (h[0] * 256 + h[1]) % 31 == 0
    )


#: the packages a codec needs beyond the standard library
CODEC_PACKAGES = {"zstd": "zstandard", "lz4": "lz4"}


def codec_available(codec: str) -> bool:
    import importlib.util

    pkg = CODEC_PACKAGES.get(codec)
    return pkg is None or importlib.util.find_spec(pkg) is not None


class DecompressedSource(Source):
    """The decompressed content of a compressed source (all of its streams)."""

    def __init__(
        self,
        compressed: Source,
        codec: str,
        label: str,
        limits: Limits,
        budget: Budget | None = None,
    ) -> None:
        super().__init__(label)
        self.compressed = compressed
        self.codec = codec
        self.limits = limits
        self.budget = budget
        self._head: bytes | None = None

    def _open_raw(self) -> Stream:
        raw = self.compressed.open()
        if self.codec == "zf":
            raw.skip(zf_header_length(self.compressed.head(24)) or 0)
        return raw

    def open(self) -> _Decompressed:
        return _Decompressed(self._open_raw, CODECS[self.codec], self.limits, self.budget)

    def head(self, n: int = 4096) -> bytes:
        if self._head is None or len(self._head) < n:
            self._head = self.open().read(n)
        return self._head[:n]


def materialize(src: Source, limit: int) -> FileSource:
    """A seekable copy of a stream source (spooled to disk past 32 MiB)."""
    import tempfile

    if isinstance(src, FileSource):
        return src
    out = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115
    stream = src.open()
    total = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise LimitExceeded(f"content passes {limit} bytes")
        out.write(chunk)
    out.seek(0)
    return FileSource(out, 0, total, src.label)  # type: ignore[arg-type]


def scan_compressed(src: Source, ctx: ScanContext, depth: int) -> None:
    """Decompress every stream of ``src`` (a sniffed compressed format) and scan the content."""
    codec = sniff_codec(src.head(4096))
    if codec is None:
        return
    if codec == "lz4-legacy" or not codec_available(codec):
        ctx.format(codec)
        why = (
            "the legacy lz4 frame format, which lz4.frame does not read"
            if codec == "lz4-legacy"
            else f"the {CODEC_PACKAGES[codec]} package is not installed"
        )
        ctx.add(
            UNSUPPORTED, src.label, 0, codec,
            f"{codec}-compressed content not scanned: {why}",
        )  # fmt: skip
        return
    label = f"{src.label}!{codec}" if src.label else f"<{codec}>"
    dec = DecompressedSource(src, codec, label, ctx.limits, budget_of(ctx, src, ctx.limits))
    try:
        inner = dec.head(4096)
    except CorruptData as e:
        if codec not in ("zlib", "lzma"):  # two-byte magics: often just data
            ctx.format(codec)
            ctx.add(
                UNSUPPORTED, src.label, 0, codec,
                f"{codec} stream cannot be decompressed ({e}): its content was not scanned",
            )  # fmt: skip
        return
    ctx.format(codec)
    if len(inner) >= 262 and inner[257:262] == b"ustar":
        # a .tar.gz / .tar.zst ...: the tar reader needs to seek, so the content is copied
        # aside (spooled to disk past 32 MiB; its inflation is charged to the budget)
        ctx.scan(materialize(dec, ctx.limits.max_decompressed), depth + 1)
    elif inner:
        ctx.scan(dec, depth + 1)
