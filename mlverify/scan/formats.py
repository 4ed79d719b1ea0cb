"""Format scanners, registered in one place (``SCANNERS``).

Each scanner says whether it recognises a source from its first bytes
(``detect``) and then scans it (``scan``), adding findings to the context and
recursing into members through ``Context.scan``.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import struct
import zlib
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from mlverify.scan.model import Severity
from mlverify.scan.pickle import VALID_OPCODES, PickleWalker
from mlverify.scan.source import (
    FileSource,
    Source,
    Stream,
    bytes_source,
)
from mlverify.scan.tarreader import is_tar, scan_tar
from mlverify.scan.zipreader import LOCAL_SIG, find_eocd, read_zip

if TYPE_CHECKING:
    from mlverify.scan.engine import Context

TORCH_LEGACY_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")
_NAME_OK = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+\Z")


class FormatScanner(Protocol):
    name: str

    def detect(self, head: bytes, src: Source, deep: bool) -> bool: ...

    def scan(self, src: Source, ctx: Context, depth: int) -> None: ...


def _emitter(ctx: Context, member: str):  # type: ignore[no-untyped-def]
    def emit(rule: str, sev: Severity, offset: int, subject: str, msg: str, chain: str) -> None:
        ctx.add(rule, sev, member, offset, subject, msg, chain)

    return emit


# -- pickle -------------------------------------------------------------------
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

    def tell(self) -> int:
        return self.inner.tell()


def looks_like_pickle(head: bytes, src: Source | None = None, deep: bool = True) -> bool:
    """Would a loader read these bytes as a pickle that does something?

    Protocol 2+ pickles announce themselves; older or header-less streams are
    trial-walked (large values skipped by offset, so a payload placed after a
    big blob is still reached) for up to 16 KiB of opcodes.
    """
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return True
    if not head or head[0] not in VALID_OPCODES or head[:2] == b"PK":
        return False  # a stream opening with "PK" is a zip header, not a pickle
    from mlverify.scan.model import Limits
    from mlverify.scan.policy import get_policy

    def emit(rule: str, sev: Severity, offset: int, subject: str, msg: str, chain: str) -> None:
        pass  # detection only: the scan proper reports

    stream: Stream = (
        _Budget(src.open(), 16 * 1024)
        if src is not None and src.seekable
        else bytes_source(head, "").open()
    )
    w = PickleWalker(stream, get_policy(), Limits(), emit, probe=True)
    try:
        res = w.walk()
    except _BudgetSpent:
        return True  # 16 KiB of valid opcodes: a pickle
    if res.pickles and res.end >= 2:
        return True
    if not deep:
        return False  # a value inside a pickle: only a whole pickle counts (loaders: forced)
    if res.cannot_follow:
        return True  # the walker could not tell where a loader goes: scan it as a pickle
    # imports before the stream breaks run in a loader (allowed ones too: they may load
    # nested bytes); names that cannot be modules mean the bytes were never a pickle
    return bool(res.names) and all(_NAME_OK.match(s) for s in res.names)


class PickleScanner:
    name = "pickle"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return looks_like_pickle(head, src, deep)

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        head = src.head(len(TORCH_LEGACY_MAGIC))
        ctx.format("torch-legacy" if head == TORCH_LEGACY_MAGIC else "pickle")
        walk_pickle(src, ctx, depth)


def walk_pickle(src: Source, ctx: Context, depth: int, *, joblib: bool = True) -> None:
    """Walk ``src`` as a pickle (``joblib``: as joblib's unpickler too, when it holds arrays)."""
    w = PickleWalker(
        src.open(),
        ctx.policy,
        ctx.limits,
        _emitter(ctx, src.label),
        ctx.nested(src, depth),
        reopen=src.open,
        joblib=joblib,
    )
    w.walk()


# -- zip (PyTorch, npz, Keras, nested archives) --------------------------------
class ZipScanner:
    name = "zip"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        if head[:4] in (LOCAL_SIG, b"PK\x05\x06"):
            return True
        return deep and isinstance(src, FileSource) and find_eocd(src) is not None

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        from mlverify.scan.source import materialize
        from mlverify.scan.zipreader import member_sources

        fsrc = src if isinstance(src, FileSource) else materialize(src, ctx.limits.max_decompressed)
        arc = read_zip(fsrc, ctx.limits)
        prefix = src.label + "!" if src.label else ""
        for p in arc.problems:
            ctx.add(
                p.rule,
                p.severity,
                prefix + p.member if p.member else src.label,
                p.offset,
                "zip",
                p.message,
            )
        names = [e.name for e in arc.entries]
        if any(n.endswith("data.pkl") for n in names):
            ctx.format("pytorch-zip")
        elif any(n.endswith(".npy") for n in names):
            ctx.format("npz")
        elif "config.json" in names and any(n.endswith(".h5") for n in names):
            ctx.format("keras")
        else:
            ctx.format("zip")
        if any("/code/" in n or n.startswith("code/") for n in names):
            ctx.format("torchscript")
        if arc.start > 0 and not src.label and not looks_like_pickle(fsrc.head(4096)):
            pre = fsrc.sub(0, arc.start, "<before zip>")
            ctx.scan(pre, depth + 1, deep=False)
        for e, member in member_sources(fsrc, arc, ctx, prefix):
            label = member.label
            recognised = ctx.scan(member, depth + 1)
            if recognised and e.method == 0 and e.csize <= 64 * 1024 * 1024:
                crc = 0
                stream = member.open()
                while chunk := stream.read(1 << 20):
                    crc = zlib.crc32(chunk, crc)
                if crc != e.crc:
                    ctx.add(
                        "MLV202",
                        Severity.LOW,
                        label,
                        e.header_offset,
                        "zip",
                        f"CRC-32 {crc:08x} does not match the recorded {e.crc:08x}",
                    )
            if not recognised and e.flags & 0x41:
                ctx.add(
                    "MLV301",
                    Severity.MEDIUM,
                    label,
                    e.header_offset,
                    "zip",
                    "member is marked encrypted and its bytes are not a known format",
                )
            if e.name == "config.json" or e.name.endswith("/config.json"):
                _keras_config(member, ctx, label)
            if "/code/" in "/" + e.name and e.name.endswith(".py"):
                _torchscript_code(member, ctx, label)


def _walk_json(v: Any, depth: int = 0) -> Any:
    if depth > 200:
        return
    yield v
    if isinstance(v, dict):
        for x in v.values():
            yield from _walk_json(x, depth + 1)
    elif isinstance(v, list):
        for x in v:
            yield from _walk_json(x, depth + 1)


def _keras_config(member: Source, ctx: Context, label: str) -> None:
    text = member.open().read(16 * 1024 * 1024 + 1)
    if len(text) > 16 * 1024 * 1024:
        return
    try:
        cfg = json.loads(text)
    except (ValueError, RecursionError):
        return
    for node in _walk_json(cfg):
        if isinstance(node, dict) and node.get("class_name") in ("Lambda", "TFOpLambda"):
            name = (
                node.get("config", {}).get("name", "?")
                if isinstance(node.get("config"), dict)
                else "?"
            )
            ctx.add(
                "MLV501",
                Severity.CRITICAL,
                label,
                None,
                f"Lambda layer {name}",
                f"Keras config declares a Lambda layer {name!r} carrying marshalled Python code",
            )


_TS_BAD = re.compile(rb"\b(__import__|os\.system|subprocess|__builtins__|eval\(|exec\()")


def _torchscript_code(member: Source, ctx: Context, label: str) -> None:
    text = member.open().read(8 * 1024 * 1024)
    m = _TS_BAD.search(text)
    if m:
        ctx.add(
            "MLV801",
            Severity.MEDIUM,
            label,
            m.start(),
            m.group(0).decode(),
            f"TorchScript code references {m.group(0).decode()!r}",
        )


# -- numpy .npy ----------------------------------------------------------------
class NpyScanner:
    name = "npy"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head[:6] == b"\x93NUMPY"

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        ctx.format("npy")
        head = src.head(12)
        major = head[6] if len(head) > 6 else 0
        if major == 1 and len(head) >= 10:
            hlen, start = struct.unpack("<H", head[8:10])[0], 10
        elif major in (2, 3) and len(head) >= 12:
            hlen, start = struct.unpack("<I", head[8:12])[0], 12
        else:
            ctx.add("MLV301", Severity.MEDIUM, src.label, 6, "npy", f"unknown .npy version {major}")
            return
        if hlen > 1 << 20:
            ctx.add(
                "MLV301", Severity.MEDIUM, src.label, 8, "npy", ".npy header is implausibly long"
            )
            return
        header_src = src.open()
        header_src.read(start)
        text = header_src.read(hlen)
        try:
            htext = text.decode("latin-1")
            if major == 1 and "L" in htext:  # Python 2 wrote longs as 3L (numpy filters them)
                htext = _PY2_LONG.sub(r"\1", htext)
            header = ast.literal_eval(htext)
            descr = header["descr"]
        except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
            ctx.add(
                "MLV301", Severity.MEDIUM, src.label, start, "npy", ".npy header cannot be parsed"
            )
            return
        if _npy_has_object(descr):
            ctx.format("pickle")
            body: Source
            if isinstance(src, FileSource):
                body = src.sub(start + hlen, (src.size or 0) - start - hlen, src.label)
            else:
                body = _Skipped(src, start + hlen)
            walk_pickle(body, ctx, depth)


def _npy_has_object(descr: Any, depth: int = 0) -> bool:
    """Does numpy.dtype(descr) of a .npy header hold Python objects (then numpy unpickles
    the body)? A spelling or shape the exact table does not know counts as objects."""
    from mlverify.scan.pickle.joblib import spelling_has_object

    if depth > 20:
        return True
    if isinstance(descr, str):
        got = spelling_has_object(descr)
        return True if got is None else got
    if isinstance(descr, tuple) and len(descr) == 2:  # (base, shape): a subarray
        return _npy_has_object(descr[0], depth + 1)
    if isinstance(descr, list):
        for fld in descr:
            if not isinstance(fld, (list, tuple)) or len(fld) not in (2, 3):
                return True
            if _npy_has_object(fld[1], depth + 1):
                return True
        return False
    return True


_PY2_LONG = re.compile(r"(?<![\w.])(\d+)L\b")


class _Skipped(Source):
    """A non-seekable source without its first ``n`` bytes."""

    def __init__(self, inner: Source, n: int) -> None:
        super().__init__(inner.label)
        self.inner = inner
        self.n = n

    def open(self):  # type: ignore[no-untyped-def]
        s = self.inner.open()
        s.skip(self.n)
        return s


# -- compressed streams (joblib) --------------------------------------------------
def _codec_of(head: bytes) -> str | None:
    from mlverify.scan.source import sniff_codec

    return sniff_codec(head)


class CompressedScanner:
    name = "compressed"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return _codec_of(head) is not None

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        from mlverify.scan.source import scan_compressed

        scan_compressed(src, ctx, depth)


# -- safetensors ---------------------------------------------------------------
_ST_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
    "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8,
    "C64": 8, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1,
}  # fmt: skip
_ST_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsScanner:
    name = "safetensors"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        if len(head) < 10:
            return False
        n = struct.unpack("<Q", head[:8])[0]
        return head[8:9] == b"{" and n >= 2 and (src.size is None or n <= src.size - 8)

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        ctx.format("safetensors")
        label = src.label
        stream = src.open()
        n = struct.unpack("<Q", stream.read(8))[0]
        if n > _ST_MAX_HEADER:
            ctx.add(
                "MLV401",
                Severity.HIGH,
                label,
                0,
                "header",
                f"header length {n} exceeds the 100 MiB bound",
            )
            return
        raw = stream.read(n)
        if len(raw) < n:
            ctx.add("MLV401", Severity.MEDIUM, label, 8, "header", "header is truncated")
            return
        try:
            header = json.loads(raw)
        except (ValueError, RecursionError):
            ctx.add("MLV401", Severity.MEDIUM, label, 8, "header", "header is not valid JSON")
            return
        if not isinstance(header, dict):
            ctx.add("MLV401", Severity.MEDIUM, label, 8, "header", "header is not a JSON object")
            return
        data_len = (src.size - 8 - n) if src.size is not None else None
        spans: list[tuple[int, int, str]] = []
        for name, info in header.items():
            if name == "__metadata__":
                if not isinstance(info, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in info.items()
                ):
                    ctx.add(
                        "MLV401", Severity.LOW, label, 8, name, "__metadata__ is not a str->str map"
                    )
                continue
            problem = _st_tensor_problem(info, data_len)
            if problem:
                ctx.add(
                    "MLV401",
                    Severity.MEDIUM,
                    label,
                    8,
                    str(name)[:80],
                    f"tensor {str(name)[:80]!r}: {problem}",
                )
                continue
            b, e = info["data_offsets"]
            spans.append((b, e, str(name)))
        spans.sort()
        for (_b1, e1, n1), (b2, _e2, n2) in itertools.pairwise(spans):
            if b2 < e1:
                ctx.add(
                    "MLV401",
                    Severity.MEDIUM,
                    label,
                    8,
                    n2[:80],
                    f"tensor {n2[:80]!r} overlaps {n1[:80]!r} ({b2} < {e1})",
                )


