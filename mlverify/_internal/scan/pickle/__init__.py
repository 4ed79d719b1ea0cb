"""The pickle scanner: an exact opcode decoder (``walker``) apart from its judge (``judge``).

``operands`` parses text operands as CPython does, ``joblib`` sizes joblib's inline arrays,
``resync`` searches bytes the walker could not follow, ``values`` holds the simulated values.
"""

from __future__ import annotations

from mlverify._internal.scan.pickle.walker import VALID_OPCODES, PickleWalker, WalkResult

__all__ = ["VALID_OPCODES", "PickleWalker", "WalkResult"]
