"""A session as the bus remembers it: its lifecycle events and one engine's finals.

Reading from JetStream rather than from this process's memory lets any capture process behind a
load balancer answer for any session.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import DecodeError, decode

RATE = m.SAMPLE_RATE
READ_TIMEOUT_S = 5.0


@dataclass
class SessionRecord:
    """What the session events say about a session."""

    session_id: str
    client: str
    engines: tuple[str, ...]
    sources: dict[str, int | None] = field(default_factory=dict)
    closed: bool = False


async def read_subject(bus: Bus, stream: str, subject: str) -> list[m.BusMessage]:
    """Every decodable message stored on ``subject`` (wildcards allowed), oldest first."""
    try:
        last = await bus.js.get_last_msg(stream, subject)
    except NotFoundError:
        return []
    subscription = await bus.js.subscribe(
        subject,
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    found: list[m.BusMessage] = []
    try:
        while True:
            msg = await subscription.next_msg(timeout=READ_TIMEOUT_S)
            with contextlib.suppress(DecodeError):
                found.append(decode(msg.data, msg.subject))
            if msg.metadata.sequence.stream >= (last.seq or 0):
                return found
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


async def session_record(bus: Bus, session_id: str) -> SessionRecord | None:
    """The session's lifecycle, or None when the bus never heard of it."""
    record: SessionRecord | None = None
    for event in await read_subject(bus, t.SESSION_STREAM, t.session_events(session_id)):
        match event:
            case m.SessionOpened():
                record = SessionRecord(session_id, event.client, event.engines)
            case m.SourceOpened() if record is not None:
                record.sources.setdefault(event.source, None)
            case m.SourceClosed() if record is not None:
                record.sources[event.source] = event.end_sample
            case m.SessionClosed() if record is not None:
                record.closed = True
    return record


async def finals(bus: Bus, engine: str, session_id: str) -> list[m.TranscriptFinal]:
    """The session's finals from ``engine``, one per segment, in time order."""
    by_segment: dict[str, m.TranscriptFinal] = {}
    subject = t.transcript(engine, session_id, "*")
    for message in await read_subject(bus, t.TRANSCRIPT_STREAM, subject):
        if isinstance(message, m.TranscriptFinal):
            by_segment[message.segment_id] = message
    return sorted(by_segment.values(), key=lambda f: (f.start_sample, f.source))


def transcript_json(
    record: SessionRecord, engine: str, found: list[m.TranscriptFinal], complete: bool
) -> dict[str, Any]:
    """The response body of a finished or running transcription."""
    ends = [end for end in record.sources.values() if end is not None]
    return {
        "id": record.session_id,
        "status": "done" if complete else "processing",
        "engine": engine,
        "duration_s": round(max(ends, default=0) / RATE, 3),
        "text": " ".join(f.text.strip() for f in found if f.text.strip()),
        "segments": [segment_json(f) for f in found],
    }


def segment_json(final: m.TranscriptFinal) -> dict[str, Any]:
    """One final as JSON, times in seconds on its source's clock."""
    return {
        "segment_id": final.segment_id,
        "source": final.source,
        "start": round(final.start_sample / RATE, 3),
        "end": round(final.end_sample / RATE, 3),
        "text": final.text.strip(),
        "confidence": final.confidence,
        "language": final.language,
        "words": [
            {
                "text": w.text,
                "start": round(w.start_sample / RATE, 3),
                "end": round(w.end_sample / RATE, 3),
                "probability": w.probability,
            }
            for w in final.words
        ],
    }