def _st_tensor_problem(info: Any, data_len: int | None) -> str | None:
    if not isinstance(info, dict):
        return "entry is not an object"
    dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in _ST_DTYPES:
        return f"unknown dtype {str(dtype)[:20]!r}"
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return "shape is not a list of non-negative integers"
    if (
        not isinstance(offs, list)
        or len(offs) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
    ):
        return "data_offsets is not [begin, end]"
    b, e = offs
    if b < 0 or e < b:
        return f"data_offsets [{b}, {e}] are inverted or negative"
    if data_len is not None and e > data_len:
        return f"data_offsets end {e} is past the data ({data_len} bytes)"
    count = 1
    for d in shape:
        count *= d
    size = count * _ST_DTYPES[dtype]
    if dtype in ("F4",):
        size = (count + 1) // 2
    if e - b != size:
        return f"{e - b} bytes for shape {shape} of {dtype} ({size} expected)"
    return None


# -- 7z, tar, HDF5, GGUF, Git LFS ---------------------------------------------------
class SevenZipScanner:
    name = "7z"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head[:6] == b"7z\xbc\xaf\x27\x1c"

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        from mlverify.scan.sevenzip import scan_7z

        scan_7z(src, ctx, depth)


class TarScanner:
    name = "tar"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return is_tar(head)

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        scan_tar(src, ctx, depth)


