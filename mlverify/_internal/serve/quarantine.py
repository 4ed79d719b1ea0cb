"""Registry pushes: which manifests are models, and quarantine of a denied one.

Shared by the in-process service and the distributed worker: quarantine happens only
after a policy decision made with complete evidence, never on an operational error.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from mlverify._internal.errors import MlverifyError, VerificationError

log = logging.getLogger("mlverify._internal.serve")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
#: layer media types that are evidence about a subject (Sigstore bundles, cosign simple
#: signing, DSSE / in-toto envelopes, notation JWS), exactly; never model content
EVIDENCE_LAYERS = frozenset(
    {
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        "application/vnd.dsse.envelope.v1+json",
        "application/vnd.in-toto+json",
        "application/jose+json",
    }
)
#: an evidence layer larger than this is not taken for a signature or an attestation
MAX_EVIDENCE_LAYER = 4 << 20
MODES = ("none", "delete", "tag")


def pushed_name(host: str, repo: str, digest: str, tag: str) -> str:
    """The name a pushed manifest is judged by: with the tag it was pushed under (policies
    match tags: a push of ``:release-1`` is judged by the release policy), pinned to the
    digest pushed. A push of one digest under several tags is judged once per tag. A tag
    that is not one (the registry would not have taken it) is left out, logged."""
    from mlverify._internal.sources.oci import parse_ref

    pinned = f"oci://{host}/{repo}@{digest}"
    try:
        if tag:
            try:
                return str(parse_ref(f"oci://{host}/{repo}:{tag}@{digest}"))
            except MlverifyError:
                log.warning("event: malformed tag, judged by digest", extra={"ref": pinned})
        return str(parse_ref(pinned))
    except MlverifyError:
        return pinned  # not a reference: its check says so


def judged_name(name: str, *, plain_http: bool, retries: int, backoff: float) -> str:
    """``name`` (a :func:`pushed_name`) if its tag names its digest at the registry, read
    again with backoff (the registry may send the event before it links the tag); else,
    the tag pushed over since, the digest's own name: the manifest is still judged (under
    a name that does not hold, its check would fail and it would go unjudged)."""
    from mlverify._internal.sources.oci import Registry, check_tag, parse_ref
    from mlverify._internal.sources.settings import oci_from_environment

    try:
        r = parse_ref(name)
    except MlverifyError:
        return name
    if not (r.tag and r.digest):
        return name
    for attempt in range(retries + 1):
        try:
            check_tag(Registry(r.host, oci_from_environment(plain_http)), r)
            return name
        except VerificationError:
            if attempt < retries:
                time.sleep(backoff * 2**attempt)
        except MlverifyError:
            return name  # cannot tell now: its check reads the tag again
    log.warning("event: the tag names another manifest now; judged by digest", extra={"ref": name})
    return f"oci://{r.host}/{r.repository}@{r.digest}"


def read_manifest(
    host: str, repo: str, digest: str, *, plain_http: bool, retries: int, backoff: float
) -> tuple[bytes, dict[str, Any]] | None:
    """The pushed manifest (bytes and JSON), retried with backoff; None if unreadable."""
    from mlverify._internal.sources.oci import Registry
    from mlverify._internal.sources.settings import oci_from_environment

    reg = Registry(host, oci_from_environment(plain_http))
    ref = f"oci://{host}/{repo}@{digest}"
    for attempt in range(retries + 1):
        try:
            data, _, _ = reg.get_manifest(repo, digest)
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            return data, doc
        except (MlverifyError, ValueError) as e:
            if attempt == retries:
                log.warning(
                    "event: manifest unreadable, not judged", extra={"ref": ref, "error": str(e)}
                )
                return None
            time.sleep(backoff * 2**attempt)
    return None


def is_model(manifest: dict[str, Any]) -> bool:
    """Does this pushed manifest carry content to judge? Every manifest does (a model
    artifact, a container image: KServe's modelcars are images, an attachment with a
    ``subject``) unless each of its layers is a signature or attestation by its media
    type, exactly, and small: that is evidence about its subject, read when the subject
    is checked (a verdict is stale once the attached set changes), not a model. A
    manifest without layers has nothing to judge (and cannot be pulled as a model)."""
    layers = manifest.get("layers")
    if layers is None or layers == []:
        return False
    if not isinstance(layers, list):
        return True  # malformed: judged (the check says what is wrong with it)
    return not all(
        isinstance(x, dict)
        and isinstance(x.get("mediaType"), str)
        and x["mediaType"] in EVIDENCE_LAYERS
        and isinstance(x.get("size"), int)
        and 0 <= x["size"] <= MAX_EVIDENCE_LAYER
        for x in layers
    )


def quarantine_tag(digest: str) -> str:
    return "quarantined-" + digest.split(":", 1)[1][:64]


def quarantine(host: str, repo: str, digest: str, mode: str, *, plain_http: bool) -> None:
    """Delete the manifest, or tag it ``quarantined-<hex>`` for review; errors logged."""
    from mlverify._internal.sources.oci import Registry
    from mlverify._internal.sources.settings import oci_from_environment

    if mode == "none":
        return
    ref = f"oci://{host}/{repo}@{digest}"
    reg = Registry(host, oci_from_environment(plain_http))
    try:
        if mode == "delete":
            reg.delete_manifest(repo, digest)
        else:
            data, media_type, _ = reg.get_manifest(repo, digest)
            reg.push_manifest(repo, quarantine_tag(digest), data, media_type or OCI_MANIFEST)
        log.warning("quarantined", extra={"ref": ref, "mode": mode})
    except MlverifyError as e:
        log.error("quarantine failed", extra={"ref": ref, "error": str(e)})
