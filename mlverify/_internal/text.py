"""Text for people: names from files and artifacts never reach a terminal raw.

A file name (or a pickle's module name, a signer's SAN) can carry terminal escape
sequences or a newline: printed raw, ``\\x1b[2K\\rALLOWED: ...`` rewrites the line a
denied model was reported on. Every human-readable output passes each field through
:func:`shown`, which escapes control characters (C0, DEL, C1), line and paragraph
separators and the Unicode bidirectional and zero-width controls.
"""

from __future__ import annotations

import re

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def shown(text: object) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\n``, ``\\u202e``)."""
    return _CONTROLS.sub(_escape, str(text))


def shown_lines(text: str) -> str:
    """Escape within each line of already assembled text (newlines kept)."""
    return "\n".join(shown(line) for line in text.split("\n"))


#: the longest name an error line shows whole (a path may be thousands of characters)
SHORT = 300


def short(text: object, limit: int = SHORT) -> str:
    """``text`` whole when at most ``limit`` characters, else its start and end around the
    number of characters left out (both ends: a deep path's file name is at its end)."""
    s = str(text)
    if len(s) <= limit:
        return s
    keep = max(limit // 2 - 10, 1)
    return f"{s[:keep]}...({len(s) - 2 * keep} characters)...{s[-keep:]}"
