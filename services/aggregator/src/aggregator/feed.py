"""The live feed: every stored change as a ``SessionUpdate`` on core NATS, and readers of it."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from aggregator import metrics
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus, report_malformed
from echostream_shared.codec import DecodeError, decode_as
from echostream_shared.logging import get_logger

log = get_logger("feed")

FEED_STREAM_LABEL = "core:session-feed"
"""How malformed feed messages are counted (the feed is core NATS, not a stream)."""
FINAL_KINDS = frozenset({"session.completed", "session.deleted"})
"""Updates after which a session changes no more."""


class FeedPublisher:
    """Publishes updates once the store has committed them; a NATS outage loses only live news."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def publish(self, updates: Sequence[m.SessionUpdate]) -> None:
        for update in updates:
            try:
                await self._bus.publish_core(t.session_feed(update.session_id), update)
            except NatsError as exc:
                log.warning("feed.publish_failed", session_id=update.session_id, error=repr(exc))
                continue
            metrics.FEED_UPDATES.labels(update.kind).inc()


class FeedReader:
    """One session's feed, subscribed on ``open`` until ``close``."""

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    @classmethod
    async def open(cls, nc: NATS, session_id: str) -> FeedReader:
        return cls(await nc.subscribe(t.session_feed(session_id), pending_msgs_limit=10_000))

    async def close(self) -> None:
        with contextlib.suppress(NatsError):
            await self._subscription.unsubscribe()

    async def next(self, timeout_s: float) -> m.SessionUpdate | None:
        """The next update, or None when none came within ``timeout_s``."""
        while True:
            try:
                msg = await self._subscription.next_msg(timeout=timeout_s)
            except TimeoutError:
                return None
            try:
                return decode_as(msg.data, m.SessionUpdate, msg.subject)
            except DecodeError as exc:
                report_malformed(FEED_STREAM_LABEL, exc)
