"""Publishing to JetStream that rides out a NATS outage instead of losing audio."""

from __future__ import annotations

import asyncio

from nats.errors import Error as NatsError

from echostream_shared.bus import Bus
from echostream_shared.logging import get_logger
from echostream_shared.messages import Message

log = get_logger("publish")

RETRY_MAX_S = 2.0


class PublishAborted(Exception):
    """Publishing gave up because the service is shutting down."""


async def publish(
    bus: Bus, subject: str, message: Message, msg_id: str, abort: asyncio.Event | None = None
) -> None:
    """Publish until JetStream acknowledges; ``msg_id`` makes a retried publish a no-op."""
    delay = 0.05
    while True:
        try:
            await bus.publish(subject, message, msg_id=msg_id)
            return
        except (NatsError, TimeoutError) as exc:
            if abort is not None and abort.is_set():
                raise PublishAborted(subject) from exc
            log.warning("publish.retrying", subject=subject, error=type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
