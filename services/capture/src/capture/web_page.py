"""The browser page at ``/``: its static files, its configuration and its short-lived tokens."""

from __future__ import annotations

import hmac
from pathlib import Path

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

from capture.auth import SCHEMES, UNAUTHORIZED
from capture.config import CaptureSettings
from capture.hub import Hub
from echostream_shared import browser_tokens

WEB_DIR = Path(__file__).parent / "web"
NO_STORE = {"Cache-Control": "no-store"}


def cors_middleware(settings: CaptureSettings) -> list[Middleware]:
    """CORS for the configured origins only; none configured (the default) adds nothing."""
    if not settings.cors_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Content-Disposition"],
        )
    ]


def static_files() -> StaticFiles:
    """The page's modules, styles and AudioWorklet, served under ``/web``."""
    return StaticFiles(directory=WEB_DIR)


async def index(_request: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def page_config(request: Request) -> JSONResponse:
    """What the page needs before signing in: whether a token is needed, the engines, status."""
    hub: Hub = request.app.state.hub
    settings = hub.settings
    return JSONResponse(
        {
            "auth": settings.token is not None,
            "engines": list(settings.engines),
            "token_ttl_s": settings.browser_token_ttl_s,
            "workers": {engine: hub.workers.workers(engine) for engine in settings.engines},
            "lag_s": {engine: round(hub.workers.lag_s(engine), 2) for engine in settings.engines},
        },
        headers=NO_STORE,
    )


async def browser_token(request: Request) -> JSONResponse:
    """Trade the long-lived token, sent in a header, for one that expires (``POST``).

    A browser token cannot mint another, so one read from a log stops working when it expires.
    """
    hub: Hub = request.app.state.hub
    secret = hub.settings.token
    if secret is None:
        return JSONResponse({"token": None, "expires_at": None}, headers=NO_STORE)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given = given.strip()
    valid = (
        scheme.lower() in SCHEMES
        and not browser_tokens.is_browser_token(given)
        and hmac.compare_digest(given.encode(), secret.get_secret_value().encode())
    )
    if not valid:
        return JSONResponse(
            {"detail": UNAUTHORIZED},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer", **NO_STORE},
        )
    minted = browser_tokens.mint(secret, hub.settings.browser_token_ttl_s)
    return JSONResponse({"token": minted.token, "expires_at": minted.expires_at}, headers=NO_STORE)
