"""What every adapter's routes share: bounded JSON bodies, one-line errors, and the
endpoint wrapper that fails closed (an admission review is denied in every case)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("mlverify._internal.serve")

Handler = Callable[[Request], Awaitable[Response]]


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


def error(message: str, status: int = 400) -> JSONResponse:
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


def refuse(request: Request, message: str, status: int) -> JSONResponse:
    """An error answer; on the admission route also an AdmissionReview that denies."""
    if request.url.path == "/k8s/validate":
        doc = admission_response("", False, f"mlverify: {message}")
        return JSONResponse({**doc, "error": message}, status_code=status)
    return error(message, status)


def endpoint(fn: Handler) -> Handler:
    """Bad bodies answer 4xx with one line; anything unexpected 500 without a
    traceback in the response (logged once); admission reviews deny in all cases."""

    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except BodyTooLarge:
            return refuse(request, "request body too large", 413)
        except BadBody as e:
            return refuse(request, str(e), 400)
        except ClientDisconnect:
            return error("client disconnected", 400)
        except Exception as e:  # fail closed: an error never admits
            log.error(
                "internal error",
                extra={"path": request.url.path, "error": f"{type(e).__name__}: {e}"[:500]},
            )
            return refuse(request, f"internal error ({type(e).__name__})", 500)

    return wrapped
