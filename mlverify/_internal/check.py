"""`mlverify check`: collect every piece of evidence about an artifact and decide.

For each artifact: walk once, scan every file and hash it from the bytes scanned (one
read; large files are hashed apart, on threads), verify every signature and attestation
found (against each governing policy's trusted signers), build the evidence document,
evaluate, decide. A file that changes between its first read and the end of the check
makes the check fail (no time-of-check / time-of-use gap is papered over).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from array import array
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlverify._internal.artifact import (
    ModelFile,
    ModelTree,
    has_signature_name,
    parses_as_signature,
    walk_model,
)
from mlverify._internal.attest.intoto import discover_attestations, read_attestations
from mlverify._internal.attest.provenance import Dependency, ProvenanceRequirements
from mlverify._internal.background import BackgroundCall
from mlverify._internal.errors import (
    ArtifactMismatchError,
    InputError,
    MlverifyError,
    UntrustedSignerError,
)
from mlverify._internal.evidence import (
    ArtifactEvidence,
    AttestationEvidence,
    Evidence,
    FailedAttestation,
    FileDigest,
    FindingEvidence,
    SignatureEvidence,
    listing_digest,
)
from mlverify._internal.manifest.build import hash_files, manifest_of_digests
from mlverify._internal.manifest.hashing import (
    DIGEST_SIZES,
    DigestStore,
    HashJob,
    hash_whole_files,
)
from mlverify._internal.manifest.manifest import Manifest, Serialization
from mlverify._internal.policy.engine import (
    Decision,
    Reason,
    decide,
    governs,
    is_model_content,
    matches,
)
from mlverify._internal.policy.model import Policy
from mlverify._internal.signing.bundle import SignatureBundle, read_bundle
from mlverify._internal.signing.oms import Method, VerifiedStatement, verify_model
from mlverify._internal.subject import Subject
from mlverify._internal.text import shown

if TYPE_CHECKING:
    from mlverify._internal.distributed.known import KnownFile
    from mlverify._internal.scan.workers import ScanResults
    from mlverify._internal.signing.trustset import TrustSet


#: What became of an artifact that was not decided: it could not be checked (an
#: operational error, or bytes that fail verification before any decision), or its
#: Git LFS content is not fetched (skipped in a commit hook, denied anywhere else).
Outcome = Literal["", "error", "not-fetched", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """The decisions about one artifact and the evidence they rest on; or, when it
    could not be decided, why (``outcome``, ``message``): every artifact gets one."""

    artifact: str
    decisions: tuple[Decision, ...]
    evidence: dict[str, Any]  #: the evidence document (JSON shape)
    outcome: Outcome = ""
    message: str = ""
    error_exit: int = 2  #: the exit code an error outcome stands for

    @property
    def allowed(self) -> bool:
        return not self.outcome and bool(self.decisions) and all(d.allowed for d in self.decisions)

    @property
    def status(self) -> str:
        """allowed | denied | error | skipped (not-fetched content outside a hook: denied)."""
        if self.outcome == "not-fetched":
            return "denied"
        return self.outcome or ("allowed" if self.allowed else "denied")

    @property
    def exit_code(self) -> int:
        """0 allowed or skipped, 1 denied, 2 (or the error's own code) error."""
        if self.outcome == "error":
            return self.error_exit
        return 0 if self.allowed or self.outcome == "skipped" else 1

    @classmethod
    def failed(cls, artifact: str, error: MlverifyError) -> CheckResult:
        return cls(artifact, (), {}, "error", str(error), error.exit_code)

    def to_json(self) -> dict[str, Any]:
        out = {
            "schema_version": RESULT_SCHEMA,
            "artifact": self.artifact,
            "status": self.status,
            "allowed": self.allowed,
            "decisions": [d.to_json() for d in self.decisions],
            "evidence": self.evidence,
        }
        if self.outcome:
            out.update(outcome=self.outcome, message=self.message, exit_code=self.exit_code)
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CheckResult:
        decisions = tuple(
            Decision(
                artifact=d["artifact"],
                policy=d["policy"],
                policy_source=d["policy_source"],
                mode=d["mode"],
                allowed=d["allowed"],
                reasons=tuple(Reason.from_json(r) for r in d["reasons"]),
            )
            for d in doc["decisions"]
        )
        outcome = doc.get("outcome", "")
        if outcome not in ("", "error", "not-fetched", "skipped"):
            raise ValueError(f"unknown outcome {outcome!r}")
        return cls(
            str(doc["artifact"]),
            decisions,
            dict(doc["evidence"]),
            outcome,
            str(doc.get("message", "")),
            int(doc.get("exit_code", 2)),
        )


RESULT_SCHEMA = "mlverify.dev/check-result/v1"


class _KnownDigests:
    """Digests computed once in this check, offered to signature verification so
    that a signature using the same serialization does not re-read the files."""

    def __init__(
        self, tree: ModelTree, manifest: Manifest, left_out: Mapping[str, bytes] | None = None
    ) -> None:
        #: location -> SHA-256 of files the walk left out, from the very bytes scanned
        self._left_out = dict(left_out or {})
        # the i-th file's digest is the manifest's i-th (the walk's order, checked by
        # the caller). A file is found by its location, which is the root's prefix and
        # its name for every file of the walk (checked here: else nothing is offered and
        # the signature's files are hashed again), by bisection on the sorted names.
        self._rl = manifest.compact
        files = tree.files
        self._names: list[str] = []
        self._prefix = ""
        if tree.is_single_file:
            self._single = files[0].location
            return
        self._single = ""
        first = files[0] if files else None
        if first is None or not first.location.endswith(first.name):
            return
        prefix = first.location[: len(first.location) - len(first.name)]
        if all(f.location == prefix + f.name for f in files):
            self._names = [f.name for f in files]
            self._prefix = prefix

    def _find(self, location: str) -> int | None:
        if self._single:
            return 0 if location == self._single else None
        if not self._names or not location.startswith(self._prefix):
            return None
        name = location[len(self._prefix) :]
        i = bisect_left(self._names, name)
        return i if i < len(self._names) and self._names[i] == name else None

    def lookup_many(self, hash_type: str, locations: Sequence[str]) -> tuple[bytearray, list[int]]:
        if hash_type != "sha256":
            return bytearray(DIGEST_SIZES[hash_type] * len(locations)), list(range(len(locations)))
        digests = self._rl.digests
        out = bytearray(32 * len(locations))
        missing = []
        names, prefix, cut = self._names, self._prefix, len(self._prefix)
        i = 0  # the locations usually are the walk's files, in order: the next one is next
        for k, location in enumerate(locations):
            if i < len(names) and location[cut:] == names[i] and location.startswith(prefix):
                found: int | None = i
            else:
                found = self._find(location)
            if found is None:
                other = self._left_out.get(location)
                if other is None:
                    missing.append(k)
                else:
                    out[32 * k : 32 * k + 32] = other
            else:
                out[32 * k : 32 * k + 32] = digests[32 * found : 32 * found + 32]
                i = found + 1
        return out, missing

    def lookup_for(self, hash_type: str) -> Callable[[HashJob], str | None]:
        def lookup(job: HashJob) -> str | None:
            if hash_type != "sha256" or job.start or job.end is not None:
                return None
            i = self._find(str(job.path))
            if i is None:
                other = self._left_out.get(str(job.path))
                return None if other is None else other.hex()
            return self._rl.digest(i)

        return lookup

    def store_for(self, hash_type: str) -> Callable[[HashJob, str], None]:
        return lambda job, digest: None


def _stat_keys(locations: Sequence[str]) -> array[int]:
    """The :func:`~mlverify._internal.scan.workers.stat_key` of each file, concatenated (a
    file that is gone is all -1). The entry's own status, links not followed: the walk
    refused symlinks, so a file replaced by one since (pointing at a copy elsewhere) has
    the link's key here, never the key of what its scan opened through it."""
    from mlverify._internal.scan.workers import KEY_FIELDS, stat_key

    out = array("q")
    gone = (-1,) * KEY_FIELDS
    stat, extend = os.lstat, out.extend
    for loc in locations:
        try:
            extend(stat_key(stat(loc)))
        except OSError:
            extend(gone)
    return out


def _scan_order(tree: ModelTree) -> tuple[list[ModelFile], array[int] | None]:
    """Every regular file of ``tree`` (hashed or left out) in name order, and where each
    hashed file is in it (None: the files are all hashed, in the same order)."""
    if not tree.left_out:
        return list(tree.files), None
    scanned: list[ModelFile] = []
    at = array("q")
    files, left = tree.files, tree.left_out
    i = j = 0
    while i < len(files) or j < len(left):
        if j == len(left) or (i < len(files) and files[i].name < left[j].name):
            at.append(len(scanned))
            scanned.append(files[i])
            i += 1
        else:
            scanned.append(left[j])
            j += 1
    return scanned, at


class _Hashing:
    """The manifest of a tree made with its scan: a file the scan reads whole is hashed by
    the scan, from the very bytes scanned (one read: what is judged is what is signed);
    the files larger than ``whole_max`` are scanned from the file and hashed on threads
    (hashlib releases the GIL), started here so that they are hashed while the scan runs.
    For those, their status before either read (``before``) and after both ties the two
    reads together. A file that is neither (scanned from the file though small: it
    changed size, or the general detection path of the tests) is hashed once the scan is
    done, and is tied to its scan by its status in the same way."""

    def __init__(
        self,
        tree: ModelTree,
        serialization: Serialization,
        cache: DigestStore | None,
        whole_max: int,
    ) -> None:
        self.tree = tree
        self.serialization = serialization
        #: indices (in ``tree.files``) of the files hashed on threads
        self.large = [j for j, f in enumerate(tree.files) if f.size > whole_max]
        #: their stat keys, taken before they are read
        self.before = _stat_keys([tree.files[j].location for j in self.large])
        files = [(tree.files[j].name, tree.files[j]) for j in self.large]
        self._call = BackgroundCall(hash_files, files, serialization, cache) if files else None

    def manifest(self, scan: ScanResults, at: array[int] | None) -> Manifest:
        """The manifest, once ``scan`` (of the files in :func:`_scan_order`, ``at``) is done."""
        large_digests = self._call.result().digests if self._call is not None else b""
        digests = _file_digests(self.tree, scan, at, self.large, large_digests)
        return manifest_of_digests(self.tree, self.serialization, digests)


def _file_digests(
    tree: ModelTree,
    scan: ScanResults,
    at: array[int] | None,
    large: Sequence[int],
    large_digests: bytes,
) -> bytes:
    """The SHA-256 of each of ``tree.files``, in order, concatenated: of the bytes its scan
    read (``at``: its index in the scan), or, for the ``large`` ones, hashed on threads
    (``large_digests``, in that order); a file that is neither (scanned from the file, not
    read whole: it changed size, or the general detection path of the tests) is hashed
    here, and like a large file it is tied to its scan by its status only."""
    w = 32
    if at is None:
        out = bytearray(scan.digests)
        have = bytearray(scan.hashed)
    else:
        out = bytearray(w * len(tree.files))
        have = bytearray(len(tree.files))
        sd, sh = scan.digests, scan.hashed
        for j, i in enumerate(at):
            out[w * j : w * j + w] = sd[w * i : w * i + w]
            have[j] = sh[i]
    for k, j in enumerate(large):
        out[w * j : w * j + w] = large_digests[w * k : w * k + w]
        have[j] = 1
    if have.count(0):
        missing = [j for j in range(len(tree.files)) if not have[j]]
        found = hash_whole_files(
            [tree.files[j].location for j in missing],
            [tree.files[j].size for j in missing],
            "sha256",
        )
        for k, j in enumerate(missing):
            out[w * j : w * j + w] = found[w * k : w * k + w]
    return bytes(out)


def _unchanged(
    path: Path,
    locations: Sequence[str],
    sizes: array[int],
    scan: ScanResults,
    at: array[int] | None,
    large: Sequence[int],
    large_before: array[int],
) -> None:
    """Refuse a check during which a file changed: each file's status now is the one it
    had when its scan opened it, with the size the walk saw; a large file's (hashed
    apart from its scan) is also the one it had before either read."""
    from mlverify._internal.scan.workers import KEY_FIELDS as k

    after = _stat_keys(locations)
    keys = scan.keys
    same = after == keys and keys[2::k] == sizes
    if same:
        for n, j in enumerate(large):
            i = j if at is None else at[j]
            if large_before[k * n : k * n + k] != after[k * i : k * i + k]:
                same = False
                break
    if same:
        return
    before_large = {
        (j if at is None else at[j]): large_before[k * n : k * n + k] for n, j in enumerate(large)
    }
    changed = [
        locations[i]
        for i in range(len(locations))
        if keys[k * i : k * i + k] != after[k * i : k * i + k]
        or keys[k * i + 2] != sizes[i]
        or before_large.get(i, after[k * i : k * i + k]) != after[k * i : k * i + k]
    ]
    more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""
    raise InputError(
        f"{path}: files changed while being checked "
        f"({', '.join(map(shown, changed[:10]))}{more}); "
        "check again once nothing writes to the model"
    )


def _replay(tree: ModelTree, hashed: list[str]) -> Callable[[], ModelTree] | None:
    """The walk ``tree`` made again from its names and sizes, without its files' objects
    in between (a signature's manifest is parsed first); None when that cannot be (a
    single file, a location that is not the root and the name)."""
    if tree.is_single_file:
        return None
    prefix = os.fspath(tree.root) + os.sep
    if not all(f.location == prefix + f.name for f in tree.files):
        return None
    sizes = array("q", (f.size for f in tree.files))
    root, ignore_paths = tree.root, tree.ignore_paths

    def walked() -> ModelTree:
        # the walk's own values (a name, its location as a string, a size), as it made
        # them: ModelFile's fields made directly (no Python call per file)
        fields = zip(hashed, [prefix + n for n in hashed], sizes, strict=True)
        files = tuple(map(tuple.__new__, repeat(ModelFile), fields))
        return ModelTree(root, False, files, ignore_paths, False)

    return walked


def signature_candidates(artifact: Path) -> list[Path]:
    """OMS signatures by convention: ``model.sig`` inside a directory, ``X.sig`` beside."""
    out = []
    if artifact.is_dir() and (artifact / "model.sig").is_file():
        out.append(artifact / "model.sig")
    beside = artifact.parent / (artifact.name + ".sig")
    if beside.is_file():
        out.append(beside)
    return out


@dataclass(frozen=True)
class OwnedTrust:
    """A trust set of a policy and who its signers are (the policy's ``owner``s)."""

    trust: TrustSet
    key_owners: Mapping[str, str] = field(default_factory=dict)  #: key identity -> owner
    owner: str = ""  #: owner of every signer of this set (a certificate or Sigstore entry)

    def owner_of(self, signer: str) -> str:
        return self.key_owners.get(signer) or self.owner or signer


def trust_sets(policy: Policy, today: dt.date) -> list[OwnedTrust]:
    """One trust set per trusted signer kind of the policy (keys outside their
    rotation window, judged today, are left out); empty when it trusts nobody."""
    from mlverify._internal.signing.trust import Trust, TrustedSigner, compile_trust

    rules = policy.signatures
    sets: list[OwnedTrust] = []
    keys = tuple(k for k in rules.keys if k.valid_on(today))
    if keys:
        owners = {k.signer: k.owner for k in keys if k.owner}
        sets.append(OwnedTrust(compile_trust(Trust(keys)), key_owners=owners))
    others: list[TrustedSigner] = [*rules.certificates, *rules.sigstore]
    for signer in others:
        sets.append(OwnedTrust(compile_trust(Trust((signer,))), owner=signer.owner))
    return sets


def verify_with(
    bundle: SignatureBundle, sets: Sequence[OwnedTrust]
) -> list[tuple[VerifiedStatement, str]]:
    """Signers of ``bundle`` trusted by any of ``sets``, each with its owner, once per
    signer identity; the most telling error if none."""
    from mlverify._internal.signing.trustset import verify_bundle

    found: dict[str, tuple[VerifiedStatement, str]] = {}
    errors: list[MlverifyError] = []
    for t in sets:
        try:
            for v in verify_bundle(bundle, t.trust):
                found.setdefault(v.signer, (v, t.owner_of(v.signer)))
        except MlverifyError as e:
            errors.append(e)
    if found:
        return list(found.values())
    raise (
        errors[-1]
        if len(errors) == 1
        else UntrustedSignerError(" | ".join(dict.fromkeys(str(e) for e in errors)))
    )


def _not_in(names: Sequence[str], hashed: Sequence[str], paths: list[str]) -> set[str]:
    """The ``names`` (sorted, distinct) that ``paths`` does not list; ``hashed`` (a sorted
    part of ``names``) is what ``paths`` usually is, exactly."""
    if paths == hashed and len(names) == len(hashed):
        return set()
    if any(b < a for a, b in pairwise(paths)):
        paths.sort()
    out = set()
    j, m = 0, len(paths)
    for n in names:
        while j < m and paths[j] < n:
            j += 1
        if j == m or paths[j] != n:
            out.add(n)
    return out


def _read_bundles(
    artifact: Path, sig_paths: Sequence[Path]
) -> dict[Path, SignatureBundle | MlverifyError]:
    """Each signature file read once (before the walk: the large transient buffers of a
    dataset's signature are returned before the walk's objects are made)."""
    out: dict[Path, SignatureBundle | MlverifyError] = {}
    for p in sig_paths:
        try:
            out[p] = read_bundle(p, model=artifact)
        except MlverifyError as e:
            out[p] = e
    return out


def _signature_evidence(
    artifact: Path,
    bundles: Mapping[Path, SignatureBundle | MlverifyError],
    policy: Policy,
    known: _KnownDigests,
    today: dt.date,
    names: Sequence[str],
    hashed: Sequence[str],
    walked: Callable[[], ModelTree] | None,
    verifiable: Sequence[str],
) -> tuple[list[SignatureEvidence], set[str] | None]:
    """The evidence of each signature file, and which of ``names`` (every file scanned,
    sorted) some verified signature does not cover (None when none verified); ``hashed``
    is the sorted names of the files hashed; ``walked``: the check's walk, when it left
    out the one signature file alone (then the verification narrows it, not walk again)."""
    sets = trust_sets(policy, today)
    out = []
    uncovered: set[str] | None = None

    def scanned(name: str) -> bool:
        """Hashed by this check, or left out and hashed from the bytes its scan read."""
        i = bisect_left(verifiable, name)
        return i < len(verifiable) and verifiable[i] == name

    for p, bundle in bundles.items():
        if isinstance(bundle, MlverifyError):
            out.append(SignatureEvidence(str(p), "invalid", "unknown", "", str(bundle)))
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
                diff = verify_model(
                    artifact, unverified, signature_path=p, cache=known, walked=walked,
                    scanned=scanned,
                ).diff  # fmt: skip
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
            for s, owner in verify_with(bundle, sets):
                result = verify_model(
                    artifact, s, signature_path=p, cache=known, walked=walked, scanned=scanned
                )
                if result.diff.ok:
                    missed = _not_in(names, hashed, result.manifest.compact.paths)
                    uncovered = missed if uncovered is None else uncovered | missed
                    out.append(
                        SignatureEvidence(
                            str(p), "verified", s.method, s.signer, anchor=s.anchor, owner=owner
                        )
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
    return out, uncovered


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
    from mlverify._internal.attest.verify import as_bundle, verify_attestation

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
                    lambda b: verify_with(b, sets)[0][0],
                    requirements=_requirements(policy),
                    digests=digests,
                    summary=True,  # a dataset attestation's evidence counts its files
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


def _sibling_in_artifact(f: FindingEvidence, names: set[str]) -> FindingEvidence:
    """An old joblib dump names a sibling file joblib loads with ``allow_pickle=True``
    (MLV112, medium: a file scanned alone cannot be shown safe). When that sibling is a
    file of the artifact being checked, it was scanned with it (its own findings count):
    the reference itself is then information, not a reason to deny."""
    import posixpath

    if f.rule_id != "MLV112" or f.severity != "medium" or f.member or not f.subject:
        return f
    sibling = posixpath.normpath(posixpath.join(posixpath.dirname(f.file), f.subject))
    if sibling.startswith("../") or sibling not in names:
        return f
    return dataclasses.replace(
        f, severity="info", message=f"{f.message} (it is in this artifact, scanned with it)"
    )


def _scan_again(
    scan: ScanResults,
    allow: frozenset[str],
    locations: Sequence[str],
    names: Sequence[str],
    sizes: Sequence[int],
) -> ScanResults:
    """``scan`` as it would be with the project allowlist ``allow``: the files with
    findings scanned again with it (the others named nothing an allowlist changes)."""
    from mlverify._internal.scan.model import Limits
    from mlverify._internal.scan.workers import scan_many

    again = sorted(scan.findings)
    if not allow or not again:
        return scan
    sub = scan_many(
        [locations[i] for i in again],
        [names[i] for i in again],
        [sizes[i] for i in again],
        Limits(extra_allow=allow),
    )
    codes = bytearray(scan.codes)
    findings = dict(scan.findings)
    for j, i in enumerate(again):
        if sub.key(j) != scan.key(i) or sub.digest(j) != scan.digest(i):
            raise InputError(
                f"{shown(names[i])}: the file changed while being checked (it was scanned "
                "twice and read differently); check again once nothing writes to the model"
            )
        codes[i] = sub.codes[j]
        findings.pop(i)
        if j in sub.findings:
            findings[i] = sub.findings[j]
    return dataclasses.replace(scan, codes=bytes(codes), findings=findings)


def _judged(
    scan: ScanResults, names: Sequence[str], single: bool
) -> tuple[tuple[FindingEvidence, ...], dict[str, int]]:
    """The findings of a scan as evidence, and the files counted by status."""
    from mlverify._internal.scan.workers import STATUSES

    findings = [
        FindingEvidence(
            x.rule_id, x.severity.label, x.path, x.member, x.offset, x.subject, x.message, x.chain
        )
        for i in sorted(scan.findings)
        for x in scan.findings[i]
    ]
    if not single and any(f.rule_id == "MLV112" for f in findings):
        scanned_names = set(names)  # once: a dataset has a million names
        findings = [_sibling_in_artifact(f, scanned_names) for f in findings]
    counts = {s.value: scan.codes.count(k) for k, s in enumerate(STATUSES)}
    return tuple(findings), counts


def _exists(path: Path) -> bool:
    """``path.exists()``; a path the system refuses as too long is an InputError saying so."""
    from mlverify._internal.files import name_too_long, too_long

    try:
        return path.exists()
    except OSError as e:
        if name_too_long(e):
            raise too_long(path) from None
        raise


def check_artifact(
    path: Path,
    policies: Sequence[Policy],
    *,
    signatures: Sequence[Path] = (),
    environment: str | None = None,
    use_cache: bool = False,
    now: dt.datetime | None = None,
    subject: Subject | None = None,
    progress: Callable[[int], None] | None = None,
    list_files: bool = False,
    known_files: Mapping[str, KnownFile] | None = None,
) -> CheckResult:
    """Everything about one artifact, and the decision of every governing policy.

    ``subject``: the reference the bytes at ``path`` stand for (``oci://``, ``hf://``);
    policies match on it and the evidence names it. Default: ``path`` itself.
    ``progress``: called (from any thread) with the number of files just scanned.
    ``list_files``: also list every hashed file with its digest in the evidence (an ML-BOM
    needs them; by default the evidence counts them and digests the listing).
    ``known_files``: files (by name) hashed and scanned elsewhere, taken while unchanged
    (:mod:`mlverify._internal.distributed.known`).
    """
    reference = subject.reference if subject is not None else str(path)
    from mlverify._internal.lfs import NotFetched, pointers_scanned
    from mlverify._internal.scan.engine import WHOLE_MAX
    from mlverify._internal.scan.model import Limits
    from mlverify._internal.scan.workers import STATUSES, scan_many

    if not _exists(path):
        raise InputError(f"{path}: no such file or directory; check the artifact path")
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.date()
    sig_paths = list(signatures) or signature_candidates(path)
    bundles = _read_bundles(path, sig_paths)
    tree = walk_model(path, extra_excluded=sig_paths)
    # Every regular file is scanned, hashed or not (git metadata, files under
    # signature names): a loader can be pointed at any of them. Signature and
    # attestation documents are evidence, not content: their formats do not count.
    scanned, at = _scan_order(tree)
    locations = [f.location for f in scanned]
    names = [f.name for f in scanned]
    sizes = array("q", (f.size for f in scanned))
    # Evidence may be cached (digests of unchanged files, opt-in), decisions never:
    # matching and evaluation run every time, on this reference, names and environment.
    cache = None
    if use_cache:
        from mlverify._internal.manifest.cache import DigestCache

        cache = DigestCache()
    serialization = Serialization(ignore_paths=tree.ignore_paths)
    if known_files:  # hashed and scanned elsewhere (a worker's fan-out): taken, not read
        from mlverify._internal.distributed.known import known_digests, scan_with_known

        cache = known_digests(known_files, tree)  # type: ignore[assignment]
        scan_many = scan_with_known(known_files)
    # one read of each small file (the scan hashes it), large files hashed meanwhile
    hashing = _Hashing(tree, serialization, cache, WHOLE_MAX)

    # Each policy's own allowlist judges its findings: one scan when every policy allows
    # the same globals; else a scan with none, and each governing policy's allowlist
    # applied by scanning again the few files that have findings (a file with none names
    # no global outside the built-in lists, so an allowlist cannot change it).
    allow_sets = {frozenset(p.allow_globals) for p in policies}
    shared = next(iter(allow_sets)) if len(allow_sets) == 1 else frozenset()
    given = {p.resolve() for p in sig_paths}
    documents = {
        f.name
        for f in tree.left_out
        if f.path.resolve() in given
        or (has_signature_name(f.name) and parses_as_signature(f.path, tree.root))
    }
    scan = scan_many(locations, names, sizes, Limits(extra_allow=shared), progress=progress)
    # Git LFS pointers in place of content: nothing to decide on (found by the scan, which
    # reads every file anyway: no second walk of a million files)
    pointers = pointers_scanned(scan.formats, names, locations)
    if pointers:
        besides = None
        if not shared:  # judged by the built-in lists alone, as the files besides pointers are
            from mlverify._internal.lfs_check import judge_besides

            skip = set(pointers)
            besides = judge_besides(
                (locations[i], scan.findings.get(i, ()), scan.status(i))
                for i in range(len(names))
                if names[i] not in skip
            )
        raise NotFetched(reference, pointers, besides)
    formats: list[str] = []
    for i in sorted(scan.formats):
        if names[i] not in documents:
            formats.extend(x for x in scan.formats[i] if x not in formats)
    # which policies govern depends on the name and the formats (bytes), not on findings
    governing_sets = {
        frozenset(p.allow_globals) for p in policies if governs(p, reference, formats)
    }
    scans = {shared: scan}
    for allow in sorted(governing_sets - {shared}, key=sorted):
        scans[allow] = _scan_again(scan, allow, locations, names, sizes)
    manifest = hashing.manifest(scan, at)
    digests = {manifest.root_digest}
    if tree.is_single_file:
        digests.add(manifest.resources[0].digest)
    _unchanged(path, locations, sizes, scan, at, hashing.large, hashing.before)
    # a signed file the walk left out is compared by the digest of the bytes its scan read
    # (small ones are read whole), never read again; one without (large) is not verified
    left_digests: dict[str, bytes] = {}
    left_names: list[str] = []
    for f in tree.left_out:
        i = bisect_left(names, f.name)  # every file scanned, sorted by name
        if i < len(names) and names[i] == f.name and (d := scan.digest(i)) is not None:
            left_digests[locations[i]] = d
            left_names.append(f.name)
    del hashing  # (it holds the walk)
    # each file's status and digest are checked and in the manifest: not kept from here
    for allow, sc in scans.items():
        scans[allow] = dataclasses.replace(sc, keys=array("q"), digests=b"", hashed=b"")
    del scan

    rl = manifest.compact
    single = tree.is_single_file
    hashed = [f.name for f in tree.files]
    if not single and rl.paths != hashed:
        raise MlverifyError(f"{path}: internal error: the manifest does not list the walk's files")
    artifact = ArtifactEvidence(
        ref=reference,
        kind="file" if single else "directory",
        formats=tuple(formats),
        size=tree.total_size,
        root_digest=manifest.root_digest,
        file_count=len(hashed),
        files_digest=listing_digest(hashed, rl.digests, [f.size for f in tree.files]),
        files=(
            tuple(
                FileDigest(name, rl.digests[32 * i : 32 * i + 32].hex(), tree.files[i].size)
                for i, name in enumerate(hashed)
            )
            if list_files
            else None
        ),
    )

    judged = {allow: _judged(sc, names, single) for allow, sc in scans.items()}

    # plain data named like model content is listed too (found once: a million names)
    named_like_models = [i for i, name in enumerate(names) if is_model_content(name, "data")]

    def listed(allow: frozenset[str], unsigned: Sequence[str]) -> dict[str, str]:
        """Every scanned file's status but plain data's (counted in ``counts`` only)."""
        codes = scans[allow].codes
        shown_at = named_like_models
        if codes.count(0) != len(codes):
            shown_at = sorted({*named_like_models, *(i for i, c in enumerate(codes) if c)})
        out = {names[i]: STATUSES[codes[i]].value for i in shown_at}
        for name in unsigned:
            out.setdefault(name, STATUSES[codes[bisect_left(names, name)]].value)
        return out

    base = Evidence(
        artifact=artifact,
        signatures=(),
        attestations=(),
        failed_attestations=(),
        findings=judged[shared][0],
        scan_status=listed(shared, ()),
        scan_counts=judged[shared][1],
        environment=environment or _environment(),
        time=now.isoformat(timespec="seconds"),
        time_source="local clock",
    )
    governing = [p for p in policies if matches(p, base)]
    verifiable: Sequence[str] = sorted([*hashed, *left_names]) if left_names else hashed
    known = _KnownDigests(tree, manifest, left_digests)
    walked = _replay(tree, hashed) if len(sig_paths) == 1 else None
    # what is kept of the walk from here on: names (sorted) and sizes of the files
    # scanned and hashed; the rest is returned before signatures are read
    del tree, scanned, locations
    if not governing:
        return CheckResult(reference, tuple(decide(policies, base, today)), base.to_json())
    decisions: list[Decision] = []
    evidence = base
    for policy in governing:
        allow = frozenset(policy.allow_globals)
        allow = allow if allow in scans else shared
        sigs, uncovered = _signature_evidence(
            path, bundles, policy, known, today, names, hashed, walked, verifiable
        )
        good, bad = _attestation_evidence(path, sig_paths, policy, digests, today)
        unsigned: tuple[str, ...] = ()
        if uncovered and not single:
            # Content no verified signature covers: left out by name (git metadata,
            # a signature name that is not a signature) or by the signer's own
            # ignore paths. Git's store (.git/) is scanned but is not model content.
            unsigned = tuple(
                name
                for name in sorted(uncovered)
                if name not in documents
                and not name.startswith(".git/")
                and sizes[bisect_left(names, name)] > 0
            )
        evidence = Evidence(
            artifact=artifact,
            signatures=tuple(sigs),
            unsigned_files=unsigned,
            attestations=tuple(good),
            failed_attestations=tuple(bad),
            findings=judged[allow][0],
            scan_status=listed(allow, unsigned),
            scan_counts=judged[allow][1],
            environment=base.environment,
            time=base.time,
            time_source=base.time_source,
        )
        decisions.extend(decide([policy], evidence, today))
    return CheckResult(reference, tuple(decisions), evidence.to_json())
