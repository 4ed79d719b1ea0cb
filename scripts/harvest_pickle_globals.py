#!/usr/bin/env python3
"""Harvest the globals that real ML libraries write into pickles.

Run by a developer (never at install, never by the scanner) in an environment with the real
libraries installed::

    PYTHONPATH=$PWD .venv/bin/python scripts/harvest_pickle_globals.py --out /tmp/harvest.json
    PYTHONPATH=$PWD .venv/bin/python scripts/harvest_pickle_globals.py --check

It builds a broad set of real objects with numpy, scipy, scikit-learn, pandas, torch,
xgboost, lightgbm, transformers/tokenizers, joblib and the standard library, pickles them
ourselves (pickle protocols 0, 2, 4, 5, ``joblib.dump``, ``torch.save``, ``pandas.to_pickle``,
a distributed checkpoint) and records every global the pickles contain and how each is used:

* a recording subclass of the pure-Python ``pickle._Pickler`` sees, in ``save_global``, the live
  object and the ``module.name`` written for it, and in ``save_reduce`` the callable and its
  arguments (so ``builtins.getattr`` uses give the (class, attribute) pairs of bound methods,
  and the callables handed to ``copyreg._reconstructor``, ``NEWOBJ`` or ``functools.partial``
  are known). joblib's and torch's own picklers are used with the recorder mixed in;
* every produced byte stream is also decoded with ``pickletools.genops`` (a decoder, never an
  unpickler) and each written name must have been seen live; names from files we wrote
  ourselves with a C pickler (``pandas.to_pickle``, a checkpoint's ``.metadata``) are resolved
  by importing the module of a name *we* wrote;
* each global is resolved to its DEFINING name (``obj.__module__ + "." + obj.__qualname__`` of
  the live object, checked to resolve back to the same object).

``--joblib-data`` lists the globals (names only, decoded, never loaded or imported) of the old
pickles joblib ships under ``joblib/test/data``. ``--check`` compares both harvests with
``mlverify/_internal/scan/data/pickle_allowlist.json`` and exits 1 on any global that is neither allowed
(entry or alias) nor a reviewed finding. ``tests/scan/test_allowlist_data.py`` runs the same
check in-process.
"""

from __future__ import annotations

import argparse
import ast
import bz2
import contextlib
import copyreg
import functools
import gzip
import importlib
import importlib.metadata
import importlib.util
import io
import json
import lzma
import os
import pickle
import pickletools
import sys
import tempfile
import time
import types
import warnings
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ALLOWLIST = HERE.parent / "mlverify" / "_internal" / "scan" / "data" / "pickle_allowlist.json"
PROTOCOLS = (0, 2, 4, 5)
LIBRARIES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "torch",
    "xgboost",
    "lightgbm",
    "transformers",
    "tokenizers",
    "sentencepiece",
    "joblib",
    "safetensors",
    "accelerate",
    "tzdata",
)
# Protocol 0 pickles these through copyreg._reduce_ex, which calls base(obj) on a pybind11
# object inside them (packed quantized params): the C++ side aborts the whole process.
NO_PROTOCOL_0 = frozenset({"torch:quantized-module", "torch:dynamic-quantized"})
# Names of this script's own helpers never count as library globals.
OWN_MODULES = frozenset({__name__, "__main__", "harvest_pickle_globals"})


# --------------------------------------------------------------------------------------------
# What was seen


@dataclass
class Seen:
    """One global as written in a pickle."""

    written: str
    defining: str
    kind: str  # "class" | "function" | "value"
    libraries: set[str] = field(default_factory=set)
    uses: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "defining": self.defining,
            "kind": self.kind,
            "libraries": sorted(self.libraries),
            "uses": sorted(self.uses),
        }


class Harvest:
    """Everything recorded over one run."""

    def __init__(self) -> None:
        self.library = "?"
        self.globals: dict[str, Seen] = {}
        self.objects: Counter[str] = Counter()
        self.pickles: Counter[str] = Counter()
        self.failures: dict[str, list[str]] = defaultdict(list)
        # defining class -> attribute names fetched with builtins.getattr (owner is the class
        # itself: "cls:NAME", owner is an instance: "NAME")
        self.getattrs: dict[str, set[str]] = defaultdict(set)
        # defining callable -> argument index -> kinds of values passed there
        self.arguments: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
        # defining class -> how its instances receive BUILD state
        self.builds: dict[str, set[str]] = defaultdict(set)
        self.unmapped: set[str] = set()
        # defining name -> how the pickles use it (applied to the written names at the end)
        self.uses: dict[str, set[str]] = defaultdict(set)
        self.other_pythons: list[str] = []
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.unmapped_by: dict[str, set[str]] = defaultdict(set)
        # written name -> (public name, interpreter version that verified they are one object)
        self.other_aliases: dict[str, tuple[str, str]] = {}

    # -- recording -----------------------------------------------------------------------

    def note_global(self, written: str, obj: Any) -> None:
        seen = self.globals.get(written)
        if seen is None:
            seen = Seen(written, defining_name(obj, written), kind_of(obj))
            self.globals[written] = seen
        seen.libraries.add(self.library)

    def note_use(self, obj: Any, use: str) -> None:
        name = live_name(obj)
        if name is not None:
            self.uses[name].add(use)

    def note_reduce(
        self, func: Any, args: tuple[Any, ...], state: Any, setter: Any, obj: Any, proto: int
    ) -> None:
        fname = getattr(func, "__name__", "")
        if proto >= 2 and fname == "__newobj__" and args:
            self.note_use(args[0], "NEWOBJ cls")
            callee, rest, first = "NEWOBJ", args[1:], 1
        elif proto >= 2 and fname == "__newobj_ex__" and args:
            self.note_use(args[0], "NEWOBJ_EX cls")
            callee, rest, first = "NEWOBJ_EX", tuple(args[1]), 1
        else:
            callee = live_name(func) or f"<{type(func).__qualname__}>"
            self.note_use(func, "REDUCE func")
            rest, first = args, 0
            if func is getattr and len(args) == 2 and isinstance(args[1], str):
                owner = args[0]
                if isinstance(owner, type):
                    self.getattrs[live_name(owner) or repr(owner)].add("cls:" + args[1])
                else:
                    self.getattrs[live_name(type(owner)) or repr(type(owner))].add(args[1])
        for i, arg in enumerate(rest, start=first):
            desc = describe(arg)
            self.arguments[callee][i].add(desc)
            if desc.startswith("global:"):
                self.note_use(arg, f"arg {i} of {callee}")
        if setter is not None:
            self.note_use(setter, "state_setter")
        if state is not None and obj is not None:
            how = "setstate" if hasattr(type(obj), "__setstate__") else "dict/slots update"
            self.builds[live_name(type(obj)) or repr(type(obj))].add(how)

    def finish(self) -> None:
        for seen in self.globals.values():
            seen.uses |= self.uses.get(seen.defining, set())
            if not seen.uses:
                seen.uses.add("value")

    def to_dict(self) -> dict[str, Any]:
        self.finish()
        return {
            "schema": "mlverify-pickle-harvest/1",
            "harvested_with": {
                **library_versions(),
                **({"other_pythons": " ".join(self.other_pythons)} if self.other_pythons else {}),
            },
            "objects": dict(sorted(self.objects.items())),
            "pickles": dict(sorted(self.pickles.items())),
            "library_seconds": {k: round(v, 1) for k, v in sorted(self.seconds.items())},
            "failures": {k: sorted(v) for k, v in sorted(self.failures.items())},
            "globals": {k: v.to_dict() for k, v in sorted(self.globals.items())},
            "getattr": {k: sorted(v) for k, v in sorted(self.getattrs.items())},
            "arguments": {
                k: {str(i): sorted(d) for i, d in sorted(v.items())}
                for k, v in sorted(self.arguments.items())
            },
            "builds": {k: sorted(v) for k, v in sorted(self.builds.items())},
            "unmapped": sorted(self.unmapped),
            "other_python_aliases": {k: list(v) for k, v in sorted(self.other_aliases.items())},
        }


def live_name(obj: Any) -> str | None:
    """``module.qualname`` of a class or function, or None for other values."""
    qual = getattr(obj, "__qualname__", None)
    mod = getattr(obj, "__module__", None)
    if isinstance(qual, str) and isinstance(mod, str) and callable(obj):
        return f"{mod}.{qual}"
    return None


def kind_of(obj: Any) -> str:
    if isinstance(obj, type):
        return "class"
    return "function" if callable(obj) else "value"


def describe(arg: Any) -> str:
    if isinstance(
        arg, (type, types.FunctionType, types.BuiltinFunctionType, types.WrapperDescriptorType)
    ):
        return f"global:{live_name(arg)}"
    if isinstance(arg, types.MethodType):
        return f"method:{live_name(type(arg.__self__))}.{arg.__func__.__name__}"
    return f"value:{type(arg).__module__}.{type(arg).__qualname__}"


