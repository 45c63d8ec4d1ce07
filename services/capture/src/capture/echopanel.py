"""``/ws/live-listener``: the EchoPanel macOS client's protocol, as the unmodified client speaks it."""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from typing import Any, ClassVar

from pydantic import ValidationError
from starlette.websockets import WebSocket

from capture.audio import AudioFormat, Encoding
from capture.connection import Fatal, LiveConnection, Refusal, Rejected, admit
from capture.echopanel_events import (
    StartMessage,
    asr_final,
    asr_partial,
    final_summary,
    normalize_source,
    parse_binary,
)
from capture.hub import Hub
from capture.limits import format_problem
from capture.relay import TranscriptEvent
from capture.stored_summary import stored_summary
from echostream_shared import messages as m
from echostream_shared.logging import get_logger

log = get_logger("echopanel")

MAX_SOURCES = 2
ENCODINGS: dict[str, Encoding] = {"pcm_s16le": "pcm_s16le", "pcm_f32le": "pcm_f32le"}
IGNORED_TYPES = frozenset({"voice_note_audio", "voice_note_start", "voice_note_stop", "ocr_text"})
CLOSE_DRAIN_S = 1.0
SUMMARY_DEADLINE_S = 9.0
"""The client gives up 10 s after its ``stop``; the summary must be on its way before that."""
SOURCE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def status(state: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "status", "state": state, "message": message, **extra}


async def live_listener(ws: WebSocket) -> None:
    """The WebSocket endpoint."""
    await admit(ws, EchoPanelConnection)


