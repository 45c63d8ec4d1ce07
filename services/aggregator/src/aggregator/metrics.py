"""Prometheus metrics of the aggregator."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MESSAGES = Counter(
    "echostream_aggregator_messages_total",
    "Bus messages by outcome: stored (changed the store), unchanged (a replay) or ignored",
    ["kind", "outcome"],
)
FEED_UPDATES = Counter(
    "echostream_aggregator_feed_updates_total", "Session updates published on the feed", ["kind"]
)
FEED_LISTENERS = Gauge(
    "echostream_aggregator_feed_listeners", "HTTP clients following a session's live feed"
)
SUMMARY_REQUESTS = Counter(
    "echostream_aggregator_summary_requests_total", "EchoPanel summary requests", ["status"]
)
DELETED_SESSIONS = Counter("echostream_aggregator_deleted_sessions_total", "Sessions deleted")