def resolve(dotted_module: str, qualname: str) -> Any:
    """Import a module named by a live object (or a file we wrote) and walk the qualname."""
    obj: Any = importlib.import_module(dotted_module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def defining_name(obj: Any, written: str) -> str:
    """The defining ``module.qualname`` of a live object, checked to resolve back to it."""
    name = live_name(obj)
    if name is not None:
        mod, qual = obj.__module__, obj.__qualname__
        with contextlib.suppress(Exception), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if resolve(mod, qual) is obj:
                return name
    # A value written by name (a constant such as torch.float32 or Ellipsis): its module as
    # Python 3 spells it, checked to hold the same object.
    import _compat_pickle

    mod, _, attr = written.rpartition(".")
    mod, attr = _compat_pickle.NAME_MAPPING.get((mod, attr), (mod, attr))
    mod = _compat_pickle.IMPORT_MAPPING.get(mod, mod)
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if resolve(mod, attr) is obj:
            return f"{mod}.{attr}"
    return written


def written_name(pickler: pickle._Pickler, obj: Any, name: str | None) -> str | None:
    """The ``module.name`` that ``pickle._Pickler.save_global`` writes for ``obj``.

    None when it writes none itself (protocols < 4 pickle a nested qualname as
    ``getattr(parent, name)``, whose globals are recorded when they are saved).
    """
    if name is None:
        name = getattr(obj, "__qualname__", None)
    if name is None:
        name = obj.__name__
    module_name = pickle.whichmodule(obj, name)  # type: ignore[attr-defined]
    try:
        __import__(module_name, level=0)
        module = sys.modules[module_name]
        _, parent = pickle._getattribute(module, name)  # type: ignore[attr-defined]
    except Exception:
        return f"{module_name}.{name}"
    if pickler.proto >= 2 and copyreg._extension_registry.get((module_name, name)):  # type: ignore[attr-defined]
        return None
    proto: int = pickler.proto  # type: ignore[attr-defined]
    if proto >= 4:
        return f"{module_name}.{name}"
    if parent is not module:
        return None
    if proto < 3 and pickler.fix_imports:  # type: ignore[attr-defined]
        import _compat_pickle

        if (module_name, name) in _compat_pickle.REVERSE_NAME_MAPPING:
            module_name, name = _compat_pickle.REVERSE_NAME_MAPPING[(module_name, name)]
        elif module_name in _compat_pickle.REVERSE_IMPORT_MAPPING:
            module_name = _compat_pickle.REVERSE_IMPORT_MAPPING[module_name]
    return f"{module_name}.{name}"


HARVEST = Harvest()


class RecordingMixin:
    """Mixed into a pure-Python pickler: records globals and reduce calls into HARVEST."""

    proto: int

    def save_global(self, obj: Any, name: str | None = None) -> None:
        written = written_name(self, obj, name)  # type: ignore[arg-type]
        if written is not None:
            HARVEST.note_global(written, obj)
        super().save_global(obj, name)  # type: ignore[misc]

    def save_reduce(
        self,
        func: Any,
        args: Any,
        state: Any = None,
        listitems: Any = None,
        dictitems: Any = None,
        state_setter: Any = None,
        *,
        obj: Any = None,
    ) -> None:
        if isinstance(args, tuple):
            HARVEST.note_reduce(func, args, state, state_setter, obj, self.proto)
        super().save_reduce(  # type: ignore[misc]
            func, args, state, listitems, dictitems, state_setter, obj=obj
        )


class RecordingPickler(RecordingMixin, pickle._Pickler):
    pass


def recording_pickle_module() -> types.ModuleType:
    """A ``pickle_module`` for ``torch.save`` whose picklers record."""
    shim = types.ModuleType("mlverify_recording_pickle")
    shim.Pickler = RecordingPickler  # type: ignore[attr-defined]
    shim.Unpickler = pickle._Unpickler  # type: ignore[attr-defined]  # never used: save only
    shim.DEFAULT_PROTOCOL = 2  # type: ignore[attr-defined]
    shim.HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL  # type: ignore[attr-defined]

    def dump(obj: Any, f: Any, protocol: int | None = None) -> None:
        RecordingPickler(f, protocol=protocol).dump(obj)

    shim.dump = dump  # type: ignore[attr-defined]
    return shim


# --------------------------------------------------------------------------------------------
# Decoding (never loading): the globals a byte stream names


MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"ZF0x", "zf"),
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "zip"),
)
MAX_DECOMPRESSED = 256 << 20


def container_payloads(data: bytes, depth: int = 0) -> Iterator[bytes]:
    """The pickle streams inside ``data`` (compressed, ZF, npy object body or plain)."""
    if depth > 4:
        raise ValueError("containers nested too deep")
    kind = next((k for magic, k in MAGICS if data.startswith(magic)), None)
    if kind is None and data[:1] == b"\x5d" and data[1:3] == b"\x00\x00":
        kind = "lzma"
    if kind is None and data[:1] == b"\x78" and int.from_bytes(data[:2], "big") % 31 == 0:
        kind = "zlib"
    if kind == "gzip":
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as g:  # every member
            inner = g.read(MAX_DECOMPRESSED)
    elif kind == "bz2":
        inner = bz2.BZ2Decompressor().decompress(data, MAX_DECOMPRESSED)
    elif kind == "xz":
        inner = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data, MAX_DECOMPRESSED)
    elif kind == "lzma":
        inner = lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data, MAX_DECOMPRESSED)
    elif kind == "zlib":
        inner = zlib.decompressobj().decompress(data, MAX_DECOMPRESSED)
    elif kind == "zf":
        # joblib < 0.10: b"ZF" + hex length padded to 19 characters (0.8 adds one more
        # space, which joblib's read_zfile skips), then one zlib stream
        start = 2 + 19 + (data[21:22] == b" ")
        inner = zlib.decompressobj().decompress(data[start:], MAX_DECOMPRESSED)
    elif kind == "npy":
        major = data[6]
        hlen_size = 2 if major == 1 else 4
        hlen = int.from_bytes(data[8 : 8 + hlen_size], "little")
        start = 8 + hlen_size
        header = ast.literal_eval(data[start : start + hlen].decode("latin1"))
        descr = header.get("descr") if isinstance(header, dict) else None
        if isinstance(descr, str) and descr.lstrip("|<>=").startswith("O"):
            yield data[start + hlen :]
        return
    elif kind == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if info.filename.endswith(".pkl") or info.filename.endswith(".metadata"):
                    yield from container_payloads(zf.read(info), depth + 1)
        return
    else:
        yield data
        return
    yield from container_payloads(inner, depth + 1)


class Opaque:
    """A value the decoder does not model (the result of a call, an object)."""

    def __init__(self, func: str | None = None, args: Any = None, is_global: bool = False) -> None:
        self.func = func
        self.args = args
        self.is_global = is_global
        self.state: Any = None


MARK = object()


def stream_globals(
    data: bytes, getattrs: list[tuple[str, str]] | None = None
) -> tuple[list[str], list[str]]:
    """(names written, problems) for every stacked pickle in ``data``, decoded with genops.

    A small stack model (literal values, opaque call results, the memo) follows
    ``STACK_GLOBAL`` names and joblib's inline arrays: after the ``BUILD`` of a
    ``NumpyArrayWrapper`` the raw array bytes (or, for an object array, an inner pickle)
    follow in the stream, sized from the wrapper's shape and dtype as joblib reads them.
    """
    names: list[str] = []
    problems: list[str] = []
    buf = io.BytesIO(data)
    streams = 0
    while buf.tell() < len(data) and streams < 1000:
        streams += 1
        start = buf.tell()
        if data[start : start + 1] not in (b"\x80",) and not _plausible_start(data[start:]):
            if start == 0:
                problems.append("no pickle (raw data)")
            break
        try:
            _walk(buf, names, getattrs)
        except _Break as exc:
            problems.append(str(exc))
            break
    return names, problems


class _Break(Exception):
    pass


def _plausible_start(rest: bytes) -> bool:
    """A protocol 0/1 stream starts with any opcode (stacked streams after a STOP too)."""
    return rest[:1].decode("latin1") in pickletools.code2op  # type: ignore[attr-defined]


