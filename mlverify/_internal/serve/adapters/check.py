"""The generic API: ``POST /v1/check`` and ``GET /v1/verdicts`` (and ``GET /metrics``)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlverify._internal.errors import MlverifyError
from mlverify._internal.serve.http import endpoint, error, read_json
from mlverify._internal.serve.service import Service


def routes(service: Service, max_body: int) -> list[Route]:
    @endpoint
    async def v1_check(request: Request) -> Response:
        body = await read_json(request, max_body)
        ref = body.get("ref") if isinstance(body, dict) else None
        if not isinstance(ref, str) or not ref:
            return error('expected {"ref": "oci://...|hf://...|PATH"}')
        try:
            service.admit_reference(ref)
        except MlverifyError as e:
            return error(str(e), 403)
        verdict = await asyncio.wrap_future(service.submit(ref, refresh=bool(body.get("refresh"))))
        return JSONResponse(verdict.to_json(evidence=bool(body.get("evidence"))))

    async def verdicts(request: Request) -> Response:
        return JSONResponse(
            {"verdicts": [{"key": k, **v.to_json()} for k, v in service.verdicts().items()]}
        )

    async def metrics(request: Request) -> Response:
        try:
            from mlverify._internal.distributed.metrics import exposition
        except ImportError:  # pragma: no cover - part of this package
            return error("metrics unavailable", 404)
        try:
            body, ctype = exposition()
        except MlverifyError as e:
            return error(str(e), 404)
        return Response(body, media_type=ctype)

    return [
        Route("/v1/check", v1_check, methods=["POST"]),
        Route("/v1/verdicts", verdicts, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
