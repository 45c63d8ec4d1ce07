"""What the EchoPanel and native WebSocket protocols share: a live session behind one socket."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import structlog
from starlette.websockets import WebSocket

from capture import metrics
from capture.audio import AudioFormat, Normalizer
from capture.auth import authorized
from capture.completion import transcribed
from capture.hub import Hub
from capture.limits import max_session_samples
from capture.outbox import Outbox
from capture.relay import TranscriptEvent, TranscriptRelay
from capture.session import Session
from echostream_shared.logging import get_logger

log = get_logger("connection")

TICK_S = 1.0
SERVICE_RESTART = 1012


class Disconnected(Exception):
    """The client closed the socket or vanished."""

    def __init__(self, code: int) -> None:
        super().__init__(f"client disconnected ({code})")
        self.code = code

    @property
    def reason(self) -> str:
        """How the session ends on the bus: 1012 is the server going away, not the client."""
        return "shutdown" if self.code == SERVICE_RESTART else "disconnected"


class Rejected(Exception):
    """Client input refused with a code and a message; the connection goes on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SourceOutcome:
    """How a source ended: its length and whether its transcription is complete."""

    end_sample: int
    complete: bool


Refusal = Literal["unauthorized", "capacity"]
Refuse = Callable[[WebSocket, Refusal, int], Awaitable[None]]
"""Tells a client, in its protocol, why it is turned away, then closes with the code given."""


async def admit(
    ws: WebSocket,
    protocol: str,
    connect: Callable[[Hub, WebSocket], LiveConnection],
    refuse: Refuse,
) -> None:
    """Accept a socket, check its token and the connection limit, then run its session."""
    hub: Hub = ws.app.state.hub
    await ws.accept()
    if not authorized(ws, hub.settings.token):
        metrics.PROTOCOL_ERRORS.labels(protocol, "unauthorized").inc()
        await refuse(ws, "unauthorized", 1008)
        return
    if not hub.connections.try_acquire():
        await refuse(ws, "capacity", 1013)
        return
    metrics.CONNECTIONS.labels(protocol).inc()
    try:
        with structlog.contextvars.bound_contextvars(protocol=protocol):
            await connect(hub, ws).run()
    finally:
        hub.connections.release()
        metrics.CONNECTIONS.labels(protocol).dec()


