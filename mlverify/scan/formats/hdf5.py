"""HDF5 (Keras 2 / legacy ``.h5`` models, ``model.weights.h5``, plain weight files).

Read with ``h5py`` (the HDF5 library): attributes, link kinds and dataset layouts only,
never data, never a filter or plugin call. A ``model_config`` (and ``training_config``)
attribute is JSON-decoded and judged as Keras (``formats/keras.py``). An HDF5 file
without one is data. External links, external raw storage and virtual datasets make a
reader open other files of the loading host: findings.
"""

from __future__ import annotations

import io
from typing import Any

from mlverify.scan.context import ScanContext
from mlverify.scan.formats import keras
from mlverify.scan.model import Severity
from mlverify.scan.rules import RESOURCE_LIMIT, UNSUPPORTED, Rule
from mlverify.scan.source import FileSource, Source, materialize

HDF5_EXTERNAL_FILE = Rule(
    "MLV506",
    "hdf5-external-file",
    Severity.HIGH,
    "An HDF5 file links to or stores data in other files (external link, external "
    "storage, virtual dataset).",
    "Reading the dataset opens a file of the loading host named by the model.",
)
RULES = (HDF5_EXTERNAL_FILE,)

SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_OBJECTS = 1_000_000
MAX_ATTR = keras.MAX_CONFIG
_CONFIG_ATTRS = ("model_config", "training_config")


def signature_offset(head: bytes, src: Source) -> int | None:
    """Where the HDF5 superblock is: at 0, or after a user block of 512 * 2**k bytes
    (whatever precedes it: the library, and so h5py and Keras, finds it there)."""
    off = 0
    while True:
        if off + 8 <= len(head):
            if head[off : off + 8] == SIGNATURE:
                return off
        elif isinstance(src, FileSource) and off + 8 <= (src.size or 0):
            if src.read_at(off, 8) == SIGNATURE:
                return off
        else:
            return None
        off = 512 if off == 0 else off * 2


class _Window(io.RawIOBase):
    """A read-only file object over a ``FileSource`` (what h5py's fileobj driver needs)."""

    def __init__(self, src: FileSource) -> None:
        self._src = src
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        size = self._src.size or 0
        base = {0: 0, 1: self._pos, 2: size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, b: Any) -> int:
        data = self._src.read_at(self._pos, len(b))
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)


class Hdf5Scanner:
    name = "hdf5"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return signature_offset(head, src) is not None

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        try:
            import h5py
        except ImportError:
            ctx.format("hdf5")
            msg = "HDF5 file: h5py is not installed, contents not verified (pip install h5py)"
            ctx.add(UNSUPPORTED, src.label, 0, "hdf5", msg)
            return
        fsrc = src if isinstance(src, FileSource) else materialize(src, ctx.limits.max_decompressed)
        try:
            with h5py.File(_Window(fsrc), "r") as f:
                _walk(f, h5py, ctx, src.label, depth)
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            ctx.format("hdf5")
            msg = f"HDF5 structure cannot be read ({type(e).__name__}: {str(e)[:120]})"
            ctx.add(UNSUPPORTED, src.label, None, "hdf5", msg)


def _walk(f: Any, h5py: Any, ctx: ScanContext, label: str, depth: int) -> None:
    for attr in _CONFIG_ATTRS:
        if attr in f.attrs:
            ctx.format("keras-h5")
            raw = _attr_bytes(f, attr, ctx, label)
            if raw is not None and not keras.judge_text(raw, ctx, label, depth, attr):
                msg = f"the {attr} attribute is not JSON: not verified"
                ctx.add(UNSUPPORTED, label, None, attr, msg)
    # H5Lvisit: every link once, hard-link cycles included (a cycle is not walked twice)
    seen = 0

    def visit(name: str, link: Any) -> bool | None:
        nonlocal seen
        seen += 1
        if seen > MAX_OBJECTS:
            msg = f"HDF5 file has over {MAX_OBJECTS} links; the rest was not checked"
            ctx.add(RESOURCE_LIMIT, label, None, "hdf5", msg)
            return True  # stops the visit
        if isinstance(link, h5py.ExternalLink):
            _external(ctx, label, name, f"external link to {link.filename!r}")
        elif isinstance(link, h5py.HardLink):
            obj = f.get(name)
            if isinstance(obj, h5py.Dataset):
                if obj.external:
                    files = ", ".join(repr(e[0]) for e in obj.external[:3])
                    _external(ctx, label, name, f"external storage in {files}")
                if obj.is_virtual:
                    files = ", ".join(repr(m.file_name) for m in obj.virtual_sources()[:3])
                    _external(ctx, label, name, f"virtual dataset mapping {files}")
        return None

    f.visititems_links(visit)


def _attr_bytes(f: Any, attr: str, ctx: ScanContext, label: str) -> bytes | None:
    a = f.attrs.get_id(attr)
    if a.get_storage_size() > MAX_ATTR:
        ctx.add(RESOURCE_LIMIT, label, None, attr, f"the {attr} attribute passes {MAX_ATTR} bytes")
        return None
    value = f.attrs[attr]
    if hasattr(value, "tobytes") and not isinstance(value, (bytes, str)):
        value = value.item() if getattr(value, "shape", None) == () else value.tobytes()
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _external(ctx: ScanContext, label: str, path: str, what: str) -> None:
    ctx.add(HDF5_EXTERNAL_FILE, label, None, path[:200], f"HDF5 object {path[:200]!r}: {what}")