_H5_LAMBDA = re.compile(rb'"class_name":\s*"(Lambda|TFOpLambda)"')
_H5_CONFIG = re.compile(rb'"class_name":\s*"')


class Hdf5Scanner:
    name = "hdf5"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head[:8] == b"\x89HDF\r\n\x1a\n"

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        ctx.format("hdf5")
        stream = src.open()
        seen_config = False
        tail = b""
        read = 0
        while read < 512 * 1024 * 1024:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            window = tail + chunk
            m = _H5_LAMBDA.search(window)
            if m:
                ctx.add(
                    "MLV501",
                    Severity.CRITICAL,
                    src.label,
                    read - len(tail) + m.start(),
                    "Lambda",
                    "HDF5 Keras model_config declares a Lambda layer (marshalled Python code)",
                )
                return
            seen_config = seen_config or bool(_H5_CONFIG.search(window))
            tail = window[-64:]
            read += len(chunk)
        if not seen_config:
            ctx.add(
                "MLV301",
                Severity.MEDIUM,
                src.label,
                0,
                "hdf5",
                "HDF5 file without a readable Keras model_config: contents not verified",
            )


_JINJA_BAD = re.compile(
    r"__(class|globals|subclasses|builtins|init|import|mro|base|bases|dict|code|getattribute"
    r"|loader|spec|reduce|reduce_ex)__"
    r"|\|\s*attr\s*\(|\battr\s*\(\s*['\"]_"  # attribute access by (computed) name
    r"|\\x5f|\\u005f|\\137"  # escaped underscores: '\x5f\x5fclass\x5f\x5f'
    r"|\[\s*['\"]_|['\"]_[A-Za-z_]*['\"]\s*[~+]|[~+]\s*['\"][A-Za-z_]*__['\"]"  # ['__cla' ~ 'ss__']
    r"|\bos\.(system|popen|exec)|\bsubprocess\b|\bpopen\s*\(|\beval\s*\(|\bexec\s*\("
    r"|\bimport_module\b|request\.application|self\._TemplateReference"
)


