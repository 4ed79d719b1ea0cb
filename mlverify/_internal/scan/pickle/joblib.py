"""joblib's array wrappers and numpy dtypes: how many bytes joblib reads after a BUILD.

joblib's ``NumpyUnpickler.load_build`` runs the ordinary BUILD, and when the object on top of
the stack is then a ``NumpyArrayWrapper`` it reads the array from the stream right there:
an inline nested pickle when the dtype holds objects, else an optional padding byte (and that
many padding bytes) followed by ``prod(shape) * dtype.itemsize`` raw bytes. The wrapper's
attributes come from its ``__init__`` arguments (when built by REDUCE) and then from BUILD
states (a dict, or ``(dict, slotstate)``), as ``object.__setstate__`` applies them.

Sizing is exact or it is refused: whatever this module cannot size the way numpy and
joblib do raises :class:`CannotFollow`, and the stream is reported "cannot follow".
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from mlverify._internal.scan.pickle.values import COMPUTED_KEY, CONSTRUCTORS, Call, Ref

WRAPPERS = frozenset(
    {
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    }
)
_INIT_ARGS = ("subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes")
_INIT_DEFAULTS: dict[str, Any] = {"allow_mmap": False, "numpy_array_alignment_bytes": 16}
#: the state keys whose values (not only their types) this module reads
JUDGED_KEYS = frozenset(_INIT_ARGS) | {"filename"}
_SIZED = re.compile(r"([<>|=]?)([SaUV])(\d+)\Z")


class CannotFollow(Exception):
    """The walker cannot tell where a loader goes on reading: a limit of ours, not theirs."""


@dataclass(frozen=True)
class ArrayLayout:
    nbytes: int  # raw bytes after the optional padding
    padding: bool  # a padding-length byte (and that many bytes) comes first
    objects: bool  # the array is an inline nested pickle instead


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, tuple[int, bool]], dict[str, tuple[int, bool]]]:
    text = (
        resources.files("mlverify._internal.scan")
        .joinpath("data/numpy_dtypes.json")
        .read_text("utf-8")
    )
    data = json.loads(text)
    spell = {str(k): (int(v[0]), bool(v[1])) for k, v in data["spellings"].items()}
    types = {str(k): (int(v[0]), bool(v[1])) for k, v in data["scalar_types"].items()}
    return spell, types


def wrapper_of(obj: Any, defining: Any) -> bool:
    """Is ``obj`` (a simulated value) an instance of a joblib array wrapper?

    ``defining`` maps an import's full name to its defining name (the policy's aliases).
    """
    if not isinstance(obj, Call):
        return False
    f = obj.func
    if not isinstance(f, Ref):
        return False
    name = defining(f.rec.full)
    if name in WRAPPERS:
        return True
    if name in CONSTRUCTORS:
        args = obj.args
        if isinstance(args, tuple) and args and isinstance(args[0], Ref):
            return defining(args[0].rec.full) in WRAPPERS
    return False


def maybe_wrapper(obj: Any, defining: Any) -> bool:
    """Could ``obj`` be a wrapper made some other way (an allowed function returning one of
    its arguments, say)? joblib tests the object's type, not how it was made."""
    if not isinstance(obj, Call) or not isinstance(obj.args, tuple):
        return False
    for a in obj.args[:16]:
        if isinstance(a, Ref) and defining(a.rec.full) in WRAPPERS:
            return True
        if isinstance(a, Call) and wrapper_of(a, defining):
            return True
    return False


