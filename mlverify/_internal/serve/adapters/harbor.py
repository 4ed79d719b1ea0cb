"""Harbor's pluggable scanner API v1.2: ``GET /api/v1/metadata``, ``POST /api/v1/scan``,
``GET /api/v1/scan/{id}/report``. Scan requests live in the verdict store, so any
replica answers a report for a request another took."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlverify._internal.errors import MlverifyError
from mlverify._internal.serve.http import endpoint, read_json
from mlverify._internal.serve.quarantine import DOCKER_MANIFEST, OCI_MANIFEST
from mlverify._internal.serve.service import Service, Verdict
from mlverify._internal.serve.store.base import ScanRequest
from mlverify._internal.version import __version__

HARBOR_METADATA = "application/vnd.scanner.adapter.metadata+json; version=1.1"
HARBOR_SCAN_REQUEST = "application/vnd.scanner.adapter.scan.request+json; version=1.1"
HARBOR_SCAN_RESPONSE = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
HARBOR_REPORT = "application/vnd.security.vulnerability.report; version=1.1"
HARBOR_ERROR = "application/vnd.scanner.adapter.error+json; version=1.0"
_SEVERITY = {
    "critical": "Critical",
    "high": "High",
    "medium": "Medium",
    "low": "Low",
    "info": "Negligible",
}
_RANK = ["Unknown", "Negligible", "Low", "Medium", "High", "Critical"]


def routes(service: Service, max_body: int) -> list[Route]:
    async def harbor_metadata(request: Request) -> Response:
        doc = {
            "scanner": {"name": "mlverify", "vendor": "mlverify", "version": __version__},
            "capabilities": [
                {
                    "type": "vulnerability",
                    "consumes_mime_types": [
                        OCI_MANIFEST,
                        DOCKER_MANIFEST,
                    ],
                    "produces_mime_types": [HARBOR_REPORT],
                }
            ],
            "properties": {
                "harbor.scanner-adapter/scanner-type": "ml-model-verifier",
                "org.mlverify.policies": ",".join(p.name for p in service.config.policies),
            },
        }
        return JSONResponse(doc, media_type=HARBOR_METADATA)

    @endpoint
    async def harbor_scan(request: Request) -> Response:
        from urllib.parse import urlsplit

        body = await read_json(request, max_body)
        try:
            registry, artifact = body["registry"], body["artifact"]
            host = urlsplit(str(registry["url"])).netloc
            repo, digest = str(artifact["repository"]), str(artifact["digest"])
        except (KeyError, TypeError):
            return JSONResponse(
                {"error": {"message": "expected {registry{url}, artifact{repository, digest}}"}},
                status_code=422,
                media_type=HARBOR_ERROR,
            )
        ref = f"oci://{host}/{repo}@{digest}"
        try:
            service.admit_reference(ref)
        except MlverifyError as e:
            return JSONResponse(
                {"error": {"message": str(e)}}, status_code=422, media_type=HARBOR_ERROR
            )
        auth = registry.get("authorization") or None
        if auth is not None and not isinstance(auth, str):
            return JSONResponse(
                {"error": {"message": "registry.authorization must be a string"}},
                status_code=422,
                media_type=HARBOR_ERROR,
            )
        service.submit(ref, authorization=auth)
        scan = ScanRequest(uuid.uuid4().hex, "", ref, repo, digest, time.time())
        await asyncio.get_running_loop().run_in_executor(None, service.store.add_scan, scan)
        return JSONResponse({"id": scan.id}, status_code=202, media_type=HARBOR_SCAN_RESPONSE)

    @endpoint
    async def harbor_report(request: Request) -> Response:
        loop = asyncio.get_running_loop()
        job = await loop.run_in_executor(None, service.store.get_scan, request.path_params["id"])
        if job is None:
            return JSONResponse(
                {"error": {"message": "unknown scan request id"}},
                status_code=404,
                media_type=HARBOR_ERROR,
            )
        verdict = await loop.run_in_executor(None, service.executor.peek, job.ref)
        if verdict is None:
            return Response(status_code=302, headers={"Refresh-After": "1"})
        vulns = harbor_vulnerabilities(verdict, job.repository)
        top = max((_RANK.index(v["severity"]) for v in vulns), default=1 if verdict.allowed else 0)
        doc = {
            "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "artifact": {
                "repository": job.repository,
                "digest": job.digest,
                "mime_type": OCI_MANIFEST,
            },
            "scanner": {"name": "mlverify", "vendor": "mlverify", "version": __version__},
            "severity": _RANK[top],
            "vulnerabilities": vulns,
        }
        return JSONResponse(doc, media_type=HARBOR_REPORT)

    return [
        Route("/api/v1/metadata", harbor_metadata, methods=["GET"]),
        Route("/api/v1/scan", harbor_scan, methods=["POST"]),
        Route("/api/v1/scan/{id}/report", harbor_report, methods=["GET"]),
    ]


def harbor_vulnerabilities(verdict: Verdict, package: str) -> list[dict[str, Any]]:
    """Policy reasons and scanner findings as Harbor vulnerability items."""
    out: list[dict[str, Any]] = []
    if verdict.error or (verdict.result is None and verdict.note):
        out.append(
            {
                "id": "MLV-check-failed",
                "package": package,
                "version": verdict.digest or "unknown",
                "severity": "High",
                "description": verdict.error or verdict.note,
                "links": [],
            }
        )
        return out
    if verdict.result is None:
        return out
    for d in verdict.result.decisions:
        for r in d.reasons:
            if r.level == "info":
                continue
            out.append(
                {
                    "id": f"MLV-{r.code}",
                    "package": package,
                    "version": verdict.digest,
                    "severity": "High" if r.level == "deny" and not d.allowed else "Medium",
                    "description": r.message,
                    "fix_version": "",
                    "links": [],
                    "vendor_attributes": {"policy": d.policy, "remedy": r.remedy},
                }
            )
    for f in verdict.result.evidence.get("findings", []):
        if not isinstance(f, dict):
            continue
        out.append(
            {
                "id": str(f.get("rule_id", "MLV-finding")),
                "package": package,
                "version": verdict.digest,
                "severity": _SEVERITY.get(str(f.get("severity", "")), "Unknown"),
                "description": f"{f.get('path', '')}: {f.get('message', '')}",
                "links": [],
            }
        )
    return out
