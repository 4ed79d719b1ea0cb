"""`mlverify check`: collect every piece of evidence about an artifact and decide.

For each artifact: enumerate and hash once, scan the same files, verify every
signature and attestation found (against each governing policy's trusted
signers), build the evidence document, evaluate, decide. A file that changes
between hashing and the end of the scan makes the check fail (no
time-of-check / time-of-use gap is papered over).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlverify import __version__
from mlverify.artifact import ModelTree, walk_model
from mlverify.attest.intoto import discover_attestations, read_attestations
from mlverify.attest.provenance import Dependency, ProvenanceRequirements
from mlverify.background import BackgroundCall
from mlverify.errors import (
    ArtifactMismatchError,
    InputError,
    MlverifyError,
    UntrustedSignerError,
    UsageError,
)
from mlverify.evidence import (
    ArtifactEvidence,
    AttestationEvidence,
    Evidence,
    FailedAttestation,
    FileDigest,
    FindingEvidence,
    SignatureEvidence,
)
from mlverify.manifest.build import build_manifest
from mlverify.manifest.hashing import HashJob
from mlverify.manifest.manifest import Manifest, Serialization
from mlverify.policy.engine import Decision, Reason, decide, matches
from mlverify.policy.model import Policy
from mlverify.signing.bundle import SignatureBundle, read_bundle
from mlverify.signing.oms import Method, VerifiedStatement, verify_model

if TYPE_CHECKING:
    from mlverify.signing.trustset import TrustSet


@dataclass(frozen=True)
class CheckResult:
    """The decisions about one artifact and the evidence they rest on."""

    artifact: str
    decisions: tuple[Decision, ...]
    evidence: dict[str, Any]  #: the evidence document (JSON shape)
    cached: bool = False

    @property
    def allowed(self) -> bool:
        return all(d.allowed for d in self.decisions)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": RESULT_SCHEMA,
            "artifact": self.artifact,
            "allowed": self.allowed,
            "cached": self.cached,
            "decisions": [d.to_json() for d in self.decisions],
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CheckResult:
        decisions = tuple(
            Decision(
                artifact=d["artifact"],
                policy=d["policy"],
                policy_source=d["policy_source"],
                mode=d["mode"],
                allowed=d["allowed"],
                reasons=tuple(Reason(**r) for r in d["reasons"]),
            )
            for d in doc["decisions"]
        )
        return cls(doc["artifact"], decisions, doc["evidence"], cached=True)


RESULT_SCHEMA = "mlverify.dev/check-result/v1"


class VerdictCache:
    """Results keyed by (artifact digest, policies, trust material, evidence files,
    mlverify version, day): a re-check of an unchanged model is near-instant."""

    def __init__(self, path: Path | None = None) -> None:
        import sqlite3

        from mlverify.manifest.cache import default_cache_path

        self.path = path or default_cache_path().with_name("verdicts.sqlite3")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, doc TEXT)")
        except (OSError, sqlite3.Error) as e:
            raise InputError(
                f"{self.path}: cannot open the verdict cache ({e}); use --no-cache"
            ) from None

    def get(self, key: str) -> CheckResult | None:
        row = self._db.execute("SELECT doc FROM verdicts WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return CheckResult.from_json(json.loads(row[0]))
        except (KeyError, TypeError, ValueError):
            return None  # an unreadable entry is a miss, never a verdict

    def put(self, key: str, result: CheckResult) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO verdicts VALUES (?, ?)", (key, json.dumps(result.to_json()))
        )
        self._db.commit()


class _KnownDigests:
    """Digests computed once in this check, offered to signature verification so
    that a signature using the same serialization does not re-read the files."""

    def __init__(self, tree: ModelTree, manifest: Manifest) -> None:
        self._by_path = {}
        rl = manifest.compact
        if tree.is_single_file:
            self._by_path[tree.files[0].location] = rl.digest(0)
        else:
            by_name = dict(zip(rl.paths, range(len(rl)), strict=True))
            for f in tree.files:
                self._by_path[f.location] = rl.digest(by_name[f.name])

    def lookup_for(self, hash_type: str) -> Callable[[HashJob], str | None]:
        def lookup(job: HashJob) -> str | None:
            if hash_type != "sha256" or job.start or job.end is not None:
                return None
            return self._by_path.get(str(job.path))

        return lookup

    def store_for(self, hash_type: str) -> Callable[[HashJob, str], None]:
        return lambda job, digest: None


def _stat_key(path: Path | str) -> tuple[int, ...]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def signature_candidates(artifact: Path) -> list[Path]:
    """OMS signatures by convention: ``model.sig`` inside a directory, ``X.sig`` beside."""
    out = []
    if artifact.is_dir() and (artifact / "model.sig").is_file():
        out.append(artifact / "model.sig")
    beside = artifact.parent / (artifact.name + ".sig")
    if beside.is_file():
        out.append(beside)
    return out


def trust_sets(policy: Policy, today: dt.date) -> list[TrustSet]:
    """One trust set per trusted signer kind of the policy (keys outside their
    rotation window, judged today, are left out); empty when it trusts nobody."""
    from mlverify.signing.keys import load_public_key
    from mlverify.signing.trustset import TrustSet

    rules = policy.signatures
    sets: list[TrustSet] = []
    keys = [
        load_public_key(str(k.path))
        for k in rules.keys
        if (k.not_before is None or k.not_before <= today)
        and (k.not_after is None or today <= k.not_after)
    ]
    if keys:
        sets.append(TrustSet(keys=keys))
    for c in rules.certificates:
        from mlverify.signing.x509 import CertificateIdentity, load_certificates

        roots = [cert for r in c.roots for cert in load_certificates(r, what="root certificate")]
        sets.append(
            TrustSet(
                cert_roots=roots,
                cert_identity=CertificateIdentity(identities=c.identities, regex=c.identity_regex),
            )
        )
    for st in rules.sigstore:
        from mlverify.signing.sigstore_verify import SigstoreVerifier, identity_from_options

        sets.append(
            TrustSet(
                sigstore_identity=identity_from_options(
                    st.identities,
                    st.identity_regex,
                    st.issuer,
                    source_repo=st.source_repo,
                    source_ref=st.source_ref,
                    workflow=st.workflow,
                ),
                sigstore=SigstoreVerifier(st.trust_root),
            )
        )
    return sets


def verify_with(bundle: SignatureBundle, sets: Sequence[TrustSet]) -> list[VerifiedStatement]:
    """Signers of ``bundle`` trusted by any of ``sets``; the most telling error if none."""
    from mlverify.signing.trustset import verify_bundle

    found: list[VerifiedStatement] = []
    errors: list[MlverifyError] = []
    for t in sets:
        try:
            found.extend(verify_bundle(bundle, t))
        except MlverifyError as e:
            errors.append(e)
    if found:
        return found
    raise (
        errors[-1]
        if len(errors) == 1
        else UntrustedSignerError(" | ".join(dict.fromkeys(str(e) for e in errors)))
    )


def _signature_evidence(
    artifact: Path, sig_paths: Sequence[Path], policy: Policy, known: _KnownDigests, today: dt.date
) -> list[SignatureEvidence]:
    sets = trust_sets(policy, today)
    out = []
    for p in sig_paths:
        try:
            bundle = read_bundle(p, model=artifact)
        except MlverifyError as e:
            out.append(SignatureEvidence(str(p), "invalid", "unknown", "", str(e)))
            continue
        kind = bundle.material.kind
        method: Method = (
            "key"
            if kind == "publicKey"
            else "certificate"
            if kind.startswith("x509")
            else "sigstore"
        )
        if not sets:
            # Nobody to trust, but the (unverified) manifest still says which bytes
            # were signed: files that differ from it are a strong signal of tampering.
            unverified = VerifiedStatement(
                str(p), method, "an unverified signer", bundle.envelope.payload
            )
            try:
                diff = verify_model(artifact, unverified, signature_path=p, cache=known).diff
            except MlverifyError as e:
                out.append(SignatureEvidence(str(p), "invalid", method, "", str(e)))
                continue
            if not diff.ok:
                out.append(
                    SignatureEvidence(
                        str(p),
                        "mismatch",
                        method,
                        "",
                        f"{p}: the files differ from what the signature covers (its signer is "
                        f"not verified: the policy trusts no signer): {diff.describe()}",
                    )
                )
                continue
            out.append(
                SignatureEvidence(
                    str(p),
                    "untrusted",
                    method,
                    "",
                    f"{p}: signature matches the files, but the policy trusts no signer; add "
                    "spec.signatures.trusted to verify who made it",
                )
            )
            continue
        try:
            for s in verify_with(bundle, sets):
                result = verify_model(artifact, s, signature_path=p, cache=known)
                if result.diff.ok:
                    out.append(
                        SignatureEvidence(str(p), "verified", s.method, s.signer, anchor=s.anchor)
                    )
                else:
                    out.append(
                        SignatureEvidence(
                            str(p),
                            "mismatch",
                            s.method,
                            s.signer,
                            f"{p}: signature by {s.signer} is valid but the files differ: "
                            f"{result.diff.describe()}",
                            anchor=s.anchor,
                        )
                    )
        except ArtifactMismatchError as e:
            out.append(SignatureEvidence(str(p), "mismatch", method, "", str(e)))
        except UntrustedSignerError as e:
            out.append(SignatureEvidence(str(p), "untrusted", method, "", str(e)))
        except MlverifyError as e:
            out.append(SignatureEvidence(str(p), "invalid", method, "", str(e)))
    return out


def _requirements(policy: Policy) -> ProvenanceRequirements:
    rules = policy.provenance
    return ProvenanceRequirements(
        builder_ids=rules.builder_ids,
        source_repo=rules.source_repo,
        source_ref=rules.source_ref,
        parameters=rules.parameters,
        reject_unknown_parameters=rules.reject_unknown_parameters,
        datasets=[
            Dependency("dataset", name, "", {"sha256": sha} if sha else {})
            for name, sha in rules.datasets
        ],
    )


def _attestation_evidence(
    artifact: Path,
    skip: Sequence[Path],
    policy: Policy,
    digests: set[str],
    today: dt.date,
) -> tuple[list[AttestationEvidence], list[FailedAttestation]]:
    from mlverify.attest.verify import as_bundle, verify_attestation

    sets = trust_sets(policy, today)
    good: list[AttestationEvidence] = []
    bad: list[FailedAttestation] = []
    skipped = {p.resolve() for p in skip}
    for f in discover_attestations(artifact):
        if f.resolve() in skipped:
            continue
        try:
            items = read_attestations(f, artifact=artifact)
        except MlverifyError as e:
            bad.append(FailedAttestation(str(f), str(e)))
            continue
        for item in items:
            bundle = as_bundle(item, str(f))
            if not sets:
                bad.append(
                    FailedAttestation(
                        str(f), "the policy trusts no signer, so it cannot be verified"
                    )
                )
                continue
            try:
                v = verify_attestation(
                    artifact,
                    bundle,
                    lambda b: verify_with(b, sets)[0],
                    requirements=_requirements(policy),
                    digests=digests,
                )
            except MlverifyError as e:
                bad.append(FailedAttestation(str(f), str(e)))
                continue
            good.append(
                AttestationEvidence(
                    v.source,
                    v.statement.predicate_type,
                    v.signer,
                    v.method,
                    dict(v.statement.predicate),
                )
            )
    return good, bad


def _environment() -> str:
    if os.environ.get("PRE_COMMIT") == "1":
        return "pre-commit"
    if os.environ.get("CI") in ("true", "1") or os.environ.get("GITHUB_ACTIONS") == "true":
        return "ci"
    return "cli"


def check_artifact(
    path: Path,
    policies: Sequence[Policy],
    *,
    signatures: Sequence[Path] = (),
    environment: str | None = None,
    use_cache: bool = False,
    now: dt.datetime | None = None,
) -> CheckResult:
    """Everything about one artifact, and the decision of every governing policy."""
    from mlverify.scan.engine import scan_file
    from mlverify.scan.model import Limits

    if not path.exists():
        raise InputError(f"{path}: no such file or directory; check the artifact path")
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.date()
    sig_paths = list(signatures) or signature_candidates(path)
    tree = walk_model(path, extra_excluded=sig_paths)
    before = {f.location: _stat_key(f.location) for f in tree.files}
    cache = None
    verdicts = None
    if use_cache:
        from mlverify.manifest.cache import DigestCache

        cache = DigestCache()
        verdicts = VerdictCache()
    serialization = Serialization(ignore_paths=tree.ignore_paths)
    key = ""
    hashing: BackgroundCall[Manifest] | None = None
    if verdicts is not None:
        # The verdict cache needs the digest first (a hit skips everything else).
        manifest = build_manifest(tree, serialization, cache)
        evidence_files = [*sig_paths, *discover_attestations(path)]
        key = verdict_cache_key(manifest.root_digest, policies, evidence_files, today)
        hit = verdicts.get(key)
        if hit is not None:
            return hit
    else:
        # Hash in the background (hashlib releases the GIL) while this thread scans.
        hashing = BackgroundCall(build_manifest, tree, serialization, None)

    allow = frozenset(g for p in policies for g in p.allow_globals)
    limits = Limits(extra_allow=allow)
    findings: list[FindingEvidence] = []
    status: dict[str, str] = {}
    formats: list[str] = []
    for f in tree.files:
        report = scan_file(f.path, limits, display=f.name)
        status[f.name] = report.status.value
        for fmt in report.formats:
            if fmt not in formats:
                formats.append(fmt)
        findings.extend(
            FindingEvidence(
                x.rule_id,
                x.severity.label,
                x.path,
                x.member,
                x.offset,
                x.subject,
                x.message,
                x.chain,
            )
            for x in report.findings
        )
    if hashing is not None:
        manifest = hashing.result()
    digests = {manifest.root_digest}
    if tree.is_single_file:
        digests.add(manifest.resources[0].digest)
    after = {f.location: _stat_key(f.location) for f in tree.files}
    if after != before:
        changed = sorted(p for p in before if before[p] != after.get(p))
        raise InputError(
            f"{path}: files changed while being checked ({', '.join(changed)}); "
            "check again once nothing writes to the model"
        )

    rl = manifest.compact
    digest_by_name = dict(zip(rl.paths, map(rl.digest, range(len(rl))), strict=True))
    artifact = ArtifactEvidence(
        ref=str(path),
        kind="file" if tree.is_single_file else "directory",
        formats=tuple(formats),
        size=tree.total_size,
        root_digest=manifest.root_digest,
        files=tuple(
            FileDigest(f.name, digest_by_name["." if tree.is_single_file else f.name], f.size)
            for f in tree.files
        ),
    )
    base = Evidence(
        artifact=artifact,
        signatures=(),
        attestations=(),
        failed_attestations=(),
        findings=tuple(findings),
        scan_status=status,
        environment=environment or _environment(),
        time=now.isoformat(timespec="seconds"),
        time_source="local clock",
    )
    governing = [p for p in policies if matches(p, base)]
    known = _KnownDigests(tree, manifest)
    if not governing:
        result = CheckResult(str(path), tuple(decide(policies, base, today)), base.to_json())
        if verdicts is not None:
            verdicts.put(key, result)
        return result
    decisions: list[Decision] = []
    evidence = base
    for policy in governing:
        sigs = _signature_evidence(path, sig_paths, policy, known, today)
        good, bad = _attestation_evidence(path, sig_paths, policy, digests, today)
        evidence = Evidence(
            artifact=artifact,
            signatures=tuple(sigs),
            attestations=tuple(good),
            failed_attestations=tuple(bad),
            findings=base.findings,
            scan_status=status,
            environment=base.environment,
            time=base.time,
            time_source=base.time_source,
        )
        decisions.extend(decide([policy], evidence, today))
    result = CheckResult(str(path), tuple(decisions), evidence.to_json())
    if verdicts is not None:
        verdicts.put(key, result)
    return result


def verdict_cache_key(
    root_digest: str, policies: Sequence[Policy], extra_files: Sequence[Path], today: dt.date
) -> str:
    """(artifact digest, policy digests, trust material and evidence files, version, day)."""
    h = hashlib.sha256()
    h.update(json.dumps([root_digest, __version__, str(today)]).encode())
    for p in policies:
        h.update(p.digest.encode())
        for k in p.signatures.keys:
            h.update(_file_digest(k.path).encode())
        for c in p.signatures.certificates:
            for r in c.roots:
                h.update(_file_digest(r).encode())
        for s in p.signatures.sigstore:
            if s.trust_root:
                h.update(_file_digest(s.trust_root).encode())
    for f in extra_files:
        h.update(_file_digest(f).encode())
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        raise UsageError(f"{path}: trust material named by the policy cannot be read") from None