def _attributes(obj: Call, states: list[Any], defining: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    direct = isinstance(obj.func, Ref) and defining(obj.func.rec.full) in WRAPPERS
    if direct and obj.kind in ("REDUCE", "INST", "OBJ"):  # __init__ ran with these arguments
        args = obj.args
        if not isinstance(args, tuple) or len(args) > len(_INIT_ARGS):
            raise CannotFollow("NumpyArrayWrapper built with arguments the scanner cannot see")
        if len(args) < 4:
            raise CannotFollow("NumpyArrayWrapper built with too few arguments")
        attrs.update(_INIT_DEFAULTS)
        attrs.update(zip(_INIT_ARGS, args, strict=False))
    for state in states:
        slot = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slot = state
        for part in (state, slot):
            if part is None:
                continue
            if not isinstance(part, dict):
                raise CannotFollow("NumpyArrayWrapper state the scanner cannot read")
            attrs.update(part)
    return attrs


def array_layout(obj: Call, states: list[Any], defining: Any) -> ArrayLayout:
    """What joblib reads from the stream after BUILD made ``obj`` a complete wrapper."""
    attrs = _attributes(obj, states, defining)
    if "shape" not in attrs or "dtype" not in attrs:
        raise CannotFollow("NumpyArrayWrapper without a shape or dtype")
    itemsize, hasobject = dtype_info(attrs["dtype"], defining, [256])
    if hasobject:
        return ArrayLayout(0, False, True)
    shape = attrs["shape"]
    if isinstance(shape, (list, tuple)) and not shape:
        count = 1
    elif isinstance(shape, (list, tuple)):
        # numpy.multiply.reduce over int64: the product wraps around as int64 does
        count = 1
        for d in shape:
            count = _wrap64(count * _dim(d))
        if count < 0:
            raise CannotFollow("NumpyArrayWrapper with a negative shape")
    else:
        raise CannotFollow(
            f"NumpyArrayWrapper shape {type(shape).__name__} the scanner cannot size"
        )
    align = attrs.get("numpy_array_alignment_bytes")
    if align is not None and not isinstance(align, (int, float, str, bytes, bool)):
        raise CannotFollow("NumpyArrayWrapper alignment the scanner cannot read")
    return ArrayLayout(count * itemsize, align is not None, False)


def _wrap64(x: int) -> int:
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


def _dim(d: Any) -> int:
    # joblib casts each element with numpy.int64(x): ints, bools, floats (truncated)
    v: int | None = None
    if isinstance(d, bool):
        v = int(d)
    elif isinstance(d, int):
        v = d
    elif isinstance(d, float) and math.isfinite(d):
        v = int(d)
    if v is None or not -(1 << 63) <= v < 1 << 63:
        raise CannotFollow(f"NumpyArrayWrapper shape element {d!r:.40} the scanner cannot size")
    return v


def dtype_info(v: Any, defining: Any, budget: list[int]) -> tuple[int, bool]:
    """(itemsize, hasobject) of a simulated dtype value, as numpy computes them.

    ``budget`` counts the dtypes still to visit (nested fields may share structure).
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise CannotFollow("a dtype with more nested parts than the scanner follows")
    spell, types = _table()
    if isinstance(v, Ref):
        got = types.get(defining(v.rec.full))
        if got is None:
            raise CannotFollow(f"dtype {v.rec.full} the scanner cannot size")
        return got
    if isinstance(v, str):
        return _spelling(v, spell)
    if not isinstance(v, Call) or not isinstance(v.func, Ref):
        raise CannotFollow("a dtype the scanner cannot size")
    if defining(v.func.rec.full) not in ("numpy.dtype", "numpy.core.multiarray.dtype"):
        raise CannotFollow(f"a dtype made by {v.func.rec.full}")
    args = v.args
    if not isinstance(args, tuple) or not args:
        raise CannotFollow("numpy.dtype called with arguments the scanner cannot see")
    if len(args) > 1 and args[1] not in (False, 0, None):
        raise CannotFollow("an aligned dtype")
    spec = args[0]
    if isinstance(spec, (Ref, Call)):
        itemsize, hasobject = dtype_info(spec, defining, budget)
        flexible = False
    elif isinstance(spec, str):
        itemsize, hasobject = _spelling(spec, spell)
        flexible = bool(_SIZED.match(spec))
    else:
        raise CannotFollow("numpy.dtype of a spec the scanner cannot size")
    state = v.state
    if state is None:
        return itemsize, hasobject
    if not isinstance(state, tuple) or len(state) < 8:
        raise CannotFollow("a dtype state the scanner cannot read")
    subarray, fields, elsize, flags = state[2], state[4], state[5], state[7]
    if not isinstance(elsize, int) or not isinstance(flags, int):
        raise CannotFollow("a dtype state the scanner cannot read")
    if flags & 1:  # NPY_ITEM_REFCOUNT: holds object references
        hasobject = True
    if subarray is not None:
        if not isinstance(subarray, tuple) or len(subarray) != 2:
            raise CannotFollow("a dtype subarray the scanner cannot read")
        hasobject = hasobject or dtype_info(subarray[0], defining, budget)[1]
    if fields is not None:
        if not isinstance(fields, dict) or len(fields) >= 64:
            raise CannotFollow("dtype fields the scanner cannot read")
        for fv in fields.values():
            if not isinstance(fv, tuple) or not fv:
                raise CannotFollow("a dtype field the scanner cannot read")
            hasobject = hasobject or dtype_info(fv[0], defining, budget)[1]
    if elsize > 0:
        if flexible or fields is not None or subarray is not None:
            if flexible and itemsize and itemsize != elsize:
                raise CannotFollow("a dtype whose size and state disagree")
            itemsize = elsize
        elif elsize != itemsize:
            raise CannotFollow("a dtype whose size and state disagree")
    return itemsize, hasobject


def _spelling(s: str, spell: dict[str, tuple[int, bool]]) -> tuple[int, bool]:
    got = spell.get(s)
    if got is not None:
        return got
    m = _SIZED.match(s)
    if m is not None:
        n = int(m.group(3))
        return (4 * n if m.group(2) == "U" else n), False
    raise CannotFollow(f"dtype {s!r:.40} the scanner cannot size")


#: joblib < 0.10 kept arrays in sibling files that joblib loads with allow_pickle=True
OLD_WRAPPERS = frozenset(
    {
        f"{pkg}.{mod}.{cls}"
        for pkg in ("joblib", "sklearn.externals.joblib")
        for mod in ("numpy_pickle", "numpy_pickle_compat")
        for cls in ("NDArrayWrapper", "ZNDArrayWrapper")
    }
)
_PLAIN_NAME = re.compile(r"[^/\\\x00]+\Z")


def ndarray_wrapper_problem(obj: Call, state: Any, defining: Any) -> str | None:
    """An old joblib NDArrayWrapper names the file joblib then loads with allow_pickle=True:
    anything but a plain sibling file name reaches outside the artifact (the problem), a
    plain name is ``"sibling:NAME"`` (that file must be scanned with this one)."""
    if not isinstance(obj.func, Ref):
        return None
    name = defining(obj.func.rec.full)
    if name in CONSTRUCTORS and isinstance(obj.args, tuple):
        a0 = obj.args[0] if obj.args else None
        name = defining(a0.rec.full) if isinstance(a0, Ref) else name
    if name not in OLD_WRAPPERS:
        return None
    if isinstance(state, tuple) and len(state) == 2:
        # BUILD applies the dict, then sets the slot state's items over it: the last wins
        merged: dict[Any, Any] = {}
        for part in state:
            if isinstance(part, dict):
                merged.update(part)
            elif part is not None:
                merged[COMPUTED_KEY] = part  # unreadable: it may set any attribute
        state = merged
    filename = state.get("filename") if isinstance(state, dict) else None
    known = isinstance(state, dict) and COMPUTED_KEY not in state  # no key may be "filename"
    plain = isinstance(filename, str) and _PLAIN_NAME.match(filename) is not None
    if known and plain and filename not in (".", ".."):
        return f"sibling:{filename}"
    return (
        f"an old joblib array wrapper makes joblib load the file {filename!r:.80} with "
        "allow_pickle=True: only a plain file name beside the pickle can be scanned with it"
    )


def spelling_has_object(s: str) -> bool | None:
    """Does ``numpy.dtype(s)`` hold Python objects? None for a spelling numpy may accept
    that the table does not know (the caller then treats it as holding objects)."""
    spell, _ = _table()
    got = spell.get(s)
    if got is not None:
        return got[1]
    return False if _SIZED.match(s) else None
