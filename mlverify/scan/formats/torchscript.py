"""TorchScript archives: the ``code/`` members."""

from __future__ import annotations

import re

from mlverify.scan.context import ScanContext
from mlverify.scan.model import Severity
from mlverify.scan.rules import Rule
from mlverify.scan.source import Source

TORCHSCRIPT_CODE = Rule(
    "MLV801",
    "torchscript-code",
    Severity.MEDIUM,
    "A TorchScript archive contains code that references Python or the OS.",
    "TorchScript code runs when the module is loaded with torch.jit.load.",
)
RULES = (TORCHSCRIPT_CODE,)

_TS_BAD = re.compile(rb"\b(__import__|os\.system|subprocess|__builtins__|eval\(|exec\()")


def judge_code_member(member: Source, ctx: ScanContext, label: str) -> None:
    text = member.open().read(8 * 1024 * 1024)
    m = _TS_BAD.search(text)
    if m:
        ctx.add(
            TORCHSCRIPT_CODE,
            label,
            m.start(),
            m.group(0).decode(),
            f"TorchScript code references {m.group(0).decode()!r}",
        )
