"""The ``mlverify serve`` application: the admission adapters' routes behind one guard.

Routes (each adapter in :mod:`mlverify._internal.serve.adapters` offers its own):

- ``GET  /healthz``                         liveness, no token
- ``POST /v1/check``                        ``{"ref": ..., "refresh": false, "evidence": false}``
- ``GET  /v1/verdicts``                     verdicts recorded (cache or store)
- ``GET  /metrics``                         Prometheus metrics
- ``POST /k8s/validate``                    AdmissionReview v1 (KServe storageUri, image volumes)
- ``POST /registry/events``                 CNCF distribution notifications
- ``GET  /api/v1/metadata``, ``POST /api/v1/scan``, ``GET /api/v1/scan/{id}/report``
                                            Harbor pluggable scanner API v1.2
"""

from __future__ import annotations

import contextlib
import hmac
import importlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mlverify._internal.serve.adapters import ADAPTERS
from mlverify._internal.serve.http import (  # noqa: F401 - re-exported for callers and tests
    MAX_JSON_DEPTH,
    BadBody,
    BodyTooLarge,
    admission_response,
    admission_warning,
    parse_json_body,
    read_json,
)
from mlverify._internal.serve.service import Service
from mlverify._internal.version import __version__

log = logging.getLogger("mlverify._internal.serve")


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


def build_app(service: Service, *, token: str | None, max_body: int = 1 << 20) -> ASGIApp:
    """The ASGI application: every adapter's routes, wrapped in :class:`Guard`."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    for name in ADAPTERS:
        routes.extend(importlib.import_module(name).routes(service, max_body))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    return Guard(app, token, max_body)
