"""The fake server: a real WebSocket server speaking vLLM 0.33.0's ``/v1/realtime``.

Reference: ``/work/shared/reference/vllm-realtime-protocol.md`` (section numbers below). Each
connection holds a ``validated`` flag, one audio queue and at most one generation (§6). A
generation steps once per 80 ms of audio, the first step after ``(delay + 1) * 80 ms + 2.5 ms``
of audio (§8); step ``i`` "transcribes" audio ``[i * 80 ms, (i + 1) * 80 ms)`` of the generation,
so its text comes a delay after the words, as the model's does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import secrets
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from fake_vllm.listener import ScriptedListener
from fake_vllm.voice import hear

MODEL = "mistralai/Voxtral-Mini-4B-Realtime-2602"
PATH = "/v1/realtime"
SAMPLES_PER_TOKEN = 1280
LEFT_PAD_TOKENS = 32
RIGHT_PAD_EXTRA_TOKENS = 10
LOOK_AHEAD_SAMPLES = 40  # 2.5 ms
MAX_FRAME_BYTES = 16 * 1024 * 1024  # uvicorn's default ws_max_size


@dataclass(frozen=True)
class FakeVllmConfig:
    """What the fake serves and which of vLLM's behaviours a test wants."""

    script: Sequence[str] = ()
    """Text of each utterance; ``voice.speak(k, ...)`` audio is heard as ``script[k]``."""
    served_models: tuple[str, ...] = (MODEL,)
    api_keys: tuple[str, ...] = ()
    delay_ms: int = 480
    max_model_len: int = 131_072
    step_s: float = 0.0
    """Model time per step; 0 answers as fast as audio arrives."""
    stall_after_s: float | None = None
    """vLLM <= 0.20: a generation waiting this long for audio stops silently (no delta, no done)."""
    fail_after_steps: int | None = None
    """Every generation fails after this many steps: ``processing_error`` and no ``done``."""
    listener: ScriptedListener | None = None
    """Hear real speech by voiced stretches instead of the tone-burst voice (``script`` unused)."""


