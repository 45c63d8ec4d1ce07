"""One source streamed to vLLM: generations, rollovers, reconnects, keep-alive.

The stream keeps the source's audio from the last cut (``Segmenter.done``) on. A generation
starts at that cut and is given the audio from there; whenever a generation ends early (the
length limit's unrequested ``done``, a dropped connection, an ``error``, a stall), the next one
starts at the cut again and the tokens after it come again, so no text is lost or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from echostream_shared import messages as m
from echostream_shared.jobs.stream import HandBack, TranscriptSink
from echostream_shared.jobs.updates import PartialUpdate, ResumePoint
from echostream_shared.logging import get_logger
from voxtral_worker import metrics, protocol
from voxtral_worker.audio_buffer import AudioBuffer
from voxtral_worker.segmenter import CheckpointedFinal, Segmenter, SegmenterOutput
from voxtral_worker.servers import ServerPool
from voxtral_worker.timeline import SAMPLES_PER_TOKEN, Timeline

log = get_logger("stream")

LOOK_AHEAD_SAMPLES = 40  # the model's 2.5 ms look-ahead
POLL_S = 0.25
OPEN_TIMEOUT_S = 10.0
FATAL_HANDSHAKE = frozenset({401, 403, 404})


@dataclass(frozen=True)
class StreamOptions:
    """How streams talk to vLLM (see ``VoxtralWorkerSettings``)."""

    model: str
    api_key: str | None = None
    chunk_samples: int = 1280
    delay_ms: int = 480
    keepalive_s: float = 5.0
    stall_s: float = 10.0
    done_timeout_s: float = 15.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 15.0
    reconnect_attempts: int = 8
    rollover_tokens: int = 36_000
    max_segment_samples: int = 30 * m.SAMPLE_RATE
    vad_latency_samples: int = 2 * m.SAMPLE_RATE

    @property
    def first_step_samples(self) -> int:
        """Audio a generation needs before its first token: the delay, one token, look-ahead."""
        return (self.delay_ms // 80 + 1) * SAMPLES_PER_TOKEN + LOOK_AHEAD_SAMPLES

    def backoff_s(self, failures: int) -> float:
        return float(min(self.reconnect_max_s, self.reconnect_min_s * 2 ** max(0, failures - 1)))


class _Retry(Exception):
    """The connection failed; reconnect after a backoff."""


class _Restart(Exception):
    """The server ended the generation by itself; reconnect now."""


class _Misconfigured(Exception):
    """The server refuses this worker's configuration; retrying cannot help."""