class GgufScanner:
    name = "gguf"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head[:4] == b"GGUF"

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        ctx.format("gguf")
        r = _Reader(src.open())
        try:
            r.need(4)
            version = r.u32()
            if version not in (2, 3):
                ctx.add("MLV301", Severity.MEDIUM, src.label, 4, "gguf", f"GGUF version {version}")
                return
            r.u64()
            n_kv = r.u64()
            for _ in range(min(n_kv, 1_000_000)):
                key = r.string(1 << 16)
                vtype = r.u32()
                if key == "tokenizer.chat_template" and vtype == 8:
                    start = r.tell()
                    tmpl = r.string(64 * 1024 * 1024)
                    m = _JINJA_BAD.search(tmpl)
                    if m:
                        ctx.add(
                            "MLV601",
                            Severity.HIGH,
                            src.label,
                            start,
                            m.group(0).strip(),
                            f"chat template uses {m.group(0).strip()!r}, "
                            "which reaches Python internals",
                            tmpl[max(0, m.start() - 40) : m.end() + 40],
                        )
                else:
                    r.skip_value(vtype)
        except _Truncated:
            ctx.add(
                "MLV301",
                Severity.MEDIUM,
                src.label,
                r.tell(),
                "gguf",
                "GGUF metadata is truncated or malformed",
            )