def _walk(buf: io.BytesIO, names: list[str], getattrs: list[tuple[str, str]] | None = None) -> None:
    """Decode one pickle; ``getattrs`` collects ``getattr(global or instance, "name")``
    as (owner global, "cls:name" or "name")."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    pos: int | None = buf.tell()
    try:
        for op, arg, pos in pickletools.genops(buf):
            n = op.name
            if n in ("GLOBAL", "INST"):
                mod, _, name = str(arg).partition(" ")
                names.append(f"{mod}.{name}")
                if n == "INST":
                    _pop_mark(stack)
                stack.append(Opaque(f"{mod}.{name}", is_global=n == "GLOBAL"))
            elif n == "STACK_GLOBAL":
                name, mod = stack.pop(), stack.pop()
                if not (isinstance(mod, str) and isinstance(name, str)):
                    raise _Break(f"STACK_GLOBAL on a computed name at {pos}")
                names.append(f"{mod}.{name}")
                stack.append(Opaque(f"{mod}.{name}", is_global=True))
            elif n in ("MARK",):
                stack.append(MARK)
            elif n in ("STOP",):
                return
            elif n in ("PROTO", "FRAME"):
                pass
            elif n in ("MEMOIZE",):
                memo[len(memo)] = stack[-1]
            elif n in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg or 0)] = stack[-1]
            elif n in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(int(arg or 0), Opaque()))
            elif n == "POP":
                if stack:
                    stack.pop()
            elif n == "POP_MARK":
                _pop_mark(stack)
            elif n == "DUP":
                stack.append(stack[-1])
            elif n in ("TUPLE", "LIST", "DICT", "FROZENSET", "OBJ"):
                items = _pop_mark(stack)
                if n == "TUPLE":
                    stack.append(tuple(items))
                elif n == "LIST":
                    stack.append(list(items))
                elif n == "DICT":
                    stack.append(dict(_pairs(items)))
                elif n == "OBJ":
                    stack.append(Opaque(getattr(items[0], "func", None) if items else None))
                else:
                    stack.append(Opaque())
            elif n in ("EMPTY_TUPLE",):
                stack.append(())
            elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
                k = int(n[-1])
                items = stack[-k:]
                del stack[-k:]
                stack.append(tuple(items))
            elif n == "EMPTY_LIST":
                stack.append([])
            elif n == "EMPTY_DICT":
                stack.append({})
            elif n == "EMPTY_SET":
                stack.append(Opaque())
            elif n in ("APPEND",):
                v = stack.pop()
                if isinstance(stack[-1], list):
                    stack[-1].append(v)
            elif n in ("APPENDS", "ADDITEMS"):
                items = _pop_mark(stack)
                if isinstance(stack[-1], list):
                    stack[-1].extend(items)
            elif n == "SETITEM":
                v, k = stack.pop(), stack.pop()
                if isinstance(stack[-1], dict):
                    with contextlib.suppress(TypeError):
                        stack[-1][k] = v
            elif n == "SETITEMS":
                items = _pop_mark(stack)
                if isinstance(stack[-1], dict):
                    with contextlib.suppress(TypeError):
                        stack[-1].update(_pairs(items))
            elif n in ("REDUCE", "NEWOBJ"):
                a = stack.pop()
                f = stack.pop()
                fname = getattr(f, "func", None) or ""
                if fname.endswith("._reconstructor") and isinstance(a, tuple) and a:
                    # copyreg._reconstructor(cls, base, state): an instance of cls
                    fname = getattr(a[0], "func", None) or fname
                if (
                    getattrs is not None
                    and getattr(f, "is_global", False)
                    and fname.endswith((".getattr", "__builtin__.getattr"))
                    and isinstance(a, tuple)
                    and len(a) == 2
                    and isinstance(a[1], str)
                    and isinstance(a[0], Opaque)
                    and a[0].func
                ):
                    owner = a[0]
                    prefix = "cls:" if owner.is_global else ""
                    getattrs.append((owner.func or "", prefix + a[1]))
                stack.append(Opaque(fname or None, a))
            elif n == "NEWOBJ_EX":
                del stack[-3:]
                stack.append(Opaque())
            elif n == "BUILD":
                state = stack.pop()
                target = stack[-1]
                if isinstance(target, Opaque):
                    target.state = state
                    if (target.func or "").endswith("NumpyArrayWrapper"):
                        _skip_inline_array(buf, state, names, getattrs)
            elif n in ("PERSID", "BINPERSID"):
                if n == "BINPERSID":
                    stack.pop()
                stack.append(Opaque())
            elif n in ("EXT1", "EXT2", "EXT4"):
                names.append(f"<extension {arg}>")
                stack.append(Opaque())
            elif n == "NEXT_BUFFER":
                stack.append(Opaque())
            elif n == "READONLY_BUFFER":
                pass
            else:  # a push of a literal value
                stack.append(arg)
    except _Break:
        raise
    except (ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise _Break(f"stream breaks near offset {pos}: {exc}") from None
    raise _Break("stream ends without STOP")


def _pop_mark(stack: list[Any]) -> list[Any]:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is MARK:
            items = stack[i + 1 :]
            del stack[i:]
            return items
    raise _Break("no MARK on the stack")


def _pairs(items: list[Any]) -> Iterator[tuple[Any, Any]]:
    for i in range(0, len(items) - 1, 2):
        k = items[i]
        if isinstance(k, (str, int, bytes, tuple)):
            yield k, items[i + 1]


def _itemsize(dtype: Any) -> tuple[int, bool]:
    """(itemsize, is object) of a dtype decoded as ``numpy.dtype(spec, ...)`` plus state."""
    spec = None
    is_dtype = isinstance(dtype, Opaque) and (dtype.func or "").endswith(".dtype")
    if is_dtype and isinstance(dtype.args, tuple) and dtype.args:
        spec = dtype.args[0]
    if not isinstance(spec, str):
        raise _Break("joblib array wrapper with a dtype the decoder does not model")
    code = spec.lstrip("|<>=")
    if code.startswith("O"):
        return 0, True
    letter, digits = code[:1], code[1:]
    size = int(digits) if digits.isdigit() else {"?": 1, "b": 1, "B": 1}.get(letter, 0)
    if letter == "U":
        size *= 4
    if size <= 0:
        raise _Break(f"joblib array wrapper with dtype {spec!r}")
    return size, False


def _skip_inline_array(
    buf: io.BytesIO, state: Any, names: list[str], getattrs: list[tuple[str, str]] | None
) -> None:
    if not isinstance(state, dict):
        raise _Break("joblib array wrapper state is not a dict")
    shape, dtype = state.get("shape"), state.get("dtype")
    if not isinstance(shape, (tuple, list)) or not all(isinstance(d, int) for d in shape):
        raise _Break("joblib array wrapper shape is not a tuple of ints")
    itemsize, is_object = _itemsize(dtype)
    if is_object:
        _walk(buf, names, getattrs)  # an inner pickle of the object array
        return
    if "numpy_array_alignment_bytes" in state:
        pad = buf.read(1)
        buf.seek(pad[0] if pad else 0, io.SEEK_CUR)
    count = 1
    for d in shape:
        count *= d
    buf.seek(count * itemsize, io.SEEK_CUR)


def decode_file(
    data: bytes, getattrs: list[tuple[str, str]] | None = None
) -> tuple[list[str], list[str]]:
    names: list[str] = []
    problems: list[str] = []
    try:
        payloads = list(container_payloads(data))
    except Exception as exc:  # a broken container is a problem to report, not a crash
        return [], [f"container: {exc}"]
    for payload in payloads:
        n, p = stream_globals(payload, getattrs)
        names += n
        problems += p
    return names, problems


# --------------------------------------------------------------------------------------------
# Pickling one object every way


class Dumper:
    def __init__(self, workdir: Path, fast: bool) -> None:
        self.workdir = workdir
        self.fast = fast
        self.count = 0

    def _check_stream(self, data: bytes, what: str, report: bool = True) -> None:
        getattrs: list[tuple[str, str]] = []
        names, problems = decode_file(data, getattrs)
        for problem in problems if report else []:
            HARVEST.failures[f"decode:{HARVEST.library}"].append(f"{what}: {problem}")
        for name in names:
            if name not in HARVEST.globals:
                self._resolve_unseen(name)
        for owner, attr in getattrs:
            seen = HARVEST.globals.get(owner)
            if seen is not None:
                HARVEST.getattrs[seen.defining].add(attr)

    def _resolve_unseen(self, written: str) -> None:
        """A name in a file we wrote with a C pickler: resolve it (our own output)."""
        mod, _, qual = written.rpartition(".")
        obj: Any = None
        for split in range(written.count("."), 0, -1):
            parts = written.split(".")
            mod, qual = ".".join(parts[:split]), ".".join(parts[split:])
            try:
                import _compat_pickle

                mod = _compat_pickle.IMPORT_MAPPING.get(mod, mod)
                obj = resolve(mod, qual)
                break
            except Exception:
                continue
        if obj is None:
            HARVEST.unmapped.add(written)
            return
        HARVEST.note_global(written, obj)

    def pickle_all(
        self,
        obj: Any,
        label: str,
        *,
        torch_save: bool = False,
        joblib_dump: bool = True,
        pandas: bool = False,
    ) -> None:
        HARVEST.objects[HARVEST.library] += 1
        protocols: tuple[int, ...] = (2, 4) if self.fast else PROTOCOLS
        if label.partition("[")[0] in NO_PROTOCOL_0:
            protocols = tuple(p for p in protocols if p >= 2)
        for proto in protocols:
            self._try(f"{label}/p{proto}", functools.partial(self._pickle, obj, proto))
        if joblib_dump:
            self._try(f"{label}/joblib", lambda: self._joblib(obj))
        if torch_save:
            self._try(f"{label}/torch", lambda: self._torch(obj, True))
            if not self.fast:
                self._try(f"{label}/torch-legacy", lambda: self._torch(obj, False))
        if pandas:
            self._try(f"{label}/pandas", lambda: self._pandas(obj))

    def _try(self, what: str, fn: Callable[[], None]) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn()
            HARVEST.pickles[HARVEST.library] += 1
        except Exception as exc:
            HARVEST.failures[HARVEST.library].append(f"{what}: {type(exc).__name__}: {exc}"[:200])

    def _pickle(self, obj: Any, proto: int) -> None:
        f = io.BytesIO()
        try:
            RecordingPickler(f, protocol=proto).dump(obj)
        except AssertionError:
            # pickle._Pickler memoizes the temporary bytes of a PickleBuffer by id and trips
            # on a reused id (a CPython bug of the pure-Python pickler): the C pickler writes
            # the same globals; they are decoded and resolved from our own output.
            self._check_stream(pickle.dumps(obj, protocol=proto), f"C pickle p{proto}")
            return
        self._check_stream(f.getvalue(), f"pickle p{proto}")

    def _joblib(self, obj: Any) -> None:
        import joblib.numpy_pickle as jnp

        class RecordingNumpyPickler(RecordingMixin, jnp.NumpyPickler):  # type: ignore[misc]
            dispatch = jnp.NumpyPickler.dispatch.copy()

        self.count += 1
        path = self.workdir / f"o{self.count}.joblib"
        orig = jnp.NumpyPickler
        jnp.NumpyPickler = RecordingNumpyPickler
        try:
            jnp.dump(obj, path)
        finally:
            jnp.NumpyPickler = orig
        self._check_stream(path.read_bytes(), "joblib.dump")
        path.unlink()

    def _torch(self, obj: Any, zip_format: bool) -> None:
        import torch

        f = io.BytesIO()
        torch.save(
            obj,
            f,
            pickle_module=recording_pickle_module(),
            _use_new_zipfile_serialization=zip_format,
        )
        data = f.getvalue()
        if zip_format:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in zf.infolist():
                    if info.filename.endswith("data.pkl"):
                        self._check_stream(zf.read(info), "torch.save data.pkl")
        else:
            # Five stacked pickles, then raw storage bytes (not opcodes): decode problems
            # after the last pickle are expected; every name was recorded live.
            self._check_stream(data, "torch.save legacy", report=False)

    def _pandas(self, obj: Any) -> None:
        import pandas as pd

        self.count += 1
        path = self.workdir / f"o{self.count}.pkl"
        pd.to_pickle(obj, path, compression=None)
        self._check_stream(path.read_bytes(), "pandas.to_pickle")
        path.unlink()

    def decoded_file(self, path: Path, what: str) -> None:
        """A file a library wrote with its own (C) pickler: decode it, resolve what we wrote."""
        HARVEST.pickles[HARVEST.library] += 1
        self._check_stream(path.read_bytes(), what)


# --------------------------------------------------------------------------------------------
# The objects


def stdlib_objects() -> Iterator[tuple[str, Any]]:
    import array
    import collections
    import datetime as dt
    import decimal
    import fractions
    import functools
    import http
    import ipaddress
    import pathlib
    import re
    import uuid
    import zoneinfo

    yield "scalars", [1, 2.5, 3j, True, None, b"x", bytearray(b"y"), "s", ..., NotImplemented]
    yield "containers", (set([1]), frozenset([2]), range(3), slice(1, 2, 3), {"a": [1]})
    yield (
        "datetime",
        [
            dt.date(2024, 1, 2),
            dt.time(1, 2, 3),
            dt.datetime(2024, 1, 2, 3, 4, 5),
            dt.timedelta(days=1),
            dt.timezone.utc,
            dt.timezone(dt.timedelta(hours=2), "X"),
            dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        ],
    )
    with contextlib.suppress(Exception):
        z = zoneinfo.ZoneInfo("Europe/Paris")
        yield "zoneinfo", [z, dt.datetime(2024, 6, 1, tzinfo=z), zoneinfo.ZoneInfo("UTC")]
    yield "numbers", [decimal.Decimal("1.5"), fractions.Fraction(1, 3), decimal.Context()]
    yield (
        "collections",
        [
            collections.OrderedDict(a=1),
            collections.defaultdict(list, a=[1]),
            collections.deque([1, 2], maxlen=5),
            collections.Counter("aab"),
            collections.ChainMap({"a": 1}, {"b": 2}),
            types.SimpleNamespace(a=1),
        ],
    )
    yield "enums", [http.HTTPStatus.OK, re.RegexFlag.IGNORECASE, decimal.ROUND_HALF_EVEN]
    yield "uuid", uuid.UUID(int=12345)
    yield (
        "paths",
        [pathlib.PurePosixPath("/a/b"), pathlib.PureWindowsPath("c:/x"), pathlib.Path("rel/x")],
    )
    yield "re", [re.compile(r"a+b", re.I), re.compile(rb"x")]
    yield "ipaddress", [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_network("10.0.0.0/8")]
    yield "array", array.array("d", [1.0, 2.0])
    yield "partial", functools.partial(int, base=2)
    # types stored as values (estimator parameters such as dtype=float)
    yield "builtins", [int, float, str, list, dict, tuple, set, bytes, object, bool, complex]


def numpy_objects() -> Iterator[tuple[str, Any]]:
    import numpy as np

    dtypes = [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "longdouble",
        "complex64",
        "complex128",
        "clongdouble",
        "datetime64[ns]",
        "datetime64[D]",
        "timedelta64[s]",
        "S5",
        "U5",
        "V4",
        "O",
    ]
    arrays: list[Any] = []
    for d in dtypes:
        zeros: Any = np.zeros(3, dtype=d)
        arrays.append(zeros)
        arrays.append(zeros[0])  # the scalar
        arrays.append(np.dtype(d))
    yield "arrays", arrays
    with contextlib.suppress(Exception):
        yield "stringdtype", np.array(["a", "bc"], dtype=np.dtypes.StringDType())
    yield "big-endian", [np.arange(3, dtype=">i4"), np.dtype(">f8")]
    yield "structured", np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8", (2,)), ("c", "S3")])
    yield "record", np.rec.array([(1, 2.0)], dtype=[("x", "i4"), ("y", "f8")])
    yield "masked", [np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]), np.ma.masked]
    yield "matrix", np.matrix([[1, 2], [3, 4]])
    yield "fortran", np.asfortranarray(np.ones((2, 3)))
    yield "objects", np.array([{"a": 1}, None, "x"], dtype=object)
    yield "2d-large", np.arange(5000, dtype=np.float64).reshape(50, 100)
    yield (
        "rng",
        [
            np.random.RandomState(0),
            np.random.default_rng(0),
            np.random.get_state(),
            np.random.Generator(np.random.PCG64DXSM(1)),
            np.random.Generator(np.random.Philox(1)),
            np.random.Generator(np.random.SFC64(1)),
            np.random.MT19937(1),
            np.random.SeedSequence(1),
        ],
    )
    yield "ufunc", [np.add, np.sin, np.log1p, np.expm1, np.sqrt, np.exp, np.log, np.abs]
    # scalar types and dtype classes stored as values (estimator dtype= parameters)
    yield (
        "scalar-types",
        [
            np.float16,
            np.float32,
            np.float64,
            np.longdouble,
            np.int8,
            np.int16,
            np.int32,
            np.int64,
            np.uint8,
            np.uint16,
            np.uint32,
            np.uint64,
            np.bool_,
            np.complex64,
            np.complex128,
            np.str_,
            np.bytes_,
            np.object_,
            np.datetime64,
            np.timedelta64,
            np.intp,
            np.uintp,
            np.void,
            np.number,
            np.floating,
            np.integer,
            np.generic,
        ],
    )
    yield "dtype-classes", [type(np.dtype(d)) for d in ("f8", "i4", "O", "U3", "M8[s]")]
    yield "finfo", [np.finfo(np.float32), np.iinfo(np.int32)]
    yield "masked-fill", np.ma.masked_array([1.0, 2.0], mask=[1, 0], fill_value=-1.0)
    yield "memmap-like", np.lib.stride_tricks.as_strided(np.arange(4), (2,), (8,))
    with contextlib.suppress(Exception):
        yield "poly", [np.polynomial.Polynomial([1, 2]), np.poly1d([1, 2])]


def scipy_objects() -> Iterator[tuple[str, Any]]:
    import numpy as np
    import scipy.sparse as sp
    from scipy import interpolate, optimize, spatial, stats

    dense = np.array([[0, 1.0], [2.0, 0]])
    mats = []
    for fmt in ("csr", "csc", "coo", "lil", "dok", "bsr", "dia"):
        mats.append(getattr(sp, f"{fmt}_matrix")(dense))
        mats.append(getattr(sp, f"{fmt}_array")(dense))
    yield "sparse", mats
    yield (
        "distributions",
        [
            stats.norm(0, 1),
            stats.gamma(2.0),
            stats.poisson(3),
            stats.beta(2, 3),
            stats.multivariate_normal([0, 0]),
            stats.uniform(),
            stats.expon(),
            stats.gaussian_kde(np.random.RandomState(0).rand(20)),
        ],
    )
    yield (
        "spatial",
        [
            spatial.KDTree(np.random.RandomState(0).rand(10, 2)),
            spatial.cKDTree(np.random.RandomState(0).rand(10, 2)),
            spatial.transform.Rotation.from_euler("z", 30, degrees=True),
        ],
    )
    x = np.linspace(0, 1, 6)
    yield (
        "interpolate",
        [
            interpolate.CubicSpline(x, x**2),
            interpolate.PchipInterpolator(x, x),
            interpolate.make_interp_spline(x, x**2),
            interpolate.RegularGridInterpolator((x,), x),
        ],
    )
    yield "optimize", optimize.minimize(lambda v: (v**2).sum(), np.ones(2))
    r = np.random.RandomState(0)
    a, b = r.rand(10), r.rand(10)
    yield (
        "stats-results",
        [
            stats.describe(a),
            stats.ttest_ind(a, b),
            stats.pearsonr(a, b),
            stats.linregress(a, b),
            stats.ks_2samp(a, b),
            stats.mannwhitneyu(a, b),
            stats.spearmanr(a, b),
        ],
    )
    yield "special-sparse", [sp.eye(3, format="csr"), sp.random(4, 4, density=0.5, random_state=0)]
    yield "spatial-more", [spatial.distance.pdist(r.rand(4, 2)), spatial.ConvexHull(r.rand(6, 2))]


def sklearn_objects(fast: bool) -> Iterator[tuple[str, Any]]:
    import numpy as np
    from sklearn.utils import all_estimators

    try:
        from sklearn.utils._test_common.instance_generator import _construct_instances
    except ImportError:  # older layouts

        def _construct_instances(cls: Any) -> Iterator[Any]:
            yield cls()

    rng = np.random.RandomState(0)
    X = np.abs(rng.rand(40, 4)) + 0.1
    y_cls = np.array([0, 1, 2, 0] * 10)
    y_bin = np.array([0, 1] * 20)
    y_reg = rng.rand(40)
    Y_multi = np.stack([y_bin, y_bin[::-1]], axis=1)
    text = ["the cat sat", "a dog ran", "cats and dogs", "the end"] * 10
    estimators = all_estimators()
    if fast:
        estimators = estimators[::5]
    for name, cls in estimators:
        try:
            instances = list(_construct_instances(cls))
        except Exception:
            continue
        for est in instances[:1]:
            fitted = None
            # deterministic harvests: the same classes every run
            with contextlib.suppress(Exception):
                if "random_state" in est.get_params(deep=False):
                    est.set_params(random_state=0)
            fit_inputs: list[tuple[Any, ...]] = [
                (X, y_cls),
                (X, y_reg),
                (X,),
                (X, Y_multi),
                (X, y_bin),
                (text,),
                ([{"a": 1, "b": "x"}, {"a": 2}] * 5,),
                ([["a", "b"], ["c"]] * 5,),
                (y_cls,),
                (X[:, 0], y_reg),  # 1-d input (IsotonicRegression)
                (X @ X.T,),  # a square kernel matrix (KernelCenterer)
            ]
            for fit_args in fit_inputs:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fitted = est.fit(*fit_args)
                    break
                except Exception:
                    continue
            if fitted is None:
                HARVEST.failures["scikit-learn"].append(f"{name}: not fitted (pickled unfitted)")
            yield f"{name}", fitted if fitted is not None else est
    yield from sklearn_compositions()


def sklearn_compositions() -> Iterator[tuple[str, Any]]:
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    rng = np.random.RandomState(0)
    df = pd.DataFrame(
        {"n": rng.rand(30), "c": list("abc") * 10, "t": ["red fox", "blue sky", "sky"] * 10}
    )
    y = np.array([0, 1, 0] * 10)
    ct = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["n"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["c"]),
            ("txt", TfidfVectorizer(), "t"),
        ]
    )
    pipe = make_pipeline(ct, LogisticRegression()).fit(df, y)
    yield "pipeline-columns", pipe
    yield (
        "feature-union",
        make_pipeline(
            FeatureUnion([("a", StandardScaler()), ("b", FunctionTransformer(np.log1p))]),
            RandomForestClassifier(n_estimators=3),
        ).fit(np.abs(rng.rand(30, 3)), y),
    )
    yield (
        "grid",
        GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=2).fit(rng.rand(30, 3), rng.rand(30)),
    )
    yield (
        "ttr",
        TransformedTargetRegressor(func=np.log1p, inverse_func=np.expm1).fit(
            rng.rand(30, 2), rng.rand(30)
        ),
    )
    yield from sklearn_variants()
    yield (
        "hgb-categorical",
        HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype").fit(
            df[["n", "c"]].astype({"c": "category"}), y
        ),
    )


@dataclass(frozen=True)
class Lazy:
    """A sample built when it is pickled (its failure skips only that sample)."""

    make: Callable[[], Any]


def sklearn_variants() -> Iterator[tuple[str, Any]]:
    """Parameter choices that pickle other helper classes (losses, trees, metrics, kernels)."""
    import numpy as np
    from sklearn import ensemble, gaussian_process, linear_model, neighbors, neural_network
    from sklearn.gaussian_process import kernels
    from sklearn.metrics import DistanceMetric, f1_score, make_scorer

    rng = np.random.RandomState(0)
    X = rng.rand(40, 3)
    y = np.array([0, 1] * 20)
    yr = rng.rand(40) + 0.1
    for loss in (
        "hinge",
        "log_loss",
        "modified_huber",
        "squared_hinge",
        "perceptron",
        "squared_error",
        "huber",
        "epsilon_insensitive",
    ):
        with contextlib.suppress(Exception):
            yield f"sgd-{loss}", linear_model.SGDClassifier(loss=loss, max_iter=5).fit(X, y)
    for loss in ("squared_error", "huber", "epsilon_insensitive", "squared_epsilon_insensitive"):
        yield f"sgdr-{loss}", linear_model.SGDRegressor(loss=loss, max_iter=5).fit(X, yr)
    for loss in ("squared_error", "absolute_error", "gamma", "poisson", "quantile"):
        qkw = {"quantile": 0.5} if loss == "quantile" else {}
        yield (
            f"hgbr-{loss}",
            ensemble.HistGradientBoostingRegressor(loss=loss, max_iter=3, **qkw).fit(X, yr),
        )
    for loss in ("squared_error", "absolute_error", "huber", "quantile"):
        yield (
            f"gbr-{loss}",
            ensemble.GradientBoostingRegressor(loss=loss, n_estimators=3).fit(X, yr),
        )
    yield (
        "gbc-exp",
        ensemble.GradientBoostingClassifier(loss="exponential", n_estimators=3).fit(X, y),
    )
    yield "tweedie", linear_model.TweedieRegressor(power=1.5).fit(X, yr)
    for algo in ("ball_tree", "kd_tree", "brute"):
        yield f"nn-{algo}", neighbors.NearestNeighbors(algorithm=algo).fit(X)
    for metric in (
        "euclidean",
        "manhattan",
        "chebyshev",
        "minkowski",
        "haversine",
        "hamming",
        "canberra",
        "braycurtis",
        "jaccard",
        "mahalanobis",
    ):
        kw: dict[str, Any] = {"V": np.cov(X.T)} if metric == "mahalanobis" else {}
        with contextlib.suppress(Exception):
            yield f"metric-{metric}", DistanceMetric.get_metric(metric, **kw)
        with contextlib.suppress(Exception):
            yield (
                f"balltree-{metric}",
                neighbors.BallTree(X[:, :2] if metric == "haversine" else X, metric=metric, **kw),
            )
    yield "kde", neighbors.KernelDensity(kernel="epanechnikov").fit(X)
    ks = [
        kernels.Matern(),
        kernels.WhiteKernel(),
        kernels.DotProduct(),
        kernels.RationalQuadratic(),
        kernels.ExpSineSquared(),
        kernels.RBF() + kernels.WhiteKernel(),
        kernels.ConstantKernel() ** 2,
        kernels.PairwiseKernel(),
    ]
    yield "kernels", list(ks)  # the kernel objects themselves (one may not fit on toy data)
    for k in ks:
        gpr = gaussian_process.GaussianProcessRegressor(
            kernel=k, alpha=0.5, optimizer=None, random_state=0
        )
        yield f"gpr-{type(k).__name__}", Lazy(functools.partial(gpr.fit, X, yr))
    yield (
        "gpc",
        Lazy(
            functools.partial(
                gaussian_process.GaussianProcessClassifier(
                    kernels.RBF() * kernels.DotProduct()
                ).fit,
                X,
                y,
            )
        ),
    )
    for solver in ("sgd", "adam", "lbfgs"):
        yield (
            f"mlp-{solver}",
            neural_network.MLPClassifier(solver=solver, max_iter=5, hidden_layer_sizes=(3,)).fit(
                X, y
            ),
        )
    for solver in ("lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga"):
        yield f"logreg-{solver}", linear_model.LogisticRegression(solver=solver).fit(X, y)
    yield "scorer", make_scorer(f1_score)
    yield (
        "forest-oob",
        ensemble.RandomForestRegressor(n_estimators=2, oob_score=True, bootstrap=True).fit(X, yr),
    )
    yield "isolation", ensemble.IsolationForest(n_estimators=2).fit(X)


def pandas_objects() -> Iterator[tuple[str, Any]]:
    import numpy as np
    import pandas as pd

    n = 4
    cols: dict[str, Any] = {
        "i": np.arange(n),
        "f": np.linspace(0, 1, n),
        "b": [True, False] * 2,
        "s": list("abcd"),
        "o": [1, "a", None, 2.0],
        "cat": pd.Categorical(list("abab")),
        "ocat": pd.Categorical(list("abab"), categories=["b", "a"], ordered=True),
        "dt": pd.date_range("2024-01-01", periods=n),
        "dttz": pd.date_range("2024-01-01", periods=n, tz="Europe/Paris"),
        "dtutc": pd.date_range("2024-01-01", periods=n, tz="UTC"),
        "td": pd.to_timedelta(np.arange(n), unit="s"),
        "per": pd.period_range("2024-01", periods=n, freq="M"),
        "iv": pd.interval_range(0, n),
        "sp": pd.arrays.SparseArray([0, 1, 0, 2]),
        "Int64": pd.array([1, None, 3, 4], dtype="Int64"),
        "UInt8": pd.array([1, None, 3, 4], dtype="UInt8"),
        "Float64": pd.array([1.0, None, 3, 4], dtype="Float64"),
        "boolean": pd.array([True, None, False, True], dtype="boolean"),
        "string": pd.array(["a", None, "c", "d"], dtype="string"),
        "str_py": pd.array(["a", None, "c", "d"], dtype=pd.StringDtype("python")),
        "c128": np.array([1j] * n),
    }
    with contextlib.suppress(Exception):
        cols["arrow"] = pd.array([1, 2, 3, 4], dtype="int64[pyarrow]")
    frame = pd.DataFrame(cols)
    yield "frame", frame
    for name in cols:
        yield f"series-{name}", frame[name]
    yield (
        "multiindex",
        pd.DataFrame({"v": range(4)}, index=pd.MultiIndex.from_product([["a", "b"], [1, 2]])),
    )
    yield (
        "indexes",
        [
            pd.RangeIndex(5),
            pd.Index([1.5, 2.5]),
            pd.CategoricalIndex(list("ab")),
            pd.DatetimeIndex(["2024-01-01"]),
            pd.IntervalIndex.from_breaks([0, 1, 2]),
            pd.PeriodIndex(["2024-01"], freq="M"),
            pd.TimedeltaIndex(["1D"]),
        ],
    )
    yield (
        "scalars",
        [
            pd.Timestamp("2024-01-01", tz="UTC"),
            pd.Timestamp("2024-01-01", tz="Asia/Tokyo"),
            pd.Timedelta("1D"),
            pd.Period("2024-01", "M"),
            pd.Interval(0, 1),
            pd.NaT,
            pd.NA,
            pd.offsets.MonthEnd(2),
            pd.offsets.BDay(),
            pd.DateOffset(days=2),
            pd.offsets.Week(weekday=1),
            pd.tseries.frequencies.to_offset("h"),
        ],
    )
    yield (
        "dtypes",
        [
            pd.CategoricalDtype(["a"]),
            pd.DatetimeTZDtype(tz="UTC"),
            pd.PeriodDtype("D"),
            pd.IntervalDtype("int64"),
            pd.SparseDtype("float"),
            pd.Int32Dtype(),
            pd.StringDtype(),
        ],
    )
    with contextlib.suppress(Exception):
        yield "styler-free-attrs", frame.set_flags(allows_duplicate_labels=False)


def torch_objects(fast: bool) -> Iterator[tuple[str, Any]]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    from torch.nn.parameter import UninitializedParameter as UninitializedParam

    tensors = [
        torch.zeros(2, dtype=d)
        for d in (
            torch.float32,
            torch.float64,
            torch.float16,
            torch.bfloat16,
            torch.int8,
            torch.uint8,
            torch.int16,
            torch.int32,
            torch.int64,
            torch.bool,
            torch.complex64,
            torch.complex128,
        )
    ]
    for name in ("float8_e4m3fn", "float8_e5m2", "uint16", "uint32", "uint64"):
        with contextlib.suppress(Exception):
            tensors.append(torch.zeros(2, dtype=getattr(torch, name)))
    yield "tensors", tensors
    yield "views", [torch.arange(10)[2:5], torch.ones(3, 4).t(), torch.ones(2, 2).expand(2, 2)]
    yield "parameter", nn.Parameter(torch.ones(3))
    # (memory formats are not picklable at all)
    yield (
        "buffers-misc",
        [
            torch.Size([2, 3]),
            torch.device("cpu"),
            torch.device("meta"),
            torch.strided,
            torch.sparse_coo,
            torch.sparse_csr,
            torch.per_tensor_affine,
            torch.per_channel_affine,
        ],
    )
    yield "dtypes", [v for v in vars(torch).values() if isinstance(v, torch.dtype)]
    yield "meta-tensor", torch.empty(3, device="meta")
    with contextlib.suppress(Exception):
        yield "buffer", torch.nn.Buffer(torch.ones(2))
    yield "uninit-param", torch.nn.LazyLinear(2).weight
    yield "named-tuple-ret", torch.ones(3).max(0)
    yield "finfo", [torch.finfo(torch.float32), torch.iinfo(torch.int32)]
    yield (
        "sparse",
        [
            torch.eye(3).to_sparse(),
            torch.eye(3).to_sparse_csr(),
            torch.eye(3).to_sparse_csc(),
            torch.eye(4).to_sparse_bsr((2, 2)),
            torch.eye(4).to_sparse_bsc((2, 2)),
        ],
    )
    q = []
    with contextlib.suppress(Exception):
        q.append(torch.quantize_per_tensor(torch.rand(4), 0.1, 0, torch.quint8))
        q.append(torch.quantize_per_tensor(torch.rand(4), 0.1, 0, torch.qint8))
        q.append(
            torch.quantize_per_channel(
                torch.rand(2, 2), torch.tensor([0.1, 0.2]), torch.tensor([0, 0]), 0, torch.qint8
            )
        )
        q.append(torch.quantize_per_tensor(torch.rand(4), 0.1, 0, torch.qint32))
    yield "quantized", q
    with contextlib.suppress(Exception):
        from torch.ao.nn.quantized import Linear as QLinear

        yield "quantized-module", QLinear(4, 2)
    with contextlib.suppress(Exception):
        yield (
            "dynamic-quantized",
            torch.ao.quantization.quantize_dynamic(
                nn.Sequential(nn.Linear(4, 4)), {nn.Linear}, dtype=torch.qint8
            ),
        )
    yield (
        "rng",
        [
            torch.get_rng_state(),
            torch.Generator().manual_seed(1).get_state(),
            torch.Generator().manual_seed(1),
        ],
    )
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.LazyLinear(3) if False else nn.Linear(2, 3),
        nn.GELU(),
        nn.SiLU(),
        nn.Tanh(),
        nn.Sigmoid(),
        nn.Softmax(dim=-1),
        nn.LayerNorm(3),
        nn.Identity(),
    )
    modules: list[Any] = [
        model,
        nn.LSTM(3, 4, batch_first=True),
        nn.GRU(3, 4),
        nn.RNN(3, 4),
        nn.Embedding(10, 3),
        nn.EmbeddingBag(10, 3),
        nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 1),
        nn.MultiheadAttention(8, 2),
        nn.ModuleDict({"a": nn.Linear(2, 2)}),
        nn.ModuleList(
            [
                nn.LeakyReLU(),
                nn.PReLU(),
                nn.ELU(),
                nn.Mish(),
                nn.Hardswish(),
                nn.Softplus(),
                nn.LogSoftmax(dim=1),
                nn.GroupNorm(1, 2),
                nn.InstanceNorm1d(2),
                nn.ConvTranspose2d(1, 1, 2),
                nn.Conv1d(1, 1, 2),
                nn.AdaptiveAvgPool2d(1),
                nn.Upsample(scale_factor=2),
                nn.CrossEntropyLoss(),
                nn.MSELoss(),
                nn.BCEWithLogitsLoss(),
            ]
        ),
        nn.ParameterList([nn.Parameter(torch.ones(1))]),
        nn.ParameterDict({"p": nn.Parameter(torch.ones(1))}),
    ]
    if not fast:
        modules.append(nn.Transformer(8, 2, 1, 1, 16))
    # every torch.nn module class that builds without arguments (activations, losses, ...)
    for cls_name in sorted(dir(nn)):
        cls = getattr(nn, cls_name)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built = cls()
        except Exception:
            continue
        # default-size giants (nn.Transformer() has 44M parameters) are covered small above
        if (
            sum(p.numel() for p in built.parameters() if not isinstance(p, UninitializedParam))
            < 1e5
        ):
            modules.append(built)
    modules += [
        nn.Bilinear(2, 2, 2),
        nn.Unflatten(1, (1, 1)),
        nn.ZeroPad2d(1),
        nn.ConstantPad1d(1, 0.0),
        nn.ReflectionPad2d(1),
        nn.PixelShuffle(2),
        nn.Conv3d(1, 1, 1),
        nn.BatchNorm1d(2),
        nn.BatchNorm3d(2),
        nn.LazyLinear(2),
        nn.AvgPool1d(2),
        nn.MaxPool1d(2),
        nn.AdaptiveMaxPool1d(1),
        nn.LPPool1d(2, 2),
        nn.LSTMCell(2, 2),
        nn.GRUCell(2, 2),
        nn.RNNCell(2, 2),
        nn.Fold((2, 2), 1),
        nn.Unfold(1),
        nn.CosineSimilarity(),
        nn.PairwiseDistance(),
        nn.Softmax2d(),
        nn.Threshold(0.1, 0.0),
        nn.GLU(),
        nn.RMSNorm(2),
        nn.LocalResponseNorm(2),
        nn.ChannelShuffle(2),
        nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16), 1),
    ]
    for m in modules:
        yield f"module-{type(m).__name__}", m
        yield f"state-{type(m).__name__}", m.state_dict()
    # (modules with torch.nn.utils.parametrizations refuse to pickle: state_dict only)
    with contextlib.suppress(Exception):
        yield "spectral-old", torch.nn.utils.weight_norm(nn.Linear(2, 2))
    lin = nn.Linear(4, 2)
    lin(torch.ones(1, 4)).sum().backward()
    opts = [
        torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9),
        torch.optim.Adam(lin.parameters()),
        torch.optim.AdamW(lin.parameters()),
        torch.optim.RMSprop(lin.parameters()),
        torch.optim.Adagrad(lin.parameters()),
        torch.optim.Adadelta(lin.parameters()),
        torch.optim.LBFGS(lin.parameters()),
        torch.optim.NAdam(lin.parameters()),
        torch.optim.RAdam(lin.parameters()),
        torch.optim.Adamax(lin.parameters()),
        torch.optim.ASGD(lin.parameters()),
        torch.optim.Rprop(lin.parameters()),
    ]
    for opt in opts:
        with contextlib.suppress(Exception):
            if not isinstance(opt, torch.optim.LBFGS):
                opt.step()
        yield f"optim-{type(opt).__name__}", opt.state_dict()
        yield f"optim-obj-{type(opt).__name__}", opt
    sgd = opts[0]
    sched = [
        torch.optim.lr_scheduler.StepLR(sgd, 2),
        torch.optim.lr_scheduler.CosineAnnealingLR(sgd, 10),
        torch.optim.lr_scheduler.OneCycleLR(sgd, 1.0, total_steps=10),
        torch.optim.lr_scheduler.ReduceLROnPlateau(sgd),
        torch.optim.lr_scheduler.ExponentialLR(sgd, 0.9),
        torch.optim.lr_scheduler.CyclicLR(sgd, 0.01, 0.1),
        torch.optim.lr_scheduler.LinearLR(sgd),
        torch.optim.lr_scheduler.MultiStepLR(sgd, [1, 2]),
        torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(sgd, 2),
        torch.optim.lr_scheduler.PolynomialLR(sgd),
    ]
    for s in sched:
        yield f"sched-{type(s).__name__}", s.state_dict()
        yield f"sched-obj-{type(s).__name__}", s
    with contextlib.suppress(Exception):
        from torch.optim.swa_utils import AveragedModel

        yield "swa", AveragedModel(nn.Linear(2, 2))
    scaler = torch.amp.GradScaler("cpu")
    yield "gradscaler-state", scaler.state_dict()
    yield "gradscaler", scaler
    yield (
        "checkpoint-dict",
        {
            "epoch": 3,
            "model": model.state_dict(),
            "optimizer": sgd.state_dict(),
            "scheduler": sched[0].state_dict(),
            "scaler": scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "args": {"lr": 0.1},
        },
    )
    with contextlib.suppress(Exception):
        from torch.utils.data import TensorDataset

        yield "dataset", TensorDataset(torch.ones(3, 2))
    with contextlib.suppress(Exception):
        yield (
            "distributions",
            [torch.distributions.Normal(0.0, 1.0), torch.distributions.Categorical(torch.ones(3))],
        )


def dcp_objects(dumper: Dumper) -> None:
    """A distributed checkpoint written locally (no process group): its ``.metadata``."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch import nn

    with tempfile.TemporaryDirectory() as d:
        state = {
            "model": nn.Linear(3, 2).state_dict(),
            "step": 7,
            "extra": {"s": "x"},
            "io": io.BytesIO(b"abc"),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.save(state, checkpoint_id=d, no_dist=True)
        HARVEST.objects[HARVEST.library] += 1
        for p in Path(d).iterdir():
            if p.name == ".metadata":
                dumper.decoded_file(p, "dcp .metadata")
        # The metadata objects themselves, pickled by us (live objects, every protocol).
        from torch.distributed.checkpoint import metadata as md

        meta = md.Metadata(
            state_dict_metadata={
                "w": md.TensorStorageMetadata(
                    md.TensorProperties(dtype=torch.float32),
                    torch.Size([2]),
                    [md.ChunkStorageMetadata(torch.Size([0]), torch.Size([2]))],
                ),
                "b": md.BytesStorageMetadata(),
            },
            storage_data={md.MetadataIndex("w", (0,), 0): "x"},
        )
        dumper.pickle_all(meta, "dcp-metadata", torch_save=True)


def xgboost_objects() -> Iterator[tuple[str, Any]]:
    import numpy as np
    import xgboost as xgb

    rng = np.random.RandomState(0)
    X, y = rng.rand(30, 3), np.array([0, 1, 2] * 10)
    clf = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(X, y)
    yield "classifier", clf
    yield "regressor", xgb.XGBRegressor(n_estimators=3).fit(X, rng.rand(30))
    yield "ranker", xgb.XGBRanker(n_estimators=2).fit(X, y, qid=np.repeat([0, 1, 2], 10))
    yield "rf", xgb.XGBRFClassifier(n_estimators=2).fit(X, y)
    yield "booster", clf.get_booster()
    yield "dmatrix-free-params", {"params": clf.get_xgb_params()}


def lightgbm_objects() -> Iterator[tuple[str, Any]]:
    import lightgbm as lgb
    import numpy as np

    rng = np.random.RandomState(0)
    X, y = rng.rand(60, 3), np.array([0, 1, 2] * 20)
    clf = lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y)
    yield "classifier", clf
    yield "regressor", lgb.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, rng.rand(60))
    yield (
        "ranker",
        lgb.LGBMRanker(n_estimators=2, verbose=-1, min_child_samples=1).fit(
            X, y % 2, group=[30, 30]
        ),
    )
    yield "booster", clf.booster_


