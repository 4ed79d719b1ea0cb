"""The values the simulated unpickler pushes: plain data, imports, calls and stand-ins.

Nothing here is ever hashed or compared by content beyond plain scalars: simulated
containers are kept as lists, dicts and tuples of at most ``KEEP`` elements, and only
str/int/float/bool/None/bytes keys go into a simulated dict (a tuple key could be a
structure shared exponentially, and hashing it would never end).
"""

from __future__ import annotations

from typing import Any

KEEP = 64  # elements kept per simulated container
KEEP_STR = 256  # characters kept of a string stored in the memo


class Opaque:
    """A value the walker does not model."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"<{self.what}>"


ANY = Opaque("object")
PERSISTENT = Opaque("persistent object")
BUFFER = Opaque("out-of-band buffer")
ARRAY = Opaque("numpy array read by joblib")
SET = Opaque("set")
#: the key a simulated dict keeps for the keys it cannot hold (a computed value, a tuple): a
#: loader's dict has them, so the simulated one is not empty, and when such a key may be a
#: str its value may be set under any attribute name (``plants_method``)
COMPUTED_KEY = Opaque("computed key")


class Blob:
    """A string or bytes value too long to keep: only where it is."""

    __slots__ = ("kind", "length", "offset")

    def __init__(self, kind: str, offset: int, length: int) -> None:
        self.kind = kind
        self.offset = offset
        self.length = length

    def __repr__(self) -> str:
        return f"<{self.kind} of {self.length} bytes at {self.offset}>"


class Trunc:
    """A long string kept in the memo by its start only: never usable as a name."""

    __slots__ = ("length", "prefix")

    def __init__(self, prefix: str, length: int) -> None:
        self.prefix = prefix
        self.length = length

    def __repr__(self) -> str:
        return f"<str of {self.length} characters starting {self.prefix[:40]!r}>"


class ImportRecord:
    """One distinct import of a stream, its verdict and how it is used."""

    __slots__ = ("count", "good_calls", "module", "name", "offset", "opcode", "uses", "verdict")

    def __init__(self, module: str, name: str, offset: int, opcode: str, verdict: Any) -> None:
        self.module = module
        self.name = name
        self.offset = offset
        self.opcode = opcode
        self.verdict = verdict
        self.count = 0
        self.good_calls = 0  # uses shown harmless (builtins.getattr of a known method)
        self.uses: list[str] = []

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}" if self.module else self.name


class Ref:
    """The value an import pushes."""

    __slots__ = ("rec",)

    def __init__(self, rec: ImportRecord) -> None:
        self.rec = rec

    def __repr__(self) -> str:
        return self.rec.full


class Call:
    """The result of calling ``func`` with ``args`` (REDUCE, NEWOBJ, INST, ...).

    ``target`` is the dotted path the value stands for when it is resolvable (an import
    helper's result, ``getattr`` of a known method); ``method`` is True when that target is
    a method the allowlist names for the class of the object it was fetched from.
    """

    __slots__ = ("args", "func", "kind", "method", "offset", "state", "target")

    def __init__(self, func: Any, args: Any, kind: str, offset: int, target: str | None) -> None:
        self.func = func
        self.args = args
        self.kind = kind
        self.offset = offset
        self.target = target
        self.method = False
        self.state: Any = None

    def __repr__(self) -> str:
        return render(self)


TRACKED = (Ref, Call)


def render(v: Any, budget: int = 160) -> str:
    """A short Python-like rendering of a simulated value (bounded work and length)."""
    out = _render(v, 0)
    return out if len(out) <= budget else out[: budget - 3] + "..."


def _render(v: Any, depth: int) -> str:
    if depth > 3:
        return "..."
    if isinstance(v, Call):
        if isinstance(v.args, tuple):
            inner = ", ".join(_render(a, depth + 1) for a in v.args[:4])
            if len(v.args) > 4:
                inner += ", ..."
        else:
            inner = "*" + _render(v.args, depth + 1)
        return f"{_render(v.func, depth + 1)}({inner})"
    if isinstance(v, tuple):
        inner = ", ".join(_render(a, depth + 1) for a in v[:4])
        return f"({inner}{',' if len(v) == 1 else ''}{', ...' if len(v) > 4 else ''})"
    if isinstance(v, list):
        return "[" + ", ".join(_render(a, depth + 1) for a in v[:4]) + "]"
    if isinstance(v, dict):
        items = list(v.items())[:4]
        return (
            "{"
            + ", ".join(f"{_render(k, depth + 1)}: {_render(x, depth + 1)}" for k, x in items)
            + "}"
        )
    if v is DATA:
        return "<data>"
    if isinstance(v, (str, bytes)):
        r = repr(v[:60])
        return r if len(v) <= 60 else r + "..."
    return repr(v)


def slim(v: Any) -> Any:
    """What the memo keeps of a value (bounded)."""
    if v.__class__ is str and len(v) > KEEP_STR:
        return Trunc(v[:KEEP_STR], len(v))
    return v  # bytes stay whole (at most Limits.small_value each): a loader may load them


#: dict keys a simulated dict may hold (hashing them is constant work)
SCALAR_KEYS = (str, int, float, bytes, bool, type(None))

#: What a simulated dict keeps as a scalar value (see ``kept_value``): an ``int``, so plain
#: data to every test of the judge; a unique object, told apart by identity when rendered.
DATA = int("7" * 30)

#: the classes of scalar values: kept as dict keys, replaced by ``kept_value``
SCALARS = frozenset(SCALAR_KEYS)


def kept_value(key: Any, value: Any, judged: frozenset[str]) -> Any:
    """What a simulated dict keeps as the value under ``key``.

    No opcode reads a dict's values back; only the judge does, and it reads a scalar value
    only under the keys in ``judged`` (joblib's array wrapper attributes). Elsewhere it asks
    only whether a value is plain data (never callable) or holds imports and calls. So a
    scalar under any other key is kept as the shared ``DATA``, plain data too: a dense
    pickle of 300 000 small dicts does not keep a million values alive."""
    if value.__class__ in SCALARS and key not in judged:
        return DATA
    return value


#: plain data values: never callable
PLAIN = frozenset({str, bytes, bytearray, int, float, bool, type(None), tuple, list, dict})

#: allowed functions that make an instance of their first argument (``cls.__new__``)
CONSTRUCTORS = frozenset({"copyreg.__newobj__", "copyreg.__newobj_ex__", "copyreg._reconstructor"})


def plants_method(key: Any, value: Any, behaviour: frozenset[str]) -> bool:
    """Would setting instance attribute ``key`` to ``value`` replace a method a loader (or
    an allowed getattr) calls later: a dunder or a ``behaviour`` name, a non-plain value?
    A computed key (``COMPUTED_KEY``) may be any name, ``__setstate__`` included."""
    if value.__class__ in PLAIN:
        return False
    if key is COMPUTED_KEY:
        return True
    if key.__class__ is not str:
        return False
    return key in behaviour or (key.startswith("__") and key.endswith("__"))