class _Truncated(Exception):
    pass


class _Reader:
    _FIXED: ClassVar[dict[int, int]] = {
        0: 1,
        1: 1,
        2: 2,
        3: 2,
        4: 4,
        5: 4,
        6: 4,
        7: 1,
        10: 8,
        11: 8,
        12: 8,
    }

    def __init__(self, stream: Any) -> None:
        self.s = stream
        self.buf = b""
        self.pos = 0
        self.base = 0

    def need(self, n: int) -> bytes:
        if len(self.buf) - self.pos < n:
            self.base += self.pos
            self.buf = self.buf[self.pos :] + self.s.read(max(n, 1 << 16))
            self.pos = 0
            if len(self.buf) < n:
                raise _Truncated
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def tell(self) -> int:
        return self.base + self.pos

    def u32(self) -> int:
        return int(struct.unpack("<I", self.need(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.need(8))[0])

    def string(self, limit: int) -> str:
        n = self.u64()
        if n > limit:
            raise _Truncated
        return self.need(n).decode("utf-8", "replace")

    def skip_value(self, vtype: int, depth: int = 0) -> None:
        if vtype in self._FIXED:
            self.need(self._FIXED[vtype])
        elif vtype == 8:
            n = self.u64()
            if n > 1 << 30:
                raise _Truncated
            self.need(n) if n < 1 << 20 else self._skip(n)
        elif vtype == 9 and depth < 4:
            et = self.u32()
            count = self.u64()
            if et in self._FIXED:
                self._skip(count * self._FIXED[et])
            else:
                for _ in range(min(count, 50_000_000)):
                    self.skip_value(et, depth + 1)
        else:
            raise _Truncated

    def _skip(self, n: int) -> None:
        avail = len(self.buf) - self.pos
        if n <= avail:
            self.pos += n
            return
        self.base += len(self.buf)
        self.buf, self.pos = b"", 0
        if self.s.skip(n - avail) < n - avail:
            raise _Truncated


# -- ONNX ----------------------------------------------------------------------
_ONNX_STD_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training", "ai.onnx.training"}
)
_WIN_DRIVE = re.compile(r"^[A-Za-z]:")


