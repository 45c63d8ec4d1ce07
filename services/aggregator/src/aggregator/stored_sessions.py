"""Stored sessions over NATS request/reply, for the capture service.

Contract: a ``StoredSessionRequest`` (msgpack) on ``topology.AGGREGATOR_SESSION`` is answered with
a ``StoredSessionReply`` holding the session's stored data and one engine's finals, never a
client protocol's shape. The aggregator waits up to ``wait_s`` (capped by its settings) for the
engine to finish every source, so a request sent right after a client's last audio still gets
the last finals.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from sqlalchemy.ext.asyncio import AsyncEngine

from aggregator import metrics
from aggregator.completion import is_transcribed_by
from aggregator.queries import load_session
from aggregator.records import FinalRecord, SessionRecord
from aggregator.views import choose_engine
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import report_malformed
from echostream_shared.codec import MAX_MESSAGE_BYTES, DecodeError, decode_as, encode
from echostream_shared.logging import get_logger

log = get_logger("stored_sessions")

POLL_S = 0.1
REQUEST_LABEL = "core:stored-session-request"
PAGE_BYTES = MAX_MESSAGE_BYTES * 3 // 4
"""Finals per reply, encoded; the rest of the message (sources, engines) fits in what is left."""


class StoredSessionResponder:
    """Answers stored-session requests, each in its own task so a waiting one blocks no other."""

    def __init__(self, engine: AsyncEngine, primary_engine: str, max_wait_s: float) -> None:
        self._engine = engine
        self._primary = primary_engine
        self._max_wait_s = max_wait_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None

    async def start(self, nc: NATS) -> None:
        self._subscription = await nc.subscribe(
            t.AGGREGATOR_SESSION, queue=t.AGGREGATOR_QUEUE, cb=self._received
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(NatsError):
                await self._subscription.unsubscribe()
        if self._tasks:
            await asyncio.wait(self._tasks)

    async def _received(self, msg: Msg) -> None:
        task = asyncio.create_task(self._respond(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respond(self, msg: Msg) -> None:
        try:
            request = decode_as(msg.data, m.StoredSessionRequest, msg.subject)
        except DecodeError as exc:
            report_malformed(REQUEST_LABEL, exc)
            reply = m.StoredSessionReply(
                session_id="", status="bad_request", detail=exc.reason[:500]
            )
        else:
            try:
                reply = await self.answer(request)
            except Exception as exc:
                log.exception("stored_session.failed", session_id=request.session_id)
                reply = m.StoredSessionReply(
                    session_id=request.session_id, status="error", detail=type(exc).__name__
                )
        metrics.STORED_SESSION_REQUESTS.labels(reply.status).inc()
        if msg.reply:
            with contextlib.suppress(NatsError):
                await msg.respond(encode(reply))

    async def answer(self, request: m.StoredSessionRequest) -> m.StoredSessionReply:
        """The reply to one request, after waiting for completion as it allows."""
        session_id = request.session_id
        complete = await self._wait_transcribed(
            session_id, request.engine or self._primary, min(request.wait_s, self._max_wait_s)
        )
        found = await load_session(self._engine, session_id)
        if found is None:
            return m.StoredSessionReply(session_id=session_id, status="not_found")
        engine = choose_engine(found, request.engine, self._primary)
        if engine is None:
            return m.StoredSessionReply(
                session_id=session_id,
                status="unknown_engine",
                detail=f"engine {request.engine} has no transcript of this session",
                engines=tuple(found.known_engines),
            )
        record = await load_session(self._engine, session_id, engine)
        if record is None:  # deleted in the meantime
            return m.StoredSessionReply(session_id=session_id, status="not_found")
        if engine != (request.engine or self._primary):
            async with self._engine.connect() as conn:
                complete = await is_transcribed_by(conn, session_id, engine)
        finals, next_offset = _page(record, request.offset)
        return m.StoredSessionReply(
            session_id=session_id,
            status="ok",
            client=(record.client or "")[:64],
            engine=engine,
            engines=tuple(record.known_engines),
            closed=record.closed_at is not None,
            complete=complete,
            sources=tuple(
                m.StoredSource(
                    source=source.source,
                    end_sample=source.end_sample,
                    transcribed=(source.source, engine) in record.transcribed,
                )
                for source in record.sources
            ),
            finals=finals,
            next_offset=next_offset,
        )

    async def _wait_transcribed(self, session_id: str, engine: str, wait_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            async with self._engine.connect() as conn:
                if await is_transcribed_by(conn, session_id, engine):
                    return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_S)


def _page(record: SessionRecord, offset: int) -> tuple[tuple[m.TranscriptFinal, ...], int | None]:
    """The finals from ``offset`` that fit one reply (at least one), and where the next page starts."""
    page: list[m.TranscriptFinal] = []
    size = 0
    for index in range(offset, len(record.finals)):
        final = bus_final(record.session_id, record.finals[index])
        size += len(encode(final))
        if page and size > PAGE_BYTES:
            return tuple(page), index
        page.append(final)
    return tuple(page), None


def bus_final(session_id: str, final: FinalRecord) -> m.TranscriptFinal:
    """A stored final as the engine published it."""
    return m.TranscriptFinal(
        session_id=session_id,
        source=final.source,
        engine=final.engine,
        segment_id=final.segment_id,
        start_sample=final.start_sample,
        end_sample=final.end_sample,
        text=final.text,
        words=tuple(m.Word.model_validate(word) for word in final.words),
        confidence=final.confidence,
        language=final.language,
        emitted_at=final.emitted_at,
    )
