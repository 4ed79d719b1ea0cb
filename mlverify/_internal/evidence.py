"""Stage 5: the evidence document, one per artifact, whatever the entry point.

Frozen dataclasses, built by :mod:`mlverify._internal.check` from the earlier stages and
read by the policy engine. ``to_json`` gives the documented, versioned shape
(``schema_version``) that ``mlverify check --format json`` prints and CEL
rules see as ``evidence``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = "mlverify.dev/evidence/v1"


@dataclass(frozen=True)
class ArtifactEvidence:
    """What the artifact is: where, which formats (from bytes), which bytes."""

    ref: str
    kind: str  #: "file" or "directory"
    formats: tuple[str, ...]
    size: int
    root_digest: str
    file_count: int = 0  #: files hashed (the signed content)
    #: ``sha256:`` over every hashed file's name, SHA-256 and size (see :func:`listing_digest`)
    files_digest: str = ""
    #: every hashed file, only when asked for (an ML-BOM lists them; a dataset check does
    #: not pay a listing per file): None when not listed
    files: tuple[FileDigest, ...] | None = None


@dataclass(frozen=True)
class FileDigest:
    """One hashed file of the artifact, in an opted-in listing."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class SignatureEvidence:
    """One signature file and what became of it."""

    source: str
    #: verified: a trusted signer made it and the artifact matches it;
    #: mismatch: a trusted signer made it but the files differ;
    #: untrusted: no trusted signer made it; invalid: unreadable or malformed
    status: str
    method: str  #: key | certificate | sigstore | unknown
    signer: str  #: who signed (or who the file claims signed, if unverified)
    reason: str = ""  #: why it did not verify
    anchor: str = ""  #: the trust material that matched (key, root certificate, Sigstore root)
    #: who the policy says the signer is (its ``owner``, else the signer's identity):
    #: thresholds count distinct owners
    owner: str = ""

    @property
    def verified(self) -> bool:
        return self.status == "verified"


@dataclass(frozen=True)
class AttestationEvidence:
    """A verified attestation (signature, subject and predicate checks passed)."""

    source: str
    predicate_type: str
    signer: str
    method: str
    predicate: dict[str, Any]


@dataclass(frozen=True)
class FailedAttestation:
    source: str
    reason: str


@dataclass(frozen=True)
class FindingEvidence:
    rule_id: str
    severity: str
    file: str
    member: str
    offset: int | None
    subject: str
    message: str
    chain: str = ""


@dataclass(frozen=True)
class Evidence:
    """Everything known about one artifact at one time."""

    artifact: ArtifactEvidence
    signatures: tuple[SignatureEvidence, ...]
    attestations: tuple[AttestationEvidence, ...]
    failed_attestations: tuple[FailedAttestation, ...]
    findings: tuple[FindingEvidence, ...]
    #: per file: clean | data | findings | unsupported; every scanned file except plain
    #: data (status data, not named like a model file, not unsigned), which is counted only
    scan_status: dict[str, str] = field(default_factory=dict)
    #: every scanned file, counted by status (exact: the listing above is a part of it)
    scan_counts: dict[str, int] = field(default_factory=dict)
    #: files of the artifact no verified signature covers (left out of hashing by
    #: name, or by the signer's ignore paths), signature documents and .git/ excepted
    unsigned_files: tuple[str, ...] = ()
    environment: str = "cli"  #: cli | ci | pre-commit | admission (serve)
    time: str = ""  #: ISO 8601, UTC
    time_source: str = "local clock"

    def to_json(self) -> dict[str, Any]:
        a = self.artifact
        return {
            "schema_version": SCHEMA_VERSION,
            "artifact": {
                "ref": a.ref,
                "kind": a.kind,
                "formats": list(a.formats),
                "size": a.size,
                "root_digest": a.root_digest,
                "file_count": a.file_count,
                "files_digest": a.files_digest,
                **(
                    {
                        "files": [
                            {"name": f.name, "sha256": f.sha256, "size": f.size} for f in a.files
                        ]
                    }
                    if a.files is not None
                    else {}
                ),
            },
            "signatures": [
                {
                    "source": s.source,
                    "verified": s.verified,
                    "status": s.status,
                    "method": s.method,
                    "signer": s.signer,
                    "reason": s.reason,
                    "anchor": s.anchor,
                    "owner": s.owner,
                }
                for s in self.signatures
            ],
            "attestations": [
                {
                    "source": t.source,
                    "predicate_type": t.predicate_type,
                    "signer": t.signer,
                    "method": t.method,
                    "predicate": t.predicate,
                }
                for t in self.attestations
            ],
            "failed_attestations": [
                {"source": f.source, "reason": f.reason} for f in self.failed_attestations
            ],
            "findings": [
                {
                    "rule_id": f.rule_id,
                    "severity": f.severity,
                    "file": f.file,
                    "member": f.member,
                    "offset": f.offset,
                    "subject": f.subject,
                    "message": f.message,
                    "chain": f.chain,
                }
                for f in self.findings
            ],
            "scan_status": dict(sorted(self.scan_status.items())),
            "scan_counts": dict(self.scan_counts),
            "unsigned_files": list(self.unsigned_files),
            "environment": self.environment,
            "time": self.time,
            "time_source": self.time_source,
        }