class _PB:
    """A lazy protobuf wire reader over a seekable source (big fields are skipped)."""

    def __init__(self, src: FileSource) -> None:
        self.src = src

    def varint(self, off: int) -> tuple[int, int]:
        data = self.src.read_at(off, 10)
        value = shift = 0
        for i, b in enumerate(data):
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value, off + i + 1
            shift += 7
        raise _Truncated

    def fields(self, start: int, end: int) -> Any:
        """Yield (field number, wire type, value-or-(offset, length), next offset)."""
        off = start
        count = 0
        while off < end and count < 5_000_000:
            count += 1
            key, off = self.varint(off)
            num, wt = key >> 3, key & 7
            if wt == 0:
                val, off = self.varint(off)
                yield num, wt, val
            elif wt == 2:
                ln, off = self.varint(off)
                if off + ln > end:
                    raise _Truncated
                yield num, wt, (off, ln)
                off += ln
            elif wt == 1:
                off += 8
            elif wt == 5:
                off += 4
            else:
                raise _Truncated

    def text(self, span: tuple[int, int], limit: int = 4096) -> str:
        return self.src.read_at(span[0], min(span[1], limit)).decode("utf-8", "replace")


class OnnxScanner:
    name = "onnx"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        if (
            len(head) < 4
            or head[0] != 0x08
            or not 1 <= head[1] <= 20
            or not isinstance(src, FileSource)
            or _is_savedmodel(head)
        ):
            return False
        return head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42)

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        assert isinstance(src, FileSource)
        pb = _PB(src)
        size = src.size or 0
        ctx.format("onnx")
        try:
            for num, wt, val in pb.fields(0, size):
                if num == 8 and wt == 2:  # opset_import
                    for n2, w2, v2 in pb.fields(val[0], val[0] + val[1]):
                        if n2 == 1 and w2 == 2:
                            domain = pb.text(v2, 256)
                            if domain not in _ONNX_STD_DOMAINS:
                                ctx.add(
                                    "MLV702",
                                    Severity.LOW,
                                    src.label,
                                    val[0],
                                    domain,
                                    f"uses the custom operator domain {domain!r}",
                                )
                elif num == 7 and wt == 2:  # graph
                    self._graph(pb, val, ctx, src.label, 0)
        except _Truncated:
            ctx.add(
                "MLV301",
                Severity.MEDIUM,
                src.label,
                None,
                "onnx",
                "ONNX protobuf is truncated or malformed",
            )

    def _graph(self, pb: _PB, span: tuple[int, int], ctx: Context, label: str, depth: int) -> None:
        if depth > 8:
            return
        for num, wt, val in pb.fields(span[0], span[0] + span[1]):
            if wt != 2:
                continue
            if num in (5, 15):  # initializer, sparse_initializer
                self._tensor(pb, val, ctx, label)
            elif num == 1:  # node: subgraphs live in attributes (5) -> g (6) / graphs (11)
                for n2, w2, v2 in pb.fields(val[0], val[0] + val[1]):
                    if n2 == 5 and w2 == 2:
                        for n3, w3, v3 in pb.fields(v2[0], v2[0] + v2[1]):
                            if n3 in (6, 11) and w3 == 2:
                                self._graph(pb, v3, ctx, label, depth + 1)
                            elif n3 == 5 and w3 == 2:  # attribute tensor t
                                self._tensor(pb, v3, ctx, label)

    def _tensor(self, pb: _PB, span: tuple[int, int], ctx: Context, label: str) -> None:
        for num, wt, val in pb.fields(span[0], span[0] + span[1]):
            if num != 13 or wt != 2:  # external_data entries
                continue
            key = value = ""
            for n2, w2, v2 in pb.fields(val[0], val[0] + val[1]):
                if n2 == 1 and w2 == 2:
                    key = pb.text(v2, 256)
                elif n2 == 2 and w2 == 2:
                    value = pb.text(v2)
            if key == "location":
                norm = value.replace("\\", "/")
                if norm.startswith("/") or _WIN_DRIVE.match(norm) or ".." in norm.split("/"):
                    ctx.add(
                        "MLV701",
                        Severity.HIGH,
                        label,
                        val[0],
                        value[:200],
                        f"tensor external data location {value[:200]!r} escapes the model "
                        "directory",
                    )


