"""Progress of long work (hashing, scanning), reported by the loops that do it and shown by
whichever front end installed a reporter (the CLI's terminal bar). Without one, ``advance``
costs one attribute read: the library never prints.

Process-global, not per-context: the hashing loops run in worker threads, which do not
inherit context variables.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class Reporter:
    """Receives units of work done (bytes, for hashing and scanning)."""

    def advance(self, amount: int) -> None:  # pragma: no cover - the no-op default
        return None


_current: Reporter | None = None


def advance(amount: int) -> None:
    """Report ``amount`` more units done (thread-safe if the reporter is)."""
    r = _current
    if r is not None:
        r.advance(amount)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Send progress to ``reporter`` inside the block."""
    global _current
    previous, _current = _current, reporter
    try:
        yield reporter
    finally:
        _current = previous
