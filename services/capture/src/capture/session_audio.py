"""``GET /v1/library/sessions/{id}/audio/{source}.wav``: a source's audio while the bus retains it.

The audio stream keeps every source's 16 kHz PCM for ``ECHOSTREAM_AUDIO_RETENTION_S``; this
streams it as WAV, read in order up to the newest chunk stored when the request came, so the
library can play a session without a second copy of its audio anywhere.
"""

from __future__ import annotations

import re
import struct
from collections.abc import AsyncIterator

from nats.errors import Error as NatsError, TimeoutError as NatsTimeoutError
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from capture.auth import UNAUTHORIZED, authorized
from capture.hub import Hub
from echostream_shared import messages as m, topology as t
from echostream_shared.codec import DecodeError, decode
from echostream_shared.logging import get_logger

log = get_logger("session_audio")

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
UNKNOWN_LENGTH = 0x7FFFFFFF - 36
"""The data size a streamed WAV declares when its length is not known yet (a live source)."""
READ_TIMEOUT_S = 5.0
MAX_ZERO_FILL = m.SAMPLE_RATE * 2 * 60


def problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def wav_header(data_bytes: int) -> bytes:
    """A RIFF header for 16 kHz mono PCM16 with ``data_bytes`` of samples."""
    rate = m.SAMPLE_RATE
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


async def source_audio(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    if not authorized(request, hub.settings.token):
        return problem(401, UNAUTHORIZED)
    session_id = request.path_params["session_id"]
    source = request.path_params["source"]
    if not (NAME.fullmatch(session_id) and NAME.fullmatch(source)):
        return problem(404, "no such source")
    subject = t.audio(session_id, source)
    try:
        last = await hub.bus.js.get_last_msg(t.AUDIO_STREAM, subject)
    except NotFoundError:
        return problem(404, "no audio is retained for this source (deleted, or past retention)")
    except NatsError as exc:
        log.warning("audio.bus_unavailable", session_id=session_id, error=repr(exc))
        return problem(503, "the message bus is unavailable; retry")
    total = _known_length(last.data or b"", subject)
    last_seq = last.seq or 0
    size = UNKNOWN_LENGTH if total is None else total * 2
    subscription = await hub.bus.js.subscribe(
        subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )

    async def body() -> AsyncIterator[bytes]:
        yield wav_header(size)
        written = 0  # samples
        try:
            while True:
                msg = await subscription.next_msg(timeout=READ_TIMEOUT_S)
                chunk = _chunk(msg.data, msg.subject)
                if chunk is not None and chunk.end_sample > written:
                    gap = min(chunk.first_sample - written, MAX_ZERO_FILL)
                    if gap > 0:
                        yield bytes(gap * 2)
                        written += gap
                    skip = max(0, written - chunk.first_sample)
                    pcm = chunk.pcm[skip * 2 :]
                    if total is not None:
                        pcm = pcm[: max(0, total - written) * 2]
                    yield pcm
                    written += len(pcm) // 2
                if msg.metadata.sequence.stream >= last_seq:
                    break
        except NatsTimeoutError:
            log.warning("audio.read_stalled", session_id=session_id, source=source)
        finally:
            await subscription.unsubscribe()
        if total is not None and written < total:
            yield bytes((total - written) * 2)

    headers = {
        "Content-Disposition": f'inline; filename="{session_id}-{source}.wav"',
        "Cache-Control": "no-store",
    }
    if total is not None:  # a player shows the duration only when it knows the length
        headers["Content-Length"] = str(len(wav_header(0)) + total * 2)
    return StreamingResponse(body(), media_type="audio/wav", headers=headers)


def _known_length(data: bytes, subject: str) -> int | None:
    """The source's length in samples when the newest message on its subject tells it."""
    try:
        message = decode(data, subject)
    except DecodeError:
        return None
    if isinstance(message, m.SourceClosed):
        return message.end_sample
    if isinstance(message, m.AudioChunk):
        return message.end_sample
    return None


def _chunk(data: bytes, subject: str) -> m.AudioChunk | None:
    try:
        message = decode(data, subject)
    except DecodeError:
        return None
    return message if isinstance(message, m.AudioChunk) else None
