"""SLSA Provenance v1 for models: produce it, and check it as slsa-verifier does.

Datasets and base models are ``resolvedDependencies`` with a digest computed
by the same manifest code as models (a directory gets its OMS root digest), so
a policy can tie a model to the exact bytes it was trained on.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlverify._internal.attest.intoto import SLSA_PROVENANCE_V1, Statement
from mlverify._internal.errors import UsageError
from mlverify._internal.manifest.build import hash_model

#: buildType of provenance written by mlverify
BUILD_TYPE = "https://mlverify.dev/buildtypes/model-training/v1"
#: buildType written by GitHub's attest-build-provenance
GITHUB_BUILD_TYPE = "https://actions.github.io/buildtypes/workflow/v1"

DEP_KINDS = ("dataset", "base-model", "source")
_DIGEST_SUFFIX = re.compile(r"^(?P<uri>.+)@sha256:(?P<hex>[0-9a-fA-F]{64})$")


@dataclass(frozen=True)
class Dependency:
    """A dataset, base model or source revision the model was built from."""

    kind: str
    name: str
    uri: str
    digest: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.uri:  # a local path has none: the signing machine's paths mean nothing
            out["uri"] = self.uri
        return {**out, "digest": dict(self.digest), "annotations": {"kind": self.kind}}


def dependency_from_arg(kind: str, value: str) -> Dependency:
    """``--dataset PATH`` (hashed now) or ``--dataset URI@sha256:HEX`` (digest given)."""
    match = _DIGEST_SUFFIX.match(value)
    if match:
        uri = match["uri"]
        return Dependency(
            kind, uri.rstrip("/").rsplit("/", 1)[-1], uri, {"sha256": match["hex"].lower()}
        )
    path = Path(value)
    if not path.exists():
        raise UsageError(
            f"--{kind} {value}: not a local path and no digest given; "
            "pass a file or directory to hash, or URI@sha256:HEX"
        )
    digest = artifact_digest(path)
    # named and pinned by digest; no file:// URI (an absolute path of the machine that
    # signed, which leaks its layout and identifies nothing elsewhere)
    return Dependency(kind, path.resolve().name, "", {"sha256": digest})


def artifact_digest(path: Path) -> str:
    """The digest a statement about ``path`` names: SHA-256 of a file's bytes
    (what every in-toto producer uses), or the OMS root digest of a directory
    (files, SHA-256, default exclusions)."""
    manifest = hash_model(path)
    if path.is_file():
        return manifest.resources[0].digest
    return manifest.root_digest


@dataclass(frozen=True)
class BuildInfo:
    """Who built the model, from what."""

    builder_id: str
    source_repo: str
    source_ref: str
    source_commit: str | None = None
    invocation_id: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    dependencies: Sequence[Dependency] = ()


def github_defaults(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Builder id, source repo, ref, commit and run id from GitHub Actions variables."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") != "true":
        return {}
    server = env.get("GITHUB_SERVER_URL", "https://github.com")
    out: dict[str, str] = {}
    if env.get("GITHUB_WORKFLOW_REF"):
        out["builder_id"] = f"{server}/{env['GITHUB_WORKFLOW_REF']}"
    if env.get("GITHUB_REPOSITORY"):
        out["source_repo"] = f"{server}/{env['GITHUB_REPOSITORY']}"
        if env.get("GITHUB_RUN_ID"):
            attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
            out["invocation_id"] = (
                f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
                f"/attempts/{attempt}"
            )
    if env.get("GITHUB_REF"):
        out["source_ref"] = env["GITHUB_REF"]
    if env.get("GITHUB_SHA"):
        out["source_commit"] = env["GITHUB_SHA"]
    return out


def provenance_predicate(info: BuildInfo) -> dict[str, Any]:
    deps = [d.to_json() for d in info.dependencies]
    if info.source_commit:
        deps.insert(
            0,
            Dependency(
                "source",
                info.source_repo.rstrip("/").rsplit("/", 1)[-1],
                f"git+{info.source_repo}@{info.source_ref}",
                {"gitCommit": info.source_commit},
            ).to_json(),
        )
    run_details: dict[str, Any] = {"builder": {"id": info.builder_id}}
    if info.invocation_id:
        run_details["metadata"] = {"invocationId": info.invocation_id}
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "source": {"repository": info.source_repo, "ref": info.source_ref},
                "parameters": dict(sorted(info.parameters.items())),
            },
            "resolvedDependencies": deps,
        },
        "runDetails": run_details,
    }


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class ProvenanceRequirements:
    """What a verifier demands of a provenance statement (empty = not checked)."""

    builder_ids: Sequence[str] = ()
    source_repo: str | None = None
    source_ref: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    reject_unknown_parameters: bool = False
    datasets: Sequence[Dependency] = ()
    base_models: Sequence[Dependency] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.builder_ids
            or self.source_repo is not None
            or self.source_ref is not None
            or self.parameters
            or self.reject_unknown_parameters
            or self.datasets
            or self.base_models
        )


@dataclass(frozen=True)
class ProvenanceFacts:
    """The fields a provenance statement claims, normalised across build types."""

    build_type: str
    builder_id: str
    source_repo: str | None
    source_ref: str | None
    parameters: Mapping[str, Any]
    dependencies: tuple[Mapping[str, Any], ...]


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def provenance_facts(statement: Statement) -> ProvenanceFacts:
    p = statement.predicate
    build_type = str(_get(p, "buildDefinition", "buildType") or "")
    ext = _get(p, "buildDefinition", "externalParameters") or {}
    if build_type == GITHUB_BUILD_TYPE:
        repo = _get(ext, "workflow", "repository")
        ref = _get(ext, "workflow", "ref")
        params = (
            {k: v for k, v in ext.items() if k != "workflow"} if isinstance(ext, Mapping) else {}
        )
    else:
        repo = _get(ext, "source", "repository")
        ref = _get(ext, "source", "ref")
        params = _get(ext, "parameters") or {}
    deps = _get(p, "buildDefinition", "resolvedDependencies") or []
    return ProvenanceFacts(
        build_type=build_type,
        builder_id=str(_get(p, "runDetails", "builder", "id") or ""),
        source_repo=str(repo) if repo else None,
        source_ref=str(ref) if ref else None,
        parameters=params if isinstance(params, Mapping) else {},
        dependencies=tuple(d for d in deps if isinstance(d, Mapping)),
    )


def builder_matches(builder_id: str, allowed: str) -> bool:
    """Exact match; ``ID`` without ``@`` matches any ``ID@version``; ``PREFIX*`` a prefix."""
    if allowed.endswith("*"):
        return builder_id.startswith(allowed[:-1])
    if builder_id == allowed:
        return True
    return "@" not in allowed and builder_id.split("@", 1)[0] == allowed


def _norm_repo(repo: str) -> str:
    r = repo.strip().removeprefix("git+").removesuffix(".git").rstrip("/")
    if "://" not in r and r.count("/") == 1:
        r = "https://github.com/" + r
    return r.lower()


_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$")


def _semver(text: str) -> tuple[int, int, int, int] | None:
    m = _SEMVER.match(text)
    if not m:
        return None
    # pre-releases sort before the release they precede
    return (int(m[1]), int(m[2]), int(m[3]), 0 if m[4] else 1)


def ref_matches(ref: str, expected: str) -> bool:
    """Exact ref, a glob (``refs/tags/v1.*``) or ``semver:>=1.2.0,<2.0.0`` over tags."""
    if expected.startswith("semver:"):
        tag = ref.removeprefix("refs/tags/")
        version = _semver(tag)
        if version is None or not ref.startswith("refs/tags/"):
            return False
        for clause in expected[len("semver:") :].split(","):
            m = re.match(r"^\s*(>=|<=|==|=|>|<)?\s*(\S+)\s*$", clause)
            bound = _semver(m[2]) if m else None
            if m is None or bound is None:
                raise UsageError(
                    f"{expected!r}: cannot read semver clause {clause!r}", setting="source_ref"
                )
            op = m[1] or "=="
            ok = {
                ">=": version >= bound,
                "<=": version <= bound,
                ">": version > bound,
                "<": version < bound,
                "==": version == bound,
                "=": version == bound,
            }[op]
            if not ok:
                return False
        return True
    if any(c in expected for c in "*?["):
        return fnmatch.fnmatchcase(ref, expected)
    return ref == expected


def check_provenance(facts: ProvenanceFacts, req: ProvenanceRequirements) -> list[str]:
    """Every way ``facts`` fails ``req``, each as one plain sentence (empty: passes)."""
    problems: list[str] = []
    if req.builder_ids and not any(builder_matches(facts.builder_id, b) for b in req.builder_ids):
        problems.append(
            f"builder {facts.builder_id or '(none)'!r} is not an allowed builder "
            f"({', '.join(req.builder_ids)})"
        )
    if req.source_repo is not None and (
        facts.source_repo is None or _norm_repo(facts.source_repo) != _norm_repo(req.source_repo)
    ):
        problems.append(
            f"source repository is {facts.source_repo or '(none)'!r}, expected {req.source_repo!r}"
        )
    if req.source_ref is not None and (
        facts.source_ref is None or not ref_matches(facts.source_ref, req.source_ref)
    ):
        problems.append(
            f"source ref is {facts.source_ref or '(none)'!r}, expected {req.source_ref!r}"
        )
    for key, value in req.parameters.items():
        if key not in facts.parameters:
            problems.append(f"external parameter {key!r} is missing (expected {value!r})")
        elif str(facts.parameters[key]) != value:
            problems.append(
                f"external parameter {key!r} is {facts.parameters[key]!r}, expected {value!r}"
            )
    if req.reject_unknown_parameters:
        unknown = sorted(k for k in facts.parameters if k not in req.parameters)
        if unknown:
            problems.append(f"unexpected external parameters: {', '.join(unknown)}")
    for dep in (*req.datasets, *req.base_models):
        problems.extend(_check_dependency(facts, dep))
    return problems


def check_certificate_agreement(facts: ProvenanceFacts, claims: Mapping[str, str]) -> list[str]:
    """For keyless (Sigstore) signers: the provenance may only claim what the signing
    certificate vouches for. A builder or source the certificate does not name proves
    nothing: anyone can write any builder id into a statement they sign."""
    problems: list[str] = []
    vouched = {c.strip() for c in claims.get("identity", "").split(",") if c.strip()}
    if claims.get("build_config_uri"):
        vouched.add(claims["build_config_uri"])
    if vouched and facts.builder_id not in vouched:
        problems.append(
            f"builder {facts.builder_id!r} is not what the signing certificate vouches for "
            f"({', '.join(sorted(vouched))}): forged builder"
        )
    cert_repo = claims.get("source_repository_uri")
    if cert_repo and (
        facts.source_repo is None or _norm_repo(facts.source_repo) != _norm_repo(cert_repo)
    ):
        problems.append(
            f"source repository {facts.source_repo or '(none)'!r} is not the certificate's "
            f"({cert_repo})"
        )
    return problems


def _check_dependency(facts: ProvenanceFacts, required: Dependency) -> list[str]:
    want = required.digest.get("sha256", "").lower()
    if len(want) != 64:  # a requirement pins a digest, or nothing can satisfy it
        return [f"required {required.kind} {required.name!r} names no sha256 digest to match"]
    same_kind = [
        d for d in facts.dependencies if _get(d, "annotations", "kind") in (required.kind, None)
    ]
    for d in same_kind:
        digest = d.get("digest")
        if isinstance(digest, Mapping) and str(digest.get("sha256", "")).lower() == want:
            return []
    named = [d for d in same_kind if d.get("name") == required.name]
    if named:
        got = _get(named[0], "digest", "sha256")
        return [
            f"{required.kind} {required.name!r}: digest mismatch (provenance says sha256:{got}, "
            f"the given {required.kind} is sha256:{want})"
        ]
    listed = ", ".join(
        f"{d.get('name', '?')}"
        for d in facts.dependencies
        if _get(d, "annotations", "kind") != "source"
    )
    return [
        f"required {required.kind} {required.name!r} (sha256:{want}) is not among the "
        f"provenance's dependencies ({listed or 'none'})"
    ]


__all__ = [
    "BUILD_TYPE",
    "SLSA_PROVENANCE_V1",
    "BuildInfo",
    "Dependency",
    "ProvenanceFacts",
    "ProvenanceRequirements",
    "check_provenance",
    "dependency_from_arg",
    "github_defaults",
    "provenance_facts",
    "provenance_predicate",
]
