"""``/v1/library/…``: the aggregator's session API, passed through for the browser page.

The page reaches the library on its own origin, so it needs no CORS and no second public port,
and the aggregator's token stays on the server. Only the routes the page uses pass, with only
the query parameters they take; the live feed streams through as it comes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from capture.auth import UNAUTHORIZED, authorized
from capture.hub import Hub
from echostream_shared.logging import get_logger

log = get_logger("library")

ONE_SESSION = re.compile(r"sessions/[A-Za-z0-9_-]{1,64}")
ROUTES = re.compile(r"sessions(/[A-Za-z0-9_-]{1,64}(/export\.(txt|json|srt|vtt)|/feed)?)?")
FORWARDED_QUERY = frozenset({"limit", "offset", "q", "engine"})
PASSED_HEADERS = frozenset({"content-type", "content-disposition", "cache-control"})
TIMEOUT = httpx.Timeout(10.0, read=60.0)  # the feed sends a keepalive every 15 s
UNREACHABLE = "the session library (aggregator) is unreachable; retry"


def problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def library(request: Request) -> Response:
    """``GET`` (and ``DELETE`` of one session) on the aggregator's ``/v1/<path>``."""
    hub: Hub = request.app.state.hub
    if not authorized(request, hub.settings.token):
        return problem(401, UNAUTHORIZED)
    path = request.path_params["path"]
    if not ROUTES.fullmatch(path):
        return problem(404, "no such library route")
    if request.method == "DELETE" and not ONE_SESSION.fullmatch(path):
        return problem(405, "only a session can be deleted")
    settings = hub.settings
    params = {k: v for k, v in request.query_params.items() if k in FORWARDED_QUERY}
    headers = {"Accept": request.headers.get("accept", "*/*")}
    if settings.aggregator_token is not None:
        headers["Authorization"] = f"Bearer {settings.aggregator_token.get_secret_value()}"
    client = httpx.AsyncClient(base_url=settings.aggregator_url, timeout=TIMEOUT)
    try:
        upstream = await client.send(
            client.build_request(request.method, f"/v1/{path}", params=params, headers=headers),
            stream=True,
        )
    except httpx.HTTPError as exc:
        await client.aclose()
        log.warning("library.unreachable", url=settings.aggregator_url, error=repr(exc))
        return problem(503, UNREACHABLE)
    if upstream.status_code == 401:
        await upstream.aclose()
        await client.aclose()
        log.error("library.aggregator_refused_token")
        return problem(502, "the aggregator refused capture's ECHOSTREAM_CAPTURE_AGGREGATOR_TOKEN")

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            log.warning("library.stream_broken", error=repr(exc))
        finally:
            await upstream.aclose()
            await client.aclose()

    passed = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_HEADERS}
    return StreamingResponse(body(), status_code=upstream.status_code, headers=passed)