class EchoPanelConnection(LiveConnection):
    """One EchoPanel socket: ``start``, audio of ``system`` and ``mic``, ``stop``."""

    protocol = "echopanel"
    refusal_texts: ClassVar[dict[Refusal, str]] = {
        "unauthorized": "Unauthorized websocket connection",
        "capacity": "Server at capacity, please try again later",
    }

    def __init__(self, hub: Hub, ws: WebSocket) -> None:
        super().__init__(hub, ws)
        self._start: StartMessage | None = None
        self._format = AudioFormat()
        self._finals: list[dict[str, Any]] = []
        self._finalized: set[str] = set()
        self._refused_sources: set[str] = set()
        self._summarized = False

    async def on_open(self) -> None:
        self.outbox.send(status("connected", "Connected, waiting for start"))

    def error_message(self, exc: Rejected | Fatal) -> dict[str, Any]:
        if isinstance(exc, Fatal):
            return status("error", exc.message)
        if exc.code == "session_too_long":
            return status("warning", exc.message)
        return {"type": "error", "code": exc.code, "message": exc.message}

    async def on_fatal(self, exc: Fatal) -> None:
        """The client shows ``error`` messages and ends on an ``error`` status: send both."""
        self.outbox.send({"type": "error", "message": exc.message})
        await super().on_fatal(exc)

    async def on_text(self, message: dict[str, Any]) -> bool:
        """Handle a control message; True on ``stop``."""
        kind: str = message["type"]
        if kind == "start":
            await self._on_start(message)
        elif kind == "audio":
            await self._on_json_audio(message)
        elif kind == "stop":
            return True
        elif kind not in IGNORED_TYPES:
            raise Rejected("unknown_type", f"unknown message type {kind[:64]!r}")
        return False

    async def _on_start(self, raw: dict[str, Any]) -> None:
        if self._start is not None:
            self.outbox.send(status("warning", "Already streaming; start ignored"))
            return
        try:
            start = StartMessage.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise Fatal(f"Invalid start message: {first['loc']}: {first['msg']}", 1008) from None
        self._format = self._audio_format(start)
        connection_id = start.connection_id or uuid.uuid4().hex
        self.outbox.envelope = {"session_id": start.session_id, "connection_id": connection_id}
        if start.attempt_id:
            self.outbox.envelope["attempt_id"] = start.attempt_id
        metadata = {"client_session_id": start.session_id, "connection_id": connection_id}
        if start.attempt_id:
            metadata["attempt_id"] = start.attempt_id
        await self.open_session(self.hub.settings.echopanel_engine, metadata)
        self._start = start
        self.outbox.send(
            status(
                "streaming",
                "Streaming",
                connection_id=connection_id,
                client_features=start.features(),
            )
        )

    def _audio_format(self, start: StartMessage) -> AudioFormat:
        encoding = ENCODINGS.get(start.format)
        fmt = AudioFormat(start.sample_rate, start.channels, encoding or "pcm_s16le")
        problem = format_problem(fmt, self.hub.settings)
        if encoding is None:
            problem = f"format {start.format[:32]!r} is not pcm_s16le or pcm_f32le"
        if problem is not None:
            raise Fatal(
                f"Unsupported audio format: {problem}. Expected 16000Hz pcm_s16le mono.", 1003
            )
        return fmt

    async def on_binary(self, data: bytes) -> None:
        if self._start is None:
            return  # audio before start is ignored, as by the reference server
        frame = parse_binary(data)
        await self._audio(frame.source, frame.pcm)

    async def _on_json_audio(self, message: dict[str, Any]) -> None:
        if self._start is None:
            return
        payload = message.get("data")
        if not isinstance(payload, str):
            raise Rejected("bad_audio", "audio message without base64 data")
        try:
            pcm = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise Rejected("bad_audio", "audio data is not valid base64") from None
        await self._audio(normalize_source(message.get("source")), pcm)

    async def _audio(self, source: str, pcm: bytes) -> None:
        if not SOURCE_NAME.fullmatch(source):
            raise Rejected("bad_audio", "source names are 1-64 letters, digits, '-' or '_'")
        if source not in self.formats and not self._admit(source):
            return
        await self.write_audio(source, pcm)

    def _admit(self, source: str) -> bool:
        if len(self.formats) < MAX_SOURCES:
            self.formats[source] = self._format
            return True
        if source not in self._refused_sources:
            self._refused_sources.add(source)
            self.reject("too_many_sources")
            message = f"Too many active sources (max {MAX_SOURCES}). Ignoring source '{source}'."
            self.outbox.send(status("warning", message))
        return False

    async def on_finish(self) -> None:
        stopped_at = time.monotonic()
        complete, failed = True, False
        if self.session is not None:
            outcomes = await self.finish(self.hub.settings.echopanel_flush_timeout_s)
            complete = all(outcome.complete for outcome in outcomes.values())
            failed = any(outcome.failure is not None for outcome in outcomes.values())
        self._summarized = True
        if self.relay is not None:
            await self.relay.stop()
        if failed:
            self.outbox.send(
                status("warning", "Transcription failed; the transcript is incomplete")
            )
        elif not complete:
            self.outbox.send(
                status(
                    "warning",
                    "Transcription did not finish in time; the transcript may be incomplete",
                )
            )
        self.outbox.send(await self._summary(SUMMARY_DEADLINE_S - (time.monotonic() - stopped_at)))
        await self.outbox.drain(CLOSE_DRAIN_S)
        await self.close(1000)

    async def _summary(self, budget_s: float) -> dict[str, Any]:
        """The aggregator's stored summary when it answers in time, else the relayed finals'."""
        client_session = self._start.session_id if self._start else ""
        features = self._start.features() if self._start else {}
        if self.session is not None:
            stored = await stored_summary(
                self.hub.bus,
                self.session.session_id,
                self.hub.settings.echopanel_engine,
                client_session,
                features,
                budget_s,
            )
            if stored is not None:
                return stored
        return final_summary(client_session, self._finals, features)

    async def on_transcript(self, event: TranscriptEvent) -> None:
        if self._summarized or event.segment_id in self._finalized:
            return
        if isinstance(event, m.TranscriptFinal):
            self._finalized.add(event.segment_id)
            message = asr_final(event)
            if message["text"]:
                self._finals.append(message)
                self.outbox.send(message)
        elif event.text.strip():
            self.outbox.send(asr_partial(event), droppable=True)

    def on_engine_failure(self, source: str, failure: str) -> None:
        """The client shows an ``error`` status as a banner while listening; the session goes on
        (its audio is still recorded, only no more of ``source`` is transcribed)."""
        message = (
            f"Transcription of '{source}' failed: {failure}. "
            "Its audio is still recorded; no more of it will be transcribed."
        )
        self.outbox.send(status("error", message, source=source, failure=failure))

    def on_backpressure(self, reason: str, source: str | None, amount_s: float) -> None:
        if reason == "bus":
            message = f"Audio is queueing: {amount_s:.1f} s of '{source}' not yet published"
            extra: dict[str, Any] = {"source": source, "backlog_seconds": round(amount_s, 2)}
        else:
            message = f"Transcription is running {amount_s:.1f} s behind"
            extra = {"lag_seconds": round(amount_s, 2)}
        self.outbox.send(
            status("backpressure", message, dropped_frames=0, dropped_seconds=0.0, **extra)
        )

    def on_tick(self) -> None:
        assert self.session is not None and self.relay is not None
        rtf = self.hub.workers.real_time_factor(self.relay.engine)
        for name, ingest in self.session.sources.items():
            self.outbox.send(
                {
                    "type": "metrics",
                    "source": name,
                    "queue_depth": round(ingest.backlog_s * 50),
                    "queue_max": round(self.hub.settings.backlog_max_s * 50),
                    "queue_fill_ratio": round(ingest.backlog_ratio, 3),
                    "backlog_seconds": round(ingest.backlog_s, 3),
                    "dropped_total": 0,
                    "dropped_recent": 0,
                    "realtime_factor": round(rtf, 3),
                    "timestamp": time.time(),
                },
                droppable=True,
            )