def transformers_objects(workdir: Path) -> Iterator[tuple[str, Any]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers as tr
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "##s"]
    vocab_file = workdir / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    small = dict(
        vocab_size=len(vocab),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    configs = [
        tr.BertConfig(**small),
        tr.GPT2Config(n_embd=8, n_layer=1, n_head=2),
        tr.PretrainedConfig(),
        tr.GenerationConfig(max_new_tokens=3),
    ]
    with contextlib.suppress(Exception):
        configs.append(
            tr.LlamaConfig(
                hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
            )
        )
    yield "configs", configs
    slow = tr.BertTokenizer(str(vocab_file))
    yield "bert-tokenizer", slow
    tok = Tokenizer(models.WordLevel({v: i for i, v in enumerate(vocab)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    yield "tokenizers-tokenizer", tok
    fast = tr.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    yield "fast-tokenizer", fast
    with contextlib.suppress(Exception):
        yield "bert-fast", tr.BertTokenizerFast(tokenizer_object=tok)
    yield "encoding", slow("the cat sat")
    yield "added-token", tr.AddedToken("<x>", lstrip=True)
    import torch

    model = tr.BertModel(tr.BertConfig(**small))
    yield "bert-model", model
    yield "bert-state", model.state_dict()
    with contextlib.suppress(Exception):
        yield (
            "gpt2-model",
            tr.GPT2LMHeadModel(
                tr.GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=16, n_positions=16)
            ),
        )
    with contextlib.suppress(Exception):
        args = tr.TrainingArguments(output_dir=str(workdir / "out"), report_to=[], use_cpu=True)
        yield "training-args", args
    with contextlib.suppress(Exception):
        yield "trainer-state", tr.TrainerState(global_step=3)
    del torch


def sentencepiece_objects(workdir: Path) -> Iterator[tuple[str, Any]]:
    """A SentencePiece model trained offline on a few lines we write, and the transformers
    tokenizers built on it (SentencePieceBackend subclasses)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sentencepiece as spm

    corpus = workdir / "corpus.txt"
    corpus.write_text("\n".join(["the cat sat on the mat", "a dog ran", "hello world"] * 30))
    prefix = workdir / "sp"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=30,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    model = f"{prefix}.model"
    yield "processor", spm.SentencePieceProcessor(model_file=model)
    with contextlib.suppress(ImportError):
        from transformers.models.bert_generation import BertGenerationTokenizer
        from transformers.models.siglip import SiglipTokenizer

        yield "siglip-tokenizer", Lazy(functools.partial(SiglipTokenizer, vocab_file=model))
        yield (
            "bert-generation-tokenizer",
            Lazy(functools.partial(BertGenerationTokenizer, vocab_file=model)),
        )


def safetensors_objects() -> Iterator[tuple[str, Any]]:
    # safetensors writes no pickle; its Python objects are plain dicts and tensors.
    import numpy as np
    import safetensors.numpy as stn

    data = stn.save({"a": np.ones(2, dtype=np.float32)})
    yield "safetensors-bytes", data


# --------------------------------------------------------------------------------------------
# Driver


def run_library(
    dumper: Dumper,
    library: str,
    factory: Callable[[], Iterable[tuple[str, Any]]],
    *,
    torch_save: bool = False,
    pandas: bool = False,
) -> None:
    HARVEST.library = library
    started = time.perf_counter()
    try:
        _run_library(dumper, library, factory, torch_save=torch_save, pandas=pandas)
    finally:
        HARVEST.seconds[library] += time.perf_counter() - started


def _run_library(
    dumper: Dumper,
    library: str,
    factory: Callable[[], Iterable[tuple[str, Any]]],
    *,
    torch_save: bool,
    pandas: bool,
) -> None:
    try:
        items = iter(factory())
        while True:
            try:
                label, obj = next(items)
            except StopIteration:
                break
            if isinstance(obj, Lazy):  # built here, so that one failure skips one sample
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        obj = obj.make()
                except Exception as exc:
                    HARVEST.failures[library].append(f"{label}: {type(exc).__name__}: {exc}"[:200])
                    continue
            # A list of samples: each element on its own (one that a protocol cannot pickle
            # must not hide the others).
            for i, one in enumerate(obj if type(obj) is list else [obj]):
                name = f"{library}:{label}" + (f"[{i}]" if type(obj) is list else "")
                dumper.pickle_all(one, name, torch_save=torch_save, pandas=pandas)
    except ImportError as exc:
        HARVEST.failures["skipped"].append(f"{library}: not installed ({exc})")
    except Exception as exc:
        HARVEST.failures[library].append(f"factory: {type(exc).__name__}: {exc}"[:300])


IMPORT_NAMES = {"scikit-learn": "sklearn"}


# Runs under every other Python found (2.7 and 3.x): the standard library's own values,
# pickled by that interpreter's pickle module, printed as JSON lines. Python 2 compatible.
OTHER_PYTHON_SNIPPET = r"""
import base64, json, pickle, sys
objs = []
def add(label, make):
    try:
        objs.append((label, make()))
    except Exception:
        pass
import collections, datetime, decimal, fractions, uuid
add("date", lambda: [datetime.date(2024, 1, 2), datetime.time(1, 2, 3),
                     datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.timedelta(days=1)])
add("tz", lambda: [datetime.timezone.utc, datetime.timezone(datetime.timedelta(hours=2))])
add("aware", lambda: datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
add("numbers", lambda: [decimal.Decimal("1.5"), fractions.Fraction(1, 3), 3j, 2 ** 70])
add("context", lambda: decimal.Context())
add("collections", lambda: [collections.OrderedDict(a=1), collections.deque([1], maxlen=3),
                            collections.defaultdict(list), collections.Counter("aab")])
add("chainmap", lambda: collections.ChainMap({"a": 1}))
add("sets", lambda: [set([1]), frozenset([2]), bytearray(b"x"), b"bytes", u"text"])
add("slices", lambda: [slice(1, 2), range(3)])
add("uuid", lambda: uuid.UUID(int=5))
add("types", lambda: [int, float, str, list, dict, tuple, set, bytes, object, bool, complex])
def zi():
    import zoneinfo
    z = zoneinfo.ZoneInfo("UTC")
    return [z, datetime.datetime(2024, 6, 1, tzinfo=z)]
add("zoneinfo", zi)
def enums():
    import http, re
    return [http.HTTPStatus.OK, re.IGNORECASE, re.compile("a+", re.I)]
add("enums", enums)
def paths():
    import pathlib
    return [pathlib.PurePosixPath("/a"), pathlib.PureWindowsPath("c:/x"), pathlib.Path("r")]
add("paths", paths)
def ns():
    import types
    return types.SimpleNamespace(a=1)
add("namespace", ns)
def ip():
    import ipaddress
    return [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_network("10.0.0.0/8")]
add("ipaddress", ip)
def arr():
    import array
    return array.array("d", [1.0])
add("array", arr)
def part():
    import functools
    return functools.partial(int, base=2)
add("partial", part)
for label, obj in objs:
    for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
        try:
            data = pickle.dumps(obj, proto)
        except Exception:
            continue
        print(json.dumps([label, proto, base64.b64encode(data).decode("ascii")]))
"""


# Run by another interpreter on names its own pickles wrote that do not resolve here (a
# private module moved between versions, e.g. pathlib._local in 3.13): is the object the
# same as the one under the public parent module? Prints {written: public name}.
OTHER_PYTHON_RESOLVE = r"""
import importlib, json, sys
out = {}
for written in sys.argv[1:]:
    parts = written.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            for a in parts[i:]:
                obj = getattr(obj, a)
        except Exception:
            continue
        mod, qual = parts[:i], parts[i:]
        while len(mod) > 1 and mod[-1].startswith("_"):
            mod = mod[:-1]
            try:
                cand = importlib.import_module(".".join(mod))
                for a in qual:
                    cand = getattr(cand, a)
            except Exception:
                continue
            if cand is obj:
                out[written] = ".".join(mod + qual)
                break
        break
print(json.dumps(out))
"""


def other_pythons() -> list[str]:
    """Other Python interpreters on this machine (pyenv versions, pythonX.Y on PATH)."""
    import glob
    import shutil

    found: dict[str, str] = {}
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python")))
    candidates += [
        p
        for v in ("2.7", *(f"3.{m}" for m in range(6, 16)))
        if (p := shutil.which(f"python{v}") or "")
    ]
    for path in candidates:
        real = os.path.realpath(path)
        if real == os.path.realpath(sys.executable) or real in found.values():
            continue
        found[path] = real
    return list(found)


def run_other_pythons(dumper: Dumper) -> list[str]:
    """Stdlib values pickled by every other interpreter; returns their versions."""
    import base64
    import subprocess

    versions = []
    for exe in other_pythons():
        try:
            proc = subprocess.run(
                [exe, "-c", OTHER_PYTHON_SNIPPET],
                capture_output=True,
                timeout=60,
                env={"PATH": os.environ.get("PATH", "")},
            )
            ver = (
                subprocess.run(
                    [exe, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                    capture_output=True,
                    timeout=30,
                )
                .stdout.decode()
                .strip()
            )
        except (OSError, subprocess.SubprocessError):
            continue
        own = ".".join(map(str, sys.version_info[:3]))
        if proc.returncode != 0 or not ver or ver in versions or ver == own:
            continue
        versions.append(ver)
        HARVEST.library = f"stdlib-python{ver}"
        labels: set[str] = set()
        for line in proc.stdout.decode("ascii", "replace").splitlines():
            try:
                label, proto, b64 = json.loads(line)
                data = base64.b64decode(b64)
            except ValueError:
                continue
            if label not in labels:
                labels.add(label)
                HARVEST.objects[HARVEST.library] += 1
            HARVEST.pickles[HARVEST.library] += 1
            before = set(HARVEST.unmapped)
            dumper._check_stream(data, f"python {ver} {label} p{proto}")
            HARVEST.unmapped_by[exe] |= HARVEST.unmapped - before
        unresolved = sorted(HARVEST.unmapped_by[exe])
        if unresolved:
            with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
                proc = subprocess.run(
                    [exe, "-c", OTHER_PYTHON_RESOLVE, *unresolved], capture_output=True, timeout=60
                )
                for written, public in json.loads(proc.stdout or b"{}").items():
                    HARVEST.other_aliases[written] = (public, ver)
    return versions


def installed(lib: str) -> bool:
    try:
        return importlib.util.find_spec(IMPORT_NAMES.get(lib, lib)) is not None
    except (ImportError, ValueError):
        return False


def dist_version(dist: str) -> str | None:
    for name in (dist, f"{dist}-cpu", f"{dist}_cpu"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(name)
    return None


def library_versions() -> dict[str, str]:
    out = {"python": ".".join(map(str, sys.version_info[:3]))}
    for dist in LIBRARIES:
        version = dist_version(dist)
        if version is not None:
            out[dist] = version
    return out


def harvest(
    fast: bool = False, only: set[str] | None = None, other_interpreters: bool = True
) -> Harvest:
    """Run the harvest in-process (fills and returns the module-level HARVEST)."""
    global HARVEST
    HARVEST = Harvest()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    def want(lib: str) -> bool:
        if only is not None and lib not in only:
            return False
        if lib != "stdlib" and not installed(lib):
            HARVEST.failures["skipped"].append(f"{lib}: not installed")
            return False
        return True

    with contextlib.suppress(ImportError):
        import numpy

        numpy.random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dumper = Dumper(work, fast)
        if want("stdlib"):
            run_library(dumper, "stdlib", stdlib_objects)
        if want("numpy"):
            run_library(dumper, "numpy", numpy_objects, torch_save=not fast)
        if want("scipy"):
            run_library(dumper, "scipy", scipy_objects)
        if want("pandas"):
            run_library(dumper, "pandas", pandas_objects, pandas=True)
        if want("scikit-learn"):
            run_library(dumper, "scikit-learn", lambda: sklearn_objects(fast))
        if want("torch"):
            run_library(dumper, "torch", lambda: torch_objects(fast), torch_save=True)
            HARVEST.library = "torch"
            try:
                dcp_objects(dumper)
            except Exception as exc:
                HARVEST.failures["torch"].append(f"dcp: {type(exc).__name__}: {exc}"[:300])
        if want("xgboost"):
            run_library(dumper, "xgboost", xgboost_objects)
        if want("lightgbm"):
            run_library(dumper, "lightgbm", lightgbm_objects)
        if want("transformers"):
            run_library(dumper, "transformers", lambda: transformers_objects(work), torch_save=True)
        if want("sentencepiece"):
            run_library(dumper, "sentencepiece", lambda: sentencepiece_objects(work))
        if want("safetensors"):
            run_library(dumper, "safetensors", safetensors_objects)
        if want("stdlib") and other_interpreters:
            HARVEST.other_pythons = run_other_pythons(dumper)
    return HARVEST


def joblib_test_data() -> Path | None:
    try:
        spec = importlib.util.find_spec("joblib")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "test" / "data"
    return folder if folder.is_dir() else None


def joblib_old_globals(folder: Path) -> dict[str, dict[str, list[str]]]:
    """{file name: {"globals": [...], "problems": [...]}} for joblib's shipped old pickles."""
    files = {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix not in (".py", ".pyc")
    }
    return _old_globals(files)


def joblib_archive_globals(archive: Path) -> dict[str, dict[str, list[str]]]:
    """The same, read from a joblib wheel or sdist (``pip download joblib==1.4.2 --no-deps``)
    without installing it: only members under ``joblib/test/data/`` are read, as bytes."""
    import tarfile

    files: dict[str, bytes] = {}
    limit = 64 << 20
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                name = info.filename
                wanted = "joblib/test/data/" in name and not name.endswith((".py", "/"))
                if wanted and info.file_size <= limit:
                    files[name.rsplit("/", 1)[1]] = zf.read(info)
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                name = member.name
                wanted = "joblib/test/data/" in name and not name.endswith(".py")
                if member.isfile() and wanted and member.size <= limit:
                    extracted = tf.extractfile(member)
                    if extracted is not None:
                        files[name.rsplit("/", 1)[1]] = extracted.read()
    return _old_globals(files)


def _old_globals(files: dict[str, bytes]) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for name, data in sorted(files.items()):
        names, problems = decode_file(data)
        out[name] = {"globals": sorted(set(names)), "problems": problems}
    return out


# --------------------------------------------------------------------------------------------
# A review aid: what the code an unpickler reaches implicitly may do (read it, then decide)

# Methods the unpickler (or a container it fills) calls implicitly on an object it builds.
IMPLICIT_METHODS = (
    "__new__",
    "__init__",
    "__post_init__",
    "__setstate__",
    "__setattr__",
    "__getattr__",
    "__getattribute__",
    "__setitem__",
    "append",
    "extend",
    "add",
    "__hash__",
    "__eq__",
    "__del__",
    "__call__",
)
RISKY_CALLS = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "__import__",
        "import_module",
        "open",
        "system",
        "popen",
        "Popen",
        "run",
        "check_output",
        "load",
        "loads",
        "urlopen",
        "socket",
        "create_connection",
        "init_process_group",
        "from_pretrained",
        "hf_hub_download",
        "snapshot_download",
        "read_text",
        "read_bytes",
        "fromfile",
        "memmap",
        "locate",
        "resolve_name",
        "getattr",
        "setattr",
        "globals",
        "locals",
        "vars",
        "spawn",
        "fork",
        "dlopen",
        "CDLL",
        "LoadLibrary",
        "Load",
        "LoadFromFile",
        "load_model",
        "from_file",
        "read_csv",
        "read_pickle",
        "read_parquet",
        "Unpickler",
    }
)


def screen(name: str, depth: int = 3) -> list[str]:
    """Risky calls in the Python code reachable from ``name``'s implicit methods (or the
    function itself), following ``self.method()`` and module functions ``depth`` deep; and
    constructor parameters stored on ``self`` and called by a method (``calls`` /
    ``result_calls`` candidates). Compiled code has no source: "no source" is reported."""
    import ast
    import inspect
    import textwrap

    parts = name.split(".")
    obj: Any = None
    for i in range(len(parts) - 1, 0, -1):
        with contextlib.suppress(Exception):
            obj = resolve(".".join(parts[:i]), ".".join(parts[i:]))
            break
    if obj is None:
        return ["unresolvable"]
    out: list[str] = []
    seen: set[int] = set()

    def walk(fn: Any, cls: Any, level: int, path: str) -> None:
        fn = getattr(fn, "__func__", fn)
        fn = fn.fget if isinstance(fn, property) else fn
        if id(fn) in seen or level > depth:
            return
        seen.add(id(fn))
        try:
            src = textwrap.dedent(inspect.getsource(fn))
            tree = ast.parse(src)
        except (OSError, TypeError, SyntaxError):
            if level == 0:
                out.append(f"{path}: no source")
            return
        env = getattr(fn, "__globals__", {})
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            called = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
            constant_name = (
                called in ("getattr", "setattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            )
            if called in RISKY_CALLS and not constant_name:
                out.append(f"{path}: {(ast.get_source_segment(src, node) or called)[:100]}")
            target: Any = None
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and cls is not None:
                if f.value.id in ("self", "cls"):
                    target = inspect.getattr_static(cls, f.attr, None)
            elif isinstance(f, ast.Name) and not isinstance(env.get(f.id), type):
                target = env.get(f.id)
            inner = getattr(target, "__func__", target)
            if inspect.isfunction(inner) or isinstance(target, property):
                walk(target, cls, level + 1, f"{path} > {getattr(inner, '__qualname__', '?')}")

    if isinstance(obj, type):
        for method in IMPLICIT_METHODS:
            owner = next((k for k in obj.__mro__ if method in vars(k)), None)
            if owner is not None and owner.__module__ != "builtins":
                walk(vars(owner)[method], obj, 0, f"{owner.__qualname__}.{method}")
        out += _stored_and_called(obj)
    elif callable(obj):
        walk(obj, None, 0, name)
    return sorted(set(out))


def _stored_and_called(cls: type) -> list[str]:
    """``self.X = <parameter>`` in __init__ and ``self.X(...)`` in any method of the class."""
    import ast
    import inspect
    import textwrap

    init = getattr(cls, "__init__", None)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))  # type: ignore[arg-type]
    except (OSError, TypeError, SyntaxError):
        return []
    fdef = tree.body[0]
    if not isinstance(fdef, ast.FunctionDef):
        return []
    params = [a.arg for a in fdef.args.args[1:] + fdef.args.kwonlyargs]
    stored = {}
    for node in ast.walk(fdef):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name):
            for t in node.targets:
                if (
                    isinstance(t, ast.Attribute)
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                    and node.value.id in params
                ):
                    stored[t.attr] = node.value.id
    out = []
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            continue
        for meth_name, meth in vars(klass).items():
            try:
                tree = ast.parse(textwrap.dedent(inspect.getsource(meth)))
            except (OSError, TypeError, SyntaxError, IndentationError):
                continue
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "self"
                    and node.func.attr in stored
                ):
                    param = stored[node.func.attr]
                    index = params.index(param)
                    out.append(
                        f"{klass.__qualname__}.{meth_name} calls parameter {param!r} "
                        f"(positional index {index})"
                    )
    return out


