"""``/v1``: list, search, read, export, follow and delete sessions."""

# Annotations stay evaluated: FastAPI reads the page-size limits from the closure.

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from fastapi.sse import EventSourceResponse, format_sse_event
from nats.errors import Error as NatsError

from aggregator import exports, metrics
from aggregator.api_models import Problem, SessionDetail, SessionPage
from aggregator.auth import token_check
from aggregator.config import AggregatorSettings
from aggregator.feed import FINAL_KINDS, FeedPublisher, FeedReader
from aggregator.purge import purge_session
from aggregator.queries import list_sessions, load_session
from aggregator.store import SessionStore
from aggregator.views import choose_engine, detail, summary
from echostream_shared import messages as m
from echostream_shared.bus import Bus
from echostream_shared.logging import get_logger

log = get_logger("api")

TOKEN = r"^[A-Za-z0-9_-]{1,64}$"
SessionId = Annotated[str, Path(pattern=TOKEN, description="session id")]
Engine = Annotated[
    str | None,
    Query(pattern=TOKEN, description="engine whose transcript to use; the primary by default"),
]
KEEPALIVE_S = 15.0
FEED_EVENT = {
    "description": "one server-sent event; data is a SessionDetail (snapshot) or a "
    "SessionUpdate (update) as JSON",
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["snapshot", "update"]},
        "data": {"type": "string"},
    },
    "required": ["event", "data"],
}
MAX_OFFSET = 1_000_000_000


def _problem(description: str) -> dict[str, Any]:
    # Given as content, not as a model, so routes that answer text still document JSON errors.
    return {
        "description": description,
        "content": {"application/json": {"schema": Problem.model_json_schema()}},
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    401: _problem("a token is configured and was not given"),
    404: _problem("no such session, or no such engine in it"),
}


@dataclass(frozen=True)
class Backend:
    """What the routes work with."""

    store: SessionStore
    bus: Bus
    feed: FeedPublisher
    settings: AggregatorSettings


def sessions_router(backend: Backend) -> APIRouter:
    """The ``/v1`` routes, behind the token check."""
    settings = backend.settings
    # Without a token the API is open, and the OpenAPI document says so (no security scheme).
    guarded = settings.api_token is not None
    router = APIRouter(
        prefix="/v1",
        tags=["sessions"],
        dependencies=[Depends(token_check(settings.api_token))] if guarded else [],
        responses=ERRORS if guarded else {404: ERRORS[404]},
    )
    db = backend.store.engine

    async def session_for(session_id: str, engine: str | None) -> SessionDetail:
        found = await load_session(db, session_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"session {session_id} not found")
        chosen = choose_engine(found, engine, settings.primary_engine)
        if chosen is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, detail=f"session {session_id} has no engine {engine}"
            )
        record = await load_session(db, session_id, chosen)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"session {session_id} not found")
        return detail(record, chosen)

    @router.get("/sessions", summary="List and search sessions, newest first")
    async def list_(
        limit: Annotated[int, Query(ge=1, le=settings.max_page_size)] = settings.page_size,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        q: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=200,
                pattern=r"^[^\x00]+$",
                description="case-insensitive text to find in transcripts or session ids",
            ),
        ] = None,
    ) -> SessionPage:
        records, total = await list_sessions(db, query=q, limit=limit, offset=offset)
        items = [
            summary(record, choose_engine(record, None, settings.primary_engine) or "")
            for record in records
        ]
        following = offset + len(items)
        return SessionPage(
            items=items,
            total=total,
            limit=limit,
            offset=offset,
            next_offset=following if following < total else None,
        )

    @router.get("/sessions/{session_id}", summary="One session as one engine transcribed it")
    async def get(session_id: SessionId, engine: Engine = None) -> SessionDetail:
        return await session_for(session_id, engine)

    @router.delete(
        "/sessions/{session_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Delete a session, and its audio and transcripts on the bus",
        responses={503: _problem("the bus could not be purged")},
    )
    async def delete(session_id: SessionId) -> Response:
        if await load_session(db, session_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"session {session_id} not found")
        try:
            await purge_session(backend.bus.js, session_id)
        except NatsError as exc:
            log.error("session.purge_failed", session_id=session_id, error=repr(exc))
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail="the bus could not be purged; retry"
            ) from exc
        await backend.store.delete(session_id)
        metrics.DELETED_SESSIONS.inc()
        log.info("session.deleted", session_id=session_id)
        await backend.feed.publish(
            [m.SessionUpdate(session_id=session_id, kind="session.deleted", updated_at=time.time())]
        )
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get(
        "/sessions/{session_id}/export.txt",
        response_class=PlainTextResponse,
        summary="Transcript as plain text, one segment per line",
    )
    async def export_txt(session_id: SessionId, engine: Engine = None) -> PlainTextResponse:
        session = await session_for(session_id, engine)
        return _download(exports.to_text(session), "text/plain; charset=utf-8", session_id, "txt")

    @router.get("/sessions/{session_id}/export.json", summary="The whole session as JSON")
    async def export_json(session_id: SessionId, engine: Engine = None) -> SessionDetail:
        return await session_for(session_id, engine)

    @router.get(
        "/sessions/{session_id}/export.srt",
        response_class=PlainTextResponse,
        summary="Transcript as SubRip subtitles",
        responses={200: {"content": {"application/x-subrip": {"schema": {"type": "string"}}}}},
    )
    async def export_srt(session_id: SessionId, engine: Engine = None) -> PlainTextResponse:
        session = await session_for(session_id, engine)
        return _download(exports.to_srt(session), "application/x-subrip", session_id, "srt")

    @router.get(
        "/sessions/{session_id}/export.vtt",
        response_class=PlainTextResponse,
        summary="Transcript as WebVTT subtitles",
        responses={200: {"content": {"text/vtt": {"schema": {"type": "string"}}}}},
    )
    async def export_vtt(session_id: SessionId, engine: Engine = None) -> PlainTextResponse:
        session = await session_for(session_id, engine)
        return _download(exports.to_webvtt(session), "text/vtt; charset=utf-8", session_id, "vtt")

    @router.get(
        "/sessions/{session_id}/feed",
        response_class=Response,
        responses={200: {"content": {"text/event-stream": {"schema": FEED_EVENT}}}},
        summary="Live feed: a 'snapshot' event, then an 'update' per change, until complete",
    )
    async def feed(
        session_id: SessionId, request: Request, engine: Engine = None
    ) -> EventSourceResponse:
        # Subscribe before the snapshot, so no change falls between the two.
        reader = await FeedReader.open(backend.bus.nc, session_id)
        try:
            snapshot = await session_for(session_id, engine)
        except BaseException:
            await reader.close()
            raise

        async def events() -> AsyncIterator[bytes]:
            metrics.FEED_LISTENERS.inc()
            try:
                yield format_sse_event(event="snapshot", data_str=snapshot.model_dump_json())
                if snapshot.complete:
                    return
                while not await request.is_disconnected():
                    update = await reader.next(KEEPALIVE_S)
                    if update is None:
                        yield format_sse_event(comment="keepalive")
                    elif update.engine in (None, snapshot.engine):
                        yield format_sse_event(event="update", data_str=update.model_dump_json())
                        if update.kind in FINAL_KINDS:
                            return
            finally:
                metrics.FEED_LISTENERS.dec()
                await reader.close()

        return EventSourceResponse(events())

    return router


def _download(body: str, media_type: str, session_id: str, extension: str) -> PlainTextResponse:
    return PlainTextResponse(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{session_id}.{extension}"'},
    )
