"""Text operands of protocol-0 opcodes, accepted exactly as CPython's unpicklers accept them.

There are two unpicklers, and a file is as dangerous as the more permissive one lets it be:
the pure-Python ``pickle._Unpickler`` (``int(line, 0)``, ``float(line)``) and the C
``_pickle`` (``strtol``/``PyLong_FromString`` on a NUL-terminated copy of the line, so a NUL
ends the number early; ``PyOS_string_to_double``, which may stop at a NUL). Each parser here
returns the value a loader would push when *either* implementation accepts the line, and
raises :class:`LoaderError` only when both refuse it (then every loader stops there).
``line`` is always the operand without its newline.
"""

from __future__ import annotations

import codecs
import re
import warnings

# strtol(s, &end, 0): optional whitespace and sign, then 0x-hex, 0-octal or decimal
_STRTOL = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
# PyOS_string_to_double: no leading whitespace, no underscores
_C_FLOAT = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)",
    re.IGNORECASE,
)
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


class LoaderError(Exception):
    """Every CPython unpickler raises here: nothing after this point runs."""


class _Unsized(Exception):
    """Accepted by some loader, but too long to convert here."""


def _pylong(text: bytes, base: int) -> int | None:
    """``int(text, base)`` as PyLong_FromString takes it; a decimal literal over this
    Python's digit limit is accepted (older loaders have no limit), its value unknown."""
    try:
        return int(text, base)
    except ValueError as e:
        if "limit" in str(e):  # over sys.int_info.str_digits_check_threshold
            raise _Unsized from None
        return None


def _c_string(line: bytes) -> bytes:
    """The line as C code sees it: a NUL-terminated copy, so a NUL ends it."""
    i = line.find(b"\0")
    return line if i < 0 else line[:i]


def parse_int(line: bytes) -> int | bool | None:
    """INT: ``I<text>``; None when accepted but too long to convert here."""
    try:
        return _parse_int(line)
    except _Unsized:
        return None


def _parse_int(line: bytes) -> int | bool:
    if line == b"00":
        return False
    if line == b"01":
        return True
    v = _pylong(line, 0)  # pickle._Unpickler: int(data, 0)
    if v is not None:
        return v
    # _pickle: strtol(s, &end, 0), accepted when it stops at the newline or at a NUL
    # (CPython <= 3.12; newer ones want the newline): with no digits at all, end is the
    # start of the line, so a line that starts with a NUL is 0
    m = _STRTOL.match(line)
    if m is None:
        if line[:1] == b"\0":
            return False if len(line) == 2 else 0  # len(line + newline) == 3: a bool
    else:
        stop = line[m.end() : m.end() + 1]
        if stop in (b"", b"\0"):
            digits = m.group(2)
            if digits[:2] in (b"0x", b"0X"):
                x = int(digits[2:], 16)
            elif digits[:1] == b"0" and len(digits) > 1:
                x = int(digits[1:], 8)
            else:
                x = int(digits)
            x = -x if m.group(1) == b"-" else x
            if _LONG_MIN <= x <= _LONG_MAX:
                return bool(x) if len(line) == 2 and x in (0, 1) else x
    # ... else PyLong_FromString(s, NULL, 0) on the C string
    v = _pylong(_c_string(line + b"\n"), 0)
    if v is not None:
        return v
    raise LoaderError("invalid INT literal")


def parse_long(line: bytes) -> int | None:
    """LONG: ``L<text>[L]``; None when accepted but too long to convert here."""
    try:
        return _parse_long(line)
    except _Unsized:
        return None


def _parse_long(line: bytes) -> int:
    py = line[:-1] if line.endswith(b"L") else line
    v = _pylong(py, 0)
    if v is not None:
        return v
    v = _pylong(_c_string(py + b"\n"), 0)
    if v is not None:
        return v
    raise LoaderError("invalid LONG literal")


def parse_float(line: bytes) -> float:
    """FLOAT: ``F<text>\\n``."""
    try:
        return float(line)  # pickle._Unpickler
    except ValueError:
        pass
    c = _c_string(line)
    m = _C_FLOAT.match(c)
    # _pickle: the parsed number must end at the newline or at the C string's end
    if m is not None and m.end() == len(c):
        try:
            return float(m.group(0))
        except ValueError:
            pass
    raise LoaderError("invalid FLOAT literal")


def parse_memo_key(line: bytes, what: str) -> int:
    """GET/PUT: a decimal key (``int(text)`` / ``PyLong_FromString(s, NULL, 10)``)."""
    try:
        v = _pylong(line, 10)
        if v is None:
            v = _pylong(_c_string(line + b"\n"), 10)
    except _Unsized:
        raise LoaderError(f"{what} key is out of range") from None
    if v is None:
        raise LoaderError(f"{what} key is not a number")
    if v < 0:
        raise LoaderError(f"negative {what} key")
    return v


def parse_string(line: bytes) -> bytes:
    """STRING: a quoted, backslash-escaped byte string (both implementations alike)."""
    if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):
        try:
            with warnings.catch_warnings():  # "invalid escape sequence": accepted, as loaders do
                warnings.simplefilter("ignore", DeprecationWarning)
                return codecs.escape_decode(line[1:-1])[0]
        except ValueError:
            raise LoaderError("invalid STRING escape") from None
    raise LoaderError("the STRING opcode argument must be quoted")


def parse_unicode(line: bytes) -> str:
    """UNICODE: raw-unicode-escape text."""
    try:
        return line.decode("raw-unicode-escape")
    except UnicodeDecodeError:
        raise LoaderError("invalid UNICODE literal") from None


def name_text(raw: bytes) -> str:
    """A GLOBAL/INST module or name line (UTF-8 in both implementations)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LoaderError("a GLOBAL name is not UTF-8") from None


__all__ = [
    "LoaderError",
    "name_text",
    "parse_float",
    "parse_int",
    "parse_long",
    "parse_memo_key",
    "parse_string",
    "parse_unicode",
]
