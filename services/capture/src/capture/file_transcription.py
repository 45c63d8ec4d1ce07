"""A whole file through the live pipeline: received, decoded, streamed as a session, its finals collected.

Every upload endpoint (native, OpenAI, Deepgram) shapes its answer from a ``FileTranscript``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import structlog
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message, Receive

from capture import metrics
from capture.audio import AudioDecodeError, AudioFormat, Normalizer, Pcm16, decode_file
from capture.hub import Hub
from capture.relay import TranscriptEvent, TranscriptRelay
from capture.session import Session
from echostream_shared import messages as m
from echostream_shared.logging import get_logger

log = get_logger("file_transcription")

RATE = m.SAMPLE_RATE
SOURCE = "file"
MAX_FORM_FIELDS = 32

OnFinal = Callable[[m.TranscriptFinal], Awaitable[None]]


class UploadRefused(Exception):
    """An upload that cannot be transcribed; each endpoint renders it in its own error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ReceivedFile:
    """The uploaded body in a temporary file, and the other fields of its form."""

    path: Path
    filename: str
    fields: dict[str, list[str]]

    def discard(self) -> None:
        """Remove the temporary file (``transcribe_file`` does it itself)."""
        _remove(self.path)


@dataclass(frozen=True)
class FileTranscript:
    """What the engine made of a file; ``failure`` says why the engine gave up on it for good
    (its finals are then those made before, and ``complete`` is false)."""

    session_id: str
    engine: str
    complete: bool
    duration_s: float
    finals: list[m.TranscriptFinal]
    failure: str | None = None


class _TooLarge(Exception):
    pass


