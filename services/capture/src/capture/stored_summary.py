"""EchoPanel's ``final_summary`` from the session the aggregator stored."""

from __future__ import annotations

from typing import Any

from capture import metrics
from capture.echopanel_events import stored_final_summary
from capture.stored_sessions import (
    REPLY_MARGIN_S,
    AggregatorUnavailable,
    StoredSession,
    UnknownEngine,
    read_stored_session,
)
from echostream_shared.bus import Bus
from echostream_shared.logging import get_logger

log = get_logger("stored_summary")


async def stored_summary(
    bus: Bus,
    session_id: str,
    engine: str,
    client_session: str,
    features: dict[str, bool],
    budget_s: float,
) -> dict[str, Any] | None:
    """The summary of the stored session, or None if the aggregator cannot give it in time.

    None covers every reason (no aggregator running, a timeout, an incomplete transcript): the
    caller then builds the summary from the finals it relayed itself.
    """
    stored, reason = await _complete_session(bus, session_id, engine, budget_s)
    if stored is None:
        log.info("summary.from_relay", reason=reason)
        metrics.SUMMARIES.labels("relay").inc()
        return None
    metrics.SUMMARIES.labels("aggregator").inc()
    log.info("summary.from_aggregator", finals=len(stored.finals))
    return stored_final_summary(client_session, stored.finals, features)


async def _complete_session(
    bus: Bus, session_id: str, engine: str, budget_s: float
) -> tuple[StoredSession | None, str]:
    """The stored session once ``engine`` finished it, or None and why not."""
    if budget_s <= REPLY_MARGIN_S:
        return None, "no_time"
    try:
        stored = await read_stored_session(
            bus, session_id, engine=engine, wait_s=budget_s - REPLY_MARGIN_S, timeout_s=budget_s
        )
    except (AggregatorUnavailable, UnknownEngine) as exc:
        return None, type(exc).__name__
    if stored is None:
        return None, "not_found"
    if not stored.complete:
        return None, "incomplete"
    return stored, ""
