"""The official Deepgram SDK pointed at a running pipeline, and what tests read from its streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import nats
import numpy as np
from capture_audio import Speech, silence
from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.listen.v1.socket_client import AsyncV1SocketClient
from deepgram.listen.v1.types import (
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from pipeline_procs import Pipeline
from speech_corpus import load_items, read_wav
from websockets.exceptions import ConnectionClosed

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus

TOKEN = "dg-test-token"
RATE = 16_000


def environment(pipeline: Pipeline) -> DeepgramClientEnvironment:
    """What a user passes to reach EchoStream instead of api.deepgram.com."""
    return DeepgramClientEnvironment(
        base=pipeline.http, production=pipeline.ws, agent=pipeline.ws, agent_rest=pipeline.http
    )


def deepgram(pipeline: Pipeline, **auth: str) -> AsyncDeepgramClient:
    """An SDK client; ``api_key`` (``Authorization: Token``) unless ``access_token`` (Bearer)."""
    if not auth:
        auth = {"api_key": TOKEN}
    return AsyncDeepgramClient(environment=environment(pipeline), **auth)


class LiveStream:
    """A ``listen.v1.connect`` stream with every server message collected as the SDK parses it."""

    def __init__(self, pipeline: Pipeline, **options: Any) -> None:
        self._connect: AbstractAsyncContextManager[AsyncV1SocketClient] = deepgram(
            pipeline
        ).listen.v1.connect(**{"model": "nova-3", **options})
        self.messages: list[Any] = []
        self.close_code: int | None = None
        self._socket: AsyncV1SocketClient | None = None
        self._reader: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> LiveStream:
        self._socket = await self._connect.__aenter__()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._connect.__aexit__(None, None, None)
        assert self._reader is not None
        await self._reader

    @property
    def socket(self) -> AsyncV1SocketClient:
        assert self._socket is not None
        return self._socket

    @property
    def closed(self) -> bool:
        return self._reader is not None and self._reader.done()

    async def send_audio(self, data: bytes, chunk_bytes: int, bytes_per_s: float = 0.0) -> None:
        """Send ``data`` in binary frames; paced at ``bytes_per_s`` when it is > 0."""
        started = time.monotonic()
        for offset in range(0, len(data), chunk_bytes):
            await self.socket.send_media(data[offset : offset + chunk_bytes])
            if bytes_per_s:
                wait = started + (offset + chunk_bytes) / bytes_per_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)

    async def close_stream(self, timeout_s: float = 60.0) -> None:
        """``CloseStream``, then wait for the server to close the socket."""
        await self.socket.send_close_stream()
        await self.wait_closed(timeout_s)

    async def wait_closed(self, timeout_s: float) -> None:
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout_s)

    async def wait_for(self, match: Callable[[Any], bool], timeout_s: float = 20.0) -> Any:
        async with asyncio.timeout(timeout_s):
            while True:
                for msg in self.messages:
                    if match(msg):
                        return msg
                if self.closed:
                    raise AssertionError(f"closed ({self.close_code}): {self.messages[-3:]}")
                self._arrived.clear()
                await self._arrived.wait()

    def of(self, kind: type) -> list[Any]:
        return [msg for msg in self.messages if isinstance(msg, kind)]

    @property
    def results(self) -> list[ListenV1Results]:
        return self.of(ListenV1Results)

    def finals(self, channel: int = 0) -> list[ListenV1Results]:
        return [r for r in self.results if r.is_final and r.channel_index[0] == channel]

    def transcript(self, channel: int = 0) -> str:
        finals = sorted(self.finals(channel), key=lambda r: r.start)
        texts = (r.channel.alternatives[0].transcript for r in finals)
        return " ".join(text for text in texts if text)

    @property
    def request_id(self) -> str:
        return str(self.results[0].metadata.request_id)

    async def _read(self) -> None:
        try:
            async for message in self.socket:
                self.messages.append(message)
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.socket._websocket.close_code
            self._arrived.set()


def strictly_valid(message: Any) -> None:
    """The SDK builds its models without validation; validate each one for real."""
    for kind in (ListenV1Results, ListenV1Metadata, ListenV1SpeechStarted, ListenV1UtteranceEnd):
        if isinstance(message, kind):
            kind.model_validate(message.model_dump())
            return
    raise AssertionError(f"not a Deepgram server message: {message!r}")


async def speech_boundaries(pipeline: Pipeline, session_id: str, source: str) -> list[Any]:
    """The speech events capture published for a source, oldest first."""
    from bus_reading import read_subject

    nc = await nats.connect(pipeline.nats_url)
    try:
        found = await read_subject(Bus(nc, nc.jetstream()), t.audio(session_id, source))
    finally:
        await nc.close()
    return [msg for msg in found if isinstance(msg, m.SpeechStarted | m.SpeechEnded)]


async def stored_session(pipeline: Pipeline, session_id: str, timeout_s: float = 60.0) -> Any:
    """The aggregator's record of a session, once it is closed and completely transcribed."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=pipeline.aggregator) as http:
        while True:
            response = await http.get(f"/v1/sessions/{session_id}")
            if response.status_code == 200:
                body = response.json()
                if body["status"] == "closed" and body["complete"]:
                    return body
            if time.monotonic() > deadline:
                raise AssertionError(f"session {session_id} not stored complete: {response.text}")
            await asyncio.sleep(0.5)


def stereo(left: np.ndarray[Any, Any], right: np.ndarray[Any, Any]) -> bytes:
    """Two 16 kHz mono PCM16 signals as one interleaved stereo stream (the shorter padded)."""
    n = max(len(left), len(right))
    pair = np.zeros((n, 2), dtype="<i2")
    pair[: len(left), 0] = left
    pair[: len(right), 1] = right
    return pair.tobytes()


def corpus_speech(min_s: float = 30.0) -> Speech:
    """LibriSpeech dev utterances with pauses between them, about ``min_s`` long."""
    items = [i for i in load_items("dev") if i.source.startswith("librispeech")]
    parts, texts, total = [silence(0.5)], [], 0.0
    for item in items:
        parts += [read_wav(item.path), silence(0.8)]
        texts.append(item.text)
        total += item.duration_s
        if total >= min_s:
            break
    return Speech(np.concatenate(parts), " ".join(texts))
