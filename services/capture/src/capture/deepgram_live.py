"""``GET /v1/listen``: Deepgram's live transcription WebSocket, as its SDKs speak it.

Binary frames are audio (raw with ``encoding`` and ``sample_rate``, or a container); text frames
are ``KeepAlive``, ``Finalize``, ``CloseStream`` (and ``Configure``). Each VAD segment's final is
one ``is_final`` Results; where capture's VAD ended the speech (and the silence lasts
``endpointing``) it is also ``speech_final`` (rules in ``deepgram_timeline``). With
``multichannel=true`` every channel is a source of the one session. docs/clients-deepgram.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from typing import Any, ClassVar

import numpy as np
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from capture.audio import AudioFormat
from capture.auth import authorized
from capture.connection import (
    CLOSE_DRAIN_S,
    VOICE_AGENT_SILENCE_MS,
    Fatal,
    LiveConnection,
    Rejected,
    admit,
)
from capture.deepgram_events import (
    CONTROL_MESSAGE,
    CONTROL_TYPES,
    EMPTY,
    CloseStream,
    Configure,
    ConfigureFailure,
    ConfigureSuccess,
    EngineModel,
    Error,
    Finalize,
    ListenOptions,
    OptionError,
    SpeechStarted,
    UtteranceEnd,
    created_now,
    final_alternative,
    listen_options,
    partial_alternative,
    results,
    seconds,
)
from capture.deepgram_timeline import Due, Rules, Timeline
from capture.frame_carry import FrameCarry
from capture.hub import Hub
from capture.limits import format_problem
from capture.relay import TranscriptEvent
from capture.silero import WINDOW
from capture.stream_decoder import (
    WAV_HEADER_MAX,
    Block,
    ContainerDecoder,
    DecodeFailed,
    is_wav,
    wav_start,
)
from capture.vad import Boundary
from echostream_shared import messages as m
from echostream_shared.logging import get_logger

log = get_logger("deepgram")

RATE = m.SAMPLE_RATE
IDLE_TIMEOUT_S = 10.0
"""Deepgram closes a stream that sent neither audio nor a text message for this long (NET-0001)."""
IDLE_CLOSE_CODE = 1011
IDLE_REASON = "NET-0001: no audio or text message received within the timeout window"
ENGINE_FAILED_CODE = 1011
ENGINE_FAILED_REASON = "the engine failed: the stream's audio is stored, no more is transcribed"
SCHEMA_CODES = frozenset({"bad_json", "bad_message", "unknown_type"})
DATA_ERRORS = frozenset({"undecodable", "unsupported_format"})


async def listen_endpoint(ws: WebSocket) -> None:
    """The WebSocket endpoint: a bad token or bad options refuse the handshake, as Deepgram does."""
    hub: Hub = ws.app.state.hub
    if not authorized(ws, hub.settings.token):
        await _deny(ws, 401, "INVALID_AUTH", "Invalid credentials.")
        return
    try:
        options = listen_options(dict(ws.query_params))
        problem = _format_problem(options, hub)
    except OptionError as exc:
        problem = str(exc)
    if problem is not None:
        await _deny(ws, 400, "Bad Request", problem)
        return
    if hub.connections.open >= hub.settings.max_connections:  # admit checks it again, atomically
        await _deny(ws, 429, "TOO_MANY_REQUESTS", "server at capacity, try again later")
        return
    await admit(ws, DeepgramLive)


def _format_problem(options: ListenOptions, hub: Hub) -> str | None:
    fmt = options.raw_format()
    channels = 1 if options.multichannel else options.channels
    if fmt is not None:
        return format_problem(AudioFormat(fmt.sample_rate, channels, fmt.encoding), hub.settings)
    if not options.multichannel and options.channels > hub.settings.max_channels:
        return f"channels {options.channels} is outside 1-{hub.settings.max_channels}"
    return None


async def _deny(ws: WebSocket, status: int, code: str, message: str) -> None:
    """Refuse the upgrade with an HTTP answer in Deepgram's REST error shape."""
    request_id = str(uuid.uuid4())
    log.info("deepgram.refused", status=status, code=code)
    if "websocket.http.response" not in ws.scope.get("extensions", {}):
        await ws.close(1008)
        return
    body = {"err_code": code, "err_msg": message, "request_id": request_id}
    headers = {"dg-error": message[:200], "dg-request-id": request_id}
    await ws.send_denial_response(JSONResponse(body, status_code=status, headers=headers))