# --------------------------------------------------------------------------------------------
# Checking against the shipped allowlist


def load_allowlist(path: Path = ALLOWLIST) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def unexplained(names: Iterable[str], allowlist: dict[str, Any]) -> list[str]:
    """Names that are neither an entry, an alias nor a reviewed finding."""
    known = set(allowlist["entries"]) | set(allowlist["aliases"])
    known |= set(allowlist["reviewed_findings"])
    return sorted({n for n in names if n not in known})


def harvested_names(h: Harvest) -> set[str]:
    names = set(h.globals) | h.unmapped
    return {n for n in names if n.partition(".")[0] not in OWN_MODULES}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="write the harvest (JSON) here")
    ap.add_argument("--fast", action="store_true", help="a subset (the test's run)")
    ap.add_argument("--only", action="append", help="only this library (repeatable)")
    ap.add_argument("--check", action="store_true", help="compare with the shipped allowlist")
    ap.add_argument(
        "--joblib-archive",
        type=Path,
        help="read joblib's old test pickles from this wheel/sdist instead of the installed "
        "joblib (when its wheel has no test/data folder)",
    )
    ap.add_argument(
        "--screen",
        nargs="*",
        metavar="NAME",
        help="review aid: risky calls reachable from these names (default: every entry)",
    )
    args = ap.parse_args(argv)
    if args.screen is not None:
        warnings.simplefilter("ignore")
        for name in args.screen or sorted(load_allowlist()["entries"]):
            for line in screen(name):
                print(f"{name}: {line}")
        return 0
    warnings.simplefilter("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    t0, cpu0 = time.perf_counter(), time.process_time()
    h = harvest(fast=args.fast, only=set(args.only) if args.only else None)
    elapsed = time.perf_counter() - t0
    result = h.to_dict()
    result["seconds"] = round(elapsed, 1)
    result["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    folder = joblib_test_data()
    if args.joblib_archive is not None:
        result["joblib_test_data"] = joblib_archive_globals(args.joblib_archive)
    elif folder is not None:
        result["joblib_test_data"] = joblib_old_globals(folder)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    glob_count = len(harvested_names(h))
    print(
        f"harvest: {sum(h.objects.values())} objects, {sum(h.pickles.values())} pickles, "
        f"{glob_count} distinct globals in {elapsed:.1f}s",
        file=sys.stderr,
    )
    for lib, count in sorted(h.objects.items()):
        print(f"  {lib}: {count} objects, {h.pickles[lib]} pickles", file=sys.stderr)
    if not args.check:
        return 0
    allow = load_allowlist()
    bad = unexplained(harvested_names(h), allow)
    old = {n for v in result.get("joblib_test_data", {}).values() for n in v["globals"]}
    bad_old = unexplained(old, allow)
    for name in bad + bad_old:
        print(f"unexplained global: {name}", file=sys.stderr)
    return 1 if bad or bad_old else 0


if __name__ == "__main__":
    sys.exit(main())