@dataclass
class FakeStats:
    """What the fake saw and did, for assertions."""

    connections: int = 0
    max_open: int = 0
    generations: int = 0
    done_requested: int = 0
    done_unsolicited: int = 0
    stalled: int = 0
    dropped: int = 0
    audio_samples: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class _Append(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["input_audio_buffer.append"]
    audio: str


class _Commit(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["input_audio_buffer.commit"]
    final: bool = False


class FakeVllm:
    """``async with FakeVllm(config) as vllm:`` serves on ``vllm.url`` until the block ends."""

    def __init__(self, config: FakeVllmConfig | None = None) -> None:
        self.config = config or FakeVllmConfig()
        self.stats = FakeStats()
        self._server: Server | None = None
        self._sessions: set[_Session] = set()
        self._drop_after_deltas: int | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATH}"

    async def start(self, port: int = 0) -> FakeVllm:
        self._server = await serve(
            self._serve,
            "127.0.0.1",
            port,
            process_request=self._handshake,
            max_size=MAX_FRAME_BYTES,
            compression=None,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeVllm:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def drop_connections(self) -> None:
        """Cut every connection without a close frame, as a crashed server does (1006)."""
        for session in list(self._sessions):
            session.drop()

    def drop_after_deltas(self, deltas: int) -> None:
        """Cut the connection that sends the ``deltas``-th next non-empty delta, once."""
        self._drop_after_deltas = deltas

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if self.config.api_keys and path.startswith("/v1") and not self._authorized(request):
            response = connection.respond(401, '{"error":"Unauthorized"}')
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            return response
        if path != PATH:
            return connection.respond(403, "Forbidden\n")
        return None

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and any(
            hmac.compare_digest(token.encode(), key.encode()) for key in self.config.api_keys
        )

    async def _serve(self, ws: ServerConnection) -> None:
        self.stats.connections += 1
        session = _Session(self, ws)
        self._sessions.add(session)
        self.stats.max_open = max(self.stats.max_open, len(self._sessions))
        try:
            await session.serve()
        finally:
            self._sessions.discard(session)

    def _delta_sent(self, session: _Session, delta: str) -> None:
        if delta and self._drop_after_deltas is not None:
            self._drop_after_deltas -= 1
            if self._drop_after_deltas <= 0:
                self._drop_after_deltas = None
                session.drop()


class _Session:
    """One connection's state machine (§6)."""

    def __init__(self, server: FakeVllm, ws: ServerConnection) -> None:
        self._server = server
        self._config = server.config
        self._ws = ws
        self._validated = False
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._generation: asyncio.Task[None] | None = None

    def drop(self) -> None:
        self._server.stats.dropped += 1
        self._ws.transport.abort()

    async def serve(self) -> None:
        await self._send(
            {
                "type": "session.created",
                "id": f"sess-{secrets.token_hex(8)}",
                "created": int(time.time()),
            }
        )
        try:
            async for frame in self._ws:
                if isinstance(frame, bytes):
                    # receive_text() fails outside the event handler: no close frame (§2).
                    self._ws.transport.abort()
                    return
                await self._on_text(frame)
        except ConnectionClosed:
            pass
        finally:
            if self._generation is not None:
                self._generation.cancel()
                with contextlib.suppress(BaseException):
                    await self._generation

    async def _send(self, event: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(event, separators=(",", ":")))

    async def _error(self, message: str, code: str | None) -> None:
        self._server.stats.errors[code or "none"] += 1
        await self._send({"type": "error", "error": message, "code": code})

    async def _on_text(self, frame: str) -> None:
        try:
            event = json.loads(frame)
        except ValueError:
            await self._error("Invalid JSON", "invalid_json")
            return
        if not isinstance(event, dict):
            await self._error(
                f"'{type(event).__name__}' object has no attribute 'get'", "processing_error"
            )
            return
        kind = event.get("type")
        if kind == "session.update":
            await self._on_session_update(event)
        elif kind == "input_audio_buffer.append":
            await self._on_append(event)
        elif kind == "input_audio_buffer.commit":
            await self._on_commit(event)
        else:
            await self._error(f"Unknown event type: {kind}", "unknown_event")

    async def _on_session_update(self, event: dict[str, Any]) -> None:
        model = event.get("model")
        if model is None:
            await self._error("Missing required field: model", "invalid_event")
        elif model != "" and model not in self._config.served_models:
            await self._error(f"The model `{model}` does not exist.", "model_not_found")
        else:
            self._validated = True  # no session.updated reply, ever (§4.1)

    async def _on_append(self, event: dict[str, Any]) -> None:
        try:
            append = _Append.model_validate(event)
        except ValidationError as exc:
            await self._error(str(exc), "processing_error")
            return
        try:
            pcm = base64.b64decode(append.audio, validate=True)
        except (binascii.Error, ValueError):
            await self._error("Invalid audio data", "invalid_audio")
            return
        if not pcm or len(pcm) % 2:
            await self._error("Invalid audio data", "invalid_audio")
            return
        self._server.stats.audio_samples += len(pcm) // 2
        self._queue.put_nowait(pcm)

    async def _on_commit(self, event: dict[str, Any]) -> None:
        if not self._validated:
            await self._error(
                "Model not validated. Make sure to validate the model by sending a "
                "session.update event.",
                "model_not_validated",
            )
            return
        try:
            commit = _Commit.model_validate(event)
        except ValidationError as exc:
            await self._error(str(exc), "processing_error")
            return
        if commit.final:
            self._queue.put_nowait(None)
        elif self._generation is None or self._generation.done():
            self._server.stats.generations += 1
            self._generation = asyncio.create_task(_Generation(self).run())
        # else: a generation runs; vLLM only logs a warning (§4.3)


class _Generation:
    """One engine request: audio in, one delta per 80 ms step, then ``done`` (§5-§8)."""

    def __init__(self, session: _Session) -> None:
        self._session = session
        self._config = session._config
        self._stats = session._server.stats
        delay_tokens = self._config.delay_ms // 80
        self._prompt_tokens = 1 + LEFT_PAD_TOKENS + delay_tokens
        self._first_step = (delay_tokens + 1) * SAMPLES_PER_TOKEN + LOOK_AHEAD_SAMPLES
        self._right_pad = (delay_tokens + 1 + RIGHT_PAD_EXTRA_TOKENS) * SAMPLES_PER_TOKEN
        self._chunks: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        self._audio = np.zeros(0, dtype=np.int16)
        self._steps = 0
        self._deltas: list[str] = []
        self._pieces: deque[str] = deque()
        self._last_heard: tuple[int, int] | None = None
        listener = self._config.listener
        self._listening = listener.listen() if listener is not None else None

    async def run(self) -> None:
        ended = False
        while True:
            while self._can_step():
                if self._prompt_tokens + self._steps >= self._config.max_model_len:
                    self._stats.done_unsolicited += 1
                    await self._done()
                    return
                if (
                    self._config.fail_after_steps is not None
                    and self._steps >= self._config.fail_after_steps
                ):
                    await self._session._error("fake generation failure", "processing_error")
                    return
                await self._step()
            if ended:
                self._stats.done_requested += 1
                await self._done()
                return
            try:
                item = await asyncio.wait_for(
                    self._session._queue.get(), self._config.stall_after_s
                )
            except TimeoutError:
                self._stats.stalled += 1
                return
            if item is None:
                ended = True
                self._append(np.zeros(self._right_pad, dtype=np.int16))
            else:
                self._append(np.frombuffer(item, dtype="<i2"))

    def _append(self, pcm: np.ndarray[Any, np.dtype[np.int16]]) -> None:
        self._audio = np.concatenate([self._audio, pcm])

    def _can_step(self) -> bool:
        return len(self._audio) >= self._first_step + self._steps * SAMPLES_PER_TOKEN

    async def _step(self) -> None:
        frame = self._audio[self._steps * SAMPLES_PER_TOKEN : (self._steps + 1) * SAMPLES_PER_TOKEN]
        if self._listening is not None:
            for word in self._listening.hear(frame):
                self._pieces.extend(_pieces(word))
        else:
            heard = hear(frame)
            if heard is not None and heard != self._last_heard:
                self._pieces.extend(_pieces(self._word(*heard)))
            self._last_heard = heard
        delta = self._pieces.popleft() if self._pieces else ""
        self._steps += 1
        self._deltas.append(delta)
        if self._config.step_s:
            await asyncio.sleep(self._config.step_s)
        await self._session._send({"type": "transcription.delta", "delta": delta})
        self._session._server._delta_sent(self._session, delta)

    def _word(self, utterance: int, word: int) -> str:
        script = self._config.script
        words = script[utterance].split() if utterance < len(script) else []
        return words[word] if word < len(words) else ""

    async def _done(self) -> None:
        usage = {
            "prompt_tokens": self._prompt_tokens,
            "total_tokens": self._prompt_tokens + self._steps,
            "completion_tokens": self._steps,
            "prompt_tokens_details": None,
            "completion_tokens_details": None,
        }
        await self._session._send(
            {"type": "transcription.done", "text": "".join(self._deltas), "usage": usage}
        )
        queue = self._session._queue
        while not queue.empty():
            queue.get_nowait()


def _pieces(word: str) -> list[str]:
    """A word as the model's token pieces: a leading space, long words in two."""
    if not word:
        return []
    if len(word) > 5:
        return [f" {word[:3]}", word[3:]]
    return [f" {word}"]
