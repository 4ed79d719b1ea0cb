"""The import policy: an exact allowlist, a denylist for severities, and import helpers.

Data, not code: ``data/pickle_allowlist.json`` (harvested from real libraries and reviewed;
exact ``module.qualname`` entries of the *defining* module, aliases for the other names real
pickles use, the methods ``builtins.getattr`` may fetch, and for each entry which arguments it
calls or loads) and ``data/pickle_denylist.json`` (what is known dangerous, for severities
and messages). There are no prefix, glob or capitalisation rules in the shipped data: a name
that is not an entry or alias is a finding. Projects may add names (``extra_allow``):
``"module.name"`` exactly, or ``"module.*"`` for a package of their own.
"""

from __future__ import annotations

import json
import re

# stdlib, pure data: the Python 2 -> 3 names a loader applies (fix_imports, protocol < 3)
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from mlverify._internal.scan.model import Severity


@dataclass(frozen=True)
class Entry:
    """How an allowed callable treats its arguments (positional indices)."""

    kind: str  # "class" | "function"
    calls: tuple[int, ...] = ()  # called or constructed when the unpickler calls it
    result_calls: tuple[int, ...] = ()  # called when its result is called (partial)
    loads: tuple[int, ...] = ()  # bytes it deserialises (scanned as nested files)
    state_calls: tuple[int | str, ...] = ()  # BUILD state items (tuple index, dict key) it calls
    new_only: bool = False  # only __new__ + BUILD reconstruction is data; calling it is not


@dataclass(frozen=True)
class Verdict:
    kind: str  # "allow" | "deny" | "unknown" | "getattr"
    severity: Severity
    reason: str
    entry: Entry | None = None
    name: str = ""  # the defining name an allowed import resolves to


GETATTR = "builtins.getattr"
TORCHSCRIPT = "__torch__"
_RANK = {"allow": 0, "getattr": 1, "unknown": 2, "deny": 3}


def canonical(module: str, name: str) -> tuple[str, str]:
    """The (module, name) a Python 3 loader imports for a protocol < 3 pickle's names."""
    mapped = NAME_MAPPING.get((module, name))
    if mapped is not None:
        return mapped
    return IMPORT_MAPPING.get(module, module), name


def _ints(v: Any) -> tuple[int, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(i, int) and i >= 0 for i in v):
        raise ValueError(f"argument indices must be a list of non-negative ints, not {v!r}")
    return tuple(v)


def _keys(v: Any) -> tuple[int | str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(i, (int, str)) for i in v):
        raise ValueError(f"state keys must be a list of ints or strings, not {v!r}")
    return tuple(v)


