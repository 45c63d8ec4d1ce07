"""A session's transcripts from one engine, delivered in order to a connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import DecodeError, decode
from echostream_shared.logging import get_logger

log = get_logger("relay")

TranscriptEvent = m.TranscriptPartial | m.TranscriptFinal
OnTranscript = Callable[[TranscriptEvent], Awaitable[None]]
OnFailure = Callable[[str, str], Awaitable[None]]
"""Called with a source and why, when the engine gives up on the source for good."""

HEARTBEAT_S = 2.0
"""Missing heartbeats reveal a lost consumer (e.g. NATS restarted); recovery takes about two."""


class TranscriptRelay:
    """An ordered JetStream consumer on ``ep.transcript.<engine>.<session>.*``."""

    def __init__(
        self,
        bus: Bus,
        session_id: str,
        engine: str,
        on_event: OnTranscript,
        on_failure: OnFailure | None = None,
    ) -> None:
        self.engine = engine
        self._bus = bus
        self._session_id = session_id
        self._on_event = on_event
        self._on_failure = on_failure
        self._subject = t.transcript(engine, session_id, "*")
        self._transcribed: set[str] = set()
        self.failures: dict[str, str] = {}
        """Sources the engine gave up on, and why."""
        self._progress = asyncio.Condition()
        self._subscription: JetStreamContext.PushSubscription | None = None

    async def start(self) -> None:
        self._subscription = await self._bus.js.subscribe(
            self._subject,
            stream=t.TRANSCRIPT_STREAM,
            cb=self._on_msg,
            ordered_consumer=True,
            idle_heartbeat=HEARTBEAT_S,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def wait_transcribed(self, source: str, timeout_s: float) -> bool:
        """Wait for the engine's ``source.transcribed`` marker; False after ``timeout_s``.

        The marker follows the source's last final on the same subject, so once it is delivered
        every transcript of the source has been delivered too.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self._progress:
                await self._progress.wait_for(lambda: source in self._transcribed)
                return True
        return False

    async def _on_msg(self, msg: Msg) -> None:
        try:
            message = decode(msg.data, msg.subject)
        except DecodeError as exc:
            log.warning("relay.malformed", subject=exc.subject, reason=exc.reason)
            message = None
        if isinstance(message, m.TranscriptPartial | m.TranscriptFinal):
            await self._on_event(message)
        elif isinstance(message, m.SourceTranscribed):
            if message.failure is not None and message.source not in self.failures:
                self.failures[message.source] = message.failure
                if self._on_failure is not None:
                    # Before the marker: whoever waits for the source hears the failure first.
                    await self._on_failure(message.source, message.failure)
            async with self._progress:
                self._transcribed.add(message.source)
                self._progress.notify_all()
