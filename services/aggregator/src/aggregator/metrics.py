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
STORED_SESSION_REQUESTS = Counter(
    "echostream_aggregator_stored_session_requests_total",
    "Stored-session requests over NATS (capture's summaries and transcription reads)",
    ["status"],
)
DELETED_SESSIONS = Counter("echostream_aggregator_deleted_sessions_total", "Sessions deleted")
