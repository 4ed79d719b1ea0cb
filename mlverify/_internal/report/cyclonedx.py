"""CycloneDX 1.6 ML-BOM (ATLAS AML.M0023 AI Bill of Materials) from a check JSON document.

Built with ``cyclonedx-python-lib`` (imported here only). Per artifact:

- a ``machine-learning-model`` component: every file as a ``file`` sub-component with its
  SHA-256 and size; the detected formats, the OMS root digest, each signature (status,
  method, signer, trust anchor), the scan result per file and each policy decision as
  ``mlverify:*`` properties;
- its verified SLSA provenance: the builder (a ``build-system`` external reference and a
  property), the source (``vcs``), and each dataset or base model it names as a ``data``
  or ``machine-learning-model`` component with its digests, which the model depends on;
- each scanner finding as a vulnerability (source ``mlverify``, the rule id, its severity,
  the file), with the ATLAS techniques and mitigations as properties.

Only *verified* attestations contribute provenance: a rejected one is listed as rejected,
never as where the model came from. The serial number is derived from the content
(a re-render of the same document gives the same BOM).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mlverify._internal import atlas
from mlverify._internal.attest.intoto import SLSA_PROVENANCE_V1
from mlverify._internal.report.document import DocumentReporter
from mlverify._internal.version import __version__

if TYPE_CHECKING:
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component
    from cyclonedx.model.vulnerability import Vulnerability

_NAMESPACE = uuid.UUID("5b1e4a3c-6f0e-4c57-9a53-0c9f6e1d2a10")  # mlverify BOM serials
_SEVERITY = {"info": "info", "low": "low", "medium": "medium", "high": "high"}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        d = _dict(d).get(k)
    return d


def _props(pairs: Iterable[tuple[str, Any]]) -> list[Property]:
    from cyclonedx.model import Property

    return [Property(name=k, value=_text(v)) for k, v in pairs if _text(v) != ""]


def _hashes(digest: Any) -> list[Any]:
    """CycloneDX hashes from an in-toto digest map (sha256, sha512, ...); others dropped."""
    from cyclonedx.model import HashAlgorithm, HashType

    algs = {
        "sha256": HashAlgorithm.SHA_256,
        "sha384": HashAlgorithm.SHA_384,
        "sha512": HashAlgorithm.SHA_512,
        "sha1": HashAlgorithm.SHA_1,
    }
    out = []
    for name, value in sorted(_dict(digest).items()):
        alg = algs.get(str(name).lower())
        text = _text(value).lower()
        if alg is not None and text and all(c in "0123456789abcdef" for c in text):
            out.append(HashType(alg=alg, content=text))
    return out


def _uri(value: Any) -> Any:
    """An XsUri for an absolute URI, None for anything else (a path, junk)."""
    from cyclonedx.exception.model import InvalidUriException
    from cyclonedx.model import XsUri

    if not isinstance(value, str) or "://" not in value:
        return None
    try:
        return XsUri(value)
    except InvalidUriException:
        return None


def _provenance(
    result: dict[str, Any], model_ref: str
) -> tuple[list[Component], list[Any], list[Property]]:
    """Components (datasets, base models), external references and properties from the
    verified SLSA provenance of one result."""
    from cyclonedx.model import ExternalReference, ExternalReferenceType
    from cyclonedx.model.component import Component, ComponentType

    components: list[Component] = []
    refs: list[Any] = []
    props: list[tuple[str, Any]] = []
    attestations = _list(_get(result, "evidence", "attestations"))
    for i, a in enumerate(x for x in attestations if _dict(x).get("predicate_type")):
        if a.get("predicate_type") != SLSA_PROVENANCE_V1:
            props.append((f"mlverify:attestation:{i}:predicate_type", a.get("predicate_type")))
            props.append((f"mlverify:attestation:{i}:signer", a.get("signer")))
            continue
        p = _dict(a.get("predicate"))
        builder = _text(_get(p, "runDetails", "builder", "id"))
        ext = _get(p, "buildDefinition", "externalParameters")
        repo = _get(ext, "source", "repository") or _get(ext, "workflow", "repository")
        ref = _get(ext, "source", "ref") or _get(ext, "workflow", "ref")
        props += [
            ("mlverify:provenance:builder", builder),
            ("mlverify:provenance:build_type", _get(p, "buildDefinition", "buildType")),
            ("mlverify:provenance:source", repo),
            ("mlverify:provenance:source_ref", ref),
            ("mlverify:provenance:signer", a.get("signer")),
            ("mlverify:provenance:method", a.get("method")),
        ]
        for ref_type, url in (
            (ExternalReferenceType.BUILD_SYSTEM, builder),
            (ExternalReferenceType.VCS, repo),
        ):
            uri = _uri(url)
            if uri is not None:
                refs.append(ExternalReference(type=ref_type, url=uri))
        deps = _list(_get(p, "buildDefinition", "resolvedDependencies"))
        for j, dep in enumerate(_dict(d) for d in deps):
            kind = _text(_get(dep, "annotations", "kind"))
            if kind == "source":
                continue  # the source revision: a vcs reference above, not a component
            name = _text(dep.get("name")) or _text(dep.get("uri")) or f"dependency-{j}"
            uri = _uri(dep.get("uri"))
            component = Component(
                name=name,
                type=ComponentType.MACHINE_LEARNING_MODEL
                if kind == "base-model"
                else ComponentType.DATA,
                bom_ref=f"{model_ref}/dependency/{i}/{j}",
                hashes=_hashes(dep.get("digest")),
                external_references=[
                    ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=uri)
                ]
                if uri is not None
                else None,
                properties=_props([("mlverify:dependency:kind", kind or "dataset")]),
            )
            components.append(component)
    for i, f in enumerate(_list(_get(result, "evidence", "failed_attestations"))):
        props.append(
            (f"mlverify:attestation_rejected:{i}", f"{_get(f, 'source')}: {_get(f, 'reason')}")
        )
    return components, refs, _props(props)


def _findings(result: dict[str, Any], model_ref: str, index: int) -> list[Vulnerability]:
    from cyclonedx.model.vulnerability import (
        BomTarget,
        Vulnerability,
        VulnerabilityRating,
        VulnerabilitySeverity,
        VulnerabilitySource,
    )

    out = []
    names = {
        _text(_dict(f).get("name")) for f in _list(_get(result, "evidence", "artifact", "files"))
    }
    findings = _list(_get(result, "evidence", "findings"))
    for i, f in enumerate(_dict(x) for x in findings):
        rule = _text(f.get("rule_id"))
        refs = atlas.refs_for_rule(rule)
        where = _text(f.get("file")) + (f"!{f['member']}" if f.get("member") else "")
        sev = _SEVERITY.get(_text(f.get("severity")), "critical")
        file = _text(f.get("file"))
        target = f"{model_ref}/file/{file}" if file in names else model_ref
        out.append(
            Vulnerability(
                bom_ref=f"{model_ref}/finding/{index}/{i}",
                id=rule,
                source=VulnerabilitySource(name="mlverify"),
                ratings=[
                    VulnerabilityRating(
                        severity=VulnerabilitySeverity(sev)
                        if sev in {s.value for s in VulnerabilitySeverity}
                        else VulnerabilitySeverity.UNKNOWN
                    )
                ],
                description=_text(f.get("message")),
                detail=f"{where}" + (f" [{f['chain']}]" if f.get("chain") else ""),
                affects=[BomTarget(ref=target)],
                properties=_props(
                    [
                        ("mlverify:file", where),
                        ("mlverify:subject", f.get("subject")),
                        ("mlverify:atlas:techniques", ",".join(refs.technique_ids)),
                        ("mlverify:atlas:mitigations", ",".join(refs.mitigation_ids)),
                    ]
                ),
            )
        )
    return out


def _model(result: dict[str, Any], index: int) -> tuple[Component, list[Component], list[Any]]:
    from cyclonedx.model.component import Component, ComponentType

    evidence = _dict(result.get("evidence"))
    art = _dict(evidence.get("artifact"))
    ref_name = _text(art.get("ref")) or _text(result.get("artifact")) or f"artifact-{index}"
    root = _text(art.get("root_digest"))
    model_ref = f"model/{index}/{root[:16] or 'undecided'}"
    files = []
    for f in (_dict(x) for x in _list(art.get("files"))):
        name = _text(f.get("name"))
        files.append(
            Component(
                name=name,
                type=ComponentType.FILE,
                bom_ref=f"{model_ref}/file/{name}",
                hashes=_hashes({"sha256": f.get("sha256")}),
                properties=_props(
                    [
                        ("mlverify:size", f.get("size")),
                        ("mlverify:scan_status", _dict(evidence.get("scan_status")).get(name)),
                    ]
                ),
            )
        )
    props: list[tuple[str, Any]] = [
        ("mlverify:artifact", result.get("artifact")),
        ("mlverify:status", result.get("status")),
        ("mlverify:allowed", str(bool(result.get("allowed"))).lower()),
        ("mlverify:outcome", result.get("outcome")),
        ("mlverify:outcome_message", result.get("message") if result.get("outcome") else ""),
        ("mlverify:kind", art.get("kind")),
        ("mlverify:size", art.get("size")),
        ("mlverify:oms_root_digest", root),
        ("mlverify:formats", ",".join(_text(x) for x in _list(art.get("formats")))),
        ("mlverify:evidence_time", evidence.get("time")),
        ("mlverify:environment", evidence.get("environment")),
    ]
    for i, s in enumerate(_dict(x) for x in _list(evidence.get("signatures"))):
        for key in ("status", "method", "signer", "anchor", "owner", "source", "reason"):
            props.append((f"mlverify:signature:{i}:{key}", s.get(key)))
    statuses = _dict(evidence.get("scan_status"))
    findings = _list(evidence.get("findings"))
    props.append(
        (
            "mlverify:scan",
            f"{len(findings)} finding(s) in {len(statuses)} file(s): "
            + ", ".join(
                f"{n} {s}"
                for s in ("findings", "unsupported", "clean", "data")
                if (n := sum(1 for v in statuses.values() if v == s))
            ),
        )
    )
    for i, d in enumerate(_dict(x) for x in _list(result.get("decisions"))):
        props.append(
            (
                f"mlverify:decision:{i}",
                f"{'allowed' if d.get('allowed') else 'denied'} by policy "
                f"{_text(d.get('policy')) or '(none)'} ({_text(d.get('mode'))})",
            )
        )
        for j, r in enumerate(_dict(x) for x in _list(d.get("reasons"))):
            code = _text(r.get("code"))
            refs = atlas.refs_for_reason_text(code, _text(r.get("message")))
            props.append(
                (
                    f"mlverify:decision:{i}:reason:{j}",
                    f"{_text(r.get('level'))} {code}: {_text(r.get('message'))} "
                    f"[ATLAS {', '.join((*refs.technique_ids, *refs.mitigation_ids))}]",
                )
            )
    deps, ext_refs, prov_props = _provenance(result, model_ref)
    # a file's hash is its bytes' SHA-256; a directory's OMS root digest hashes no one
    # file's bytes: it is a property, not a CycloneDX hash
    hashes = list(files[0].hashes) if art.get("kind") == "file" and len(files) == 1 else []
    model = Component(
        name=ref_name,
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=model_ref,
        hashes=hashes or None,
        components=files,
        external_references=ext_refs or None,
        properties=[*_props(props), *prov_props],
    )
    return model, deps, _findings(result, model_ref, index)


def build_bom(doc: dict[str, Any]) -> Bom:
    """The CycloneDX BOM object of a check JSON document (one or more results)."""
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.dependency import Dependency

    results = atlas.check_results(doc)
    bom_refs = atlas.refs_for_output("cyclonedx")
    tool = Component(name="mlverify", version=__version__, type=ComponentType.APPLICATION)
    models, extra, vulns, dependencies = [], [], [], []
    for i, r in enumerate(results):
        model, deps, found = _model(r, i)
        models.append(model)
        extra.extend(deps)
        vulns.extend(found)
        dependencies.append(
            Dependency(ref=model.bom_ref, dependencies=[Dependency(ref=d.bom_ref) for d in deps])
        )
        dependencies.extend(Dependency(ref=d.bom_ref) for d in deps)
    times = sorted(_text(_get(r, "evidence", "time")) for r in results)
    stamp = _timestamp(times[-1] if times else "")
    seed = "|".join(
        f"{_text(r.get('artifact'))}@{_text(_get(r, 'evidence', 'artifact', 'root_digest'))}"
        f"@{_text(_get(r, 'evidence', 'time'))}@{_text(r.get('status'))}"
        for r in results
    )
    metadata = BomMetaData(
        component=models[0] if len(models) == 1 else None,
        timestamp=stamp,
        properties=_props(
            [
                ("mlverify:atlas:version", atlas.atlas_version()),
                ("mlverify:atlas:mitigations", ",".join(bom_refs.mitigation_ids)),
            ]
        ),
    )
    metadata.tools.components.add(tool)
    top = models[1:] if len(models) == 1 else models
    return Bom(
        serial_number=uuid.uuid5(_NAMESPACE, seed),
        metadata=metadata,
        components=[*top, *extra],
        dependencies=dependencies,
        vulnerabilities=vulns,
    )


def _timestamp(text: str) -> dt.datetime:
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)


def render_cyclonedx(doc: dict[str, Any]) -> str:
    """The CycloneDX 1.6 JSON text of a check JSON document."""
    from cyclonedx.output.json import JsonV1Dot6

    return JsonV1Dot6(build_bom(doc)).output_as_string(indent=2) + "\n"


REPORTER = DocumentReporter(render_cyclonedx, "application/vnd.cyclonedx+json", "cyclonedx")
