"""``/v1/stream``: EchoStream's own WebSocket protocol (see the service README)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.websockets import WebSocket

from capture.connection import (
    CLOSE_DRAIN_S,
    Fatal,
    LiveConnection,
    Rejected,
    SourceOutcome,
    admit,
)
from capture.hub import Hub
from capture.limits import format_problem
from capture.native_protocol import (
    CLIENT_MESSAGE,
    CLIENT_TYPES,
    End,
    Ping,
    Start,
    seconds,
    transcript_message,
)
from capture.relay import TranscriptEvent


async def stream_endpoint(ws: WebSocket) -> None:
    """The WebSocket endpoint."""
    await admit(ws, NativeConnection)


class NativeConnection(LiveConnection):
    """One native session: ``start``, binary audio per source, ``end``, then ``done``."""

    protocol = "native"

    def __init__(self, hub: Hub, ws: WebSocket) -> None:
        super().__init__(hub, ws)
        self._start: Start | None = None
        self._names: list[str] = []
        self._finalized: set[str] = set()
        self._reported: set[asyncio.Task[None]] = set()
        self._finished = False

    def error_message(self, exc: Rejected | Fatal) -> dict[str, Any]:
        return {
            "type": "error",
            "code": exc.code,
            "message": exc.message,
            "fatal": isinstance(exc, Fatal),
        }

    def done(self) -> bool:
        """Every declared source has ended."""
        return bool(self._names) and all(name in self._ended for name in self._names)

    async def on_text(self, raw: dict[str, Any]) -> bool:
        """Handle a control message; True when the whole session ends."""
        kind = raw["type"]
        if kind not in CLIENT_TYPES:
            raise Rejected("unknown_type", f"unknown message type {kind[:64]!r}")
        message = self.validate(CLIENT_MESSAGE, raw)
        if isinstance(message, Start):
            await self._on_start(message)
        elif isinstance(message, Ping):
            self.outbox.send({"type": "pong", "id": message.id})
        else:
            return self._on_end(message)
        return False

    async def _on_start(self, start: Start) -> None:
        settings = self.hub.settings
        if self._start is not None:
            raise Rejected("already_started", "the session has already started")
        engine = start.engine or settings.engines[0]
        if engine not in settings.engines:
            raise Rejected("unknown_engine", f"engine {engine!r} is not one of {settings.engines}")
        if len(start.sources) > settings.max_sources:
            raise Rejected("too_many_sources", f"at most {settings.max_sources} sources")
        formats = start.formats()
        for name, fmt in formats.items():
            if (problem := format_problem(fmt, settings)) is not None:
                raise Rejected("unsupported_format", f"source {name!r}: {problem}")
        self.formats = formats
        await self.open_session(engine, dict(start.metadata))
        self._start, self._names = start, list(formats)
        self.outbox.send(self._ready(engine))

    def _ready(self, engine: str) -> dict[str, Any]:
        assert self.session is not None
        settings = self.hub.settings
        return {
            "type": "ready",
            "session_id": self.session.session_id,
            "engine": engine,
            "sources": [
                {"index": i, "name": name, **vars(self.formats[name])}
                for i, name in enumerate(self._names)
            ],
            "limits": {
                "max_message_bytes": settings.max_message_bytes,
                "max_session_s": settings.max_session_s,
            },
        }

    def _on_end(self, end: End) -> bool:
        if self._start is None:
            raise Rejected("not_started", "send start first")
        if end.source is None:
            return True
        if end.source not in self._names:
            raise Rejected("unknown_source", f"no source named {end.source!r}")
        if end.source not in self._ended:
            self._report_when_ended(end.source)
        return False

    def _report_when_ended(self, source: str) -> None:
        async def report() -> None:
            outcome = await self.end_source(source)
            self.outbox.send(_source_ended(source, outcome))

        task = asyncio.create_task(report())
        self._reported.add(task)
        task.add_done_callback(self._reported.discard)

    async def on_binary(self, data: bytes) -> None:
        if self._start is None:
            raise Rejected("not_started", "send start before audio")
        if not data:
            raise Rejected("bad_frame", "empty binary frame")
        index = data[0]
        if index >= len(self._names):
            raise Rejected("unknown_source", f"no source with index {index}")
        await self.write_audio(self._names[index], data[1:])

    async def on_finish(self) -> None:
        outcomes: dict[str, SourceOutcome] = {}
        if self.session is not None:
            outcomes = await self.finish(self.hub.settings.finish_timeout_s)
        if self._reported:
            await asyncio.wait(self._reported, timeout=CLOSE_DRAIN_S)
        self._finished = True
        if self.relay is not None:
            await self.relay.stop()
        sources = {name: _outcome_json(outcomes.get(name)) for name in self._names}
        self.outbox.send(
            {
                "type": "done",
                "session_id": self.session.session_id if self.session else None,
                "complete": all(s["complete"] for s in sources.values()),
                "sources": sources,
            }
        )
        await self.outbox.drain(CLOSE_DRAIN_S)
        await self.close(1000)

    async def on_transcript(self, event: TranscriptEvent) -> None:
        if self._finished or event.segment_id in self._finalized:
            return
        if event.type == "transcript.final":
            self._finalized.add(event.segment_id)
            self.outbox.send(transcript_message(event))
        elif self._start is not None and self._start.partials:
            self.outbox.send(transcript_message(event), droppable=True)

    def on_backpressure(self, reason: str, source: str | None, amount_s: float) -> None:
        key = "backlog_s" if reason == "bus" else "lag_s"
        self.outbox.send(
            {"type": "backpressure", "reason": reason, "source": source, key: round(amount_s, 2)}
        )


def _outcome_json(outcome: SourceOutcome | None) -> dict[str, Any]:
    if outcome is None:  # declared but never sent audio
        return {"end_sample": 0, "duration": 0.0, "complete": True}
    body: dict[str, Any] = {
        "end_sample": outcome.end_sample,
        "duration": seconds(outcome.end_sample),
        "complete": outcome.complete,
    }
    if outcome.failure is not None:
        body["failure"] = outcome.failure
    return body


def _source_ended(source: str, outcome: SourceOutcome) -> dict[str, Any]:
    return {"type": "source_ended", "source": source, **_outcome_json(outcome)}
