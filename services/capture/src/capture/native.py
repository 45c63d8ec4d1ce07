"""``/v1/stream``: EchoStream's own WebSocket protocol (see the service README)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from pydantic import ValidationError
from starlette.websockets import WebSocket

from capture.connection import (
    Disconnected,
    LiveConnection,
    Refusal,
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
from echostream_shared.logging import get_logger

log = get_logger("native")

CLOSE_DRAIN_S = 2.0


def error(code: str, message: str, *, fatal: bool = False) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "fatal": fatal}


async def stream_endpoint(ws: WebSocket) -> None:
    """The WebSocket endpoint."""
    await admit(ws, "native", NativeConnection, _refuse)


REFUSALS: dict[Refusal, str] = {
    "unauthorized": "missing or wrong bearer token",
    "capacity": "server at capacity, try again later",
}


async def _refuse(ws: WebSocket, refusal: Refusal, close_code: int) -> None:
    await ws.send_text(json.dumps(error(refusal, REFUSALS[refusal], fatal=True)))
    await ws.close(close_code)


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

    async def run(self) -> None:
        self.outbox.start()
        reason = "client"
        try:
            await self._serve()
        except Disconnected as exc:
            reason = exc.reason
            log.info("client.disconnected", code=exc.code)
        except Exception:
            reason = "error"
            log.exception("connection.failed")
            self.outbox.send(error("internal", "internal server error", fatal=True))
            await self.outbox.drain(CLOSE_DRAIN_S)
            await self._close(1011)
        finally:
            await self.cleanup(reason)

    async def _serve(self) -> None:
        while not self._all_ended():
            try:
                data = await self.receive()
                if isinstance(data, bytes):
                    await self._on_binary(data)
                elif await self._on_text(data):
                    break
            except Rejected as exc:
                self.reject(exc.code)
                self.outbox.send(error(exc.code, exc.message))
        await self._done()

    def _all_ended(self) -> bool:
        return bool(self._names) and all(name in self._ended for name in self._names)

    async def _on_text(self, text: str) -> bool:
        """Handle a control message; True when the whole session ends."""
        try:
            raw = json.loads(text)
        except ValueError:
            raise Rejected("bad_json", "message is not valid JSON") from None
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind not in CLIENT_TYPES:
            shown = kind[:64] if isinstance(kind, str) else kind
            raise Rejected("unknown_type", f"unknown message type {shown!r}")
        try:
            message = CLIENT_MESSAGE.validate_python(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Rejected("bad_message", f"invalid {kind}: {where}: {first['msg']}") from None
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

    async def _on_binary(self, data: bytes) -> None:
        if self._start is None:
            raise Rejected("not_started", "send start before audio")
        if not data:
            raise Rejected("bad_frame", "empty binary frame")
        index = data[0]
        if index >= len(self._names):
            raise Rejected("unknown_source", f"no source with index {index}")
        await self.write_audio(self._names[index], data[1:])

    async def _done(self) -> None:
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
        await self._close(1000)

    async def _close(self, code: int) -> None:
        with contextlib.suppress(RuntimeError):  # the client closed first
            await self.ws.close(code)

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
    return {
        "end_sample": outcome.end_sample,
        "duration": seconds(outcome.end_sample),
        "complete": outcome.complete,
    }


def _source_ended(source: str, outcome: SourceOutcome) -> dict[str, Any]:
    return {"type": "source_ended", "source": source, **_outcome_json(outcome)}
