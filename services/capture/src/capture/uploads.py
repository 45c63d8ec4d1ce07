"""``/v1/transcriptions``: the native file upload, and any session's transcript from the store."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from capture.auth import UNAUTHORIZED, authorized
from capture.file_transcription import (
    FileTranscript,
    UploadRefused,
    receive_file,
    start_file_transcription,
)
from capture.hub import Hub
from capture.stored_sessions import (
    AggregatorUnavailable,
    StoredSession,
    UnknownEngine,
    read_stored_session,
)
from capture.transcripts import transcript_json
from echostream_shared.logging import get_logger

log = get_logger("uploads")

TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
NEW_SESSION_GRACE_S = 1.0
GRACE_POLL_S = 0.1
NO_STORE = "no aggregator answered: the transcript store is unavailable; retry"


def problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def create_transcription(request: Request) -> Response:
    """Accept a file (multipart field ``file``, or the raw body) and transcribe it."""
    hub: Hub = request.app.state.hub
    if not authorized(request, hub.settings.token):
        return problem(401, UNAUTHORIZED)
    engine = request.query_params.get("engine") or hub.settings.engines[0]
    if engine not in hub.settings.engines:
        return problem(400, f"engine {engine!r} is not one of {list(hub.settings.engines)}")
    try:
        received = await receive_file(request, hub)
        job = await start_file_transcription(hub, received, engine=engine, client="file")
    except UploadRefused as refused:
        return problem(refused.status, refused.message)
    if request.query_params.get("wait", "true").lower() in ("0", "false", "no"):
        return JSONResponse(_accepted(job.session_id), status_code=202)
    with structlog.contextvars.bound_contextvars(session_id=job.session_id):
        return _finished(await job.result())


async def get_transcription(request: Request) -> Response:
    """The transcript of any session, as far as it goes, read from the aggregator's store."""
    hub: Hub = request.app.state.hub
    if not authorized(request, hub.settings.token):
        return problem(401, UNAUTHORIZED)
    session_id = request.path_params["session_id"]
    engine = request.query_params.get("engine") or None
    if not TOKEN.fullmatch(session_id):
        return problem(404, "no such transcription")
    if engine is not None and not TOKEN.fullmatch(engine):
        return problem(400, f"engine {engine[:64]!r} is not an engine name")
    try:
        stored = await _read_new_or_old(hub, session_id, engine)
    except UnknownEngine as exc:
        return problem(400, str(exc))
    except AggregatorUnavailable as exc:
        log.warning("transcription.store_unavailable", session_id=session_id, error=str(exc))
        return problem(503, NO_STORE)
    if stored is None:
        return problem(404, "no such transcription")
    complete = stored.closed and stored.complete
    body = transcript_json(session_id, stored.engine, stored.duration_s, stored.finals, complete)
    return JSONResponse(body)


async def _read_new_or_old(hub: Hub, session_id: str, engine: str | None) -> StoredSession | None:
    """The stored session; one that is not stored yet gets ``NEW_SESSION_GRACE_S`` to appear.

    A ``202`` names its session before the aggregator has stored its opening, and a client may
    poll the ``status_url`` at once.
    """
    deadline = time.monotonic() + NEW_SESSION_GRACE_S
    while True:
        stored = await read_stored_session(hub.bus, session_id, engine=engine)
        if stored is not None or time.monotonic() >= deadline:
            return stored
        await asyncio.sleep(GRACE_POLL_S)


def _accepted(session_id: str) -> dict[str, Any]:
    return {
        "id": session_id,
        "status": "processing",
        "status_url": f"/v1/transcriptions/{session_id}",
    }


def _finished(transcript: FileTranscript) -> Response:
    body = transcript_json(
        transcript.session_id,
        transcript.engine,
        transcript.duration_s,
        transcript.finals,
        transcript.complete,
    )
    if transcript.failure is not None:
        # The engine gave up for good: waiting longer will not help. The body keeps what was
        # transcribed before; the audio is stored under the session id.
        body |= {"status": "failed", "failure": transcript.failure}
        return JSONResponse(body, status_code=502)
    if not transcript.complete:
        body |= _accepted(transcript.session_id)
    return JSONResponse(body, status_code=200 if transcript.complete else 202)
