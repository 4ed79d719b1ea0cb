"""Registry pushes: which manifests are models, and quarantine of a denied one.

Shared by the in-process service and the distributed worker: quarantine happens only
after a policy decision made with complete evidence, never on an operational error.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from mlverify._internal.errors import MlverifyError

log = logging.getLogger("mlverify._internal.serve")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_IMAGE_CONFIGS = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
MODES = ("none", "delete", "tag")


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
    """Not a container image and not an attached manifest (signature, attestation)."""
    config = manifest.get("config")
    config_type = str(config.get("mediaType", "")) if isinstance(config, dict) else ""
    return not manifest.get("subject") and config_type not in _IMAGE_CONFIGS


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
