"""``POST /v1/listen``: Deepgram's prerecorded transcription, on the live pipeline.

The body is the audio (raw, or a multipart ``file``); a container is decoded by PyAV, headerless
audio needs ``encoding`` and ``sample_rate`` as on the live socket. The answer has Deepgram's
shape (``metadata``, ``results.channels[0].alternatives[0]``, ``results.utterances`` with
``utterances=true``); errors are Deepgram's ``{"err_code", "err_msg", "request_id"}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import tempfile
import uuid
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from capture.audio import AudioFormat, Encoding
from capture.auth import authorized
from capture.deepgram_events import (
    EngineModel,
    ListenOptions,
    OptionError,
    Word,
    confidence_of,
    created_now,
    final_alternative,
    listen_options,
    seconds,
)
from capture.file_transcription import (
    FileTranscript,
    ReceivedFile,
    UploadRefused,
    receive_file,
    transcribe_file,
)
from capture.hub import Hub
from capture.limits import format_problem
from echostream_shared import messages as m
from echostream_shared.logging import get_logger

log = get_logger("deepgram")

BAD_REQUEST = "Bad Request"
ENGINE_FAILED = "ENGINE_FAILED"
UNDECODABLE = "Bad Request: failed to process audio: corrupt or unsupported data"
_WAV_CODES: dict[Encoding, tuple[int, int]] = {
    "pcm_s16le": (1, 16),
    "pcm_s32le": (1, 32),
    "pcm_f32le": (3, 32),
    "alaw": (6, 8),
    "mulaw": (7, 8),
}
_UTTERANCE_NAMESPACE = uuid.UUID("0b8c8f4e-2f7e-4d0a-9a51-5d0a6c3e9f21")


def deepgram_error(status: int, code: str, message: str, request_id: str | None = None) -> Response:
    """Deepgram's REST error body."""
    body = {"err_code": code, "err_msg": message, "request_id": request_id or str(uuid.uuid4())}
    return JSONResponse(body, status_code=status)


async def listen_file(request: Request) -> Response:
    """Transcribe the uploaded audio and answer in Deepgram's prerecorded shape."""
    hub: Hub = request.app.state.hub
    if not authorized(request, hub.settings.token):
        return deepgram_error(401, "INVALID_AUTH", "Invalid credentials.")
    try:
        options = listen_options(dict(request.query_params))
        raw = options.raw_format()
    except OptionError as exc:
        return deepgram_error(400, BAD_REQUEST, str(exc))
    if (problem := _unsupported(request, options, raw, hub)) is not None:
        return deepgram_error(400, BAD_REQUEST, problem)
    created = created_now()
    try:
        received = await receive_file(request, hub)
        if raw is not None:
            received = await asyncio.to_thread(_as_wav, received, raw)
        sha256 = await asyncio.to_thread(_sha256, received.path)
        engine = options.engine(hub.settings.engines)
        metadata = {"model": options.model[:128]} if options.model else {}
        transcript = await transcribe_file(
            hub, received, engine=engine, client="deepgram", metadata=metadata
        )
    except UploadRefused as exc:
        return _refused(exc)
    if transcript.failure is not None:
        message = (
            f"the transcription engine failed: {transcript.failure}; "
            f"the audio is stored as session {transcript.session_id}"
        )
        return deepgram_error(502, ENGINE_FAILED, message, transcript.session_id)
    if not transcript.complete:
        message = (
            f"the engine did not finish within {hub.settings.finish_timeout_s:g} s; "
            f"the session {transcript.session_id} goes on and is stored"
        )
        return deepgram_error(504, "TIMEOUT", message, transcript.session_id)
    return JSONResponse(response_body(transcript, options, sha256, created))


def _unsupported(
    request: Request, options: ListenOptions, raw: AudioFormat | None, hub: Hub
) -> str | None:
    if request.headers.get("content-type", "").startswith("application/json"):
        return "this server does not fetch URLs: send the audio itself as the request body"
    if options.callback is not None:
        return "callback is not supported: the transcript is the response to this request"
    if options.multichannel:
        return "multichannel is supported on the live WebSocket only"
    if raw is not None:
        return format_problem(raw, hub.settings)
    return None


def _refused(exc: UploadRefused) -> Response:
    if exc.status == 413:
        return deepgram_error(413, "PAYLOAD_TOO_LARGE", exc.message)
    if exc.status == 415:
        return deepgram_error(400, BAD_REQUEST, f"{UNDECODABLE} ({exc.message})")
    return deepgram_error(exc.status, BAD_REQUEST, exc.message)


def response_body(
    transcript: FileTranscript, options: ListenOptions, sha256: str, created: str
) -> dict[str, Any]:
    """A ``FileTranscript`` as Deepgram's prerecorded response."""
    model = EngineModel(transcript.engine)
    metadata = model.metadata(
        transcript.session_id, sha256, created, transcript.duration_s, channels=1
    ).json_dict()
    del metadata["type"]
    alternatives = [(f, final_alternative(f, options.punctuated)) for f in transcript.finals]
    words = [w for _, alt in alternatives for w in alt.words]
    channel = {
        "alternatives": [
            {
                "transcript": " ".join(a.transcript for _, a in alternatives if a.transcript),
                "confidence": _mean([w.confidence for w in words]),
                "words": [w.json_dict() for w in words],
            }
        ]
    }
    results: dict[str, Any] = {"channels": [channel]}
    if options.utterances:
        results["utterances"] = [
            _utterance(final, alt.transcript, alt.words)
            for final, alt in alternatives
            if alt.transcript
        ]
    return {"metadata": metadata, "results": results}


def _utterance(final: m.TranscriptFinal, transcript: str, words: list[Word]) -> dict[str, Any]:
    return {
        "start": seconds(final.start_sample),
        "end": seconds(final.end_sample),
        "confidence": confidence_of(final, words),
        "channel": 0,
        "transcript": transcript,
        "words": [w.json_dict() for w in words],
        "id": str(uuid.uuid5(_UTTERANCE_NAMESPACE, final.segment_id)),
    }


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _as_wav(received: ReceivedFile, fmt: AudioFormat) -> ReceivedFile:
    """Headerless audio in the declared format, given a WAV header so PyAV can decode it."""
    code, bits = _WAV_CODES[fmt.encoding]
    size = received.path.stat().st_size
    size -= size % fmt.frame_bytes
    block = fmt.frame_bytes
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + size,
        b"WAVE",
        b"fmt ",
        16,
        code,
        fmt.channels,
        fmt.sample_rate,
        fmt.sample_rate * block,
        block,
        bits,
        b"data",
        size,
    )
    fd, name = tempfile.mkstemp(prefix="echostream-upload-", suffix=".wav")
    try:
        with os.fdopen(fd, "wb") as out, received.path.open("rb") as raw:
            out.write(header)
            remaining = size
            while remaining > 0:
                chunk = raw.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                out.write(chunk)
                remaining -= len(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    finally:
        received.discard()
    return ReceivedFile(Path(name), received.filename, received.fields)
