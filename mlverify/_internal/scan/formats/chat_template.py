"""Standalone chat templates (``chat_template.jinja`` next to a tokenizer config).

transformers writes the template of a model into its own file; whatever renders it runs
it as Jinja. A text file that opens like a chat template is judged as one
(``_jinja.py``, the same checks as GGUF metadata). Only a template that parses is judged:
one that does not cannot be rendered either, and is more likely a README with braces.
"""

from __future__ import annotations

import re

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.formats.gguf import GGUF_TEMPLATE_INJECTION
from mlverify._internal.scan.rules import Rule
from mlverify._internal.scan.source import Source

RULES: tuple[Rule, ...] = ()  # reported under the chat-template rules of gguf.py

MAX_TEMPLATE = 1 << 20
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_JINJA = re.compile(rb"\{[{%]")
_CHAT = re.compile(rb"messages|add_generation_prompt|bos_token|eos_token")


class ChatTemplateScanner:
    name = "chat-template"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return (
            deep
            and (src.size is None or src.size <= MAX_TEMPLATE)
            and not _CONTROL.search(head)
            and bool(_JINJA.search(head))
            and bool(_CHAT.search(head))
        )

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        raw = src.open().read(MAX_TEMPLATE + 1)
        if len(raw) > MAX_TEMPLATE:
            return  # not a template file (and too big for one)
        try:
            from mlverify._internal.scan.formats import _jinja

            problems, error = _jinja.judge(raw.decode("utf-8", "replace"))
        except ImportError:
            return  # without jinja2 a text file is not claimed as a template
        if error is not None:
            return
        for p in problems:
            msg = f"chat template (line {p.line}): {p.message}"
            ctx.add(GGUF_TEMPLATE_INJECTION, src.label, None, p.subject, msg)
