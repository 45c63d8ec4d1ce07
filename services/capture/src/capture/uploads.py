"""``POST /v1/transcriptions``: a whole file through the live pipeline, faster than real time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import structlog
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive

from capture import metrics
from capture.audio import AudioDecodeError, AudioFormat, Normalizer, Pcm16, decode_file
from capture.auth import UNAUTHORIZED, authorized
from capture.completion import is_transcribed, transcribed
from capture.hub import Hub
from capture.session import Session
from capture.transcripts import SessionRecord, finals, session_record, transcript_json
from echostream_shared import messages as m
from echostream_shared.logging import get_logger

log = get_logger("uploads")

RATE = m.SAMPLE_RATE
SOURCE = "file"


class UploadTooLarge(Exception):
    """The body exceeded ``max_upload_bytes``."""


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
        path, filename = await _receive_file(request, hub.settings.max_upload_bytes)
    except UploadTooLarge:
        metrics.UPLOADS.labels("too_large").inc()
        return problem(413, f"upload exceeds {hub.settings.max_upload_bytes} bytes")
    except ValueError as exc:
        return problem(400, str(exc))
    blocks = _Blocks(path)
    try:
        await blocks.open()
    except AudioDecodeError as exc:
        _remove(path)
        metrics.UPLOADS.labels("undecodable").inc()
        return problem(415, str(exc))
    session = Session(
        hub.bus,
        hub.ingest,
        client="file",
        engines=hub.settings.engines,
        metadata={"filename": filename[:256]},
        abort=hub.abort,
    )
    with structlog.contextvars.bound_contextvars(session_id=session.session_id):
        await session.open()
        streaming = asyncio.ensure_future(_stream(hub, session, path, blocks))
        hub.spawn(streaming)
        if request.query_params.get("wait", "true").lower() in ("0", "false", "no"):
            return JSONResponse(_accepted(session.session_id), status_code=202)
        return await _respond_when_done(hub, session, engine, streaming)


async def get_transcription(request: Request) -> Response:
    """The transcript of a session, as far as it goes, read from the bus."""
    hub: Hub = request.app.state.hub
    if not authorized(request, hub.settings.token):
        return problem(401, UNAUTHORIZED)
    session_id = request.path_params["session_id"]
    record = await session_record(hub.bus, session_id) if _is_token(session_id) else None
    if record is None:
        return problem(404, "no such transcription")
    engine = request.query_params.get("engine") or record.engines[0]
    if engine not in record.engines:
        return problem(400, f"engine {engine!r} did not transcribe this session")
    complete = record.closed and await _all_transcribed(hub, record, engine)
    found = await finals(hub.bus, engine, session_id)
    return JSONResponse(transcript_json(record, engine, found, complete))


def _is_token(value: str) -> bool:
    return 0 < len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)


async def _all_transcribed(hub: Hub, record: SessionRecord, engine: str) -> bool:
    checks = [is_transcribed(hub.bus, engine, record.session_id, s) for s in record.sources]
    return all(await asyncio.gather(*checks))


def _accepted(session_id: str) -> dict[str, Any]:
    return {
        "id": session_id,
        "status": "processing",
        "status_url": f"/v1/transcriptions/{session_id}",
    }


async def _respond_when_done(
    hub: Hub, session: Session, engine: str, streaming: asyncio.Future[None]
) -> Response:
    await asyncio.shield(streaming)
    ingest = session.sources.get(SOURCE)
    duration_s = ingest.received_samples / RATE if ingest else 0.0
    timeout = hub.settings.finish_timeout_s + duration_s
    complete = await transcribed(hub.bus, engine, session.session_id, SOURCE, timeout)
    record = SessionRecord(session.session_id, "file", session.engines)
    record.sources[SOURCE] = ingest.received_samples if ingest else 0
    found = await finals(hub.bus, engine, session.session_id)
    metrics.UPLOADS.labels("done" if complete else "timeout").inc()
    body = transcript_json(record, engine, found, complete)
    if not complete:
        body |= _accepted(session.session_id)
    return JSONResponse(body, status_code=200 if complete else 202)


async def _stream(hub: Hub, session: Session, path: Path, blocks: _Blocks) -> None:
    """Decode, resample and publish the file, paced at ``upload_speed`` × real time."""
    reason = "error"
    try:
        ingest = await session.source(SOURCE)
        speed = hub.settings.upload_speed
        started = time.monotonic()
        while (block := await blocks.next()) is not None:
            await ingest.write(block)
            ahead = ingest.received_samples / RATE / speed - (time.monotonic() - started)
            if speed > 0 and ahead > 0:
                await asyncio.sleep(ahead)
        await ingest.write(blocks.flush())
        reason = "client"
    except AudioDecodeError as exc:
        log.warning("upload.decode_failed", error=str(exc))
    finally:
        blocks.close()
        _remove(path)
        await session.close(reason)


class _Blocks:
    """Pulls decoded, normalized blocks from PyAV in a worker thread."""

    def __init__(self, path: Path) -> None:
        self._decoded = decode_file(path)
        self._normalizer: Normalizer | None = None
        self._first: Pcm16 | None = None

    async def open(self) -> None:
        """Decode the first block, so bad input fails before a session opens."""
        self._first = await asyncio.to_thread(self._pull)
        if self._first is None or not len(self._first):
            self.close()
            raise AudioDecodeError("the file holds no audio")

    async def next(self) -> Pcm16 | None:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await asyncio.to_thread(self._pull)

    def flush(self) -> Pcm16:
        return self._normalizer.flush() if self._normalizer is not None else np.zeros(0, np.int16)

    def close(self) -> None:
        self._decoded.close()

    def _pull(self) -> Pcm16 | None:
        item = next(self._decoded, None)
        if item is None:
            return None
        rate, mono = item
        if self._normalizer is None:
            self._normalizer = Normalizer(AudioFormat(rate, 1, "pcm_f32le"))
        return self._normalizer.push_mono(mono)


async def _receive_file(request: Request, limit: int) -> tuple[Path, str]:
    """Store the upload in a temporary file; returns its path and the client's file name."""
    declared = int(request.headers.get("content-length") or 0)
    if declared > limit:
        raise UploadTooLarge
    limited = Request(request.scope, _limited(request.receive, limit))
    fd, name = tempfile.mkstemp(prefix="echostream-upload-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                filename = await _copy_form_file(limited, out)
            else:
                filename = "upload"
                async for part in limited.stream():
                    out.write(part)
    except BaseException:
        _remove(path)
        raise
    return path, filename


async def _copy_form_file(request: Request, out: IO[bytes]) -> str:
    async with request.form(max_files=1, max_fields=16) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValueError("multipart upload without a 'file' field")
        await asyncio.to_thread(shutil.copyfileobj, upload.file, out)
        return upload.filename or "upload"


def _remove(path: Path) -> None:
    # A temporary file on local disk: unlinking does not block in any way that matters.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise UploadTooLarge
        return message

    return wrapped
