"""Reading the session and transcript streams into the store through durable consumers.

The consumers' position belongs to one database: each consumer carries the store's id in its
metadata. When the aggregator meets a consumer of another store (its database was lost or
replaced), it recreates the consumer from the start of the stream and rebuilds what the
retention still holds; the store's idempotent writes make that replay safe.
"""

from __future__ import annotations

import asyncio

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy.exc import DataError, IntegrityError

from aggregator import metrics
from aggregator.feed import FeedPublisher
from aggregator.store import STORED_EVENTS, SessionStore
from echostream_shared import topology as t
from echostream_shared.bus import Bus, PermanentError, PullConsumer
from echostream_shared.logging import get_logger
from echostream_shared.messages import BusMessage

log = get_logger("ingest")


async def bind_consumers(
    js: JetStreamContext, store_id: str, limits: t.TopologyLimits, ack_wait_s: float
) -> None:
    """Make sure each stream has the aggregator's consumer, positioned for this store."""
    for stream in t.AGGREGATOR_STREAMS:
        name = t.aggregator_consumer(stream)
        try:
            info = await js.consumer_info(stream, name)
        except NotFoundError:
            info = None
        if info is not None:
            bound_to = (info.config.metadata or {}).get(t.AGGREGATOR_STORE_KEY)
            if bound_to == store_id:
                continue
            log.warning("consumer.rebuilding", stream=stream, consumer=name)
            await js.delete_consumer(stream, name)
        config = t.aggregator_consumer_config(stream, store_id, limits, ack_wait_s)
        await js.add_consumer(stream, config)
        log.info("consumer.created", stream=stream, consumer=name)


class Ingest:
    """Stores each message, then publishes the changes it made on the feed."""

    def __init__(self, store: SessionStore, feed: FeedPublisher) -> None:
        self._store = store
        self._feed = feed

    async def handle(self, message: BusMessage, _msg: Msg) -> None:
        if not isinstance(message, STORED_EVENTS):
            metrics.MESSAGES.labels(message.type, "ignored").inc()
            return
        with structlog.contextvars.bound_contextvars(session_id=message.session_id):
            try:
                updates = await self._store.apply(message)
            except (DataError, IntegrityError) as exc:
                # The database refuses this message's content: retrying cannot help.
                raise PermanentError(f"database refused {message.type}: {type(exc.orig)}") from exc
        metrics.MESSAGES.labels(message.type, "stored" if updates else "unchanged").inc()
        await self._feed.publish(updates)

    async def run(self, bus: Bus, stop: asyncio.Event, batch: int) -> None:
        """Consume both streams until ``stop`` is set."""
        consumers = [
            PullConsumer(bus, stream, t.aggregator_consumer(stream), self.handle, batch=batch)
            for stream in t.AGGREGATOR_STREAMS
        ]
        async with asyncio.TaskGroup() as group:
            for consumer in consumers:
                group.create_task(consumer.run(stop))
