"""skops (``.skops``): a zip whose ``schema.json`` names every type ``skops.io.load`` imports.

``skops.io.load`` refuses a file that names a type its node loader does not trust by default
unless the caller passes it in ``trusted=``, and users routinely pass what
``get_untrusted_types`` lists. So every such name is a finding here: exactly the names
``get_untrusted_types`` reports, computed statically from the schema with skops' default
trusted sets per loader (``data/skops_trusted.json``, harvested by
``scripts/harvest_skops_trusted.py``; skops is never imported). The ``.npy``/``.bin``
members are scanned by the zip scanner like every member. Called by the zip scanner for a
top-level ``schema.json`` member (``zip.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.policy import Policy, builtin_data
from mlverify._internal.scan.rules import RESOURCE_LIMIT, Rule
from mlverify._internal.scan.source import Source

SKOPS_UNTRUSTED = Rule(
    "MLV1401",
    "skops-untrusted-type",
    Severity.MEDIUM,
    "A skops file names a type skops does not trust by default.",
    "skops.io.load imports and constructs it once the caller trusts it, and "
    "get_untrusted_types lists it for exactly that; high or critical when the pickle "
    "denylist knows it as dangerous. Review it, or allow the exact name in the project "
    "policy (allow_globals), as for pickles.",
)
SKOPS_MALFORMED = Rule(
    "MLV1402",
    "skops-malformed",
    Severity.MEDIUM,
    "A skops schema cannot be followed: malformed, an unknown loader or protocol, or a "
    "member it names is absent.",
    "skops refuses such a file, and another version may read it differently: nothing "
    "past the break was verified.",
)
RULES = (SKOPS_UNTRUSTED, SKOPS_MALFORMED)

#: schema.json read at most (a larger one is a finding: not judged). Decoded JSON takes
#: many times its size in memory; real schemas (hundreds of trees) are a few MiB
MAX_SCHEMA = 32 * 1024 * 1024
#: findings listed one by one per schema (the rest are counted)
MAX_LISTED = 200


#: the reason Policy gives for the project's additions (its other "allow" verdicts with an
#: empty allowlist, TorchScript classes and denylist exceptions, are no skops trust)
_PROJECT = "allowed by project policy"


@lru_cache(maxsize=16)
def _judge_policy(extra_allow: frozenset[str]) -> Policy:
    """The pickle policy without its allowlist: the denylist, and the project's additions
    (``allow_globals`` / ``--allow``) as pickles read them. skops' own defaults stand in for
    the pickle allowlist, whose entries are exact for pickle reconstruction, not for what
    skops' loaders do with a name."""
    return Policy({}, builtin_data()[1], extra_allow)


@dataclass(frozen=True)
class _Loader:
    trusted: frozenset[str]
    always_safe: bool = False
    constructor: str | None = None  # "self": the node's own type
    name: tuple[str, str] | None = None  # content keys naming what it imports (not the type)


@dataclass(frozen=True)
class _Data:
    protocol: int
    loaders: dict[str, _Loader]
    old: dict[int, dict[str, _Loader]]
    type_node: frozenset[str]
    bit_generators: frozenset[str]


def _loader(spec: dict[str, Any]) -> _Loader:
    return _Loader(
        frozenset(spec.get("trusted", [])),
        bool(spec.get("always_safe", False)),
        spec.get("constructor"),
        (str(spec["name"][0]), str(spec["name"][1])) if spec.get("name") else None,
    )


@lru_cache(maxsize=1)
def trusted_data() -> _Data:
    text = (
        resources.files("mlverify._internal.scan").joinpath("data/skops_trusted.json").read_text()
    )
    raw = json.loads(text)
    loaders = {k: _loader(v) for k, v in raw["loaders"].items()}
    old = {
        int(p): {k: _loader(v) for k, v in specs.items()}
        for p, specs in raw.get("old_protocols", {}).items()
    }
    return _Data(
        int(raw["protocol"]),
        loaders,
        old,
        loaders["TypeNode"].trusted,
        frozenset(raw["bit_generators"]),
    )


