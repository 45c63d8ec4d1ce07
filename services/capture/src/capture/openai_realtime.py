"""``/v1/realtime``: OpenAI's Realtime API in transcription mode (GA and beta event shapes).

The client appends base64 audio; capture's VAD (or the client's commits, with
``turn_detection: null``) delimits items; the engine's partials become append-only deltas and its
finals the ``completed`` transcripts. No responses are ever created. The bus session opens with
the first audio, so a ``session.update`` sent before it may still pick the format and the engine.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import replace
from typing import Any, ClassVar

from pydantic import ValidationError
from starlette.websockets import WebSocket

from capture.connection import (
    VOICE_AGENT_SILENCE_MS,
    Fatal,
    LiveConnection,
    Refusal,
    Rejected,
    admit,
)
from capture.frame_carry import FrameCarry
from capture.hub import Hub
from capture.limits import format_problem
from capture.openai_realtime_events import (
    CLIENT_EVENT,
    CLIENT_TYPES,
    RESPONSE_TYPES,
    Append,
    Clear,
    Commit,
    Dialect,
    ServerVad,
    SessionConfig,
    SessionUpdate,
    TranscriptionSessionUpdate,
    VadSettings,
    cleared,
    error_event,
    new_id,
    transcription_failed,
)
from capture.openai_realtime_items import Event, Items
from capture.openai_transcription_formats import ENGINE_FAILED
from capture.relay import TranscriptEvent
from capture.silero import WINDOW
from capture.vad import Boundary
from echostream_shared import messages as m
from echostream_shared.logging import get_logger

log = get_logger("openai_realtime")

SOURCE = "default"
RATE = m.SAMPLE_RATE
MIN_COMMIT_MS = 100
MIN_SILENCE_MS = WINDOW * 1000 // RATE  # one VAD window
COMPLETION_GRACE_S = 10.0
"""An ended item with no final after this (plus the workers' lag) completes with what it has."""
BETA_HEADER = "realtime=v1"
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
COMMITTED = "input_audio_buffer.committed"
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"

# Our rejection codes in OpenAI's terms: (code, param).
CODES: dict[str, tuple[str, str | None]] = {
    "bad_json": ("invalid_json", None),
    "bad_message": ("invalid_value", None),
    "bad_frame": ("invalid_value", "audio"),
    "frame_too_large": ("invalid_value", None),
    "unexpected_binary": ("invalid_value", None),
    "unauthorized": ("invalid_api_key", None),
}


class OpenAIRejected(Rejected):
    """A refusal that names the offending parameter."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(code, message)
        self.param = param


async def realtime_endpoint(ws: WebSocket) -> None:
    """The WebSocket endpoint."""
    await admit(ws, OpenAIRealtimeConnection)


def engine_for(hub: Hub, model: str | None) -> str:
    """A configured engine named by ``model``, else the default engine."""
    engines = hub.settings.engines
    return model if model in engines else engines[0]


class OpenAIRealtimeConnection(LiveConnection):
    """One transcription session."""

    protocol: ClassVar[str] = "openai"
    subprotocols: ClassVar[tuple[str, ...]] = ("realtime",)
    refusal_texts: ClassVar[dict[Refusal, str]] = {"unauthorized": "Incorrect API key provided."}

    def __init__(self, hub: Hub, ws: WebSocket) -> None:
        super().__init__(hub, ws)
        self.session_id = new_id("sess")
        self.dialect: Dialect = "beta" if _beta(ws) else "ga"
        self.config = SessionConfig()
        self.model = ws.query_params.get("model") or None
        self.items = Items(self.dialect)
        settings = hub.settings
        self.vad = VadSettings(
            settings.vad_threshold, settings.vad_pre_roll_ms, VOICE_AGENT_SILENCE_MS
        )
        self._event_id: str | None = None  # of the client event being handled
        self._frames = 0  # whole frames appended so far, at the client's rate
        self._carry: FrameCarry | None = None  # a sample split between appends
        self._failure: str | None = None  # why the engine gave up on the session's audio
        self._transcribing: dict[str, None] = {}  # committed items not completed yet, in order
        self._failed: set[str] = set()  # items told they failed: nothing more is sent of them
        self._buffer_start = 0  # where the uncommitted audio begins (16 kHz samples)

    # -- the protocol's hooks ------------------------------------------------------------------

    async def on_open(self) -> None:
        self._send({"type": "session.created", "session": self._session_object(self.dialect)})

    async def on_text(self, message: dict[str, Any]) -> bool:
        event_id = message.get("event_id")
        self._event_id = event_id[:512] if isinstance(event_id, str) else None
        await self._dispatch(message)
        self._event_id = None  # an error raised above still names it (see error_message)
        return False  # the client ends the session by closing the socket

    def error_message(self, exc: Rejected | Fatal) -> dict[str, Any]:
        code, param = CODES.get(exc.code, (exc.code, None))
        if isinstance(exc, OpenAIRejected):
            param = exc.param
        event = error_event(code, exc.message, param=param, event_id=self._event_id)
        self._event_id = None
        if isinstance(exc, Fatal) and exc.code != "unauthorized":
            event["error"]["type"] = "server_error"
        event["event_id"] = new_id("event")
        return event

    async def on_transcript(self, event: TranscriptEvent) -> None:
        self._send_all(self.items.transcript(event, time.monotonic()))

    def on_speech(self, source: str, boundary: Boundary) -> None:
        if boundary.kind == "started":
            self._send_all(self.items.start(boundary.sample, announce=not self.config.manual))
        else:
            self._buffer_start = max(self._buffer_start, boundary.sample)
            self._send_all(self.items.end(boundary.sample, time.monotonic()))

    def on_engine_failure(self, source: str, failure: str) -> None:
        """An ``error`` at once; every committed item still waiting for its transcript, and every
        item committed from now on, gets ``...input_audio_transcription.failed`` instead of
        ``completed``. The session goes on: its audio is still received and stored."""
        self._failure = failure
        message = f"the transcription engine failed: {failure}; the audio is stored"
        event = error_event(ENGINE_FAILED, message)
        event["error"]["type"] = "server_error"
        self._send(event)
        waiting, self._transcribing = list(self._transcribing), {}
        for item_id in waiting:
            self._fail(item_id)

    def on_tick(self) -> None:
        assert self.relay is not None
        grace = COMPLETION_GRACE_S + self.hub.workers.lag_s(self.relay.engine)
        self._send_all(self.items.overdue(time.monotonic(), grace))

    # -- client events -------------------------------------------------------------------------

    async def _dispatch(self, raw: dict[str, Any]) -> None:
        kind: str = raw["type"]
        if kind in RESPONSE_TYPES:
            raise OpenAIRejected(
                "invalid_value",
                f"{kind} is not available in a transcription session: it never creates responses",
                "type",
            )
        if kind not in CLIENT_TYPES:
            supported = ", ".join(sorted(CLIENT_TYPES))
            raise OpenAIRejected(
                "invalid_value",
                f"Invalid value: {kind[:64]!r}. Supported values are: {supported}.",
                "type",
            )
        try:
            event = CLIENT_EVENT.validate_python(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(part) for part in first["loc"][1:]) or None  # after the type tag
            code = "missing_required_parameter" if first["type"] == "missing" else "invalid_value"
            raise OpenAIRejected(code, f"Invalid '{param}': {first['msg']}", param) from None
        if isinstance(event, Append):
            await self._append(event)
        elif isinstance(event, Commit):
            await self._commit()
        elif isinstance(event, Clear):
            await self._clear()
        elif isinstance(event, SessionUpdate):
            await self._update(self.config.updated_ga(event.session), "ga")
        elif isinstance(event, TranscriptionSessionUpdate):
            await self._update(self.config.updated_beta(event.session), "beta")

    async def _update(self, config: SessionConfig, dialect: Dialect) -> None:
        fmt = config.audio_format
        if (problem := format_problem(fmt, self.hub.settings)) is not None:
            raise OpenAIRejected("invalid_value", problem, _format_param(dialect))
        if self.session is not None and fmt != self.formats[SOURCE]:
            raise OpenAIRejected(
                "invalid_value",
                "the input audio format cannot change after audio was appended",
                _format_param(dialect),
            )
        was_manual = self.config.manual
        self.config = config
        vad = config.turn_detection
        if self.session is None and isinstance(vad, ServerVad):
            # the detector is made with the session: a later change is reported as not applied
            silence_ms = max(vad.silence_duration_ms or VOICE_AGENT_SILENCE_MS, MIN_SILENCE_MS)
            self.vad = replace(self.vad, silence_duration_ms=silence_ms)
        self.items.logprobs = config.logprobs
        if self.session is not None and config.manual != was_manual:
            await self.set_segmentation(SOURCE, "manual" if config.manual else "vad")
        reply = "session.updated" if dialect == "ga" else "transcription_session.updated"
        self._send({"type": reply, "session": self._session_object(dialect)})

    def vad_silence_ms(self) -> int:
        return self.vad.silence_duration_ms

    async def _append(self, append: Append) -> None:
        try:
            data = base64.b64decode(append.audio, validate=True)
        except (binascii.Error, ValueError):
            raise OpenAIRejected("invalid_value", "audio is not valid base64", "audio") from None
        if not data:
            return
        if self.session is None:
            await self._open()
        assert self._carry is not None
        # An append may end inside a sample (an odd byte count of pcm16): its head waits for
        # the next append, as a byte stream would; only a commit or the end leaves it dangling.
        whole = self._carry.push(data)
        if not whole:
            return
        await self.write_audio(SOURCE, whole)
        self._frames += len(whole) // self._carry.frame_bytes

    @property
    def _appended(self) -> int:
        """16 kHz samples appended so far."""
        if self.session is None:
            return 0
        return self._frames * RATE // self.formats[SOURCE].sample_rate

    async def _commit(self) -> None:
        buffered_ms = max(0, self._appended - self._buffer_start) * 1000 // RATE
        if buffered_ms < MIN_COMMIT_MS:
            raise OpenAIRejected(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms}ms of audio.",
            )
        self._drop_split_sample("the committed audio")
        cut = await self.cut(SOURCE)
        start, self._buffer_start = self._buffer_start, max(self._buffer_start, cut)
        if self.items.last_end != cut and not self.config.manual and cut - start >= RATE // 10:
            # Server VAD heard no speech in what is committed: an item with nothing to transcribe.
            self._send_all(self.items.commit_silence(start, cut))

    async def _clear(self) -> None:
        self.items.clear()
        if self._carry is not None:
            self._carry.drop()  # part of the audio cleared
        if self.session is not None and self._appended > self._buffer_start:
            self.items.discarding = True
            try:
                self._buffer_start = max(self._buffer_start, await self.cut(SOURCE))
            finally:
                self.items.discarding = False
        self._buffer_start = max(self._buffer_start, self._appended)
        self._send(cleared())

    async def _open(self) -> None:
        """The bus session, opened with the first audio."""
        transcription = self.config.transcription
        chosen = self.model or (transcription.model if transcription is not None else None)
        engine = engine_for(self.hub, chosen)
        self.formats[SOURCE] = self.config.audio_format
        self._carry = FrameCarry(self.config.audio_format.frame_bytes)
        metadata = {"openai_session_id": self.session_id}
        if chosen:
            metadata["model"] = chosen[:64]
        await self.open_session(engine, metadata)
        if self.config.manual:
            await self.set_segmentation(SOURCE, "manual")
        log.info("openai.session", engine=engine, dialect=self.dialect, manual=self.config.manual)

    def _drop_split_sample(self, what: str) -> None:
        """Bytes of a sample no append finished: dropped, and the client told in an error."""
        if self._carry is None or not (dropped := self._carry.drop()):
            return
        self.reject("bad_frame")
        message = (
            f"{what} ends inside a sample: its last {dropped} byte(s) are dropped "
            f"({self._carry.frame_bytes}-byte samples)"
        )
        self.outbox.send(self.error_message(OpenAIRejected("invalid_value", message, "audio")))

    async def cleanup(self, reason: str) -> None:
        if reason == "client":  # still connected: say what was dropped
            self._drop_split_sample("the audio at the end of the session")
        elif self._carry is not None:
            self._carry.drop()  # a client that left, was refused or failed is not blamed
        await super().cleanup(reason)

    # -- sending -------------------------------------------------------------------------------

    def _session_object(self, dialect: Dialect) -> dict[str, Any]:
        if dialect == "ga":
            return self.config.ga_session(self.session_id, self.vad)
        return self.config.beta_session(self.session_id, self.vad)

    def _send(self, event: Event) -> None:
        self.outbox.send({"event_id": new_id("event"), **event})

    def _send_all(self, events: list[Event]) -> None:
        """Item events in order; once the engine failed, an item committed is failed after its
        item event, and a failed item gets no deltas or ``completed``."""
        failing: list[str] = []
        for event in events:
            kind, item_id = event["type"], event.get("item_id")
            if item_id in self._failed and kind in (DELTA, COMPLETED):
                continue
            self._send(event)
            if kind == COMMITTED and isinstance(item_id, str):
                if self._failure is None:
                    self._transcribing[item_id] = None
                else:
                    self._failed.add(item_id)
                    failing.append(item_id)
            elif kind == COMPLETED:
                self._transcribing.pop(str(item_id), None)
        for item_id in failing:
            self._fail(item_id)

    def _fail(self, item_id: str) -> None:
        self._failed.add(item_id)
        assert self._failure is not None
        message = f"Transcription failed: {self._failure}"
        self._send(transcription_failed(item_id, ENGINE_FAILED, message))


def _beta(ws: WebSocket) -> bool:
    offered = ws.headers.get("sec-websocket-protocol", "")
    return BETA_HEADER in ws.headers.get("openai-beta", "") or BETA_SUBPROTOCOL in offered


def _format_param(dialect: Dialect) -> str:
    return "session.audio.input.format" if dialect == "ga" else "session.input_audio_format"
