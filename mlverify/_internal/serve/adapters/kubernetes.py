"""Kubernetes admission: ``POST /k8s/validate`` (AdmissionReview v1; every model location
the object names, :func:`~mlverify._internal.serve.service.references_in`). A miss is
waited on within ``check_timeout``, then denied ("retry shortly"); a model named in a way
the webhook cannot resolve is denied: never admitted unjudged."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlverify._internal.errors import MlverifyError
from mlverify._internal.serve.http import admission_warning, endpoint, read_json, refuse
from mlverify._internal.serve.service import Service, Verdict, is_pinned, references_in
from mlverify._internal.text import shown


def routes(service: Service, max_body: int) -> list[Route]:
    @endpoint
    async def k8s_validate(request: Request) -> Response:
        review = await read_json(request, max_body)
        req = review.get("request") if isinstance(review, dict) else None
        if not isinstance(req, dict) or not isinstance(req.get("uid"), str):
            return refuse(
                request, "expected an AdmissionReview (admission.k8s.io/v1) with a request", 400
            )
        allowed = True
        messages: list[str] = []
        warnings: list[str] = []
        if req.get("operation") != "DELETE":
            named = references_in(req.get("object") or {})
            if named.unresolved:  # a model named in a way that cannot be judged: a deny
                allowed = False
                messages.extend(named.unresolved)
            pending: list[tuple[str, concurrent.futures.Future[Verdict]]] = []
            for ref in named.refs:
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

    return [Route("/k8s/validate", k8s_validate, methods=["POST"])]
