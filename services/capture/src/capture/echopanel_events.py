"""EchoPanel's wire format: audio frame parsing, transcript events and the final summary.

Reference: ``reference/echopanel-client-protocol.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from echostream_shared import messages as m

RATE = m.SAMPLE_RATE
MAGIC = b"EP"
VERSION = 1
HEADER_BYTES = 4
SOURCES = ("system", "mic")
PARTIAL_CONFIDENCE = 0.6
FINAL_CONFIDENCE = 0.9
MAX_MESSAGE_BYTES = 1024 * 1024
"""URLSession's default receive limit: the client fails on anything larger."""
SUMMARY_BUDGET = MAX_MESSAGE_BYTES - 64 * 1024
SUMMARY_ITEM_KEYS = ("text", "t0", "t1", "confidence", "source", "segment_id")


class StartMessage(BaseModel):
    """The client's ``start``; everything but ``session_id`` may be omitted."""

    model_config = ConfigDict(extra="ignore")

    session_id: str = Field(min_length=1, max_length=256)
    sample_rate: int = RATE
    format: str = "pcm_s16le"
    channels: int = 1
    attempt_id: str | None = Field(default=None, max_length=256)
    connection_id: str | None = Field(default=None, max_length=256)
    client_features: Any = None

    @field_validator("session_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("session_id is blank")
        return value.strip()

    def features(self) -> dict[str, bool]:
        """The four telemetry flags, false when missing."""
        given = self.client_features if isinstance(self.client_features, dict) else {}
        names = (
            "clock_drift_compensation_enabled",
            "client_vad_enabled",
            "clock_drift_telemetry_enabled",
            "client_vad_telemetry_enabled",
        )
        return {name: bool(given.get(name, False)) for name in names}


@dataclass(frozen=True)
class AudioFrame:
    """One binary audio message: its source and its PCM payload."""

    source: str
    pcm: bytes


def parse_binary(data: bytes) -> AudioFrame:
    """An ``EP`` v1 frame, or (like the reference server) headerless PCM of ``system``."""
    if len(data) >= HEADER_BYTES and data[:2] == MAGIC and data[2] == VERSION and data[3] < 2:
        return AudioFrame(SOURCES[data[3]], data[HEADER_BYTES:])
    return AudioFrame("system", data)


def normalize_source(value: object) -> str:
    """``mic``/``microphone`` to ``mic``, missing to ``system``, others lower-cased."""
    if not isinstance(value, str) or not value.strip():
        return "system"
    name = value.strip().lower()
    return "mic" if name in ("mic", "microphone") else name


def seconds(sample: int) -> float:
    """A sample index as seconds, rounded as the client formats them."""
    return round(sample / RATE, 3)


def asr_partial(event: m.TranscriptPartial) -> dict[str, Any]:
    """A partial as ``asr_partial``: the cumulative hypothesis of the current segment."""
    return {
        "type": "asr_partial",
        "text": event.text.strip(),
        "t0": seconds(event.start_sample),
        "t1": seconds(event.end_sample),
        "confidence": PARTIAL_CONFIDENCE,
        "source": event.source,
        "stable": False,
    }


def asr_final(event: m.TranscriptFinal) -> dict[str, Any]:
    """A final as ``asr_final`` with the client's own ``segment_id``."""
    text = event.text.strip()
    t0, t1 = seconds(event.start_sample), seconds(event.end_sample)
    message: dict[str, Any] = {
        "type": "asr_final",
        "text": text,
        "t0": t0,
        "t1": t1,
        "confidence": FINAL_CONFIDENCE if event.confidence is None else event.confidence,
        "source": event.source,
        "stable": True,
        "segment_id": client_segment_id(event.source, t0, t1, text),
    }
    if event.language:
        message["language"] = event.language
    return message


def client_segment_id(source: str, t0: float, t1: float, text: str) -> str:
    """The id the client computes itself: ``seg_`` + 16 hex digits of a sha256."""
    normalized = " ".join(text.strip().lower().split())
    key = f"{(source or 'system').lower()}|{t0:.3f}|{t1:.3f}|{normalized}"
    return "seg_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def encoded_size(message: dict[str, Any]) -> int:
    """Bytes of the message as compact JSON, as it goes on the wire."""
    return len(json.dumps(message, separators=(",", ":")).encode())


def final_summary(
    session_id: str, finals: Iterable[dict[str, Any]], features: dict[str, bool]
) -> dict[str, Any]:
    """The last message, from ``asr_final`` messages; under 1 MiB.

    ``markdown`` is empty so the client renders its own. The transcript is sorted by ``t0``
    across sources. ``json.transcript`` replaces the client's whole transcript, so it is left
    out (never sent empty or cut short) when there is nothing to send or it would not fit.
    """
    items = [{k: f[k] for k in SUMMARY_ITEM_KEYS} | {"is_final": True} for f in finals]
    body: dict[str, Any] = {"session_id": session_id, "client_features": features}
    if items:
        body["transcript"] = sorted(items, key=lambda item: (item["t0"], item["source"]))
    summary: dict[str, Any] = {"type": "final_summary", "markdown": "", "json": body}
    if encoded_size(summary) > SUMMARY_BUDGET:
        del body["transcript"]
        body["transcript_omitted"] = "too large for one message"
    return summary


def stored_final_summary(
    session_id: str, finals: Iterable[m.TranscriptFinal], features: dict[str, bool]
) -> dict[str, Any]:
    """The ``final_summary`` of stored finals: the same items their live ``asr_final`` had."""
    sent = (asr_final(final) for final in finals)
    return final_summary(session_id, [message for message in sent if message["text"]], features)
