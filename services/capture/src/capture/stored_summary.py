"""The EchoPanel ``final_summary`` as the aggregator stored it, asked over NATS request/reply."""

from __future__ import annotations

import json
from typing import Any

from nats.errors import Error as NatsError

from capture import metrics
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import DecodeError, decode_as, encode
from echostream_shared.logging import get_logger

log = get_logger("stored_summary")

REPLY_MARGIN_S = 0.5
"""Time left for the reply to travel after the aggregator stops waiting for finals."""


async def stored_summary(
    bus: Bus,
    session_id: str,
    engine: str,
    features: dict[str, bool],
    budget_s: float,
) -> dict[str, Any] | None:
    """The aggregator's summary of the session, or None if it cannot give one within ``budget_s``.

    None covers every reason (no aggregator running, a timeout, an error reply): the caller then
    builds the summary from the finals it relayed itself.
    """
    if budget_s <= REPLY_MARGIN_S:
        return None
    request = m.SummaryRequest(
        session_id=session_id,
        engine=engine,
        client_features=features,
        wait_s=min(budget_s - REPLY_MARGIN_S, 30.0),
    )
    try:
        response = await bus.nc.request(t.AGGREGATOR_SUMMARY, encode(request), timeout=budget_s)
        reply = decode_as(response.data, m.SummaryReply, t.AGGREGATOR_SUMMARY)
    except (TimeoutError, NatsError, DecodeError) as exc:
        log.info("summary.from_relay", reason=type(exc).__name__)
        metrics.SUMMARIES.labels("relay").inc()
        return None
    if reply.status != "ok" or not reply.complete:
        log.info("summary.from_relay", reason=reply.status, complete=reply.complete)
        metrics.SUMMARIES.labels("relay").inc()
        return None
    metrics.SUMMARIES.labels("aggregator").inc()
    summary: dict[str, Any] = json.loads(reply.summary_json)
    return summary