def evidence_from_json(doc: dict[str, Any]) -> Evidence:
    """Rebuild an evidence document (e.g. a policy test fixture); strict on shape."""
    try:
        a = doc["artifact"]
        artifact = ArtifactEvidence(
            ref=str(a["ref"]),
            kind=str(a.get("kind", "directory")),
            formats=tuple(a.get("formats", ())),
            size=int(a.get("size", 0)),
            root_digest=str(a.get("root_digest", "")),
            file_count=int(a.get("file_count", 0)),
            files_digest=str(a.get("files_digest", "")),
            files=(
                tuple(
                    FileDigest(str(f["name"]), str(f["sha256"]), int(f["size"])) for f in a["files"]
                )
                if isinstance(a.get("files"), list)
                else None
            ),
        )
        status = {str(k): str(v) for k, v in doc.get("scan_status", {}).items()}
        counts = {str(k): int(v) for k, v in doc.get("scan_counts", {}).items()}
        if not counts:
            # a document without counts (a hand-written fixture): what it lists is all
            for v in status.values():
                counts[v] = counts.get(v, 0) + 1
        for v in set(status.values()):
            if sum(1 for x in status.values() if x == v) > counts.get(v, 0):
                raise ValueError(f"scan_status lists more {v!r} files than scan_counts counts")
        return Evidence(
            artifact=artifact,
            signatures=tuple(
                SignatureEvidence(
                    source=str(s["source"]),
                    status=str(s["status"]),
                    method=str(s.get("method", "unknown")),
                    signer=str(s.get("signer", "")),
                    reason=str(s.get("reason", "")),
                    anchor=str(s.get("anchor", "")),
                    owner=str(s.get("owner", "")),
                )
                for s in doc.get("signatures", ())
            ),
            attestations=tuple(
                AttestationEvidence(
                    source=str(t["source"]),
                    predicate_type=str(t["predicate_type"]),
                    signer=str(t.get("signer", "")),
                    method=str(t.get("method", "")),
                    predicate=dict(t.get("predicate", {})),
                )
                for t in doc.get("attestations", ())
            ),
            failed_attestations=tuple(
                FailedAttestation(str(f["source"]), str(f["reason"]))
                for f in doc.get("failed_attestations", ())
            ),
            findings=tuple(
                FindingEvidence(
                    rule_id=str(f["rule_id"]),
                    severity=str(f["severity"]),
                    file=str(f["file"]),
                    member=str(f.get("member", "")),
                    offset=f.get("offset"),
                    subject=str(f.get("subject", "")),
                    message=str(f.get("message", "")),
                    chain=str(f.get("chain", "")),
                )
                for f in doc.get("findings", ())
            ),
            scan_status=status,
            scan_counts=counts,
            unsigned_files=tuple(str(n) for n in doc.get("unsigned_files", ())),
            environment=str(doc.get("environment", "cli")),
            time=str(doc.get("time", "")),
            time_source=str(doc.get("time_source", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        from mlverify._internal.errors import InputError

        raise InputError(f"evidence document is malformed ({type(e).__name__}: {e})") from None


def listing_digest(names: Sequence[str], digests: bytes, sizes: Sequence[int]) -> str:
    """``sha256:`` over, for each file in code-point order of names: its name (UTF-8,
    undecodable bytes as they are on disk), NUL, its SHA-256 (64 lowercase hex digits),
    NUL, its size (decimal), newline. ``digests`` holds the raw SHA-256 digests."""
    import hashlib
    import sys

    h = hashlib.sha256()
    # os.fsencode's encoding, without a Python call per name
    enc, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    step = 4096  # files per chunk: their digests in hex at once, one call per chunk
    for start in range(0, len(names), step):
        end = min(start + step, len(names))
        hexes = digests[32 * start : 32 * end].hex().encode()
        h.update(
            b"".join(
                b"%s\0%s\0%d\n"
                % (names[i].encode(enc, errors), hexes[64 * k : 64 * k + 64], sizes[i])
                for k, i in enumerate(range(start, end))
            )
        )
    return "sha256:" + h.hexdigest()
