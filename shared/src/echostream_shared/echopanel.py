"""What the EchoPanel client computes and expects, for capture (live) and the aggregator (stored).

Reference: ``reference/echopanel-client-protocol.md``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

MAX_MESSAGE_BYTES = 1024 * 1024
"""URLSession's default receive limit: the client fails on anything larger."""
SUMMARY_BUDGET = MAX_MESSAGE_BYTES - 64 * 1024


def client_segment_id(source: str, t0: float, t1: float, text: str) -> str:
    """The id the client computes itself: ``seg_`` + 16 hex digits of a sha256."""
    normalized = " ".join(text.strip().lower().split())
    key = f"{(source or 'system').lower()}|{t0:.3f}|{t1:.3f}|{normalized}"
    return "seg_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def encoded_size(message: dict[str, Any]) -> int:
    """Bytes of the message as compact JSON, as it goes on the wire."""
    return len(json.dumps(message, separators=(",", ":")).encode())


def final_summary(
    session_id: str, items: list[dict[str, Any]], client_features: dict[str, bool]
) -> dict[str, Any]:
    """The last message, under 1 MiB; ``markdown`` is empty so the client renders its own.

    ``items`` are transcript entries (``text``, ``t0``, ``t1``, ``confidence``, ``source``,
    ``segment_id``, ``is_final``), sent sorted by ``t0`` across sources. ``json.transcript``
    replaces the client's whole transcript, so it is left out (never sent empty or cut short)
    when there is nothing to send or it would not fit.
    """
    body: dict[str, Any] = {"session_id": session_id, "client_features": client_features}
    if items:
        body["transcript"] = sorted(items, key=lambda item: (item["t0"], item["source"]))
    summary: dict[str, Any] = {"type": "final_summary", "markdown": "", "json": body}
    if encoded_size(summary) > SUMMARY_BUDGET:
        del body["transcript"]
        body["transcript_omitted"] = "too large for one message"
    return summary