class LiveConnection(abc.ABC):
    """A session fed from one WebSocket, with its transcripts relayed back through an outbox."""

    protocol = "live"

    def __init__(self, hub: Hub, ws: WebSocket) -> None:
        self.hub = hub
        self.ws = ws
        self.outbox = Outbox(ws)
        self.session: Session | None = None
        self.relay: TranscriptRelay | None = None
        self.formats: dict[str, AudioFormat] = {}
        self._normalizers: dict[str, Normalizer] = {}
        self._ended: dict[str, asyncio.Task[SourceOutcome]] = {}
        self._pressure: set[str] = set()
        self._ticker: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def run(self) -> None:
        """Serve the socket until the session ends, then clean up."""

    async def receive(self) -> str | bytes:
        """The next message; oversized ones are rejected here."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise Disconnected(int(message.get("code") or 1006))
        data: str | bytes | None = message.get("bytes")
        if data is None:
            data = message.get("text") or ""
        limit = self.hub.settings.max_message_bytes
        if len(data) > limit:
            raise Rejected("frame_too_large", f"message of {len(data)} bytes exceeds {limit}")
        return data

    async def open_session(self, engine: str, metadata: dict[str, str]) -> Session:
        """Publish the session and start relaying ``engine``'s transcripts."""
        session = Session(
            self.hub.bus,
            self.hub.ingest,
            client=self.protocol,
            engines=self.hub.settings.engines,
            metadata=metadata,
            abort=self.hub.abort,
        )
        structlog.contextvars.bind_contextvars(session_id=session.session_id)
        self.relay = TranscriptRelay(self.hub.bus, session.session_id, engine, self.on_transcript)
        await self.relay.start()
        await session.open()
        self.session = session
        self._ticker = asyncio.create_task(self._tick(), name="tick")
        return session

    async def write_audio(self, source: str, pcm: bytes) -> None:
        """Normalize a frame and queue it for the bus."""
        assert self.session is not None
        if source in self._ended:
            raise Rejected("source_ended", f"source {source!r} has ended")
        normalizer = self._normalizers.get(source)
        if normalizer is None:
            normalizer = self._normalizers[source] = Normalizer(self.formats[source])
        try:
            samples = normalizer.push(pcm)
        except ValueError as exc:
            raise Rejected("bad_frame", str(exc)) from exc
        ingest = await self.session.source(source)
        if ingest.received_samples + len(samples) > max_session_samples(self.hub.settings):
            self.end_source(source)
            raise Rejected(
                "session_too_long", f"source {source!r} reached the session length limit"
            )
        await ingest.write(samples)

    def end_source(self, source: str) -> asyncio.Task[SourceOutcome]:
        """Close a source now and wait for its transcription in the background."""
        task = self._ended.get(source)
        if task is None:
            task = asyncio.create_task(self._end_source(source))
            self._ended[source] = task
        return task

    async def finish(self, timeout_s: float) -> dict[str, SourceOutcome]:
        """End every source and the session; wait (bounded) until all is transcribed."""
        assert self.session is not None
        for source in list(self.session.sources):
            self.end_source(source)
        outcomes: dict[str, SourceOutcome] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                for source, task in self._ended.items():
                    outcomes[source] = await asyncio.shield(task)
        for source, task in self._ended.items():
            if source not in outcomes:
                ingest = self.session.sources.get(source)
                outcomes[source] = SourceOutcome(ingest.received_samples if ingest else 0, False)
                task.cancel()
        await self.session.close("client")
        return outcomes

    async def cleanup(self, reason: str) -> None:
        """Whatever happened, publish the audio received so far and close the session."""
        if self._ticker is not None:
            self._ticker.cancel()
        for task in self._ended.values():
            task.cancel()
        if self.relay is not None:
            await self.relay.stop()
        if self.session is not None:
            await self._flush_normalizers()
            await self.session.close(reason)
        await self.outbox.stop()

    @abc.abstractmethod
    async def on_transcript(self, event: TranscriptEvent) -> None:
        """Send a transcript event to the client in its protocol."""

    @abc.abstractmethod
    def on_backpressure(self, reason: str, source: str | None, amount_s: float) -> None:
        """Tell the client the bus or the workers fall behind."""

    def on_tick(self) -> None:  # noqa: B027 - optional hook
        """Called every second while the session is open."""

    def reject(self, code: str) -> None:
        metrics.PROTOCOL_ERRORS.labels(self.protocol, code).inc()
        log.info("client.rejected", code=code)

    async def _end_source(self, source: str) -> SourceOutcome:
        assert self.session is not None and self.relay is not None
        if source not in self.session.sources:
            return SourceOutcome(0, True)  # it never sent audio
        await self._flush_normalizer(source)
        end = await self.session.sources[source].close()
        timeout = self.hub.settings.finish_timeout_s
        done = await transcribed(
            self.hub.bus, self.relay.engine, self.session.session_id, source, timeout
        )
        caught_up = await self.relay.caught_up(source, timeout)
        return SourceOutcome(end, done and caught_up)

    async def _flush_normalizers(self) -> None:
        for source in list(self._normalizers):
            await self._flush_normalizer(source)

    async def _flush_normalizer(self, source: str) -> None:
        assert self.session is not None
        normalizer = self._normalizers.pop(source, None)
        ingest = self.session.sources.get(source)
        if normalizer is not None and ingest is not None:
            with contextlib.suppress(RuntimeError):
                await ingest.write(normalizer.flush())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._check_pressure()
            self.on_tick()

    def _check_pressure(self) -> None:
        assert self.session is not None and self.relay is not None
        settings = self.hub.settings
        for name, ingest in self.session.sources.items():
            self._edge(f"bus:{name}", ingest.backlog_s, settings.backlog_warn_s, "bus", name)
        lag = self.hub.workers.lag_s(self.relay.engine)
        self._edge("workers", lag, settings.worker_lag_warn_s, "workers", None)

    def _edge(self, key: str, value: float, warn: float, reason: str, source: str | None) -> None:
        if value >= warn and key not in self._pressure:
            self._pressure.add(key)
            metrics.BACKPRESSURE.labels(reason).inc()
            log.warning("backpressure", reason=reason, source=source, amount_s=round(value, 2))
            self.on_backpressure(reason, source, value)
        elif value < warn / 2:
            self._pressure.discard(key)
