"""TensorFlow SavedModel."""

from __future__ import annotations

import re

from mlverify.scan.context import ScanContext
from mlverify.scan.model import Severity
from mlverify.scan.rules import Rule
from mlverify.scan.source import Source

SAVEDMODEL_DANGEROUS_OP = Rule(
    "MLV901",
    "savedmodel-dangerous-op",
    Severity.HIGH,
    "A TensorFlow SavedModel graph uses an op that runs Python or touches files.",
    "PyFunc-family ops call Python; ReadFile/WriteFile/MatchingFiles reach the file system.",
)
RULES = (SAVEDMODEL_DANGEROUS_OP,)

# -- TensorFlow SavedModel ---------------------------------------------------------
_TF_OPS = {
    b"PyFunc": Severity.HIGH, b"PyFuncStateless": Severity.HIGH, b"EagerPyFunc": Severity.HIGH,
    b"ReadFile": Severity.MEDIUM, b"WriteFile": Severity.MEDIUM, b"MatchingFiles": Severity.MEDIUM,
    b"DebugIdentityV3": Severity.LOW, b"PrintV2": Severity.LOW,
}  # fmt: skip
# NodeDef.op is field 2 (tag 0x12) followed by its one-byte length
_TF_OP_RX = re.compile(
    b"\\x12(?:" + b"|".join(bytes([len(k)]) + k for k in _TF_OPS) + b")(?![A-Za-z0-9_])"
)


def _is_savedmodel(head: bytes) -> bool:
    if len(head) < 8 or head[:3] != b"\x08\x01\x12":
        return False
    i = 3
    while i < min(len(head), 13) and head[i] & 0x80:
        i += 1
    return i + 1 < len(head) and head[i + 1] == 0x0A


class SavedModelScanner:
    name = "savedmodel"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return _is_savedmodel(head)

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        ctx.format("tf-savedmodel")
        stream = src.open()
        tail = b""
        read = 0
        seen: set[bytes] = set()
        while read < 1024 * 1024 * 1024:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            window = tail + chunk
            for m in _TF_OP_RX.finditer(window):
                op = m.group(0)[2:]
                if op not in seen:
                    seen.add(op)
                    ctx.add(
                        SAVEDMODEL_DANGEROUS_OP,
                        src.label,
                        read - len(tail) + m.start(),
                        op.decode(),
                        f"SavedModel graph uses the {op.decode()} op",
                        severity=_TF_OPS[op],
                    )
            tail = window[-64:]
            read += len(chunk)
