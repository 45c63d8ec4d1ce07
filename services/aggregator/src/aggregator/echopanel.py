"""EchoPanel's ``final_summary`` built from a stored session.

It has the shape the capture service sends live (reference/echopanel-client-protocol.md §5.7):
finals sorted by ``t0`` across sources, times on each source's own clock as in the live
``asr_final`` events, and the client's own ``seg_…`` ids, so the client's transcript matches
what it saw live. ``json.transcript`` replaces the client's whole transcript: it is left out,
never sent empty or cut short, when there is nothing to send or it would not fit in 1 MiB.
"""

from __future__ import annotations

from typing import Any

from aggregator.records import FinalRecord, SessionRecord
from echostream_shared import echopanel
from echostream_shared.messages import SAMPLE_RATE

DEFAULT_CONFIDENCE = 0.9
FEATURES = (
    "clock_drift_compensation_enabled",
    "client_vad_enabled",
    "clock_drift_telemetry_enabled",
    "client_vad_telemetry_enabled",
)


def final_summary(record: SessionRecord, features: dict[str, bool] | None = None) -> dict[str, Any]:
    """The ``final_summary`` message for ``record``'s finals (of one engine)."""
    given = features or {}
    items = [_item(final) for final in record.finals if final.text.strip()]
    client_features = {name: bool(given.get(name, False)) for name in FEATURES}
    return echopanel.final_summary(record.session_id, items, client_features)


def _item(final: FinalRecord) -> dict[str, Any]:
    text = final.text.strip()
    t0, t1 = round(final.start_sample / SAMPLE_RATE, 3), round(final.end_sample / SAMPLE_RATE, 3)
    return {
        "text": text,
        "t0": t0,
        "t1": t1,
        "confidence": DEFAULT_CONFIDENCE if final.confidence is None else final.confidence,
        "source": final.source,
        "segment_id": echopanel.client_segment_id(final.source, t0, t1, text),
        "is_final": True,
    }
