"""The posture page: ``GET /report`` (behind the same token as every other route).

Built from the service's verdict store (in process: the latest verdict of each
reference it judged; distributed: the shared store), the newest
:data:`~mlverify._internal.report.verdicts.PAGE_LIMIT` verdicts at most (the page says
when there are more), with the coverage of the service's own policies. Rendering takes
CPU (the charts), so one page is rendered at a time and reused for a few seconds.

Everything on the page that comes from a verdict (names, reasons) is escaped by the
renderer; the response forbids every external load and every script
(``Content-Security-Policy``), and content sniffing.
"""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlverify._internal.errors import MlverifyError
from mlverify._internal.serve.http import endpoint, error
from mlverify._internal.serve.service import Service

#: seconds a rendered page is reused
PAGE_SECONDS = 5.0
#: the page loads nothing and runs nothing; inline styles only (its own, and the SVG's)
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def render_page(service: Service) -> str:
    """The page for what ``service`` has decided (blocking: run it off the event loop)."""
    from mlverify._internal.atlas.coverage import coverage_json
    from mlverify._internal.cli.bom_cmd import needs
    from mlverify._internal.report.html import render_html
    from mlverify._internal.report.verdicts import limit_note, store_documents

    needs("matplotlib", "matplotlib", "the posture page (/report)")
    docs, more = store_documents(service.store)
    return render_html(
        docs,
        coverage=coverage_json(service.config.policies),
        title="mlverify posture (serve)",
        note=limit_note(len(docs), more),
    )


def routes(service: Service, max_body: int) -> list[Route]:
    lock = asyncio.Lock()
    last: dict[str, tuple[float, str]] = {}

    @endpoint
    async def report(request: Request) -> Response:
        async with lock:  # one render at a time; waiting requests take the page it made
            made = last.get("page")
            if made is None or time.monotonic() - made[0] > PAGE_SECONDS:
                try:
                    page = await asyncio.get_running_loop().run_in_executor(
                        None, render_page, service
                    )
                except MlverifyError as e:  # the store is down, matplotlib missing
                    return error(str(e), 503)
                made = last["page"] = (time.monotonic(), page)
        return Response(made[1], media_type="text/html; charset=utf-8", headers=HEADERS)

    return [Route("/report", report, methods=["GET"])]