class DeepgramLive(LiveConnection):
    """One Deepgram live stream: a session with one source, or one per channel."""

    protocol: ClassVar[str] = "deepgram"
    subprotocols: ClassVar[tuple[str, ...]] = ("token", "bearer")

    def __init__(self, hub: Hub, ws: WebSocket) -> None:
        super().__init__(hub, ws)
        self.options = listen_options(dict(ws.query_params))
        self.engine = self.options.engine(hub.settings.engines)
        self.model = EngineModel(self.engine)
        self.created = created_now()
        self.request_id = str(uuid.uuid4())
        channels = self.options.channels if self.options.multichannel else 1
        self.names = [f"channel-{i}" for i in range(channels)] if channels > 1 else ["default"]
        self._raw = self.options.raw_format()
        self._decoder: ContainerDecoder | None = None
        self._head = bytearray()
        self._carry: FrameCarry | None = None
        self._sha = hashlib.sha256()
        self._closing = False
        self._finished = False
        self._last_activity = 0.0
        self._finalized: set[str] = set()
        self._timelines: dict[str, Timeline] = {}
        self._rules = _rules(self.options, hub)
        self._ending: asyncio.Task[None] | None = None

    # Hooks.

    async def on_open(self) -> None:
        if self._raw is not None:
            self._use_raw(self._raw, from_stream=False)
        metadata = {"model": self.options.model[:128]} if self.options.model else {}
        session = await self.open_session(self.engine, metadata)
        self.request_id = session.session_id
        self._touch()

    def vad_silence_ms(self) -> int:
        """The least ``endpointing`` can ask for (docs/clients-deepgram.md)."""
        return VOICE_AGENT_SILENCE_MS

    async def on_text(self, message: dict[str, Any]) -> bool:
        self._touch()
        kind = message["type"]
        if kind not in CONTROL_TYPES:
            raise Rejected("unknown_type", f"unknown message type {kind[:64]!r}")
        control = self.validate(CONTROL_MESSAGE, message)
        if isinstance(control, CloseStream):
            return True
        if isinstance(control, Finalize):
            await self._finalize()
        elif isinstance(control, Configure):
            self._configure(control)
        return False

    async def on_binary(self, data: bytes) -> None:
        self._touch()
        if not data:  # the legacy end of stream
            self._closing = True
            return
        self._sha.update(data)
        if self._decoder is not None:
            await self._feed_decoder(data)
        elif self._raw is not None:
            await self._write_raw(data)
        else:
            await self._sniff(data)
        self._check_silences()

    def done(self) -> bool:
        return self._closing or self._ending is not None

    def error_message(self, exc: Rejected | Fatal) -> dict[str, Any]:
        variant = "SchemaError" if exc.code in SCHEMA_CODES else _variant(exc.code)
        return Error(variant=variant, description=exc.message, message=exc.message).json_dict()

    async def on_finish(self) -> None:
        await asyncio.shield(self._end(1000))

    async def on_fatal(self, exc: Fatal) -> None:
        """Audio that stops decoding ends the stream (Deepgram's DATA-0000, 1008) after what
        was heard is transcribed and sent; other fatal errors close at once."""
        self.outbox.send(self.error_message(exc))
        if exc.code in DATA_ERRORS:
            await asyncio.shield(self._end(exc.close_code))
            return
        await self.outbox.drain(CLOSE_DRAIN_S)
        await self.close(exc.close_code)

    async def cleanup(self, reason: str) -> None:
        if self._ending is not None and not self._ending.done():
            self._ending.cancel()  # the client left while its last finals were awaited
        if self._decoder is not None:
            await self._decoder.close()
        await super().cleanup(reason)

    async def on_transcript(self, event: TranscriptEvent) -> None:
        if self._finished or event.segment_id in self._finalized:
            return
        channel = self._channel(event.source)
        timeline = self._timeline(event.source)
        if isinstance(event, m.TranscriptPartial):
            self._send_due(event.source, timeline.partial(event.start_sample))
            if self.options.interim_results:
                message = results(
                    channel=channel,
                    start_sample=event.start_sample,
                    end_sample=event.end_sample,
                    alternative=partial_alternative(event, self.options.punctuated),
                    is_final=False,
                    speech_final=False,
                    from_finalize=False,
                    metadata=self.model.results_metadata(self.request_id),
                )
                self.outbox.send(message.json_dict(), droppable=True)
            return
        self._finalized.add(event.segment_id)
        alternative = final_alternative(event, self.options.punctuated)
        last_word = max((round(w.end * RATE) for w in alternative.words), default=None)
        before, locked = timeline.final(
            event.start_sample, event.end_sample, last_word, self._silent_until(event.source)
        )
        self._send_due(event.source, before)
        message = results(
            channel=channel,
            start_sample=locked.start,
            end_sample=locked.end,
            alternative=alternative,
            is_final=True,
            speech_final=locked.speech_final,
            from_finalize=locked.from_finalize,
            metadata=self.model.results_metadata(self.request_id),
        )
        self.outbox.send(message.json_dict())
        self._check_silences()

    def on_speech(self, source: str, boundary: Boundary) -> None:
        timeline = self._timeline(source)
        if boundary.kind == "started":
            timeline.started(boundary.sample)
            if self.options.vad_events:
                started = SpeechStarted(
                    channel=self._channel(source), timestamp=seconds(boundary.sample)
                )
                self.outbox.send(started.json_dict())
        else:
            timeline.ended(boundary.sample)

    def on_tick(self) -> None:
        self._check_silences()
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last_activity
        if idle >= IDLE_TIMEOUT_S and not self.done():
            log.info("deepgram.idle_close", idle_s=IDLE_TIMEOUT_S)
            self._end(IDLE_CLOSE_CODE, IDLE_REASON)

    def on_engine_failure(self, source: str, failure: str) -> None:
        """An ``Error`` (``ServerError``) naming the channel; once no channel is transcribed any
        more, the stream ends as Deepgram ends one on a server error: the finals already made,
        Metadata, then a 1011 close, which Deepgram clients answer by reconnecting."""
        index, _ = self._channel(source)
        message = f"transcription of channel {index} failed: {failure}"
        error = Error(
            variant="ServerError",
            description=f"{message}; its audio is stored, no more of it is transcribed",
            message=message,
        )
        self.outbox.send(error.json_dict())
        assert self.relay is not None
        if all(name in self.relay.failures for name in self.names) and not self.done():
            log.info("deepgram.engine_failed_close", channels=len(self.names))
            self._end(ENGINE_FAILED_CODE, ENGINE_FAILED_REASON)

    # Audio in.

    async def _write_raw(self, data: bytes) -> None:
        """Audio is a byte stream: a frame may split a sample, the rest waits for the next one."""
        assert self._raw is not None and self._carry is not None
        data = self._carry.push(data)
        if not data:
            return
        if len(self.names) == 1:
            await self.write_audio(self.names[0], data)
            return
        width = self._raw.frame_bytes // len(self.names)
        interleaved = np.frombuffer(data, dtype=np.uint8).reshape(-1, len(self.names), width)
        for index, name in enumerate(self.names):
            await self.write_audio(name, interleaved[:, index, :].tobytes())

    def _use_raw(self, fmt: AudioFormat, *, from_stream: bool = True) -> None:
        """From now on the stream is raw audio in ``fmt`` (declared, or read from the stream)."""
        if self.options.multichannel and from_stream:
            self._name_channels(fmt.channels)
        problem = format_problem(AudioFormat(fmt.sample_rate, 1, fmt.encoding), self.hub.settings)
        if not self.options.multichannel and problem is None:
            problem = format_problem(fmt, self.hub.settings)
        if problem is not None:
            raise Fatal(problem, 1008, "unsupported_format")
        self._raw = fmt
        self._carry = FrameCarry(fmt.frame_bytes)
        mono = AudioFormat(fmt.sample_rate, 1, fmt.encoding)
        self.formats = dict.fromkeys(self.names, mono if len(self.names) > 1 else fmt)

    def _name_channels(self, channels: int) -> None:
        if channels > self.hub.settings.max_sources:
            raise Fatal(
                f"at most {self.hub.settings.max_sources} channels", 1008, "unsupported_format"
            )
        self.names = [f"channel-{i}" for i in range(channels)] if channels > 1 else ["default"]

    async def _sniff(self, data: bytes) -> None:
        """A stream without ``encoding``: WAV is read by its header, anything else by PyAV."""
        self._head += data
        head = bytes(self._head)
        if is_wav(head):
            try:
                start = wav_start(head)
            except ValueError:
                start = None
            else:
                if start is None and len(head) < WAV_HEADER_MAX:
                    return
            if start is not None:
                self._head = bytearray()
                self._use_raw(start.format)
                await self._write_raw(head[start.data_offset :])
                return
        elif len(head) < 12:
            return
        self._head = bytearray()
        self._decoder = ContainerDecoder(self._decoded)
        await self._feed_decoder(head)

    async def _feed_decoder(self, data: bytes) -> None:
        assert self._decoder is not None
        try:
            await self._decoder.feed(data)
        except DecodeFailed as exc:
            raise Fatal(str(exc), 1008, "undecodable") from None

    async def _decoded(self, rate: int, channels: int, block: Block) -> None:
        """Decoded container audio (float32, ``channels`` interleaved) into the sources."""
        if not self.formats:
            self._use_raw(AudioFormat(rate, channels, "pcm_f32le"))
        elif next(iter(self.formats.values())).sample_rate != rate:
            raise DecodeFailed("the sample rate changes within the stream")
        if len(self.names) == 1:
            await self.write_audio(self.names[0], block.astype("<f4").tobytes())
            return
        if channels != len(self.names):
            raise DecodeFailed("the channel count changes within the stream")
        for index, name in enumerate(self.names):
            await self.write_audio(
                name, np.ascontiguousarray(block[:, index]).astype("<f4").tobytes()
            )

    async def _flush_input(self) -> None:
        if self._decoder is not None:
            try:
                await self._decoder.finish()
            except DecodeFailed as exc:
                self.outbox.send(self.error_message(Rejected("undecodable", str(exc))))
        if self._carry is not None and (dropped := self._carry.drop()):
            message = f"the stream ended inside a sample: its last {dropped} bytes are dropped"
            self.outbox.send(self.error_message(Rejected("bad_frame", message)))

    # Control.

    async def _finalize(self) -> None:
        """Cut every source's speech now. The last final of what this flushes — the segment the
        cut ended, or one the VAD ended whose final is still due — says ``from_finalize``; with
        nothing to flush, an empty ``from_finalize`` Results answers at once."""
        for name in self.names:
            at = await self.cut(name)
            self._send_due(name, self._timeline(name).finalize(at))

    def _configure(self, configure: Configure) -> None:
        if configure.keyterms is not None:
            failure = ConfigureFailure(
                request_id=self.request_id,
                code="CONFIGURE_KEYTERMS_NOT_SUPPORTED",
                description="this model does not support keyterms",
            )
            self.outbox.send(failure.json_dict())
            return
        self.outbox.send(ConfigureSuccess(request_id=self.request_id).json_dict())

    def _end(self, code: int, reason: str = "") -> asyncio.Task[None]:
        """End the stream once, however many ways ask: CloseStream, the idle timeout, bad data."""
        if self._ending is None:
            self._ending = asyncio.create_task(self._flush_and_close(code, reason), name="end")
        return self._ending

    async def _flush_and_close(self, code: int, reason: str) -> None:
        """Every final of the audio received, any last UtteranceEnd, Metadata, then the close."""
        await self._flush_input()
        if self.session is not None:
            await self.finish(self.hub.settings.finish_timeout_s)
        self._check_silences(at_end=True)
        self._finished = True
        self.outbox.send(self._metadata())
        await self.outbox.drain(CLOSE_DRAIN_S)
        with contextlib.suppress(Exception):  # the client closed first
            await self.ws.close(code, reason)

    # Mapping.

    def _touch(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()

    def _channel(self, source: str) -> tuple[int, int]:
        index = self.names.index(source) if source in self.names else 0
        return index, len(self.names)

    def _timeline(self, source: str) -> Timeline:
        timeline = self._timelines.get(source)
        if timeline is None:
            timeline = self._timelines[source] = Timeline(self._rules)
        return timeline

    def _check_silences(self, *, at_end: bool = False) -> None:
        """Late endpoints and utterance ends that the silence heard so far has made certain."""
        for source, timeline in self._timelines.items():
            self._send_due(source, timeline.due(self._silent_until(source), at_end=at_end))

    def _send_due(self, source: str, due: list[Due]) -> None:
        channel = self._channel(source)
        for item in due:
            if item.kind == "utterance_end":
                message = UtteranceEnd(channel=channel, last_word_end=seconds(item.sample))
                self.outbox.send(message.json_dict())
                continue
            empty = results(
                channel=channel,
                start_sample=item.sample,
                end_sample=item.sample,
                alternative=EMPTY,
                is_final=True,
                speech_final=item.kind == "endpoint",
                from_finalize=item.kind == "finalized",
                metadata=self.model.results_metadata(self.request_id),
            )
            self.outbox.send(empty.json_dict())

    def _silent_until(self, source: str) -> int:
        """How far the VAD has surely heard no speech begin: a start is reported only after
        ``VAD_MIN_SPEECH_MS`` of speech and placed ``VAD_PRE_ROLL_MS`` before it."""
        ingest = self.session.sources.get(source) if self.session is not None else None
        if ingest is None:
            return 0
        settings = self.hub.settings
        undetectable = (settings.vad_pre_roll_ms + settings.vad_min_speech_ms) * RATE // 1000
        analysed = ingest.received_samples - int(ingest.backlog_s * RATE)
        return analysed - undetectable - WINDOW

    def _metadata(self) -> dict[str, Any]:
        duration = 0.0
        if self.session is not None:
            received = [i.received_samples for i in self.session.sources.values()]
            duration = max(received, default=0) / RATE
        metadata = self.model.metadata(
            self.request_id,
            self._sha.hexdigest(),
            self.created,
            duration,
            self._raw.channels if self._raw is not None else self.options.channels,
        )
        return metadata.json_dict()


def _rules(options: ListenOptions, hub: Hub) -> Rules:
    ms = RATE // 1000
    return Rules(
        endpointing=None if options.endpointing is False else options.endpointing * ms,
        utterance_gap=None if options.utterance_end_ms is None else options.utterance_end_ms * ms,
        post_roll=hub.settings.vad_post_roll_ms * ms,
    )


def _variant(code: str) -> str:
    if code in ("unauthorized", "capacity", "internal", "fatal"):
        return "ServerError" if code == "internal" else "ConnectionError"
    return "DataError"
