"""Byte sources: windows over a file, decompressed streams, in-memory bytes.

Scanners never load a whole file: they read small heads, seek past data, and
stream compressed content through bounded decompressors.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from typing import BinaryIO, Protocol

from mlverify.scan.model import Limits

CHUNK = 1 << 20


class LimitExceeded(Exception):
    """A safety bound was hit (decompression bomb, depth, size)."""


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

    def __init__(self, label: str) -> None:
        self.label = label  # member path ("" for the file itself)

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


def bytes_source(data: bytes, label: str) -> FileSource:
    return FileSource(io.BytesIO(data), 0, len(data), label)


class _Decompressed:
    """A bounded decompressing reader over a compressed stream."""

    seekable = False

    def __init__(
        self,
        raw: Stream,
        decompress: Callable[[bytes, int], bytes],
        leftover: Callable[[], bool],
        limits: Limits,
    ) -> None:
        self._raw = raw
        self._dec = decompress
        self._has_more = leftover
        self._limits = limits
        self._buf = b""
        self._pos = 0  # decompressed bytes handed out
        self._in = 0
        self._eof = False

    def _fill(self, want: int) -> None:
        while len(self._buf) < want and not self._eof:
            try:
                if self._has_more():
                    out = self._dec(b"", CHUNK)
                else:
                    chunk = self._raw.read(CHUNK)
                    self._in += len(chunk)
                    if not chunk:
                        self._eof = True
                        out = self._dec(b"", CHUNK) if self._has_more() else b""
                        self._buf += out
                        break
                    out = self._dec(chunk, CHUNK)
            except (LimitExceeded, CorruptData):
                raise
            except Exception as e:  # zlib.error, lzma.LZMAError, OSError, EOFError
                raise CorruptData(f"{type(e).__name__}: {e}") from None
            self._buf += out
            total = self._pos + len(self._buf)
            if total > self._limits.max_decompressed or (
                total > self._limits.ratio_floor
                and total > self._limits.max_ratio * max(self._in, 1)
            ):
                raise LimitExceeded(
                    f"decompressed size passes {total} bytes from {self._in} compressed"
                )

    def read(self, n: int) -> bytes:
        self._fill(n)
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


def _zlib_factory(
    wbits: int,
) -> Callable[[], tuple[Callable[[bytes, int], bytes], Callable[[], bool]]]:
    def make() -> tuple[Callable[[bytes, int], bytes], Callable[[], bool]]:
        d = zlib.decompressobj(wbits)

        def dec(data: bytes, maxlen: int) -> bytes:
            if not data:
                return d.decompress(d.unconsumed_tail, maxlen)
            return d.decompress(d.unconsumed_tail + data, maxlen)

        return dec, lambda: bool(d.unconsumed_tail)

    return make


def _bz2_factory() -> tuple[Callable[[bytes, int], bytes], Callable[[], bool]]:
    import bz2

    d = bz2.BZ2Decompressor()

    def dec(data: bytes, maxlen: int) -> bytes:
        if d.eof:
            return b""
        return d.decompress(data, maxlen)

    return dec, lambda: not d.eof and d.needs_input is False


def _lzma_factory(
    fmt: int,
) -> Callable[[], tuple[Callable[[bytes, int], bytes], Callable[[], bool]]]:
    def make() -> tuple[Callable[[bytes, int], bytes], Callable[[], bool]]:
        import lzma

        d = lzma.LZMADecompressor(format=fmt)

        def dec(data: bytes, maxlen: int) -> bytes:
            if d.eof:
                return b""
            return d.decompress(data, maxlen)

        return dec, lambda: not d.eof and d.needs_input is False

    return make


CODECS: dict[str, Callable[[], tuple[Callable[[bytes, int], bytes], Callable[[], bool]]]] = {
    "zlib": _zlib_factory(15),
    "gzip": _zlib_factory(31),
    "deflate": _zlib_factory(-15),
    "bz2": _bz2_factory,
    "xz": _lzma_factory(1),  # lzma.FORMAT_XZ
    "lzma": _lzma_factory(2),  # lzma.FORMAT_ALONE
}


class DecompressedSource(Source):
    """The decompressed content of a (seekable) compressed source."""

    def __init__(self, compressed: Source, codec: str, label: str, limits: Limits) -> None:
        super().__init__(label)
        self.compressed = compressed
        self.codec = codec
        self.limits = limits
        self._head: bytes | None = None

    def open(self) -> _Decompressed:
        dec, more = CODECS[self.codec]()
        return _Decompressed(self.compressed.open(), dec, more, self.limits)

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
