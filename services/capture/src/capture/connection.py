"""What every WebSocket protocol shares: admission, the receive loop, a live session behind one
socket, normalization, speech boundaries and transcripts relayed back. A protocol is a subclass
that maps its messages onto these."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, TypeVar

import structlog
from pydantic import TypeAdapter, ValidationError
from starlette.websockets import WebSocket

from capture import metrics
from capture.audio import AudioFormat, Normalizer
from capture.auth import authorized, offered_subprotocols, same_site_or_allowed
from capture.hub import Hub
from capture.ingest import Segmentation
from capture.limits import max_session_samples
from capture.outbox import Outbox
from capture.relay import TranscriptEvent, TranscriptRelay
from capture.session import Session
from capture.vad import Boundary
from echostream_shared import messages as m
from echostream_shared.logging import get_logger

log = get_logger("connection")

VOICE_AGENT_SILENCE_MS = 500
"""Silence that ends speech on the OpenAI and Deepgram endpoints, OpenAI's server VAD default:
their clients are mostly voice agents, which wait for it."""

TICK_S = 1.0
SERVICE_RESTART = 1012
CLOSE_DRAIN_S = 2.0
T = TypeVar("T")


def parse_json(text: str) -> dict[str, Any]:
    """A text frame as a JSON object with a string ``type``, or a rejection saying what is wrong."""
    try:
        message = json.loads(text)
    except ValueError:
        raise Rejected("bad_json", "message is not valid JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise Rejected("bad_message", "message is not a JSON object with a string type")
    return message


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


class Fatal(Exception):
    """The connection cannot go on; the client is told why, then the socket closes with the code."""

    def __init__(self, message: str, close_code: int, code: str = "fatal") -> None:
        super().__init__(message)
        self.message = message
        self.close_code = close_code
        self.code = code


@dataclass(frozen=True)
class SourceOutcome:
    """How a source ended: its length, whether its transcription is complete, and why not when
    the engine gave up on it."""

    end_sample: int
    complete: bool
    failure: str | None = None


Refusal = Literal["unauthorized", "forbidden_origin", "capacity"]
REFUSALS: dict[Refusal, tuple[str, int]] = {
    "unauthorized": ("missing or wrong token", 1008),
    "forbidden_origin": ("a page of another origin may not open this socket", 1008),
    "capacity": ("server at capacity, try again later", 1013),
}


async def admit(ws: WebSocket, connection: type[LiveConnection]) -> None:
    """Accept a socket, check its token and the connection limit, then run its session."""
    hub: Hub = ws.app.state.hub
    offered = offered_subprotocols(ws)
    chosen = next((p for p in offered if p in connection.subprotocols), None)
    await ws.accept(subprotocol=chosen)
    live = connection(hub, ws)
    if not authorized(ws, hub.settings.token):
        metrics.PROTOCOL_ERRORS.labels(connection.protocol, "unauthorized").inc()
        await live.refuse("unauthorized")
        return
    if not same_site_or_allowed(ws, hub.settings.cors_origins):
        metrics.PROTOCOL_ERRORS.labels(connection.protocol, "forbidden_origin").inc()
        await live.refuse("forbidden_origin")
        return
    if not hub.connections.try_acquire():
        await live.refuse("capacity")
        return
    metrics.CONNECTIONS.labels(connection.protocol).inc()
    try:
        with structlog.contextvars.bound_contextvars(protocol=connection.protocol):
            await live.run()
    finally:
        hub.connections.release()
        metrics.CONNECTIONS.labels(connection.protocol).dec()


class LiveConnection(abc.ABC):
    """A session fed from one WebSocket, its transcripts and speech boundaries relayed back.

    The base owns the receive loop: binary frames go to ``on_binary``, text frames must be JSON
    objects with a string ``type`` and go to ``on_text``. Refused input (``Rejected``) is
    answered with the protocol's ``error_message`` and the connection goes on; ``Fatal`` ends
    it. Whatever ends the connection, the audio received so far is published and transcribed.
    """

    protocol: ClassVar[str] = "live"
    subprotocols: ClassVar[tuple[str, ...]] = ()
    """The first of these the client offers is selected on accept (browsers must get one of
    theirs back)."""
    refusal_texts: ClassVar[dict[Refusal, str]] = {}
    """The protocol's own wording of a refusal, where its clients expect one."""

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

    # The protocol's hooks.

    async def on_open(self) -> None:  # noqa: B027 - optional hook
        """Called once the client is admitted, before the first message is read."""

    def vad_silence_ms(self) -> int | None:
        """Silence that ends speech in the session this connection opens; None: capture's
        ``VAD_MIN_SILENCE_MS``."""
        return None

    @abc.abstractmethod
    async def on_text(self, message: dict[str, Any]) -> bool:
        """Handle a JSON message with a string ``type``; True when the client ends the session."""

    async def on_binary(self, data: bytes) -> None:
        """Handle a binary frame."""
        raise Rejected("unexpected_binary", "this protocol sends no binary frames")

    @abc.abstractmethod
    def error_message(self, exc: Rejected | Fatal) -> dict[str, Any]:
        """The protocol's error message for refused input or a fatal error."""

    async def on_finish(self) -> None:
        """The client ended the session: wait for the transcripts, then close."""
        if self.session is not None:
            await self.finish(self.hub.settings.finish_timeout_s)
        await self.outbox.drain(CLOSE_DRAIN_S)
        await self.close(1000)

    async def on_fatal(self, exc: Fatal) -> None:
        """Tell the client why the connection ends, then close with the error's code."""
        self.outbox.send(self.error_message(exc))
        await self.outbox.drain(CLOSE_DRAIN_S)
        await self.close(exc.close_code)

    @abc.abstractmethod
    async def on_transcript(self, event: TranscriptEvent) -> None:
        """Send a transcript event to the client in its protocol."""

    def on_engine_failure(self, source: str, failure: str) -> None:  # noqa: B027 - optional hook
        """The engine gave up on ``source`` for good (a permanent job failure): nothing more of
        it will be transcribed, though its audio is still received and stored. Tell the client
        in the protocol's shape; ``SourceOutcome.failure`` also carries it at the source's end."""

    def on_speech(self, source: str, boundary: Boundary) -> None:  # noqa: B027 - optional hook
        """A speech boundary of ``source`` is on the bus."""

    def on_backpressure(self, reason: str, source: str | None, amount_s: float) -> None:  # noqa: B027
        """The bus or the workers fall behind (reported once per episode)."""

    def on_tick(self) -> None:  # noqa: B027 - optional hook
        """Called every second while the session is open."""

    # The loop.

    async def refuse(self, refusal: Refusal) -> None:
        """Turn the client away in its protocol."""
        message, close_code = REFUSALS[refusal]
        message = self.refusal_texts.get(refusal, message)
        with contextlib.suppress(RuntimeError):  # the client left already
            await self.ws.send_text(
                json.dumps(self.error_message(Fatal(message, close_code, refusal)))
            )
        await self.close(close_code)

    async def run(self) -> None:
        """Serve the socket until the session ends, then clean up."""
        self.outbox.start()
        reason = "client"
        try:
            await self.on_open()
            if await self._serve():
                await self.on_finish()
        except Disconnected as exc:
            reason = exc.reason
            log.info("client.disconnected", code=exc.code)
        except Fatal as exc:
            reason = "refused"
            self.reject(exc.code)
            await self.on_fatal(exc)
        except Exception:
            reason = "error"
            metrics.PROTOCOL_ERRORS.labels(self.protocol, "internal").inc()
            log.exception("connection.failed")
            await self.on_fatal(Fatal("internal server error", 1011, "internal"))
        finally:
            await self.cleanup(reason)

    async def _serve(self) -> bool:
        """Dispatch messages until the client ends the session (True) or the protocol is done."""
        while not self.done():
            try:
                data = await self.receive()
                if isinstance(data, bytes):
                    await self.on_binary(data)
                elif await self.on_text(parse_json(data)):
                    return True
            except Rejected as exc:
                self.reject(exc.code)
                self.outbox.send(self.error_message(exc))
        return True

    def done(self) -> bool:
        """True when the session is over without an explicit end (e.g. every source ended)."""
        return False

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

    def validate(self, adapter: TypeAdapter[T], raw: dict[str, Any]) -> T:
        """``raw`` as the protocol's message model, or a ``bad_message`` rejection saying why."""
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "message"
            kind = str(raw.get("type"))[:64]
            raise Rejected("bad_message", f"invalid {kind}: {where}: {first['msg']}") from None

    async def close(self, code: int) -> None:
        """Close the socket; a client that closed first is not an error."""
        try:
            await self.ws.close(code)
        except Exception as exc:  # already closed by the client or the transport
            log.debug("close.skipped", error=type(exc).__name__)

    async def open_session(self, engine: str, metadata: dict[str, str]) -> Session:
        """Publish the session and start relaying ``engine``'s transcripts."""
        ingest = self.hub.ingest
        if (silence_ms := self.vad_silence_ms()) is not None:
            vad = replace(ingest.vad, min_silence=silence_ms * m.SAMPLE_RATE // 1000)
            ingest = replace(ingest, vad=vad)
        session = Session(
            self.hub.bus,
            ingest,
            client=self.protocol,
            engines=self.hub.settings.engines,
            metadata=metadata,
            abort=self.hub.abort,
            on_boundary=self.on_speech,
        )
        structlog.contextvars.bind_contextvars(session_id=session.session_id)
        self.relay = TranscriptRelay(
            self.hub.bus, session.session_id, engine, self.on_transcript, self._engine_failed
        )
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

    async def cut(self, source: str, mode: Segmentation | None = None) -> int:
        """End ``source``'s speech segment now, at the end of the audio received so far; the
        boundary goes on the bus at once. Returns the sample of the cut (0 before any audio)."""
        assert self.session is not None
        ingest = self.session.sources.get(source)
        if ingest is None or source in self._ended:
            return ingest.received_samples if ingest is not None else 0
        await self._flush_normalizer(source)
        return await ingest.cut(mode)

    async def set_segmentation(self, source: str, mode: Segmentation) -> None:
        """Segment ``source`` by capture's VAD or by the client's cuts from now on."""
        assert self.session is not None
        ingest = await self.session.source(source)
        await ingest.cut(mode)

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

    def reject(self, code: str) -> None:
        metrics.PROTOCOL_ERRORS.labels(self.protocol, code).inc()
        log.info("client.rejected", code=code)

    async def _engine_failed(self, source: str, failure: str) -> None:
        log.warning("engine.failed", source=source, failure=failure)
        self.on_engine_failure(source, failure)

    async def _end_source(self, source: str) -> SourceOutcome:
        assert self.session is not None and self.relay is not None
        if source not in self.session.sources:
            return SourceOutcome(0, True)  # it never sent audio
        await self._flush_normalizer(source)
        end = await self.session.sources[source].close()
        done = await self.relay.wait_transcribed(source, self.hub.settings.finish_timeout_s)
        failure = self.relay.failures.get(source)
        return SourceOutcome(end, done and failure is None, failure)

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