def _looks_like_skops(raw: bytes) -> bool:
    return b"__loader__" in raw or b"\\u" in raw  # the key, or escapes that may spell it


def judge_schema(member: Source, ctx: ScanContext, label: str, names: frozenset[str]) -> None:
    """Judge a zip's top-level ``schema.json`` (``names``: the archive's member names)."""
    stream = member.open()
    chunks: list[bytes] = []
    got = 0
    while got <= MAX_SCHEMA and (chunk := stream.read(MAX_SCHEMA + 1 - got)):
        chunks.append(chunk)
        got += len(chunk)
    raw = b"".join(chunks)
    if len(raw) > MAX_SCHEMA:
        if _looks_like_skops(raw[: 1 << 20]):
            ctx.format("skops")
            msg = f"skops schema.json over {MAX_SCHEMA} bytes: its types were not judged"
            ctx.add(RESOURCE_LIMIT, label, 0, "skops", msg)
        return
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        if _looks_like_skops(raw):
            ctx.format("skops")
            why = "nests deeper than the JSON decoder reads" if isinstance(e, RecursionError) \
                else f"is not JSON ({str(e)[:80]})"  # fmt: skip
            ctx.add(SKOPS_MALFORMED, label, 0, "schema.json", f"skops schema.json {why}")
        return
    if not isinstance(doc, dict) or ("__loader__" not in doc and "protocol" not in doc):
        return  # a zip with some other schema.json
    ctx.format("skops")
    _Judge(ctx, label, names, trusted_data()).run(doc)