# -- TensorFlow SavedModel ---------------------------------------------------------
_TF_OPS = {
    b"PyFunc": Severity.HIGH, b"PyFuncStateless": Severity.HIGH, b"EagerPyFunc": Severity.HIGH,
    b"ReadFile": Severity.MEDIUM, b"WriteFile": Severity.MEDIUM, b"MatchingFiles": Severity.MEDIUM,
    b"DebugIdentityV3": Severity.LOW, b"PrintV2": Severity.LOW,
}  # fmt: skip
# NodeDef.op is field 2 (tag 0x12) followed by its one-byte length
_TF_OP_RX = re.compile(
    b"\\x12(?:" + b"|".join(bytes([len(k)]) + k for k in _TF_OPS) + b")(?![A-Za-z0-9_])"
)


def _is_savedmodel(head: bytes) -> bool:
    if len(head) < 8 or head[:3] != b"\x08\x01\x12":
        return False
    i = 3
    while i < min(len(head), 13) and head[i] & 0x80:
        i += 1
    return i + 1 < len(head) and head[i + 1] == 0x0A


class SavedModelScanner:
    name = "savedmodel"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return _is_savedmodel(head)

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        ctx.format("tf-savedmodel")
        stream = src.open()
        tail = b""
        read = 0
        seen: set[bytes] = set()
        while read < 1024 * 1024 * 1024:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            window = tail + chunk
            for m in _TF_OP_RX.finditer(window):
                op = m.group(0)[2:]
                if op not in seen:
                    seen.add(op)
                    ctx.add(
                        "MLV901",
                        _TF_OPS[op],
                        src.label,
                        read - len(tail) + m.start(),
                        op.decode(),
                        f"SavedModel graph uses the {op.decode()} op",
                    )
            tail = window[-64:]
            read += len(chunk)


class LfsPointerScanner:
    name = "git-lfs-pointer"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head.startswith(b"version https://git-lfs.github.com/spec/v1")

    def scan(self, src: Source, ctx: Context, depth: int) -> None:
        ctx.format("git-lfs-pointer")
        ctx.add(
            "MLV301",
            Severity.INFO,
            src.label,
            0,
            "git-lfs",
            "a Git LFS pointer, not the model: fetch the object (git lfs pull) and scan it",
        )


#: every format scanner, in detection order; a polyglot matches several.
SCANNERS: list[FormatScanner] = [
    ZipScanner(),
    NpyScanner(),
    SafetensorsScanner(),
    SevenZipScanner(),
    TarScanner(),
    Hdf5Scanner(),
    GgufScanner(),
    OnnxScanner(),
    SavedModelScanner(),
    LfsPointerScanner(),
    CompressedScanner(),
    PickleScanner(),
]
