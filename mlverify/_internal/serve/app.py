"""HTTP routes of ``mlverify serve`` (Starlette).

- ``GET  /healthz``                         liveness, no token
- ``POST /v1/check``                        ``{"ref": ..., "refresh": false, "evidence": false}``
- ``GET  /v1/verdicts``                     verdicts recorded (cache, registry events)
- ``POST /k8s/validate``                    AdmissionReview v1 (KServe storageUri, image volumes)
- ``POST /registry/events``                 CNCF distribution notifications
- ``GET  /api/v1/metadata``, ``POST /api/v1/scan``, ``GET /api/v1/scan/{id}/report``
                                            Harbor pluggable scanner API v1.2
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mlverify._internal.errors import MlverifyError
from mlverify._internal.serve.service import Service, Verdict, is_pinned, references_in
from mlverify._internal.text import shown
from mlverify._internal.version import __version__

log = logging.getLogger("mlverify._internal.serve")

HARBOR_METADATA = "application/vnd.scanner.adapter.metadata+json; version=1.1"
HARBOR_SCAN_REQUEST = "application/vnd.scanner.adapter.scan.request+json; version=1.1"
HARBOR_SCAN_RESPONSE = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
HARBOR_REPORT = "application/vnd.security.vulnerability.report; version=1.1"
HARBOR_ERROR = "application/vnd.scanner.adapter.error+json; version=1.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_SEVERITY = {
    "critical": "Critical",
    "high": "High",
    "medium": "Medium",
    "low": "Low",
    "info": "Negligible",
}
_RANK = ["Unknown", "Negligible", "Low", "Medium", "High", "Critical"]


class BodyTooLarge(Exception):
    pass


class BadBody(ValueError):
    """A body that is not the JSON expected: answered 400, never 500."""


#: Deepest JSON nesting accepted in a request (an AdmissionReview needs about 20).
MAX_JSON_DEPTH = 64


def _check_depth(doc: Any, limit: int = MAX_JSON_DEPTH) -> None:
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise BadBody(f"request body nested deeper than {limit} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def parse_json_body(data: bytes) -> Any:
    """JSON of a request body, bounded in depth; :class:`BadBody` for anything else."""
    try:
        doc = json.loads(data or b"null")
    except RecursionError:
        raise BadBody(f"request body nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadBody(f"request body is not valid JSON ({type(e).__name__})") from None
    _check_depth(doc)
    return doc


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, refusing more than ``limit`` bytes (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return parse_json_body(b"".join(chunks))


class Guard:
    """ASGI middleware: bearer-token check (all but /healthz), body limit, JSON access log."""

    def __init__(self, app: ASGIApp, token: str | None, max_body: int) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 0}

        async def send_logged(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        path = scope.get("path", "")
        headers = dict(scope.get("headers") or [])
        try:
            if self.token is not None and path != "/healthz":
                given = headers.get(b"authorization", b"")
                if not (
                    given.startswith(b"Bearer ") and hmac.compare_digest(given[7:], self.token)
                ):
                    resp = JSONResponse(
                        {"error": "missing or wrong bearer token"},
                        status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="mlverify"'},
                    )
                    await resp(scope, receive, send_logged)
                    return
            length = headers.get(b"content-length", b"")
            if length.isdigit() and int(length) > self.max_body:
                resp = JSONResponse({"error": "request body too large"}, status_code=413)
                await resp(scope, receive, send_logged)
                return
            await self.app(scope, receive, send_logged)
        finally:
            client = scope.get("client") or ("", 0)
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": path,
                    "status": status["code"],
                    "client": client[0],
                    "ms": round((time.perf_counter() - t0) * 1000, 2),
                },
            )


@dataclass
class HarborJob:
    id: str
    repository: str
    digest: str
    future: concurrent.futures.Future[Verdict]
    created: float = field(default_factory=time.time)


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def admission_response(uid: Any, allowed: bool, message: str = "") -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid if isinstance(uid, str) else "", "allowed": allowed}
    if not allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


#: Kubernetes truncates each admission warning to 256 characters.
MAX_WARNING = 250


def admission_warning(ref: str, text: str) -> str:
    """The reason first, then a short form of the reference, within Kubernetes' limit:
    a long reference never pushes the reason out of the warning."""
    import re

    short = re.sub(r"(sha256:[0-9a-f]{12})[0-9a-f]{52}", r"\1", ref)
    short = short if len(short) <= 80 else short[:37] + "..." + short[-40:]
    tail = f" [{short}]"
    room = MAX_WARNING - len(tail)
    body = text if len(text) <= room else text[: room - 3] + "..."
    return body + tail


def _refuse(request: Request, message: str, status: int) -> JSONResponse:
    """An error answer; on the admission route also an AdmissionReview that denies."""
    if request.url.path == "/k8s/validate":
        doc = admission_response("", False, f"mlverify: {message}")
        return JSONResponse({**doc, "error": message}, status_code=status)
    return _error(message, status)


def build_app(service: Service, *, token: str | None, max_body: int = 1 << 20) -> ASGIApp:
    """The ASGI application (routes wrapped in :class:`Guard`)."""
    harbor_jobs: dict[str, HarborJob] = {}

    def endpoint(
        fn: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """Bad bodies answer 4xx with one line; anything unexpected 500 without a
        traceback in the response (logged once); admission reviews deny in all cases."""

        async def wrapped(request: Request) -> Response:
            try:
                return await fn(request)
            except BodyTooLarge:
                return _refuse(request, "request body too large", 413)
            except BadBody as e:
                return _refuse(request, str(e), 400)
            except ClientDisconnect:
                return _error("client disconnected", 400)
            except Exception as e:  # fail closed: an error never admits
                log.error(
                    "internal error",
                    extra={"path": request.url.path, "error": f"{type(e).__name__}: {e}"[:500]},
                )
                return _refuse(request, f"internal error ({type(e).__name__})", 500)

        return wrapped

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    # -- generic API -----------------------------------------------------------------
    @endpoint
    async def v1_check(request: Request) -> Response:
        body = await read_json(request, max_body)
        ref = body.get("ref") if isinstance(body, dict) else None
        if not isinstance(ref, str) or not ref:
            return _error('expected {"ref": "oci://...|hf://...|PATH"}')
        try:
            service.admit_reference(ref)
        except MlverifyError as e:
            return _error(str(e), 403)
        verdict = await asyncio.wrap_future(service.submit(ref, refresh=bool(body.get("refresh"))))
        return JSONResponse(verdict.to_json(evidence=bool(body.get("evidence"))))

    async def verdicts(request: Request) -> Response:
        return JSONResponse(
            {"verdicts": [{"key": k, **v.to_json()} for k, v in service.verdicts().items()]}
        )

    # -- Kubernetes admission ------------------------------------------------------------
    @endpoint
    async def k8s_validate(request: Request) -> Response:
        review = await read_json(request, max_body)
        req = review.get("request") if isinstance(review, dict) else None
        if not isinstance(req, dict) or not isinstance(req.get("uid"), str):
            return _refuse(
                request, "expected an AdmissionReview (admission.k8s.io/v1) with a request", 400
            )
        allowed = True
        messages: list[str] = []
        warnings: list[str] = []
        if req.get("operation") != "DELETE":
            refs = references_in(req.get("object") or {})
            pending: list[tuple[str, concurrent.futures.Future[Verdict]]] = []
            for ref in refs:
                if service.config.require_digest and not is_pinned(ref):
                    allowed = False
                    messages.append(f"{ref}: not pinned by digest (use @sha256:... or a commit)")
                    continue
                try:
                    service.admit_reference(ref)
                except MlverifyError as e:
                    allowed = False
                    messages.append(str(e))
                    continue
                pending.append((ref, service.submit(ref)))
            for ref, fut in pending:
                try:
                    verdict = await asyncio.wait_for(
                        asyncio.shield(asyncio.wrap_future(fut)), service.config.check_timeout
                    )
                except asyncio.TimeoutError:
                    allowed = False
                    messages.append(
                        f"{ref}: verification still running (budget "
                        f"{service.config.check_timeout:g}s); retry shortly"
                    )
                    continue
                warnings.extend(admission_warning(ref, shown(w)) for w in verdict.warnings())
                if not verdict.allowed:
                    allowed = False
                    messages.extend(shown(f"{ref}: {m}") for m in verdict.messages() or ["denied"])
        response: dict[str, Any] = {"uid": req["uid"], "allowed": allowed}
        if not allowed:
            response["status"] = {
                "code": 403,
                "reason": "Forbidden",
                "message": shown("mlverify: " + "; ".join(messages)),
            }
        if warnings:
            response["warnings"] = warnings[:10]
        return JSONResponse(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )

    # -- registry notifications ------------------------------------------------------------
    def handle_push(host: str, repo: str, digest: str, tag: str) -> None:
        """Judge a pushed manifest; quarantine it only on a policy decision made with
        complete evidence. Operational errors (the registry answering 503, a pull cut
        short) are retried with backoff, logged, and never cached or acted on."""
        from mlverify._internal.oci import Registry

        ref = f"oci://{host}/{repo}@{digest}"
        reg = Registry(host, insecure_http=service.config.plain_http)
        retries = service.config.event_retries
        data = b""
        for attempt in range(retries + 1):
            try:
                data, _, _ = reg.get_manifest(repo, digest)
                manifest = json.loads(data)
                break
            except (MlverifyError, ValueError) as e:
                if attempt == retries:
                    log.warning(
                        "event: manifest unreadable, not judged",
                        extra={"ref": ref, "error": str(e)},
                    )
                    return
                time.sleep(service.config.retry_backoff * 2**attempt)
        config_type = str((manifest.get("config") or {}).get("mediaType", ""))
        if manifest.get("subject") or config_type in (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.docker.container.image.v1+json",
        ):
            log.info("event: not a model, skipped", extra={"ref": ref})
            return
        for attempt in range(retries + 1):
            verdict = service.submit(ref, refresh=attempt > 0).result()
            if verdict.result is not None:
                break
            log.warning(
                "event: check failed (operational error)",
                extra={"ref": ref, "error": verdict.error or verdict.note, "attempt": attempt + 1},
            )
            if attempt < retries:
                time.sleep(service.config.retry_backoff * 2**attempt)
        if verdict.result is None:
            log.error(
                "event: not judged after retries; not quarantined",
                extra={"ref": ref, "error": verdict.error or verdict.note},
            )
            return
        service.remember(ref, verdict)
        if verdict.allowed or service.config.quarantine == "none":
            return
        try:
            if service.config.quarantine == "delete":
                reg.delete_manifest(repo, digest)
            else:
                reg.push_manifest(
                    repo,
                    "quarantined-" + digest.split(":", 1)[1][:64],
                    data,
                    str(manifest.get("mediaType") or OCI_MANIFEST),
                )
            log.warning(
                "quarantined",
                extra={"ref": ref, "mode": service.config.quarantine, "tag": tag},
            )
        except MlverifyError as e:
            log.error("quarantine failed", extra={"ref": ref, "error": str(e)})

    @endpoint
    async def registry_events(request: Request) -> Response:
        from urllib.parse import urlsplit

        envelope = await read_json(request, max_body)
        events = envelope.get("events") if isinstance(envelope, dict) else None
        if not isinstance(events, list):
            return _error('expected {"events": [...]}')
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
            if not (digest and repo and host) or service.cached(ref) is not None:
                continue  # already judged (also our own quarantine tag's push)
            try:
                service.admit_reference(ref)
            except MlverifyError as e:
                log.warning("event: registry not configured", extra={"ref": ref, "error": str(e)})
                continue
            tag = str(target.get("tag", ""))
            if tag.startswith("quarantined-"):
                continue
            asyncio.get_running_loop().run_in_executor(None, handle_push, host, repo, digest, tag)
            queued += 1
        return JSONResponse({"queued": queued})

    # -- Harbor pluggable scanner API v1.2 --------------------------------------------------
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
        job = HarborJob(uuid.uuid4().hex, repo, digest, service.submit(ref, authorization=auth))
        harbor_jobs[job.id] = job
        if len(harbor_jobs) > 10_000:  # keep the newest
            for old in sorted(harbor_jobs.values(), key=lambda j: j.created)[:1000]:
                harbor_jobs.pop(old.id, None)
        return JSONResponse({"id": job.id}, status_code=202, media_type=HARBOR_SCAN_RESPONSE)

    async def harbor_report(request: Request) -> Response:
        job = harbor_jobs.get(request.path_params["id"])
        if job is None:
            return JSONResponse(
                {"error": {"message": "unknown scan request id"}},
                status_code=404,
                media_type=HARBOR_ERROR,
            )
        if not job.future.done():
            return Response(status_code=302, headers={"Refresh-After": "1"})
        verdict = job.future.result()
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

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/check", v1_check, methods=["POST"]),
        Route("/v1/verdicts", verdicts, methods=["GET"]),
        Route("/k8s/validate", k8s_validate, methods=["POST"]),
        Route("/registry/events", registry_events, methods=["POST"]),
        Route("/api/v1/metadata", harbor_metadata, methods=["GET"]),
        Route("/api/v1/scan", harbor_scan, methods=["POST"]),
        Route("/api/v1/scan/{id}/report", harbor_report, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    return Guard(app, token, max_body)


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