class Policy:
    """Classifies imports; results are cached per instance."""

    def __init__(
        self,
        allow: dict[str, Any],
        deny: dict[str, Any],
        extra_allow: frozenset[str] = frozenset(),
    ) -> None:
        self.version = f"{allow.get('version', '?')}/{deny.get('version', '?')}"  # data_version
        self._deny: dict[str, Severity] = {}
        for level, names in deny.get("deny", {}).items():
            for n in names:
                self._deny[n] = Severity.parse(level)
        self._deny_exceptions = frozenset(str(s) for s in deny.get("deny_exceptions", []))
        self._segments = frozenset(str(s) for s in deny.get("deny_segments", []))
        self.helpers: dict[str, str] = {
            str(k): str(v) for k, v in deny.get("import_helpers", {}).items()
        }
        self._entries: dict[str, Entry] = {}
        for name, spec in allow.get("entries", {}).items():
            self._entries[str(name)] = Entry(
                kind=str(spec.get("kind", "function")),
                calls=_ints(spec.get("calls")),
                result_calls=_ints(spec.get("result_calls")),
                loads=_ints(spec.get("loads")),
                state_calls=_keys(spec.get("state_calls")),
                new_only=bool(spec.get("new_only", False)),
            )
        self._aliases: dict[str, str] = {
            str(k): str(v) for k, v in allow.get("aliases", {}).items()
        }
        self._methods: dict[str, frozenset[str]] = {
            str(k): frozenset(str(m) for m in v) for k, v in allow.get("methods", {}).items()
        }
        #: attribute names a loader looks up on an object and calls (BUILD, APPEND(S),
        #: ADDITEMS) or that getattr may fetch as a method: an instance attribute of that
        #: name shadows the class's method
        self.behaviour_names = frozenset({"__setstate__", "append", "extend", "add"}).union(
            *self._methods.values()
        )
        #: BUILD state keys some entry calls (``state_calls``): a simulated dict keeps them
        self.state_keys = frozenset(
            k for e in self._entries.values() for k in e.state_calls if isinstance(k, str)
        )
        self._extra_exact = frozenset(e for e in extra_allow if not e.endswith(".*"))
        self._extra_prefix = tuple(e[:-1] for e in extra_allow if e.endswith(".*"))
        self.classify = lru_cache(maxsize=8192)(self._classify)

    # -- lookups -----------------------------------------------------------
    def defining(self, full: str) -> str:
        """The defining name of an allowed import as written in a pickle."""
        return self._aliases.get(full, full)

    def entry(self, full: str) -> Entry | None:
        return self._entries.get(self.defining(full))

    def methods(self, cls_full: str) -> frozenset[str]:
        return self._methods.get(self.defining(cls_full), frozenset())

    def helper(self, module: str, name: str) -> str | None:
        module, name = canonical(module, name)
        return self.helpers.get(f"{module}.{name}")

    # -- classification ----------------------------------------------------
    def _deny_lookup(self, parts: list[str]) -> tuple[str, Severity] | None:
        for j in range(len(parts), 0, -1):
            cand = ".".join(parts[:j])
            sev = self._deny.get(cand)
            if sev is not None:
                return cand, sev
        return None

    def _classify(self, module: str, name: str) -> Verdict:
        """The verdict on importing ``module.name``.

        A loader maps Python 2 names for protocol < 3 pickles unless it passes
        ``fix_imports=False``, so both the mapped and the raw name are judged and the worse
        verdict wins; the raw name is skipped when its module is a Python 2 one (a Python 3
        loader cannot import it).
        """
        cm, cn = canonical(module, name)
        v = self._classify_one(cm, cn)
        if (cm, cn) != (module, name) and module not in IMPORT_MAPPING:
            raw = self._classify_one(module, name)
            if _RANK[raw.kind] > _RANK[v.kind] or (
                raw.kind == v.kind and raw.severity > v.severity
            ):
                return raw
        return v

    def _classify_one(self, module: str, name: str) -> Verdict:
        full = f"{module}.{name}" if module else name
        mparts = module.split(".")
        nparts = name.split(".")
        if full in self._deny_exceptions:
            e = self.entry(full)
            return Verdict("allow", Severity.INFO, "exact exception to the denylist", e, full)
        if full == GETATTR:
            return Verdict(
                "getattr",
                Severity.HIGH,
                "builtins.getattr may only fetch a known method of an allowed class",
            )
        hit = self._deny_lookup(mparts + nparts)
        if hit is not None:
            return Verdict("deny", hit[1], f"{hit[0]} is on the denylist")
        # attribute traversal inside the name: torch.os.system, x.__globals__, ...
        for k in range(len(nparts)):
            seg = nparts[k]
            if seg in self._segments and (k > 0 or len(nparts) > 1 or seg in self._deny):
                sub = self._deny_lookup(nparts[k:])
                sev = sub[1] if sub else Severity.CRITICAL
                return Verdict("deny", sev, f"attribute path reaches {'.'.join(nparts[k:])}")
            sub = self._deny_lookup(nparts[k:]) if k > 0 or len(nparts) > 1 else None
            if sub is not None and len(nparts) - k > 1:
                return Verdict("deny", sub[1], f"attribute path reaches {sub[0]}")
        entry = self.entry(full)
        if entry is not None:
            return Verdict("allow", Severity.INFO, "allowlisted", entry, self.defining(full))
        if module == TORCHSCRIPT or module.startswith(TORCHSCRIPT + "."):
            # TorchScript classes: no Python module has this name (a Python loader raises),
            # the TorchScript loader binds them to the archive's code, which is judged there
            return Verdict("allow", Severity.INFO, "TorchScript class", Entry("class"), full)
        if any(seg.startswith("__") and seg.endswith("__") for seg in nparts):
            return Verdict("deny", Severity.HIGH, "dunder attribute traversal")
        # a project wildcard ("pkg.*") covers names in pkg's modules, never an attribute path
        # through one (pkg.m + "np.load" is numpy's, reached through pkg.m's own import)
        wild = "." not in name and any(full.startswith(p) for p in self._extra_prefix)
        if full in self._extra_exact or wild:
            return Verdict(
                "allow", Severity.INFO, "allowed by project policy", Entry("class"), full
            )
        return Verdict("unknown", Severity.MEDIUM, "not on the allowlist")

    def is_dangerous_target(self, dotted: str) -> Verdict:
        """Classify a dotted path reached at run time (import helpers, getattr chains)."""
        if "." in dotted:
            module, _, name = dotted.rpartition(".")
        else:
            module, name = dotted, ""
        if not name:
            hit = self._deny_lookup(module.split("."))
            if hit:
                return Verdict("deny", hit[1], f"{hit[0]} is on the denylist")
            return Verdict("unknown", Severity.MEDIUM, "module")
        return self._classify_one(module, name)


def _load(name: str) -> dict[str, Any]:
    text = resources.files("mlverify._internal.scan").joinpath(f"data/{name}").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@lru_cache(maxsize=1)
def builtin_data() -> tuple[dict[str, Any], dict[str, Any]]:
    """The shipped (allowlist, denylist) data."""
    return _load("pickle_allowlist.json"), _load("pickle_denylist.json")


def data_version() -> str:
    """The shipped policy data's version: ``<allowlist version>/<denylist version>``."""
    allow, deny = builtin_data()
    return f"{allow.get('version', '?')}/{deny.get('version', '?')}"


_POLICIES: dict[frozenset[str], Policy] = {}


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def allow_entry_problem(entry: str) -> str | None:
    """Why ``entry`` is not an extra allowlist entry, or None: ``module.name`` (dotted) or
    ``module.*`` (every name under ``module`` and its submodules). The denylist still wins.
    The one rule for policy files (``allow_globals``) and the CLI (``--allow``)."""
    parts = entry.split(".")
    if len(parts) < 2:
        return f"{entry!r} is not 'module.name' or 'module.*'"
    head, last = parts[:-1], parts[-1]
    if last != "*" and not _IDENT.fullmatch(last):
        return f"{entry!r}: {last!r} is not a name or '*'"
    bad = [p for p in head if not _IDENT.fullmatch(p)]
    if bad:
        return f"{entry!r}: {bad[0]!r} is not a module name part"
    return None


def get_policy(extra_allow: frozenset[str] = frozenset()) -> Policy:
    pol = _POLICIES.get(extra_allow)
    if pol is None:
        allow, deny = builtin_data()
        pol = _POLICIES[extra_allow] = Policy(allow, deny, extra_allow)
    return pol