async def receive_file(request: Request, hub: Hub) -> ReceivedFile:
    """Store the upload (multipart field ``file``, or the raw body) in a temporary file.

    Raises ``UploadRefused``: 413 ``upload_too_large`` past ``max_upload_bytes``, 400
    ``missing_file`` without a file, 400 ``bad_form`` for a multipart body that does not parse.
    """
    limit = hub.settings.max_upload_bytes
    too_large = UploadRefused(413, "upload_too_large", f"upload exceeds {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        metrics.UPLOADS.labels("too_large").inc()
        raise too_large
    limited = Request(request.scope, _limited(request.receive, limit))
    fd, name = tempfile.mkstemp(prefix="echostream-upload-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                filename, fields = await _copy_form(limited, out)
            else:
                filename, fields = "upload", {}
                async for part in limited.stream():
                    out.write(part)
                if out.tell() == 0:
                    raise UploadRefused(400, "missing_file", "the request has no body")
    except _TooLarge:
        _remove(path)
        metrics.UPLOADS.labels("too_large").inc()
        raise too_large from None
    except BaseException:
        _remove(path)
        raise
    return ReceivedFile(path, filename, fields)


async def transcribe_file(
    hub: Hub,
    received: ReceivedFile,
    *,
    engine: str,
    client: str,
    metadata: Mapping[str, str] = {},  # noqa: B006 - read only
    on_final: OnFinal | None = None,
) -> FileTranscript:
    """Transcribe ``received`` as one session of ``client``; removes its temporary file.

    Raises ``UploadRefused`` (400 ``unknown_engine``, 415 ``undecodable``) before any session
    opens. ``on_final`` is awaited with each segment's final as the engine publishes it.
    """
    job = await start_file_transcription(
        hub, received, engine=engine, client=client, metadata=metadata, on_final=on_final
    )
    return await job.result()


async def start_file_transcription(
    hub: Hub,
    received: ReceivedFile,
    *,
    engine: str,
    client: str,
    metadata: Mapping[str, str] = {},  # noqa: B006 - read only
    on_final: OnFinal | None = None,
) -> FileTranscription:
    """Open the session and start streaming; the session id is known before the transcript."""
    if engine not in hub.settings.engines:
        received.discard()
        raise UploadRefused(
            400, "unknown_engine", f"engine {engine!r} is not one of {list(hub.settings.engines)}"
        )
    blocks = _Blocks(received.path)
    try:
        await blocks.open()
    except AudioDecodeError as exc:
        received.discard()
        metrics.UPLOADS.labels("undecodable").inc()
        raise UploadRefused(415, "undecodable", str(exc)) from None
    session = Session(
        hub.bus,
        hub.ingest,
        client=client,
        engines=hub.settings.engines,
        metadata={"filename": received.filename[:256], **metadata},
        abort=hub.abort,
    )
    job = FileTranscription(hub, session, engine, on_final)
    try:
        await job.begin(received, blocks)
    except BaseException:
        blocks.close()
        received.discard()
        raise
    return job


class FileTranscription:
    """One file's session, run by one background task: streamed, then waited for.

    The task belongs to the hub, not to the caller: a client that leaves stops neither the
    session nor its transcription, and shutdown drains it like any upload.
    """

    def __init__(self, hub: Hub, session: Session, engine: str, on_final: OnFinal | None) -> None:
        self.session_id = session.session_id
        self.engine = engine
        self._hub = hub
        self._session = session
        self._on_final = on_final
        self._finals: dict[str, m.TranscriptFinal] = {}
        self._relay = TranscriptRelay(hub.bus, session.session_id, engine, self._on_event)
        self._task: asyncio.Future[None] | None = None
        self._transcript: FileTranscript | None = None

    async def begin(self, received: ReceivedFile, blocks: _Blocks) -> None:
        with structlog.contextvars.bound_contextvars(session_id=self.session_id):
            try:
                await self._relay.start()
                await self._session.open()
            except BaseException:
                await self._relay.stop()
                await self._session.close("error")
                raise
            self._task = asyncio.ensure_future(self._run(received, blocks))
            self._task.add_done_callback(_report_failure)
            self._hub.spawn(self._task)

    async def result(self) -> FileTranscript:
        """The transcript, once the engine finished the file or gave up waiting."""
        assert self._task is not None
        await asyncio.shield(self._task)
        assert self._transcript is not None
        return self._transcript

    async def _run(self, received: ReceivedFile, blocks: _Blocks) -> None:
        with structlog.contextvars.bound_contextvars(session_id=self.session_id):
            try:
                await self._stream(received, blocks)
                ingest = self._session.sources.get(SOURCE)
                duration_s = ingest.received_samples / RATE if ingest else 0.0
                timeout = self._hub.settings.finish_timeout_s + duration_s
                transcribed = await self._relay.wait_transcribed(SOURCE, timeout)
            finally:
                await self._relay.stop()
            # A failed source is marked transcribed too: done, but not complete.
            failure = self._relay.failures.get(SOURCE)
            complete = transcribed and failure is None
            outcome = "failed" if failure is not None else "done" if complete else "timeout"
            metrics.UPLOADS.labels(outcome).inc()
            log.info("upload.transcribed", outcome=outcome, segments=len(self._finals))
            finals = sorted(self._finals.values(), key=lambda f: (f.start_sample, f.source))
            self._transcript = FileTranscript(
                self.session_id, self.engine, complete, duration_s, finals, failure
            )

    async def _on_event(self, event: TranscriptEvent) -> None:
        if not isinstance(event, m.TranscriptFinal) or event.segment_id in self._finals:
            return
        self._finals[event.segment_id] = event
        if self._on_final is None:
            return
        try:
            await self._on_final(event)
        except Exception as exc:
            # The caller's listener failed (a streaming client went away): the finals are
            # still collected and the transcription goes on.
            log.warning("upload.listener_failed", error=repr(exc))
            self._on_final = None

    async def _stream(self, received: ReceivedFile, blocks: _Blocks) -> None:
        """Decode, resample and publish the file, paced at ``upload_speed`` × real time."""
        reason = "error"
        try:
            ingest = await self._session.source(SOURCE)
            speed = self._hub.settings.upload_speed
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
            received.discard()
            await self._session.close(reason)


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


async def _copy_form(request: Request, out: IO[bytes]) -> tuple[str, dict[str, list[str]]]:
    try:
        async with request.form(max_files=1, max_fields=MAX_FORM_FIELDS) as form:
            fields: dict[str, list[str]] = {}
            upload: UploadFile | None = None
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key == "file":
                        upload = value
                else:
                    fields.setdefault(key, []).append(value)
            if upload is None:
                raise UploadRefused(400, "missing_file", "multipart upload without a 'file' field")
            await asyncio.to_thread(shutil.copyfileobj, upload.file, out)
            return upload.filename or "upload", fields
    except (HTTPException, MultiPartException) as exc:
        detail = exc.detail if isinstance(exc, HTTPException) else exc.message
        raise UploadRefused(400, "bad_form", str(detail)) from None


def _report_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("upload.failed", error=repr(exc))


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
                raise _TooLarge
        return message

    return wrapped
