"""Policy files: YAML, versioned, parsed strictly into frozen dataclasses.

Unknown keys, wrong types and impossible values are errors that name the file
and the key: a typo in a security policy must never silently relax it.
Relative paths in a policy (keys, certificate roots, trust roots) are relative
to the policy file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlverify._internal.errors import InputError, MlverifyError
from mlverify._internal.signing.trust import (
    TrustedCertificate,
    TrustedKey,
    TrustedSigstore,
    trusted_certificate,
    trusted_key,
    trusted_key_pem,
)

API_VERSION = "mlverify.dev/v1"
KIND = "Policy"
MAX_POLICY_BYTES = 1024 * 1024
SEVERITIES = ("info", "low", "medium", "high", "critical")
_SHA256 = re.compile("[0-9a-f]{64}")


class PolicyError(InputError):
    """A policy file that cannot be used; names the file and the key."""

    code = "policy"


@dataclass(frozen=True)
class SignatureRules:
    required: bool = False
    keys: tuple[TrustedKey, ...] = ()
    certificates: tuple[TrustedCertificate, ...] = ()
    sigstore: tuple[TrustedSigstore, ...] = ()
    threshold: int = 1

    @property
    def has_signers(self) -> bool:
        return bool(self.keys or self.certificates or self.sigstore)


@dataclass(frozen=True)
class ProvenanceRules:
    required: bool = False
    builder_ids: tuple[str, ...] = ()
    source_repo: str | None = None
    source_ref: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    reject_unknown_parameters: bool = False
    #: datasets that must appear in resolvedDependencies: (name, sha256 or None)
    datasets: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class Exemption:
    rule: str
    owner: str
    reason: str
    expires: dt.date
    subject: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class CelRule:
    name: str
    expr: str
    message: str


@dataclass(frozen=True)
class Policy:
    """One parsed policy file."""

    source: str
    digest: str  #: sha256 of the file bytes: part of the verdict cache key
    name: str
    mode: str  #: enforce | warn
    match_paths: tuple[str, ...]
    match_formats: tuple[str, ...]
    signatures: SignatureRules
    provenance: ProvenanceRules
    allowed_formats: tuple[str, ...]
    #: under ``allowed_formats``: globs of files whose unrecognised content ("data") is
    #: allowed although named like a model file
    allowed_data: tuple[str, ...]
    denied_formats: tuple[str, ...]
    max_severity: str
    allow_unsupported: bool
    allow_globals: tuple[str, ...]
    exemptions: tuple[Exemption, ...]
    rules: tuple[CelRule, ...]


class _Reader:
    """Typed access to a YAML mapping that remembers which keys were read."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        if not isinstance(data, Mapping):
            raise PolicyError(f"{source}: '{where}' must be a mapping, found {type(data).__name__}")
        self.data = data
        self.where = where
        self.source = source
        self.seen: set[str] = set()

    def _err(self, key: str, msg: str) -> PolicyError:
        return PolicyError(f"{self.source}: '{self.where}.{key}' {msg}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind in (int, (int,)):
            raise self._err(key, f"must be {getattr(kind, '__name__', kind)}, found {value!r}")
        if not isinstance(value, kind):
            name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self._err(key, f"must be {name}, found {type(value).__name__} {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, (list, str), [])
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(v, str) and v for v in value):
            raise self._err(key, "must be a list of non-empty strings")
        return tuple(value)

    def date(self, key: str) -> dt.date | None:
        value = self.get(key, (str, dt.date))
        if value is None or isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self._err(key, f"must be a date YYYY-MM-DD, found {value!r}") from None

    def child(self, key: str) -> _Reader:
        self.seen.add(key)
        return _Reader(self.data.get(key) or {}, f"{self.where}.{key}", self.source)

    def done(self) -> None:
        unknown = sorted(set(map(str, self.data)) - self.seen)
        if unknown:
            raise PolicyError(
                f"{self.source}: unknown key(s) in '{self.where}': {', '.join(unknown)}; "
                "check the spelling (see docs/policy.md)"
            )


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file at ``path``."""
    from mlverify._internal.files import read_bounded

    raw = read_bounded(
        path,
        what="policy file",
        limit=MAX_POLICY_BYTES,
        missing=PolicyError,
        missing_text="policy file not found; check the policy path",
        too_big_text="is this a policy?",
    )
    return parse_policy(raw, source=str(path), base=trust_base(path))


def config_dir() -> Path:
    """The user's mlverify configuration directory: ``$MLVERIFY_CONFIG_DIR``, else
    ``$XDG_CONFIG_HOME/mlverify``, else ``~/.config/mlverify``."""
    explicit = os.environ.get("MLVERIFY_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "mlverify"


def trust_base(path: Path) -> Path:
    """Where a policy's relative trust files (keys, roots) are found: beside the policy,
    except for the built-in policies, whose trust is the user's: it is read from the
    configuration directory (``keys/release.pub`` there for ``builtin:strict``), never
    from the installed package."""
    if path.resolve().parent == builtin_policy_dir().resolve():
        return config_dir()
    return path.parent


#: Deepest nesting a policy (or policy test case) may have; real ones need about 6.
MAX_YAML_DEPTH = 32


def load_yaml(raw: bytes | str, *, source: str) -> Any:
    """Safe YAML without aliases or anchors (a 680-byte "billion laughs" document
    expands to gigabytes) and with bounded nesting; errors name the file and line."""
    import yaml

    def fail(what: str, mark: Any) -> PolicyError:
        at = f" at line {mark.line + 1}" if mark is not None else ""
        return PolicyError(f"{source}: {what}{at}")

    try:
        depth = 0
        for event in yaml.parse(raw, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise fail(
                    "YAML anchors and aliases (&x, *x) are not allowed in policies; "
                    "write the values out",
                    event.start_mark,
                )
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise fail(f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise fail("not valid YAML; fix the syntax", getattr(e, "problem_mark", None)) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as e:
        raise PolicyError(f"{source}: not a usable YAML document ({type(e).__name__})") from None


def parse_policy(raw: bytes, *, source: str, base: Path) -> Policy:
    doc = load_yaml(raw, source=source)
    top = _Reader(doc, "policy", source)
    api = top.get("apiVersion", str)
    if api != API_VERSION:
        raise PolicyError(f"{source}: apiVersion is {api!r}; expected {API_VERSION!r}")
    if top.get("kind", str) != KIND:
        raise PolicyError(f"{source}: kind must be {KIND!r}")
    meta = top.child("metadata")
    name = meta.get("name", str) or Path(source).stem
    meta.get("description", str)
    meta.done()
    spec = top.child("spec")
    top.done()

    mode = spec.get("mode", str, "enforce")
    if mode not in ("enforce", "warn"):
        raise PolicyError(f"{source}: 'spec.mode' must be enforce or warn, found {mode!r}")
    match = spec.child("match")
    match_paths = match.strings("paths")
    match_formats = match.strings("formats")
    match.done()

    sig = spec.child("signatures")
    signatures = _signature_rules(sig, base)
    sig.done()

    att = spec.child("attestations")
    prov = att.child("provenance")
    provenance = _provenance_rules(prov)
    prov.done()
    att.done()

    fmt = spec.child("formats")
    allowed = fmt.strings("allow")
    allowed_data = fmt.strings("allow_data")
    if allowed_data and not allowed:
        raise PolicyError(
            f"{source}: 'spec.formats.allow_data' applies under 'spec.formats.allow'; "
            "list the allowed formats too"
        )
    denied = fmt.strings("deny")
    allow_unsupported = fmt.get("allow_unsupported", bool, False)
    fmt.done()

    scan = spec.child("scan")
    max_severity = scan.get("max_severity", str, "low")
    if max_severity not in SEVERITIES:
        raise PolicyError(
            f"{source}: 'spec.scan.max_severity' must be one of {', '.join(SEVERITIES)}, "
            f"found {max_severity!r}"
        )
    allow_globals = scan.strings("allow_globals")
    from mlverify._internal.scan.policy import allow_entry_problem

    for g in allow_globals:
        problem = allow_entry_problem(g)
        if problem:
            raise PolicyError(f"{source}: 'spec.scan.allow_globals': {problem}")
    scan.done()

    exemptions = tuple(
        _exemption(e, i, source) for i, e in enumerate(spec.get("exemptions", list, []))
    )
    rules = tuple(_cel_rule(r, i, source) for i, r in enumerate(spec.get("rules", list, [])))
    spec.done()
    return Policy(
        source=source,
        digest=hashlib.sha256(raw).hexdigest(),
        name=str(name),
        mode=mode,
        match_paths=match_paths,
        match_formats=match_formats,
        signatures=signatures,
        provenance=provenance,
        allowed_formats=allowed,
        allowed_data=allowed_data,
        denied_formats=denied,
        max_severity=max_severity,
        allow_unsupported=allow_unsupported,
        allow_globals=allow_globals,
        exemptions=exemptions,
        rules=rules,
    )


def _path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _trusted_key(r: _Reader, base: Path, owner: str) -> TrustedKey:
    """A ``key: PATH_OR_URI`` or ``public_key: PEM`` entry, read once, here."""
    fingerprint = r.get("fingerprint", str)
    before, after = r.date("not_before"), r.date("not_after")
    if "public_key" in r.data:
        pem = r.get("public_key", str)
        if not pem:
            raise PolicyError(f"{r.source}: '{r.where}.public_key' must hold a PEM public key")
        return trusted_key_pem(
            pem.encode(),
            source=f"{r.source}: '{r.where}.public_key'",
            fingerprint=fingerprint,
            not_before=before,
            not_after=after,
            owner=owner,
        )
    uri = r.get("key", str)
    if not uri:
        raise PolicyError(f"{r.source}: '{r.where}.key' must name a public key file or key URI")
    return trusted_key(
        uri,
        base=base,
        fingerprint=fingerprint,
        not_before=before,
        not_after=after,
        owner=owner,
        defer_errors=True,  # `policy lint` names it; a check that needs it stops on it
    )


def _signature_rules(sig: _Reader, base: Path) -> SignatureRules:
    required = sig.get("required", bool, False)
    threshold = sig.get("threshold", int, 1)
    if threshold < 1:
        raise PolicyError(f"{sig.source}: 'spec.signatures.threshold' must be at least 1")
    keys: list[TrustedKey] = []
    certs: list[TrustedCertificate] = []
    stores: list[TrustedSigstore] = []
    for i, entry in enumerate(sig.get("trusted", list, [])):
        r = _Reader(entry, f"spec.signatures.trusted[{i}]", sig.source)
        kinds = [k for k in ("key", "public_key", "certificate", "sigstore") if k in r.data]
        if len(kinds) != 1:
            raise PolicyError(
                f"{sig.source}: 'spec.signatures.trusted[{i}]' needs exactly one of key, "
                "public_key, certificate, sigstore"
            )
        owner = r.get("owner", str, "")
        if threshold > 1 and not owner:
            raise PolicyError(
                f"{sig.source}: 'spec.signatures.trusted[{i}]' needs an 'owner' because "
                f"threshold is {threshold}: a threshold counts people, and only the policy "
                "knows which keys or identities belong to one person (e.g. old and new key)"
            )
        where = f"{sig.source}: 'spec.signatures.trusted[{i}]'"
        try:
            if kinds in (["key"], ["public_key"]):
                keys.append(_trusted_key(r, base, owner))
            elif kinds == ["certificate"]:
                c = r.child("certificate")
                certs.append(
                    trusted_certificate(
                        tuple(_path(base, x) for x in c.strings("roots")),
                        identities=c.strings("identities"),
                        identity_regex=c.get("identity_regex", str),
                        subject=c.get("subject", str),
                        owner=owner,
                    )
                )
                c.done()
            else:
                st = r.child("sigstore")
                trust_root = st.get("trust_root", str)
                stores.append(
                    TrustedSigstore(
                        issuer=st.get("issuer", str) or "",
                        identities=st.strings("identities"),
                        identity_regex=st.get("identity_regex", str),
                        source_repo=st.get("source_repo", str),
                        source_ref=st.get("source_ref", str),
                        workflow=st.get("workflow", str),
                        trust_root=_path(base, trust_root) if trust_root else None,
                        owner=owner,
                    )
                )
                st.done()
        except PolicyError:
            raise
        except MlverifyError as e:
            raise PolicyError(f"{where}: {e.message}", remedy=e.remedy) from None
        r.done()
    rules = SignatureRules(required, tuple(keys), tuple(certs), tuple(stores), threshold)
    if required and not rules.has_signers:
        raise PolicyError(
            f"{sig.source}: 'spec.signatures.required' is true but no trusted signer is listed"
        )
    return rules


def _provenance_rules(prov: _Reader) -> ProvenanceRules:
    params = prov.get("parameters", Mapping, {})
    datasets = []
    for i, d in enumerate(prov.get("datasets", list, [])):
        r = _Reader(d, f"spec.attestations.provenance.datasets[{i}]", prov.source)
        name = r.get("name", str)
        if not name:
            raise PolicyError(f"{prov.source}: dataset requirement [{i}] needs a 'name'")
        digest = (r.get("sha256", str) or "").lower()
        if not _SHA256.fullmatch(digest):
            # a name alone proves nothing (a provenance may name any bytes so), and a rule
            # that can never pass is a mistake to report now, not a deny at every check
            raise PolicyError(
                f"{prov.source}: dataset requirement {name!r} needs 'sha256': the dataset's "
                f"digest, 64 hex digits (found {r.get('sha256', str) or 'none'!r})"
            )
        datasets.append((name, digest))
        r.done()
    return ProvenanceRules(
        required=prov.get("required", bool, False),
        builder_ids=prov.strings("builder_ids"),
        source_repo=prov.get("source_repo", str),
        source_ref=prov.get("source_ref", str),
        parameters=_scalar_map(params, prov),
        reject_unknown_parameters=prov.get("reject_unknown_parameters", bool, False),
        datasets=tuple(datasets),
    )


def _scalar_map(params: Mapping[Any, Any], prov: _Reader) -> dict[str, str]:
    """Provenance parameters: names to scalar values (compared as text)."""
    out: dict[str, str] = {}
    for k, v in params.items():
        if not isinstance(k, str) or isinstance(v, (dict, list)) or v is None:
            raise PolicyError(
                f"{prov.source}: 'spec.attestations.provenance.parameters' maps names to "
                f"scalar values; found {type(k).__name__} {str(k)[:40]!r}: {type(v).__name__}"
            )
        out[k] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _exemption(data: Any, i: int, source: str) -> Exemption:
    r = _Reader(data, f"spec.exemptions[{i}]", source)
    fields = {k: r.get(k, str) for k in ("rule", "owner", "reason")}
    missing = [k for k, v in fields.items() if not v]
    expires = r.date("expires")
    if expires is None:
        missing.append("expires")
    if missing:
        raise PolicyError(
            f"{source}: exemption [{i}] needs {', '.join(missing)} "
            "(every exemption has an owner, a reason and an expiry date)"
        )
    ex = Exemption(
        rule=str(fields["rule"]),
        owner=str(fields["owner"]),
        reason=str(fields["reason"]),
        expires=expires,  # type: ignore[arg-type]
        subject=r.get("subject", str),
        file=r.get("file", str),
    )
    r.done()
    return ex


def _cel_rule(data: Any, i: int, source: str) -> CelRule:
    r = _Reader(data, f"spec.rules[{i}]", source)
    name, expr = r.get("name", str), r.get("expr", str)
    if not name or not expr:
        raise PolicyError(f"{source}: rule [{i}] needs 'name' and 'expr'")
    rule = CelRule(name=name, expr=expr, message=r.get("message", str, f"rule {name} failed"))
    r.done()
    return rule


def policy_paths(paths: Sequence[Path]) -> list[Path]:
    """Policy files named directly, or every *.yaml / *.yml in a named directory."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        else:
            out.append(p)
    return out


def builtin_policy_dir() -> Path:
    """The policies shipped with mlverify (the repository's ``policies/``)."""
    return Path(__file__).resolve().parent.parent / "data" / "policies"


def builtin_policy_path(ref: str) -> Path:
    """The file behind ``builtin:NAME``."""
    name = ref.removeprefix("builtin:")
    candidate = builtin_policy_dir() / f"{name}.yaml"
    if "/" in name or "\\" in name or not candidate.is_file():
        names = sorted(p.stem for p in builtin_policy_dir().glob("*.yaml"))
        raise PolicyError(f"{ref}: no such built-in policy; choose one of {', '.join(names)}")
    return candidate


def load_policies(refs: Sequence[str]) -> list[Policy]:
    """Policies from files, directories of ``*.yaml``, or ``builtin:NAME``."""
    paths: list[Path] = []
    for ref in refs:
        if ref.startswith("builtin:"):
            paths.append(builtin_policy_path(ref))
        else:
            paths.extend(policy_paths([Path(ref)]))
    if not paths:
        raise PolicyError(f"no policy file found in {', '.join(refs)}")
    return [load_policy(p) for p in paths]
