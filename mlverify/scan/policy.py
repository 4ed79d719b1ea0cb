"""The import policy: allowlist, denylist and import helpers, kept as data.

The data lives in ``data/allowlist.json`` (versioned); per-project additions
come in as ``extra_allow`` strings (``"module.name"`` or ``"module.*"``).
"""

from __future__ import annotations

import json
import re

# stdlib, pure data: the Python 2 -> 3 names a loader applies (fix_imports)
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from mlverify.scan.model import Severity

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Verdict:
    kind: str  # "allow" | "deny" | "unknown"
    severity: Severity
    reason: str


ALLOW = Verdict("allow", Severity.INFO, "allowlisted")


def canonical(module: str, name: str) -> tuple[str, str]:
    """The (module, name) a Python 3 loader imports for a pickle's names."""
    mapped = NAME_MAPPING.get((module, name))
    if mapped is not None:
        return mapped
    return IMPORT_MAPPING.get(module, module), name


class Policy:
    """Classifies dotted import paths; results are cached per instance."""

    def __init__(self, data: dict[str, object], extra_allow: frozenset[str] = frozenset()) -> None:
        self.version = str(data.get("version", "?"))
        deny = data.get("deny", {})
        assert isinstance(deny, dict)
        self._deny: dict[str, Severity] = {}
        for level, names in deny.items():
            for n in names:
                self._deny[n] = Severity.parse(level)
        self._deny_exceptions = frozenset(str(s) for s in data.get("deny_exceptions", []))  # type: ignore[attr-defined]
        self._segments = frozenset(str(s) for s in data.get("deny_segments", []))  # type: ignore[attr-defined]
        helpers = data.get("import_helpers", {})
        assert isinstance(helpers, dict)
        self.helpers: dict[str, str] = {str(k): str(v) for k, v in helpers.items()}
        allow = data.get("allow", {})
        assert isinstance(allow, dict)
        self._exact = frozenset(allow.get("exact", []))
        self._class_prefixes = tuple(allow.get("class_prefixes", []))
        self._class_modules = frozenset(allow.get("class_modules", []))
        self._patterns = [
            (str(p["module_prefix"]), re.compile(str(p["name_regex"])))
            for p in allow.get("function_patterns", [])
        ]
        self._extra_exact = frozenset(e for e in extra_allow if not e.endswith(".*"))
        self._extra_prefix = tuple(e[:-1] for e in extra_allow if e.endswith(".*"))
        self.classify = lru_cache(maxsize=8192)(self._classify)

    def _deny_lookup(self, parts: list[str]) -> tuple[str, Severity] | None:
        for j in range(len(parts), 0, -1):
            cand = ".".join(parts[:j])
            sev = self._deny.get(cand)
            if sev is not None:
                return cand, sev
        return None

    def _classify(self, module: str, name: str) -> Verdict:
        module, name = canonical(module, name)
        full = f"{module}.{name}" if module else name
        mparts = module.split(".")
        nparts = name.split(".")
        if full in self._deny_exceptions:
            return Verdict("allow", Severity.INFO, "exact exception to the denylist (data only)")
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
        if full in self._extra_exact or any(full.startswith(p) for p in self._extra_prefix):
            return Verdict("allow", Severity.INFO, "allowed by project policy")
        if full in self._exact:
            return ALLOW
        if len(nparts) == 1 and _IDENT.match(name):
            if name[:1].isupper() and (
                module in self._class_modules
                or any(module.startswith(p) or module == p[:-1] for p in self._class_prefixes)
            ):
                return ALLOW
            for prefix, rx in self._patterns:
                in_scope = (
                    module.startswith(prefix) or module == prefix[:-1]
                    if prefix.endswith(".")
                    else module == prefix
                )
                if in_scope and rx.match(name):
                    return ALLOW
        if any(seg.startswith("__") and seg.endswith("__") for seg in nparts):
            return Verdict("deny", Severity.HIGH, "dunder attribute traversal")
        return Verdict("unknown", Severity.MEDIUM, "not on the allowlist")

    def helper(self, module: str, name: str) -> str | None:
        module, name = canonical(module, name)
        return self.helpers.get(f"{module}.{name}")

    def is_dangerous_target(self, dotted: str) -> Verdict:
        """Classify a dotted path reached at run time (getattr chains, import helpers)."""
        if "." in dotted:
            module, _, name = dotted.rpartition(".")
        else:
            module, name = dotted, ""
        if not name:
            hit = self._deny_lookup(module.split("."))
            if hit:
                return Verdict("deny", hit[1], f"{hit[0]} is on the denylist")
            return Verdict("unknown", Severity.MEDIUM, "module")
        return self.classify(module, name)


@lru_cache(maxsize=1)
def builtin_data() -> dict[str, object]:
    text = resources.files("mlverify.scan").joinpath("data/allowlist.json").read_text("utf-8")
    data: dict[str, object] = json.loads(text)
    return data


_POLICIES: dict[frozenset[str], Policy] = {}


def get_policy(extra_allow: frozenset[str] = frozenset()) -> Policy:
    pol = _POLICIES.get(extra_allow)
    if pol is None:
        pol = _POLICIES[extra_allow] = Policy(builtin_data(), extra_allow)
    return pol
