"""A fast path of the opcode loop for the commonest plain data: dicts of scalars in a row.

Picklers write a small dict as ``EMPTY_DICT MEMOIZE MARK`` key/value pairs ``SETITEMS``, and
a list of such dicts repeats one *shape*: the same opcodes, the same memo keys fetched for
the dict's keys, only the numbers and strings differ. The first dict of a shape is read
opcode by opcode here (``_parse``) and its shape compiled to a regular expression; a dict
that matches it is then read in one step (``apply``), the walker's state changing exactly
as the general loop would change it:

* the dict is pushed and memoised, and the strings memoised in it follow in order (shared
  by value as the loop shares them);
* every memo entry it reads must still be the very scalar the shape was made from;
* its values are all scalars, so it keeps each key with ``DATA`` (``values.kept_value``).

Anything else leaves the dict to the general loop, unchanged: a key or value that is not a
scalar (an import, a call, a container, a memo entry stored inside the dict itself), a
number as a key, a string of 16 bytes or more (offered to the nested scan), invalid UTF-8,
joblib's keys, more than ``KEEP`` items, an opcode past the safe window. The work is bounded:
a stream (all its stacked pickles) may compile 64 shapes, and parse one more for every 8
dicts a shape read.
``tests/scan/test_pickle_fastpath.py`` checks both paths give the same findings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mlverify._internal.scan.pickle.joblib import JUDGED_KEYS
from mlverify._internal.scan.pickle.values import DATA, KEEP, SCALARS

#: operand widths of the scalars a dict's value may be (BININT1/2, BININT, BINFLOAT, NONE,
#: NEWTRUE, NEWFALSE)
_WIDTH = {0x4B: 1, 0x4D: 2, 0x4A: 4, 0x47: 8, 0x4E: 0, 0x88: 0, 0x89: 0}
_COMPILES = 64


class _Shape:
    __slots__ = ("checks", "keys", "regex", "string_keys", "strings")

    def __init__(
        self,
        regex: re.Pattern[bytes],
        checks: tuple[tuple[int, Any], ...],
        keys: list[Any],
        strings: tuple[tuple[int, bool, int], ...],
    ) -> None:
        self.regex = regex
        self.checks = checks  # (memo key, the scalar it held)
        self.keys = tuple(keys)  # the dict's keys; None where a string of the dict is one
        self.strings = strings  # (regex group, memoised, index in keys or -1)
        self.string_keys = any(slot >= 0 for _, _, slot in strings)


_Parsed = tuple[bytes, tuple[tuple[int, Any], ...], list[Any], tuple[tuple[int, bool, int], ...]]


def _parse(buf: bytes, pos: int, end: int, dense: list[Any]) -> _Parsed | None:
    """The shape of the dict whose ``}`` precedes ``buf[pos]``: its regex pattern, the memo
    entries it reads, its keys and its strings (see ``_Shape``)."""
    if buf[pos : pos + 2] != b"\x94(":
        return None
    i = pos + 2
    own = len(dense)  # the dict's own memo key
    pat = [b"\\x94\\("]
    checks: list[tuple[int, Any]] = []
    keys: list[Any] = []
    strings: list[tuple[int, bool, int]] = []
    is_key = True
    tokens = 0
    while True:
        if i >= end:
            return None
        c = buf[i]
        if c == 0x75 and is_key:  # SETITEMS after whole pairs
            i += 1
            break
        tokens += 1
        if tokens > 2 * KEEP:
            return None
        if c == 0x68:  # BINGET
            if i + 2 > end:
                return None
            k = buf[i + 1]
            if k >= own:
                return None  # the dict itself, a string of it, or a key never stored
            v = dense[k]
            if v.__class__ not in SCALARS:
                return None
            checks.append((k, v))
            if is_key:
                keys.append(v)
            pat.append(re.escape(buf[i : i + 2]))
            i += 2
        elif c == 0x8C:  # SHORT_BINUNICODE, MEMOIZE or not
            if i + 2 > end:
                return None
            n = buf[i + 1]
            j = i + 2 + n
            if n >= 16 or j >= end:
                return None
            try:
                buf[i + 2 : j].decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                return None
            memo = buf[j] == 0x94
            strings.append((len(strings) + 1, memo, len(keys) if is_key else -1))
            if is_key:
                keys.append(None)
            pat.append(b"\\x8c" + re.escape(bytes([n])) + b"(.{%d})" % n)
            if memo:
                pat.append(b"\\x94")
            i = j + memo
        elif c in _WIDTH and not is_key:  # a number as a key: the general loop keeps it
            w = _WIDTH[c]
            pat.append(re.escape(bytes([c])) + (b".{%d}" % w if w else b""))
            i += 1 + w
        else:
            return None
        is_key = not is_key
    if i > end or not JUDGED_KEYS.isdisjoint(k for k in keys if k is not None):
        return None
    return b"".join(pat) + b"u", tuple(checks), keys, tuple(strings)


class RecordBudget:
    """The shape work one stream may do, over all its stacked pickles (each pickle has its
    own memo, hence its own shapes; the budget is the stream's, so a file of many small
    pickles of ever-new shapes cannot make every pickle compile its 64)."""

    __slots__ = ("compiled", "hits", "parses")

    def __init__(self) -> None:
        self.compiled = 0
        self.parses = 0
        self.hits = 0


class Records:
    """The dict shapes of one pickle (one memo)."""

    __slots__ = ("budget", "dense", "last", "shapes", "share", "stack")

    def __init__(
        self,
        stack: list[Any],
        dense: list[Any],
        share: Callable[[str, str], str],
        budget: RecordBudget,
    ) -> None:
        self.stack = stack
        self.dense = dense
        self.share = share
        self.shapes: dict[bytes, _Shape] = {}
        self.last: _Shape | None = None
        self.budget = budget

    def read(self, buf: bytes, pos: int, end: int) -> int:
        """Read the dict whose ``}`` precedes ``buf[pos]`` if all of it lies before ``end``
        and it has a shape of scalars: the position after its SETITEMS, else 0 (nothing
        changed)."""
        shape = self.last
        if shape is not None:
            m = shape.regex.match(buf, pos, end)
            if m is not None:
                got = self._apply(shape, m)
                if got:
                    self.budget.hits += 1
                    return got
        budget = self.budget
        if budget.parses > 64 + budget.hits // 8:
            return 0
        budget.parses += 1
        parsed = _parse_cached(buf, pos, end, self.dense, self.shapes, budget.compiled)
        if parsed is None:
            return 0
        shape, new = parsed
        budget.compiled += new
        m = shape.regex.match(buf, pos, end)
        if m is None:
            return 0
        self.last = shape
        return self._apply(shape, m)

    def _apply(self, shape: _Shape, m: re.Match[bytes]) -> int:
        dense = self.dense
        for k, v in shape.checks:
            if dense[k] is not v:
                return 0  # the memo entry was replaced since
        keys: Any = shape.keys
        new: list[str] = []
        if shape.strings:
            if shape.string_keys:
                keys = list(keys)
            share = self.share
            for group, memo, slot in shape.strings:
                try:
                    s = m.group(group).decode("utf-8", "surrogatepass")
                except UnicodeDecodeError:
                    return 0
                if memo:
                    s = share(s, s)
                    new.append(s)
                if slot >= 0:
                    keys[slot] = s
            if shape.string_keys and not JUDGED_KEYS.isdisjoint(keys):
                return 0
        d = dict.fromkeys(keys, DATA)
        dense.append(d)
        if new:
            dense.extend(new)
        self.stack.append(d)
        return m.end()


def _parse_cached(
    buf: bytes, pos: int, end: int, dense: list[Any], shapes: dict[bytes, _Shape], compiled: int
) -> tuple[_Shape, int] | None:
    """The shape at ``pos`` (from ``shapes`` when seen before) and whether it was compiled."""
    parsed = _parse(buf, pos, end, dense)
    if parsed is None:
        return None
    pattern, checks, keys, strings = parsed
    old = shapes.get(pattern)
    if old is not None:
        if len(old.checks) == len(checks) and all(
            a[1] is b[1] for a, b in zip(old.checks, checks, strict=True)
        ):
            return old, 0
        shape = _Shape(old.regex, checks, keys, strings)  # the same bytes, other memo objects
    elif compiled >= _COMPILES:
        return None
    else:
        shape = _Shape(re.compile(b"(?s)" + pattern), checks, keys, strings)
    shapes[pattern] = shape
    return shape, int(old is None)
