"""The fast detection path and the general one it must equal.

Detection runs on every file of a dataset, so the detectors answer from what is cheap and
exact (the whole content of a small file read once, in memory; one parse of the
protobuf top level shared by the detectors that ask for it; raw-byte searches where they
are proven equal to a search of the decoded text). The general path (each detector reading
and decoding for itself, as before) stays callable: ``with general_path(): ...``, which
the differential tests (``tests/scan/test_dispatch_equivalence.py``) compare it with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_general = False


def general() -> bool:
    """Is the general detection path asked for (tests only)?"""
    return _general


@contextmanager
def general_path() -> Iterator[None]:
    """Detect (and read) as the general path does while the block runs (one thread)."""
    global _general
    before, _general = _general, True
    try:
        yield
    finally:
        _general = before
