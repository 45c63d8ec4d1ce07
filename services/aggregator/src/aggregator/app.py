"""The HTTP application: ``/v1`` sessions, ``/health``, ``/metrics`` and the OpenAPI docs."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError

from aggregator.api_models import Health
from aggregator.routes import Backend, sessions_router
from echostream_shared.logging import get_logger

log = get_logger("api")

HEALTHY = frozenset({"ok", "degraded"})


def create_app(backend: Backend, health: Callable[[], Mapping[str, object]]) -> FastAPI:
    """The FastAPI app over a store and a bus."""
    app = FastAPI(
        title="EchoStream aggregator",
        version="1",
        description="Sessions stitched from EchoStream's transcripts: search, read, export, "
        "follow live, delete.",
    )
    app.include_router(sessions_router(backend))
    if backend.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(backend.settings.cors_origins),
            allow_methods=["GET", "DELETE"],
            allow_headers=["Authorization"],
            expose_headers=["Content-Disposition"],
        )

    @app.exception_handler(DBAPIError)
    async def database_unavailable(_request: Request, exc: DBAPIError) -> JSONResponse:
        log.error("database.error", error=type(exc.orig).__name__ if exc.orig else repr(exc))
        return JSONResponse({"detail": "the database is unavailable; retry"}, status_code=503)

    @app.get(
        "/health",
        tags=["probes"],
        response_model=Health,
        responses={503: {"model": Health, "description": "unhealthy"}},
    )
    async def get_health() -> JSONResponse:
        report = dict(health())
        status = str(report.pop("status", "error"))
        body = Health(status=status, details=report)
        return JSONResponse(body.model_dump(), status_code=200 if status in HEALTHY else 503)

    @app.get(
        "/metrics",
        tags=["probes"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def get_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
