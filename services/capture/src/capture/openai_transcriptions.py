"""``POST /v1/audio/transcriptions``: OpenAI's file transcription API on the live pipeline.

The file streams through capture's VAD and the engine like any upload; ``model`` picks the engine
when it names a configured one (``whisper-1`` and the like get the default engine). Answers in
the format asked for, or as server-sent events with ``stream=true``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from capture import metrics
from capture.auth import authorized
from capture.file_transcription import (
    FileTranscript,
    ReceivedFile,
    UploadRefused,
    receive_file,
    start_file_transcription,
)
from capture.hub import Hub
from capture.openai_transcription_formats import (
    ENGINE_FAILED,
    BadField,
    Options,
    error_body,
    json_body,
    srt_text,
    text_of,
    verbose_json_body,
    vtt_text,
)
from echostream_shared import messages as m
from echostream_shared.logging import get_logger

log = get_logger("openai_transcriptions")

PROTOCOL = "openai"
SESSION_HEADER = "x-echostream-session-id"
COMPLETE_HEADER = "x-echostream-complete"


def openai_error(status: int, message: str, *, param: str | None, code: str | None) -> Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = error_body(message, kind=kind, param=param, code=code)
    return JSONResponse(body, status_code=status)


def engine_for(hub: Hub, model: str | None) -> str:
    """The engine a model name asks for: a configured engine by name, else the default one."""
    engines = hub.settings.engines
    return model if model in engines else engines[0]


async def create_transcription(request: Request) -> Response:
    """Transcribe the uploaded ``file`` and answer as OpenAI's API does."""
    hub: Hub = request.app.state.hub
    if not authorized(request, hub.settings.token):
        metrics.PROTOCOL_ERRORS.labels(PROTOCOL, "unauthorized").inc()
        return openai_error(401, "Incorrect API key provided.", param=None, code="invalid_api_key")
    try:
        received = await receive_file(request, hub)
    except UploadRefused as exc:
        return _refused(exc)
    try:
        options = Options.parse(received.fields)
    except BadField as exc:
        received.discard()
        metrics.PROTOCOL_ERRORS.labels(PROTOCOL, "invalid_value").inc()
        return openai_error(400, exc.message, param=exc.param, code="invalid_value")
    if options.stream:
        return await _stream(hub, received, options)
    try:
        job = await start_file_transcription(
            hub,
            received,
            engine=engine_for(hub, options.model),
            client=PROTOCOL,
            metadata=_metadata(options),
        )
    except UploadRefused as exc:
        return _refused(exc)
    with structlog.contextvars.bound_contextvars(session_id=job.session_id):
        transcript = await job.result()
        if not transcript.complete:
            log.warning("openai.transcription_incomplete", failure=transcript.failure)
    if transcript.failure is not None:
        return _failed(transcript)
    return _answer(transcript, options)


def _failure_message(transcript: FileTranscript) -> str:
    return (
        f"The transcription engine failed: {transcript.failure}. The audio is stored as "
        f"session {transcript.session_id}."
    )


def _failed(transcript: FileTranscript) -> Response:
    """The engine gave up on the file: OpenAI's error body, 502."""
    response = openai_error(502, _failure_message(transcript), param=None, code=ENGINE_FAILED)
    response.headers[SESSION_HEADER] = transcript.session_id
    response.headers[COMPLETE_HEADER] = "false"
    return response


def _answer(transcript: FileTranscript, options: Options) -> Response:
    headers = {
        SESSION_HEADER: transcript.session_id,
        COMPLETE_HEADER: "true" if transcript.complete else "false",
    }
    fmt = options.response_format
    if fmt == "text":
        return PlainTextResponse(text_of(transcript.finals) + "\n", headers=headers)
    if fmt == "srt":
        return PlainTextResponse(srt_text(transcript.finals), headers=headers)
    if fmt == "vtt":
        return Response(vtt_text(transcript.finals), media_type="text/vtt", headers=headers)
    if fmt == "verbose_json":
        body = verbose_json_body(transcript, options.granularities)
        return JSONResponse(body, headers=headers)
    return JSONResponse(json_body(transcript), headers=headers)


async def _stream(hub: Hub, received: ReceivedFile, options: Options) -> Response:
    """``stream=true``: a ``transcript.text.delta`` per final, then ``transcript.text.done``."""
    finals: asyncio.Queue[m.TranscriptFinal | None] = asyncio.Queue()

    async def on_final(final: m.TranscriptFinal) -> None:
        finals.put_nowait(final)

    try:
        job = await start_file_transcription(
            hub,
            received,
            engine=engine_for(hub, options.model),
            client=PROTOCOL,
            metadata=_metadata(options),
            on_final=on_final,
        )
    except UploadRefused as exc:
        return _refused(exc)
    outcome = asyncio.ensure_future(job.result())

    def finished(future: asyncio.Future[FileTranscript]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved even when the client left; the stream reports it
        finals.put_nowait(None)

    outcome.add_done_callback(finished)

    async def events() -> AsyncIterator[str]:
        sent: list[str] = []
        while (final := await finals.get()) is not None:
            if text := final.text.strip():
                yield _sse({"type": "transcript.text.delta", "delta": (" " if sent else "") + text})
                sent.append(text)
        if outcome.exception() is not None:
            log.warning("openai.stream_failed", error=repr(outcome.exception()))
            message = "the transcription failed; the audio received is stored"
            yield _sse(error_body(message, kind="server_error", param=None, code="internal"))
            return
        if (transcript := outcome.result()).failure is not None:
            message = _failure_message(transcript)
            yield _sse(error_body(message, kind="server_error", param=None, code=ENGINE_FAILED))
            return
        yield _sse({"type": "transcript.text.done", "text": " ".join(sent)})

    headers = {SESSION_HEADER: job.session_id, "cache-control": "no-store"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n"


def _metadata(options: Options) -> dict[str, str]:
    return {"model": options.model[:64]} if options.model else {}


def _refused(exc: UploadRefused) -> Response:
    metrics.PROTOCOL_ERRORS.labels(PROTOCOL, exc.code).inc()
    param = "file" if exc.code in ("missing_file", "undecodable", "upload_too_large") else None
    return openai_error(exc.status, exc.message, param=param, code=exc.code)
