"""Configs that name code: JSON and YAML files in a model directory or archive.

Decoded with the format's own parser (JSON, or YAML's safe loader), then judged:

* a Keras object config (``class_name`` + ``config``) is judged as Keras
  (``formats/keras.py``);
* Hydra / OmegaConf ``_target_`` values (``hydra.utils.instantiate`` imports and calls
  them) must be on the pickle allowlist of callables (the same verdicts as a pickle's
  imports);
* chat templates (``chat_template`` in tokenizer configs) are judged as Jinja, as in GGUF;
* Hugging Face ``auto_map`` entries (code in the repository, ``module.Class``, or in
  another one, ``org/repo--module.Class``) and ``custom_pipelines`` name Python files the
  loader runs with ``trust_remote_code``; a ``trust_remote_code: true`` flag is reported.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import Any

from mlverify._internal.scan import dispatch
from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.formats import keras
from mlverify._internal.scan.formats.chat_template import file_name
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import RESOURCE_LIMIT, UNSUPPORTED, Rule
from mlverify._internal.scan.source import FileSource, Source, Stream

CONFIG_CODE_TARGET = Rule(
    "MLV1001",
    "config-code-target",
    Severity.HIGH,
    "A Hydra/OmegaConf or LightningCLI config instantiates a callable outside the allowlist "
    "(_target_, class_path).",
    "hydra.utils.instantiate imports and calls the _target_ with the config's arguments "
    "(NeMo, Lightning and Hydra-based loaders do so on load). Allow it per artifact if "
    "the callable is trusted.",
)
HF_REMOTE_CODE = Rule(
    "MLV1002",
    "hf-remote-code",
    Severity.HIGH,
    "A Hugging Face config maps a model class to Python code (auto_map, custom_pipelines).",
    "With trust_remote_code the loader imports that Python file from this repository or "
    "from another one (org/repo--module.Class). Review the code; allow per artifact.",
)
CUSTOM_CODE_FLAG = Rule(
    "MLV1003",
    "custom-code-flag",
    Severity.MEDIUM,
    "A config switches on custom code (trust_remote_code: true).",
    "The model asks its loader to run code shipped with it.",
)
RULES = (CONFIG_CODE_TARGET, HF_REMOTE_CODE, CUSTOM_CODE_FLAG)

MAX_CONFIG = 16 * 1024 * 1024
MAX_NODES = 2_000_000
#: text that may hold a code-naming key; anything escaped is decoded and judged too
#: (and "${": an OmegaConf interpolation can build any of them)
_HINTS = (b"_target_", b"class_path", b"auto_map", b"custom_pipelines", b"remote_code",
          b"class_name", b"chat_template", b"_diffusers_version", b"${")  # fmt: skip
#: bytes no text of a config holds: C0 controls but tab, line ends and form feed (not DEL:
#: JSON strings take it, and transformers' loader reads such a config)
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f]")
#: every byte but those ``_CONTROL`` matches: deleting them leaves the control bytes
_NOT_CONTROL = bytes(b for b in range(256) if not _CONTROL.match(bytes([b])))
#: the hints are ASCII: one is in UTF-8 text decoded with replacement exactly when its
#: bytes are in the raw bytes (a replacement character is never ASCII, and an ASCII byte
#: is never part of an invalid sequence); all but "${" hold an underscore
_UNDERSCORE = tuple(h for h in _HINTS if b"_" in h)
assert set(_HINTS) - set(_UNDERSCORE) == {b"${"}  # _hinted_utf8 searches that one alone
_CHUNK = 1 << 20
#: bytes carried from one chunk to the next: the longest hint, each character escaped
_OVERLAP = 10 * max(len(h) for h in _HINTS)
#: escapes resolved in one file past the decode bound (a Python call each, ~0.6 us): text
#: with more is claimed unresolved (MLV302), so the resolving work is bounded by this, not
#: by the file's size (a real tokenizer escapes a few per token, if any)
MAX_ESCAPES = 1 << 23
_CHAR_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|U([0-9a-fA-F]{8}))")
#: an escaped line break, which YAML joins: a backslash before any YAML line break (LF,
#: CR, CR LF, NEL, LS, PS), as UTF-8
_LINE_ESCAPE = re.compile(rb"\\(?:\r\n?|\n|\xc2\x85|\xe2\x80[\xa8\xa9])")


def _hex_of(codes: set[int]) -> bytes:
    """A pattern for two hex digits, either case, naming one of ``codes``."""
    return b"|".join(
        b"".join(b"[%s%s]" % (c.lower().encode(), c.upper().encode()) if c.isalpha() else c.encode()
                 for c in f"{code:02x}")
        for code in sorted(codes)
    )  # fmt: skip


#: the characters of the hints (``_HINTS``): the only escapes whose resolution can make one
_HINT_CHARS = {c for h in _HINTS for c in h}
#: ``_CHAR_ESCAPE`` of a hint character only (its groups alike)
_HINT_ESCAPE = re.compile(
    rb"\\(?:u00(%s)|x(%s)|U000000(%s))" % ((b"(?:" + _hex_of(_HINT_CHARS) + b")",) * 3)
)
#: names loaders read configs by: searched to their end, however big
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
_ESCAPE = re.compile(rb"\\")  # any escape (also YAML's escaped line break) is decoded first
#: keys whose value a loader imports and instantiates: Hydra/OmegaConf, LightningCLI
_TARGET_KEYS = frozenset({"_target_", "class_path"})
#: what diffusers' loader imports by library name (anything else is a file of the repo)
_DIFFUSERS_LIBRARIES = frozenset(
    {"diffusers", "transformers", "onnxruntime", "onnxruntime.training", "flax", "torch"}
)  # fmt: skip
_FLAGS = frozenset({"trust_remote_code", "allow_remote_code", "use_remote_code"})


def _has_control(head: bytes) -> bool:
    if dispatch.general():
        return _CONTROL.search(head) is not None
    return bool(head.translate(None, _NOT_CONTROL))


def _encoding(head: bytes) -> str | None:
    """The text encoding a JSON or YAML loader would read, or None for binary data."""
    if not head:
        return None
    enc = json.detect_encoding(head)  # UTF-8/16/32 by BOM or NUL pattern, as json.loads
    if enc in ("utf-8", "utf-8-sig") and _has_control(head):
        return None  # binary: text has no control bytes but tab, newlines and form feed
    if enc == "utf-8" and head.isascii():
        return enc  # ASCII decodes as UTF-8
    try:
        head.decode(enc)
    except UnicodeDecodeError as e:
        return enc if e.start > len(head) - 4 else None  # a character cut at the end
    return enc


class ConfigScanner:
    name = "config"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        if not deep:
            return False
        if (
            type(src) is FileSource
            and (src.size or 0) <= len(head)
            and json.detect_encoding(head) in ("utf-8", "utf-8-sig")
            and not dispatch.general()
            and not _utf8_hint(head)
        ):
            # a small file read whole, in UTF-8 (or taken for binary, when _encoding is
            # None): without a hint or an escape in its raw bytes, _hinted below finds
            # none either (see _UNDERSCORE), whatever its name and control bytes
            return False
        enc = _encoding(head)
        if enc is None or head[:4] == b"PK\x03\x04":
            return False
        if src.size is not None and src.size > MAX_CONFIG:
            # too big to decode: searched to its end, as a config by name or as text that
            # opens as JSON does (a hint past the bound makes it a finding; text without
            # any, escapes resolved, decodes to no code-naming key: a signature listing a
            # million files is data)
            if _config_name(src):
                return _hinted_to_end(src, enc)
            opens = head.decode(enc, "replace").lstrip("\ufeff \t\r\n")[:1] == "{"
            return opens and _hinted_to_end(src, enc)
        # a file within the head: the head is all of it (the bytes a read would return)
        whole = head if isinstance(src, FileSource) and (src.size or 0) <= len(head) else None
        return _hinted(src, enc, None if _config_name(src) else MAX_CONFIG, whole=whole)

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        raw = src.open().read(MAX_CONFIG + 1)
        label = src.label
        if len(raw) > MAX_CONFIG:
            ctx.add(RESOURCE_LIMIT, label, None, "config",
                    f"config passes {MAX_CONFIG} bytes and holds code-naming keys or escapes: "
                    "it cannot be decoded and judged, and its loader reads all of it")  # fmt: skip
            return
        try:
            docs = _decode(raw)
        except Undecodable as e:
            msg = f"config cannot be decoded to its end ({e}): not verified"
            ctx.add(UNSUPPORTED, label, None, "config", msg)
            return
        if docs is None:
            if _config_name(src) or _JSON_OBJECT.match(raw):
                # named or shaped as a config its loader may still read (a lenient or
                # another parser): what cannot be parsed is not verified, never clean
                msg = (
                    "config holds code-naming keys or escapes but parses as neither JSON "
                    "nor YAML: not verified"
                )
                ctx.add(UNSUPPORTED, label, None, "config", msg)
            return  # else free text with a stray hint: no loader reads it as a config
        for doc in docs:
            if keras.is_keras_config(doc):
                if not label:  # inside a .keras archive the archive is the format
                    ctx.format("keras-config")
                keras.judge(doc, ctx, label, depth, "config")
            judge(doc, ctx, label)


def _config_name(src: Source) -> bool:
    """Is ``src`` named as a config a loader reads (``*.json``, ``*.yaml``, ``*.yml``)?"""
    return file_name(src).lower().endswith(_CONFIG_SUFFIXES)


def _hinted(src: Source, enc: str, limit: int | None, *, whole: bytes | None = None) -> bool:
    """Does the text of ``src`` (its first ``limit`` bytes, or all of it) hold a hint or an
    escape (the text is then decoded and judged)?

    Read in chunks through an incremental decoder, so a hint across a chunk's end or a
    multi-byte character is found, in bounded memory. ``whole``: all the bytes of ``src``,
    when the caller has them.
    """
    if enc in ("utf-8", "utf-8-sig") and not dispatch.general():
        if whole is not None:
            return _utf8_hint(whole if limit is None else whole[:limit])
        return _hinted_utf8(src, limit)
    decoder = codecs.getincrementaldecoder(enc)("replace")
    stream = src.open()
    tail = b""
    read = 0
    try:
        while limit is None or read < limit:
            chunk = stream.read(_CHUNK if limit is None else min(_CHUNK, limit - read))
            if not chunk:
                return False
            read += len(chunk)
            text = tail + decoder.decode(chunk).encode("utf-8", "replace")
            if any(h in text for h in _HINTS) or _ESCAPE.search(text):
                return True
            tail = text[-_OVERLAP:]
    except (ValueError, EOFError, OSError):
        return False  # a damaged compressed member: what no loader reads either
    return False


#: characters no strict JSON reader (RFC 8259; Python's json as every loader calls it) and
#: no YAML reader (1.1 and 1.2: not c-printable) takes anywhere in a document: the C0
#: controls but tab, LF and CR. ASCII, so never part of a multi-byte UTF-8 character.
_NOT_TEXT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
#: every byte but those ``_NOT_TEXT`` matches: deleting them leaves the stop bytes
_TEXT = bytes(b for b in range(256) if not _NOT_TEXT.match(bytes([b])))
#: bytes every hint or escape holds in every encoding (UTF-8/16/32 keep ASCII's byte)
_HINT_BYTES = (b"_", b"\\", b"$")
assert all(any(c in h for c in _HINT_BYTES) for h in (*_HINTS, b"\\"))


def _stop(text: bytes) -> int:
    """Where the first byte of ``text`` no strict reader takes is (-1: none); a byte
    deletion finds whether there is one, the pattern where."""
    if not dispatch.general() and not text.translate(None, _TEXT):
        return -1
    m = _NOT_TEXT.search(text)
    return -1 if m is None else m.start()


def _resolved_hint(text: bytes) -> bool:
    """Does UTF-8 ``text`` hold a hint once the character escapes of JSON and YAML
    (``\\uXXXX``, ``\\xXX``, ``\\UXXXXXXXX``) are resolved, or an escaped line break (YAML
    joins the lines around it)? Text without a backslash has no escape to resolve.

    Only the escapes of characters some hint holds are resolved (:data:`_HINT_ESCAPE`):
    every hint in the text with all its escapes resolved is in this text too (its
    characters are hint characters, literal or resolved alike here), and an escape left as
    it is can only add a match (its backslash is in no hint). So real text full of other
    escapes (line breaks, quotes, non-ASCII letters) costs no Python call per escape."""
    if b"\\" in text:
        if _LINE_ESCAPE.search(text):
            return True
        text = _HINT_ESCAPE.sub(_unescape, text)
    return b"${" in text or (b"_" in text and any(h in text for h in _UNDERSCORE))


def _hinted_to_end(src: Source, enc: str) -> bool:
    """Does ``src``, text too big to decode, name code (see ``ConfigScanner.detect``)?

    Searched to its end, in chunks, escapes resolved (:func:`_resolved_hint`; at most
    :data:`MAX_ESCAPES`, else claimed), up to the first character no strict reader takes
    (:data:`_NOT_TEXT`, e.g. the zeros of a sparse file): a strict JSON or YAML loader
    rejects the file there (it configures nothing),
    one that stops at a NUL read only what was searched. Past it, only a lenient reader
    (Python's ``json`` with ``strict=False`` takes control characters inside strings) may
    read on: the rest is searched in its raw bytes, without decoding or resolving, for a
    hint or any escape in the file's encoding (:func:`_raw_hint`, byte searches at memory
    speed). UTF-8 is searched in its raw bytes throughout (the same answer as its decoded
    text: hints, escapes and stop bytes are ASCII, and an ASCII byte is never part of an
    invalid or multi-byte sequence); the general path decodes.
    """
    raw = enc in ("utf-8", "utf-8-sig") and not dispatch.general()
    decoder = codecs.getincrementaldecoder(enc)("replace")  # unused on the raw path
    stream = src.open()
    tail = b""
    escapes = 0
    try:
        while chunk := stream.read(_CHUNK):
            new = chunk if raw else decoder.decode(chunk).encode("utf-8", "replace")
            stop = _stop(new)
            if stop >= 0:
                new = new[:stop]
            if b"\\" in new:  # the escapes resolved (one Python call each): bounded
                escapes += len(_HINT_ESCAPE.findall(new))
                if escapes > MAX_ESCAPES:
                    return True  # more escapes than are resolved: claimed, never data
            text = tail + new
            if _resolved_hint(text):
                return True
            if stop >= 0:
                # the raw rest: from the stop byte (UTF-8: ASCII, the same byte in the raw
                # chunk), or the whole chunk (UTF-16/32: searched once more)
                utf8 = enc in ("utf-8", "utf-8-sig")
                return _raw_hint(stream, enc, chunk[_stop(chunk) :] if utf8 else chunk)
            tail = text[-_OVERLAP:]
    except (ValueError, EOFError, OSError):
        return False  # a damaged compressed member: what no loader reads either
    return False


def _encoded_hints(enc: str) -> tuple[bytes, ...]:
    """The hints and the escape character in the raw bytes of text in ``enc`` (both byte
    orders for UTF-16/32: a BOM may name either)."""
    plain = (*_HINTS, b"\\")
    if enc.startswith(("utf-16", "utf-32")):
        width = enc[:6]
        return tuple(h.decode().encode(width + o) for h in plain for o in ("-le", "-be"))
    return plain


def _raw_hint(stream: Stream, enc: str, first: bytes) -> bool:
    """Do ``first`` and the rest of ``stream`` hold, in their raw bytes, a hint or an escape
    in the encoding ``enc``? Each chunk is tested for the bytes every one holds first."""
    hints = _encoded_hints(enc)

    def holds(text: bytes) -> bool:
        return any(c in text for c in _HINT_BYTES) and any(h in text for h in hints)

    tail = b""
    chunk = first
    while chunk:
        # the chunk, and the window across its start (no copy of the chunk)
        if holds(chunk) or holds(tail + chunk[:_OVERLAP]):
            return True
        tail = (tail + chunk)[-_OVERLAP:] if len(chunk) < _OVERLAP else chunk[-_OVERLAP:]
        chunk = stream.read(_CHUNK)
    return False


def _utf8_hint(text: bytes) -> bool:
    """Does UTF-8 ``text`` hold a hint or an escape (searched by its rarest byte first: a
    one-byte search is the cheap one)?"""
    if b"\\" in text or (b"$" in text and b"${" in text):
        return True
    return b"_" in text and any(h in text for h in _UNDERSCORE)


def _hinted_utf8(src: Source, limit: int | None) -> bool:
    """``_hinted`` of UTF-8 text, searched in the raw bytes (the same
    reads, the same answer: see ``_UNDERSCORE``), without decoding them."""
    stream = src.open()
    tail = b""
    read = 0
    try:
        while limit is None or read < limit:
            chunk = stream.read(_CHUNK if limit is None else min(_CHUNK, limit - read))
            if not chunk:
                return False
            read += len(chunk)
            text = tail + chunk if tail else chunk
            if _utf8_hint(text):
                return True
            tail = text[-_OVERLAP:]
    except (ValueError, EOFError, OSError):
        return False  # a damaged compressed member: what no loader reads either
    return False


def _unescape(m: re.Match[bytes]) -> bytes:
    code = int(m.group(1) or m.group(2) or m.group(3), 16)
    return chr(code).encode("utf-8", "replace") if code <= 0x10FFFF else b"?"


#: the opening of a JSON object with a key (a config's shape; not a Jinja ``{{``/``{%``)
_JSON_OBJECT = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*\{\s*\"")


class Undecodable(Exception):
    """The text is a config the decoder cannot follow to its end (nesting, memory)."""


def _decode(raw: bytes) -> list[Any] | None:
    """The documents of a JSON or YAML text; None if it is neither.

    Raises Undecodable when a decoder gives up on a bound (nesting deeper than Python's
    recursion limit, memory) rather than on bad syntax: another loader may read it.
    """
    text = raw.decode(_encoding(raw[:4096]) or "utf-8", "replace").lstrip("\ufeff")
    bound: str | None = None
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    except (RecursionError, MemoryError) as e:
        bound = _bound(e)
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return list(yaml.load_all(text, Loader=loader))
    except (yaml.YAMLError, ValueError):
        if bound is not None:
            raise Undecodable(bound) from None
        return None
    except (RecursionError, MemoryError) as e:
        raise Undecodable(bound or _bound(e)) from None


def _bound(e: BaseException) -> str:
    import sys

    if isinstance(e, MemoryError):
        return "the decoded document does not fit in memory"
    limit = sys.getrecursionlimit()
    return f"it nests deeper than the decoder follows (Python recursion limit {limit})"


#: OmegaConf resolvers that turn a string into config nodes (or any custom resolver call
#: inside a string that also mentions a target key)
_RESOLVER = re.compile(r"\$\{\s*oc\.(decode|create)\s*:|\$\{[^}]*\}\s*get_|_target_")


def _walk(doc: Any) -> Iterator[Any]:
    stack = [doc]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def judge(doc: Any, ctx: ScanContext, label: str) -> None:
    """Report every code-naming entry of a decoded config."""
    for walked, node in enumerate(_walk(doc)):
        if walked > MAX_NODES:
            ctx.add(RESOURCE_LIMIT, label, None, "config", f"config has over {MAX_NODES} nodes")
            return
        if isinstance(node, str) and _RESOLVER.search(node):
            # OmegaConf resolves ${oc.decode:...}/${oc.create:...} into config nodes before
            # Hydra instantiates: a _target_ can be built there, out of the scanner's sight
            ctx.add(
                CONFIG_CODE_TARGET,
                label,
                None,
                node[:120],
                "the config builds config nodes at resolve time (an OmegaConf "
                "decode/create resolver): what it instantiates cannot be judged",
            )
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if isinstance(key, str) and "${" in key:
                ctx.add(CONFIG_CODE_TARGET, label, None, key[:120],
                        "a config key is an interpolation: what it names is decided at "
                        "resolve time and cannot be judged")  # fmt: skip
            if key in _TARGET_KEYS:
                _target(value, ctx, label)
            elif key == "auto_map" and isinstance(value, dict):
                for auto, refs in value.items():
                    for ref in refs if isinstance(refs, list) else [refs]:
                        if ref is not None:
                            _code_ref(str(ref), f"auto_map {auto}", ctx, label)
            elif key == "auto_map" and isinstance(value, list):
                # the legacy tokenizer form transformers still accepts: [slow, fast]
                for ref in value:
                    if ref is not None:
                        _code_ref(str(ref), "auto_map (list form)", ctx, label)
            elif key == "custom_pipelines" and isinstance(value, dict):
                for task, spec in value.items():
                    impl = spec.get("impl") if isinstance(spec, dict) else spec
                    _code_ref(str(impl), f"custom pipeline {task}", ctx, label)
            elif key == "chat_template":
                _chat_templates(value, ctx, label)
            elif key == "_diffusers_version":
                _diffusers_components(node, ctx, label)
            elif key in _FLAGS and value is True:
                ctx.add(CUSTOM_CODE_FLAG, label, None, str(key), f"config sets {key}: true")


def _chat_templates(value: Any, ctx: ScanContext, label: str) -> None:
    """tokenizer_config.json: one template, or a list of named ones."""
    from mlverify._internal.scan.formats.gguf import judge_template

    if isinstance(value, str):
        judge_template(value, "chat_template", ctx, label, None)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                name = f"chat_template {str(item.get('name'))[:60]}"
                judge_template(item["template"], name, ctx, label, None)


def _diffusers_components(index: dict[Any, Any], ctx: ScanContext, label: str) -> None:
    """model_index.json: ``component: [library, class]``; a library that is not one diffusers
    imports itself is a module of the repository (custom components: remote code)."""
    for name, spec in index.items():
        if (
            isinstance(spec, list)
            and len(spec) == 2
            and isinstance(spec[0], str)
            and spec[0] not in _DIFFUSERS_LIBRARIES
        ):
            _code_ref(f"{spec[0]}.{spec[1]}", f"diffusers component {name}", ctx, label)
    cls = index.get("_class_name")
    if isinstance(cls, list):  # ["module_in_repo", "CustomPipeline"]
        _code_ref(".".join(str(x) for x in cls), "diffusers pipeline", ctx, label)


def _target(value: Any, ctx: ScanContext, label: str) -> None:
    if not isinstance(value, str):
        msg = f"the target is not a dotted name ({type(value).__name__}): cannot be judged"
        ctx.add(CONFIG_CODE_TARGET, label, None, repr(value)[:120], msg)
        return
    target = value.strip()
    verdict = ctx.policy.is_dangerous_target(target)
    e = verdict.entry
    if verdict.kind == "allow" and not (
        e is not None and (e.new_only or e.loads or e.calls or e.result_calls)
    ):
        return
    if verdict.kind == "allow":
        # Hydra calls it with the config's arguments: allowed in a pickle only as data
        verdict = type(verdict)(
            "unknown",
            Severity.MEDIUM,
            "allowed in pickles only as reconstruction, not to be called with a config's arguments",
        )
    sev = Severity.CRITICAL if verdict.kind == "deny" else None
    ctx.add(
        CONFIG_CODE_TARGET,
        label,
        None,
        target[:200],
        f"the config instantiates {target[:200]!r} ({verdict.reason})",
        severity=sev,
    )


def _code_ref(ref: str, where: str, ctx: ScanContext, label: str) -> None:
    repo, sep, path = ref.partition("--")
    if not sep:
        repo, path = "", ref
    module = path.rpartition(".")[0] or path
    file = module.replace(".", "/") + ".py"
    place = f"from the repository {repo!r}" if repo else "from this repository"
    ctx.add(
        HF_REMOTE_CODE,
        label,
        None,
        ref[:200],
        f"{where} runs {path[:200]!r}: Python file {file[:200]!r} {place}",
    )
