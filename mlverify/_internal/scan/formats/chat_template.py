"""Standalone chat templates (``chat_template.jinja`` next to a tokenizer config).

transformers writes the template of a model into its own file and loads it by that file
name; whatever renders it runs it as Jinja. So a file named as a template
(``chat_template.jinja``, ``chat_template.*``, any ``*.jinja`` / ``*.jinja2`` / ``*.j2``,
in a directory or an archive) is judged as one whatever its content (control bytes,
keywords, padding): the same checks as GGUF metadata (``_jinja.py``). Over the bound a
template is judged in, it is a finding (cannot be judged), never data; one that does not
parse is a finding too (another Jinja dialect may still render it).

A text file of another name is judged as a template when it reads like one anywhere in
its first MiB (a Jinja tag and a chat keyword, no NUL byte); only one that parses is
judged then (one that does not is more likely a README with braces).
"""

from __future__ import annotations

import re

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.formats.gguf import GGUF_TEMPLATE_INJECTION, judge_template
from mlverify._internal.scan.rules import RESOURCE_LIMIT, Rule
from mlverify._internal.scan.source import Source

RULES: tuple[Rule, ...] = ()  # reported under the chat-template rules of gguf.py

MAX_TEMPLATE = 1 << 20  # bytes of a template file read and judged
_JINJA = re.compile(rb"\{[{%]")
_CHAT = re.compile(rb"messages|add_generation_prompt|bos_token|eos_token")
#: labels the scanner makes for content without a name: "<gzip>", "<before zip>", "x@120"
_SYNTHETIC = re.compile(r"^<[a-z0-9 -]*>$|@[0-9]+$")
_NAME_SEP = re.compile(r"[/\\!]")
_TEMPLATE_SUFFIXES = (".jinja", ".jinja2", ".j2")


def file_name(src: Source) -> str:
    """The name a loader opens ``src`` by: the last path part of a member (or of the scanned
    file itself); "" for content that has no file name of its own (a decompressed stream,
    a value inside another format)."""
    key = ("file_name", src.label, src.path)
    name = src.memo.get(key)
    if name is None:
        last = _NAME_SEP.split(src.label or src.path)[-1]
        name = src.memo[key] = "" if _SYNTHETIC.search(last) else last
    return name  # type: ignore[return-value]


def named_template(name: str) -> bool:
    """Is ``name`` a file name loaders read as a chat template?"""
    lower = name.lower()
    stem, _, ext = lower.rpartition(".")
    return lower.endswith(_TEMPLATE_SUFFIXES) or (
        (stem or ext) == "chat_template" and ext not in ("json",)
    )


class ChatTemplateScanner:
    name = "chat-template"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        if named_template(file_name(src)):
            return True
        if not deep or b"\0" in head or (src.size is not None and src.size > MAX_TEMPLATE):
            return False
        text = head if src.size is not None and src.size <= len(head) else _read(src)
        return (
            len(text) <= MAX_TEMPLATE
            and b"{" in text  # what _JINJA needs first (a one-byte search is the cheap one)
            and bool(_JINJA.search(text) and _CHAT.search(text))
        )

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        raw = _read(src)
        named = named_template(file_name(src))
        if len(raw) > MAX_TEMPLATE:
            if named:
                ctx.add(RESOURCE_LIMIT, src.label, None, "chat-template",
                        f"a chat template file over {MAX_TEMPLATE} bytes: it cannot be judged, "
                        "and its loader renders all of it")  # fmt: skip
            return
        text = raw.decode("utf-8", "replace")
        if named:
            ctx.format("chat-template")
            judge_template(text, "chat template", ctx, src.label, None)
            return
        try:
            from mlverify._internal.scan.formats import _jinja

            problems, error = _jinja.judge(text)
        except ImportError:
            return  # without jinja2 a text file of another name is not claimed as a template
        if error is not None:
            return
        ctx.format("chat-template")
        for p in problems:
            msg = f"chat template (line {p.line}): {p.message}"
            ctx.add(GGUF_TEMPLATE_INJECTION, src.label, None, p.subject, msg)


def _read(src: Source) -> bytes:
    return src.open().read(MAX_TEMPLATE + 1)