class _Judge:
    def __init__(self, ctx: ScanContext, label: str, names: frozenset[str], data: _Data) -> None:
        self.ctx = ctx
        self.label = label
        self.names = names
        self.data = data
        self.policy = _judge_policy(ctx.limits.extra_allow)
        self.seen: dict[str, int] = {}  # untrusted name -> occurrences
        self.listed = 0
        self.worst = Severity.MEDIUM  # of the findings not listed
        self.protocol = data.protocol

    def bad(self, subject: str, message: str) -> None:
        self._add(SKOPS_MALFORMED, subject, message, None)

    def _add(self, rule: Rule, subject: str, message: str, sev: Severity | None) -> None:
        self.listed += 1
        if self.listed > MAX_LISTED:  # counted, and the worst of them kept
            self.worst = max(self.worst, rule.severity if sev is None else sev)
            return
        self.ctx.add(rule, self.label, None, subject[:200], message, severity=sev)

    def run(self, doc: dict[str, Any]) -> None:
        proto = doc.get("protocol")
        if isinstance(proto, bool) or not isinstance(proto, int):
            self.bad("protocol", f"skops protocol {str(proto)[:40]!r} is not an integer")
        elif not 0 <= proto <= self.data.protocol:
            self.bad("protocol", f"skops protocol {proto} (skops reads 0 to {self.data.protocol})")
        else:
            self.protocol = proto
        if "__loader__" not in doc:
            self.bad("schema.json", "the schema's top level is not a node (no __loader__)")
        ids = set()
        nodes: list[dict[str, Any]] = []
        stack: list[Any] = [doc]
        while stack:  # every dict naming a loader, wherever it sits (a superset of skops')
            v = stack.pop()
            if isinstance(v, dict):
                if "__loader__" in v:
                    nodes.append(v)
                    if "__id__" in v and v["__loader__"] != "CachedNode":
                        ids.add(_hashable(v["__id__"]))
                stack.extend(v.values())
            elif isinstance(v, list):
                stack.extend(v)
        for node in nodes:
            self.node(node, ids)
        if self.listed > MAX_LISTED:
            msg = f"{self.listed - MAX_LISTED} more skops findings (not listed one by one)"
            self.ctx.add(SKOPS_UNTRUSTED, self.label, None, "more", msg, severity=self.worst)

    def loader(self, name: str) -> _Loader | None:
        return self.data.old.get(self.protocol, {}).get(name) or self.data.loaders.get(name)

    def node(self, state: dict[str, Any], ids: set[object]) -> None:
        loader_name = state.get("__loader__")
        cls, mod = state.get("__class__"), state.get("__module__")
        if not isinstance(loader_name, str) or not isinstance(cls, str) or not isinstance(mod, str):
            shown = f"{mod!s:.80}.{cls!s:.80} ({loader_name!s:.40})"
            self.bad(
                shown, f"a skops node without a string __class__/__module__/__loader__: {shown}"
            )
            return
        loader = self.loader(loader_name)
        if loader is None:
            self.bad(loader_name, f"unknown skops loader {loader_name!r} for {mod}.{cls}")
            return
        if loader_name == "CachedNode":
            if _hashable(state.get("__id__")) not in ids:
                self.bad(f"{mod}.{cls}", "a skops cached node refers to an object id never saved")
            return  # skops returns the node saved under that id: it is judged there
        content = state.get("content")
        if loader.name is not None:  # protocol 0 functions: the content names the import
            got = [content.get(k) if isinstance(content, dict) else None for k in loader.name]
            if not all(isinstance(g, str) for g in got):
                self.bad(f"{mod}.{cls}", f"a skops {loader_name} without {'/'.join(loader.name)}")
                return
            mod, cls = str(got[0]), str(got[1])
        if not loader.always_safe and f"{mod}.{cls}" not in loader.trusted:
            self.untrusted(mod, cls, loader_name)
        if loader.constructor is not None:
            ctor = f"{mod}.{cls}" if loader.constructor == "self" else loader.constructor
            if ctor not in self.data.type_node | loader.trusted:
                cmod, _, ccls = ctor.rpartition(".")
                self.untrusted(cmod, ccls, loader_name)
        if loader_name == "MethodNode":
            func = content.get("func") if isinstance(content, dict) else None
            if not isinstance(func, str):
                self.bad(f"{mod}.{cls}", "a skops method node without a method name")
            else:
                self.untrusted(mod, f"{cls}.{func}", loader_name)  # never trusted by default
        elif loader_name == "RandomGeneratorNode":
            gen = _bit_generator(content)
            if gen is None:
                self.bad(f"{mod}.{cls}", "a skops random generator without its bit generator name")
            elif f"numpy.random.{gen}" not in self.data.bit_generators:
                self.untrusted("numpy.random", gen, loader_name)
        if "file" in state:
            f = state["file"]
            if not isinstance(f, str) or f not in self.names:
                shown = f"{f!s:.120}"
                self.bad(shown, f"the skops schema names member {shown!r}, which the archive lacks")

    def untrusted(self, module: str, name: str, loader: str) -> None:
        full = f"{module}.{name}"
        n = self.seen.get(full, 0)
        self.seen[full] = n + 1
        if n:
            return
        verdict = self.policy.classify(module, name)
        if verdict.kind == "allow" and verdict.reason == _PROJECT:  # the denylist came first
            return
        sev = verdict.severity if verdict.kind in ("deny", "getattr") else None
        why = f": {verdict.reason}" if sev is not None else ""
        msg = f"skops loads {full} ({loader}) only when trusted; get_untrusted_types lists it{why}"
        self._add(SKOPS_UNTRUSTED, full, msg, sev)


def _hashable(v: object) -> object:
    return v if isinstance(v, (int, str, float, bool, type(None))) else repr(v)


def _bit_generator(content: Any) -> str | None:
    """The bit generator's class name where skops reads it: ``content.bit_generator.content
    .bit_generator.content``, a JSON literal."""
    try:
        lit = content["bit_generator"]["content"]["bit_generator"]["content"]
        name = json.loads(lit)
    except (KeyError, TypeError, ValueError, RecursionError):
        return None
    return name if isinstance(name, str) else None
