"""Registry notifications: ``POST /registry/events`` (CNCF distribution). Each pushed
model manifest becomes a job for the executor; a denied one is quarantined after
the policy decision only (by the executor: here, or in the worker)."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlverify._internal.errors import MlverifyError
from mlverify._internal.serve.http import endpoint, error, read_json
from mlverify._internal.serve.quarantine import DOCKER_MANIFEST, OCI_MANIFEST
from mlverify._internal.serve.service import Service

log = logging.getLogger("mlverify._internal.serve")


def routes(service: Service, max_body: int) -> list[Route]:
    @endpoint
    async def registry_events(request: Request) -> Response:
        from urllib.parse import urlsplit

        envelope = await read_json(request, max_body)
        events = envelope.get("events") if isinstance(envelope, dict) else None
        if not isinstance(events, list):
            return error('expected {"events": [...]}')
        queued = 0
        for ev in events:
            if not isinstance(ev, dict) or ev.get("action") != "push":
                continue  # pulls (and deletes) arrive even when configured out
            target = ev.get("target")
            if not isinstance(target, dict) or target.get("mediaType") not in (
                OCI_MANIFEST,
                DOCKER_MANIFEST,
            ):
                continue
            digest, repo = str(target.get("digest", "")), str(target.get("repository", ""))
            host = urlsplit(str(target.get("url", ""))).netloc
            ref = f"oci://{host}/{repo}@{digest}"
            if not (digest and repo and host):
                continue
            try:
                service.admit_reference(ref)
            except MlverifyError as e:
                log.warning("event: registry not configured", extra={"ref": ref, "error": str(e)})
                continue
            # every tag is judged, quarantined-* too (anyone may push under such a name);
            # False: already judged under this name, or our own quarantine tag's push
            tag = str(target.get("tag", ""))
            if await asyncio.get_running_loop().run_in_executor(
                None, service.executor.on_push, host, repo, digest, tag
            ):
                queued += 1
        return JSONResponse({"queued": queued})

    return [Route("/registry/events", registry_events, methods=["POST"])]
