"""EchoPanel summaries over NATS request/reply, for the capture service.

Contract: a ``SummaryRequest`` (msgpack) on ``topology.AGGREGATOR_SUMMARY`` is answered with a
``SummaryReply`` whose ``summary_json`` is the whole ``final_summary`` message. The aggregator
waits up to ``wait_s`` (capped by its settings) for the engine to finish every source, so a
request sent right after the client's ``stop`` still gets the last finals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from sqlalchemy.ext.asyncio import AsyncEngine

from aggregator import metrics
from aggregator.completion import is_transcribed_by
from aggregator.echopanel import final_summary
from aggregator.queries import load_session
from aggregator.views import choose_engine
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import report_malformed
from echostream_shared.codec import DecodeError, decode_as, encode
from echostream_shared.logging import get_logger

log = get_logger("summary")

POLL_S = 0.1
REQUEST_LABEL = "core:summary-request"


class SummaryResponder:
    """Answers summary requests, each in its own task so a waiting one blocks no other."""

    def __init__(self, engine: AsyncEngine, primary_engine: str, max_wait_s: float) -> None:
        self._engine = engine
        self._primary = primary_engine
        self._max_wait_s = max_wait_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None

    async def start(self, nc: NATS) -> None:
        self._subscription = await nc.subscribe(
            t.AGGREGATOR_SUMMARY, queue=t.AGGREGATOR_QUEUE, cb=self._received
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
            request = decode_as(msg.data, m.SummaryRequest, msg.subject)
        except DecodeError as exc:
            report_malformed(REQUEST_LABEL, exc)
            reply = m.SummaryReply(session_id="", status="bad_request", detail=exc.reason[:500])
        else:
            try:
                reply = await self.answer(request)
            except Exception as exc:
                log.exception("summary.failed", session_id=request.session_id)
                reply = m.SummaryReply(
                    session_id=request.session_id, status="error", detail=type(exc).__name__
                )
        metrics.SUMMARY_REQUESTS.labels(reply.status).inc()
        if msg.reply:
            with contextlib.suppress(NatsError):
                await msg.respond(encode(reply))

    async def answer(self, request: m.SummaryRequest) -> m.SummaryReply:
        """The reply to one request, after waiting for completion as it allows."""
        complete = await self._wait_transcribed(
            request.session_id,
            request.engine or self._primary,
            min(request.wait_s, self._max_wait_s),
        )
        found = await load_session(self._engine, request.session_id)
        if found is None:
            return m.SummaryReply(session_id=request.session_id, status="not_found")
        engine = choose_engine(found, request.engine, self._primary)
        if engine is None:
            return m.SummaryReply(
                session_id=request.session_id,
                status="not_found",
                detail=f"engine {request.engine} has no transcript of this session",
            )
        record = await load_session(self._engine, request.session_id, engine)
        if record is None:  # deleted in the meantime
            return m.SummaryReply(session_id=request.session_id, status="not_found")
        summary = final_summary(record, request.client_features)
        return m.SummaryReply(
            session_id=request.session_id,
            status="ok",
            summary_json=json.dumps(summary, separators=(",", ":")),
            complete=complete,
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
