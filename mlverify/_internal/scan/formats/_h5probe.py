"""The HDF5 library, run in a child process: what the HDF5 format needs, as JSON.

Not a format of its own (``hdf5.py`` is). The HDF5 C library can crash or hang on a
hostile file (a segmentation fault was found by mutating real files), so it never runs
in the scanning process: ``python .../_h5probe.py PATH BASE SIZE`` (stdlib and h5py only)
opens ``[BASE, BASE + SIZE)`` of ``PATH`` with h5py (attributes, link kinds and dataset
layouts only, never data) and prints one JSON object:

``{"configs": {name: base64 | null}, "config_errors": {name: why}, "external": [[path,
what], ...], "too_many": bool}``
"""

from __future__ import annotations

import os
import sys

# run as a script, this directory comes first on sys.path, where the format modules
# (pickle.py, zip.py, ...) would shadow the standard library for h5py and numpy
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import base64  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

MAX_OBJECTS = 1_000_000
MAX_ATTR = 64 * 1024 * 1024
CONFIG_ATTRS = ("model_config", "training_config")
MEMORY_LIMIT = 4 * 1024**3


class _Window(io.RawIOBase):
    """A read-only file object over ``[base, base + size)`` of an open file."""

    def __init__(self, f: Any, base: int, size: int) -> None:
        self._f, self._base, self._size, self._pos = f, base, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        start = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, start + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self._size - self._pos))
        self._f.seek(self._base + self._pos)
        data = self._f.read(n)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _attr_bytes(f: Any, attr: str) -> bytes | str:
    """The attribute's bytes, or why they cannot be had."""
    if f.attrs.get_id(attr).get_storage_size() > MAX_ATTR:
        return f"passes {MAX_ATTR} bytes"
    value = f.attrs[attr]
    if hasattr(value, "tobytes") and not isinstance(value, (bytes, str)):
        value = value.item() if getattr(value, "shape", None) == () else value.tobytes()
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def probe(path: str, base: int, size: int) -> dict[str, Any]:
    import h5py

    out: dict[str, Any] = {"configs": {}, "config_errors": {}, "external": [], "too_many": False}
    with open(path, "rb") as raw, h5py.File(_Window(raw, base, size), "r") as f:
        for attr in CONFIG_ATTRS:
            if attr in f.attrs:
                got = _attr_bytes(f, attr)
                if isinstance(got, str):
                    out["config_errors"][attr] = got
                else:
                    out["configs"][attr] = base64.b64encode(got).decode()
        seen = 0

        def visit(name: str, link: Any) -> bool | None:  # H5Lvisit: cycles walked once
            nonlocal seen
            seen += 1
            if seen > MAX_OBJECTS:
                out["too_many"] = True
                return True
            if isinstance(link, h5py.ExternalLink):
                out["external"].append([name, f"external link to {link.filename!r}"])
            elif isinstance(link, h5py.HardLink):
                obj = f.get(name)
                if isinstance(obj, h5py.Dataset):
                    if obj.external:
                        files = ", ".join(repr(e[0]) for e in obj.external[:3])
                        out["external"].append([name, f"external storage in {files}"])
                    if obj.is_virtual:
                        files = ", ".join(repr(m.file_name) for m in obj.virtual_sources()[:3])
                        out["external"].append([name, f"virtual dataset mapping {files}"])
            return None

        f.visititems_links(visit)
    return out


def main(argv: list[str]) -> int:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass
    path, base, size = argv[0], int(argv[1]), int(argv[2])
    try:
        result: dict[str, Any] = probe(path, base, size)
    except ImportError as e:
        result = {"error": f"h5py cannot be imported ({e})", "missing": True}
    except Exception as e:  # the HDF5 library raises many kinds (SystemError too)
        result = {"error": f"{type(e).__name__}: {str(e)[:160]}"}
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
