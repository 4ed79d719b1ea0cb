"""Verify an attestation about an artifact, in the order that keeps lies out.

1. the envelope's signature is valid and by a trusted signer;
2. the statement's subject digest is the artifact's digest recomputed now;
3. the predicate type is the one asked for;
4. for SLSA provenance, the builder / source / ref / parameter / dependency rules.

Only a statement that passes all of them becomes a :class:`VerifiedAttestation`;
anything else raises, naming every reason at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlverify._internal.attest.intoto import (
    OMS_SIGNATURE_V1,
    SLSA_PROVENANCE_V1,
    Statement,
    parse_statement,
)
from mlverify._internal.attest.provenance import (
    ProvenanceFacts,
    ProvenanceRequirements,
    check_certificate_agreement,
    check_provenance,
    provenance_facts,
)
from mlverify._internal.errors import ArtifactMismatchError, InputError, VerificationError
from mlverify._internal.manifest.build import hash_model
from mlverify._internal.signing.bundle import SignatureBundle, VerificationMaterial
from mlverify._internal.signing.dsse import Envelope
from mlverify._internal.signing.oms import VerifiedStatement, require_match, verify_model

#: checks a bundle's signature against the user's trusted signers
SignatureCheck = Callable[[SignatureBundle], VerifiedStatement]


@dataclass(frozen=True)
class VerifiedAttestation:
    """An attestation whose signature, subject and predicate rules all held."""

    source: str
    signer: str
    method: str
    statement: Statement
    provenance: ProvenanceFacts | None
    #: provenance claims the signing certificate does not vouch for (keyless only)
    unvouched: tuple[str, ...] = ()


def as_bundle(item: SignatureBundle | Envelope, source: str) -> SignatureBundle:
    """A bare DSSE envelope (``.intoto.jsonl``) is checked like a key-signed bundle."""
    if isinstance(item, SignatureBundle):
        return item
    return SignatureBundle(
        source=source,
        media_type="application/vnd.in-toto+json (bare DSSE envelope)",
        envelope=item,
        material=VerificationMaterial(kind="publicKey"),
        raw={},
    )


def artifact_digests(artifact: Path) -> set[str]:
    """Digests a statement may name for ``artifact``.

    A file: SHA-256 of its bytes (what in-toto producers write) and the OMS root
    digest of the one-file manifest. A directory: its OMS root digest.
    """
    manifest = hash_model(artifact)
    digests = {manifest.root_digest}
    if artifact.is_file():
        digests.add(manifest.resources[0].digest)
    return digests


def _shape(payload: bytes, *, where: str) -> str:
    """Check that ``payload`` is a statement, as :func:`parse_statement` does, and return
    its predicate type, without an object per resource of an OMS manifest (a million
    for a dataset); the error, if any, is exactly ``parse_statement``'s."""
    try:
        return parse_statement(payload, where=where, compact=True).predicate_type
    except InputError:
        # a statement with an object the compact form reads differently: the plain parse
        # decides (and names the defect)
        return parse_statement(payload, where=where).predicate_type


def _holds_tuple(value: object) -> bool:
    if isinstance(value, tuple):
        return True
    if isinstance(value, dict):
        return any(_holds_tuple(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_tuple(v) for v in value)
    return False


def _oms_summary(payload: bytes, *, where: str) -> Statement:
    """An OMS statement with ``resource_count`` in place of its ``resources``; everything
    else exactly as :func:`parse_statement` reads it."""
    try:
        st = parse_statement(payload, where=where, compact=True)
        rest = {k: v for k, v in st.predicate.items() if k != "resources"}
        if _holds_tuple(rest) or any(_holds_tuple(s.annotations) for s in st.subjects):
            raise InputError("read differently in the compact form")
    except (InputError, RecursionError):
        st = parse_statement(payload, where=where)
    predicate = {k: v for k, v in st.predicate.items() if k != "resources"}
    resources = st.predicate.get("resources")
    predicate["resource_count"] = len(resources) if isinstance(resources, list) else 0
    return Statement(st.source, st.subjects, st.predicate_type, predicate)


def verify_attestation(
    artifact: Path,
    bundle: SignatureBundle,
    check_signature: SignatureCheck,
    *,
    predicate_type: str | None = None,
    requirements: ProvenanceRequirements | None = None,
    digests: set[str] | Callable[[], set[str]] | None = None,
    summary: bool = False,
) -> VerifiedAttestation:
    """Run every check on one attestation; raise with all reasons if any fails.

    ``summary``: an OMS statement's predicate is returned without its resource list (a
    dataset's lists every file), with ``resource_count`` instead."""
    # Parsed first only to name a malformed payload precisely; trusted only below.
    _shape(bundle.envelope.payload, where=bundle.source)
    verified = check_signature(bundle)
    if _shape(verified.statement_payload, where=bundle.source) == OMS_SIGNATURE_V1:
        # An OMS manifest says how to hash (method, algorithm, ignores): re-hash
        # that way and name every differing file. Its statement (an object per file
        # of a dataset) is built only once the files are compared.
        require_match(verify_model(artifact, verified), artifact)
        statement = (
            _oms_summary(verified.statement_payload, where=bundle.source)
            if summary
            else parse_statement(verified.statement_payload, where=bundle.source)
        )
    else:
        statement = parse_statement(verified.statement_payload, where=bundle.source)

    if statement.predicate_type == OMS_SIGNATURE_V1:
        if predicate_type and predicate_type != OMS_SIGNATURE_V1:
            raise VerificationError(
                f"{bundle.source}: predicateType is {statement.predicate_type!r}, "
                f"expected {predicate_type!r}"
            )
        return VerifiedAttestation(bundle.source, verified.signer, verified.method, statement, None)
    # computed only for statements that name a digest (an OMS manifest re-hashes itself)
    found = (
        digests()
        if callable(digests)
        else digests
        if digests is not None
        else artifact_digests(artifact)
    )
    named = sorted({s.digest.get("sha256", "") for s in statement.subjects} - {""})
    if not found & set(named):
        raise ArtifactMismatchError(
            f"{bundle.source}: the statement is about other bytes: its subject digest is "
            f"sha256:{', sha256:'.join(named) or '(none)'}, {artifact} is "
            f"sha256:{', sha256:'.join(sorted(found))}"
        )
    if predicate_type and statement.predicate_type != predicate_type:
        raise VerificationError(
            f"{bundle.source}: predicateType is {statement.predicate_type!r}, "
            f"expected {predicate_type!r}"
        )
    facts = None
    unvouched: list[str] = []
    if statement.predicate_type == SLSA_PROVENANCE_V1:
        facts = provenance_facts(statement)
        req = requirements or ProvenanceRequirements()
        problems = check_provenance(facts, req)
        if verified.method == "sigstore":
            # Fields the certificate does not vouch for prove nothing: where the
            # caller constrains them, disagreement fails; otherwise it is recorded.
            for problem in check_certificate_agreement(facts, verified.claims):
                constrained = req.builder_ids if "builder" in problem else req.source_repo
                if constrained:
                    problems.insert(0, problem)
                else:
                    unvouched.append(problem)
        if problems:
            raise VerificationError(
                f"{bundle.source}: provenance signed by {verified.signer} fails: "
                + "; ".join(problems)
            )
    elif requirements is not None and not requirements.empty:
        raise InputError(
            f"{bundle.source}: provenance options were given but the statement is "
            f"{statement.predicate_type!r}, not SLSA provenance"
        )
    return VerifiedAttestation(
        source=bundle.source,
        signer=verified.signer,
        method=verified.method,
        statement=statement,
        provenance=facts,
        unvouched=tuple(unvouched),
    )