class VoxtralStream:
    """An ``EngineStream`` on one vLLM server slot."""

    def __init__(
        self,
        resume: ResumePoint | None,
        sink: TranscriptSink,
        pool: ServerPool,
        options: StreamOptions,
    ) -> None:
        self._sink = sink
        self._pool = pool
        self._options = options
        self._url = pool.lease()
        self._segmenter = Segmenter(
            resume,
            max_segment=options.max_segment_samples,
            vad_latency=options.vad_latency_samples,
        )
        self._audio = AudioBuffer(self._segmenter.done)
        self._timeline = Timeline(self._segmenter.done)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closing_at: int | None = None
        self._failure: BaseException | None = None
        self._failures = 0
        self._tokens = 0
        self._final_sent_at: float | None = None
        self._rollover = False
        self._last_sent = time.monotonic()
        self._released = False
        self._driver = asyncio.create_task(self._drive())

    @property
    def busy_s(self) -> float:
        return 0.0  # the model runs on the vLLM server, not here

    def failure(self) -> BaseException | None:
        return self._failure

    async def on_audio(self, chunk: m.AudioChunk) -> None:
        self._audio.add(chunk.first_sample, chunk.pcm)
        self._wake.set()

    async def on_speech_started(self, sample: int) -> None:
        await self._apply(lambda: self._segmenter.on_started(sample))

    async def on_speech_ended(self, sample: int) -> None:
        await self._apply(lambda: self._segmenter.on_ended(sample))

    async def on_closed(self, end_sample: int) -> ResumePoint:
        self._closing_at = self._audio.end
        self._wake.set()
        try:
            await asyncio.shield(self._driver)
            if self._failure is not None:
                raise self._failure
            await self._apply(lambda: self._segmenter.on_closed(end_sample))
            return self._segmenter.resume()
        finally:
            self._release()

    async def aclose(self) -> None:
        self._driver.cancel()
        with contextlib.suppress(BaseException):
            await self._driver
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._url)

    async def _apply(self, step: Callable[[], list[SegmenterOutput]]) -> None:
        async with self._lock:
            for update in step():
                if isinstance(update, CheckpointedFinal):
                    await self._sink.final(update.update, update.resume)
                elif isinstance(update, PartialUpdate):
                    await self._sink.partial(update)
        self._audio.forget_before(self._segmenter.done)

    # --- connections ---

    async def _drive(self) -> None:
        while True:
            try:
                await self._connection()
                return
            except _Restart:
                continue
            except _Misconfigured as exc:
                self._pool.misconfigured(self._url, str(exc))
                metrics.SERVER_ERRORS.labels("misconfigured").inc()
                log.error("vllm.misconfigured", url=self._url, reason=str(exc))
                self._failure = HandBack(f"vLLM at {self._url} refuses the worker: {exc}")
                return
            except (_Retry, OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                self._failures += 1
                self._pool.connection_failed(self._url)
                metrics.RECONNECTS.inc()
                log.warning(
                    "vllm.connection_failed",
                    url=self._url,
                    attempt=self._failures,
                    error=repr(exc)[:300],
                )
                if self._failures >= self._options.reconnect_attempts:
                    self._failure = HandBack(
                        f"vLLM at {self._url} failed {self._failures} times in a row"
                    )
                    return
                await asyncio.sleep(self._options.backoff_s(self._failures))

    async def _connection(self) -> None:
        headers = (
            {"Authorization": f"Bearer {self._options.api_key}"} if self._options.api_key else None
        )
        try:
            ws = await connect(
                self._url,
                additional_headers=headers,
                open_timeout=OPEN_TIMEOUT_S,
                max_size=16 * 1024 * 1024,
                compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in FATAL_HANDSHAKE:
                raise _Misconfigured(f"handshake refused with HTTP {status}") from exc
            raise
        async with ws:
            created = protocol.parse(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
            if not isinstance(created, protocol.SessionCreated):
                raise _Retry(f"expected session.created, got {created!r}")
            self._pool.connected(self._url)
            log.info("vllm.connected", url=self._url, vllm_session=created.id)
            await ws.send(protocol.session_update(self._options.model))
            while not await self._generation(ws):
                metrics.ROLLOVERS.labels("requested").inc()

    async def _generation(self, ws: ClientConnection) -> bool:
        """Run one generation from the cut; True once the source's last final is in."""
        async with self._lock:
            origin = self._segmenter.restart()
        self._audio.forget_before(origin)
        self._timeline = Timeline(origin)
        self._tokens = 0
        self._final_sent_at = None
        self._rollover = False
        await ws.send(protocol.commit(final=False))
        sender = asyncio.create_task(self._send_audio(ws))
        try:
            return await self._read(ws, sender)
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender

    async def _send_audio(self, ws: ClientConnection) -> None:
        timeline = self._timeline
        chunk = self._options.chunk_samples
        while True:
            self._wake.clear()
            closing = self._closing_at
            available = self._audio.end
            while timeline.source_end + chunk <= available or (
                closing is not None and timeline.source_end < available
            ):
                start = timeline.source_end
                pcm = self._audio.read(start, min(start + chunk, available))
                await ws.send(protocol.append(pcm))
                timeline.add_audio(start, len(pcm) // 2)
                self._last_sent = time.monotonic()
            if (closing is not None and timeline.source_end >= closing) or self._rollover:
                if not timeline.sent:  # a final on no audio crashed vLLM (issue #34532)
                    await self._send_silence(ws, chunk)
                await ws.send(protocol.commit(final=True))
                self._final_sent_at = time.monotonic()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._options.keepalive_s)
            if time.monotonic() - self._last_sent >= self._options.keepalive_s:
                # Older vLLM stops a generation that produced nothing for 60 s.
                await self._send_silence(ws, chunk)
                metrics.KEEPALIVE_SILENCE.inc(chunk / m.SAMPLE_RATE)

    async def _send_silence(self, ws: ClientConnection, samples: int) -> None:
        await ws.send(protocol.append(bytes(2 * samples)))
        self._timeline.add_silence(samples)
        self._last_sent = time.monotonic()

    async def _read(self, ws: ClientConnection, sender: asyncio.Task[None]) -> bool:
        last_event = time.monotonic()
        while True:
            if sender.done() and not sender.cancelled() and sender.exception() is not None:
                raise _Retry(f"sending failed: {sender.exception()!r}")
            try:
                frame = await asyncio.wait_for(ws.recv(), POLL_S)
            except TimeoutError:
                self._check_deadlines(last_event)
                continue
            last_event = time.monotonic()
            try:
                event = protocol.parse(frame)
            except protocol.ProtocolError as exc:
                raise _Retry(str(exc)) from exc
            match event:
                case protocol.Delta(text=text):
                    await self._on_delta(text)
                case protocol.Done():
                    return self._on_done()
                case protocol.ServerError(message=message, code=code):
                    metrics.SERVER_ERRORS.labels(code or "none").inc()
                    if event.fatal:
                        raise _Misconfigured(f"{code}: {message}")
                    raise _Retry(f"server error {code}: {message[:200]}")
                case protocol.SessionCreated():
                    pass

    def _check_deadlines(self, last_event: float) -> None:
        now = time.monotonic()
        if self._final_sent_at is not None:
            if now - max(self._final_sent_at, last_event) > self._options.done_timeout_s:
                raise _Retry("no transcription.done after the final commit")
            return
        owed = self._timeline.tokens_due(self._options.first_step_samples) > self._tokens
        if owed and now - last_event > self._options.stall_s:
            raise _Retry(f"no token for {self._options.stall_s:g} s while audio waits")

    async def _on_delta(self, text: str) -> None:
        index = self._tokens
        self._tokens += 1
        self._failures = 0
        metrics.TOKENS.inc()
        start, end = self._timeline.token_span(index)
        heard_to = self._timeline.source_end
        await self._apply(lambda: self._segmenter.on_token(text, start, end, heard_to=heard_to))
        if (
            self._tokens >= self._options.rollover_tokens
            and self._closing_at is None
            and not self._segmenter.in_speech
            and not self._rollover
        ):
            log.info("vllm.rollover", tokens=self._tokens)
            self._rollover = True
            self._wake.set()

    def _on_done(self) -> bool:
        if self._final_sent_at is None:
            # vLLM 0.33 stops at max_model_len by itself; its queue may now hold appends the
            # next generation must not see, so it starts on a fresh connection.
            metrics.ROLLOVERS.labels("length_limit").inc()
            log.warning("vllm.unrequested_done", tokens=self._tokens)
            raise _Restart()
        return self._closing_at is not None and not self._rollover
