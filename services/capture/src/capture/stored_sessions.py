"""Sessions as the aggregator stored them, asked over NATS request/reply.

Capture keeps no store of its own: whatever it serves about a finished or running session (a
transcription's state, EchoPanel's ``final_summary``) comes from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nats.errors import Error as NatsError

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import DecodeError, decode_as, encode

RATE = m.SAMPLE_RATE
READ_TIMEOUT_S = 5.0
REPLY_MARGIN_S = 0.5
"""Time left for a reply to travel after the aggregator stops waiting for the engine."""


class AggregatorUnavailable(Exception):
    """No aggregator answered in time, or it could not answer."""


class UnknownEngine(Exception):
    """The session was not transcribed by the engine asked for."""

    def __init__(self, message: str, engines: tuple[str, ...]) -> None:
        super().__init__(message)
        self.engines = engines


@dataclass(frozen=True)
class StoredSession:
    """A stored session as one engine transcribed it."""

    session_id: str
    client: str
    engine: str
    engines: tuple[str, ...]
    closed: bool
    complete: bool
    """The engine finished every source (the session may still be open)."""
    ends: dict[str, int | None]
    """Each source's end sample; None while it is open."""
    finals: list[m.TranscriptFinal]
    """One per segment, in time order (start sample, then source)."""

    @property
    def duration_s(self) -> float:
        """The longest closed source, in seconds."""
        return max((end for end in self.ends.values() if end is not None), default=0) / RATE


async def read_stored_session(
    bus: Bus,
    session_id: str,
    *,
    engine: str | None = None,
    wait_s: float = 0.0,
    timeout_s: float = READ_TIMEOUT_S,
) -> StoredSession | None:
    """The session as ``engine`` (the aggregator's choice when None) transcribed it.

    The aggregator waits up to ``wait_s`` for the engine to finish every source; the whole read
    takes at most ``timeout_s``. Returns None for a session the store does not know.

    Raises:
        UnknownEngine: the session has no transcript from ``engine``.
        AggregatorUnavailable: no aggregator answered within ``timeout_s``, or it failed.
    """
    deadline = time.monotonic() + timeout_s
    wait_s = max(0.0, min(wait_s, timeout_s - REPLY_MARGIN_S, 30.0))
    request = m.StoredSessionRequest(session_id=session_id, engine=engine, wait_s=wait_s)
    first = await _ask(bus, request, deadline)
    if first.status == "not_found":
        return None
    if first.status == "unknown_engine":
        raise UnknownEngine(first.detail, first.engines)
    finals = list(first.finals)
    offset = first.next_offset
    while offset is not None:
        following = request.model_copy(update={"offset": offset, "wait_s": 0.0})
        page = await _ask(bus, following, deadline)
        finals += page.finals
        offset = page.next_offset
    return StoredSession(
        session_id=first.session_id,
        client=first.client,
        engine=first.engine or "",
        engines=first.engines,
        closed=first.closed,
        complete=first.complete,
        ends={source.source: source.end_sample for source in first.sources},
        finals=finals,
    )


async def _ask(bus: Bus, request: m.StoredSessionRequest, deadline: float) -> m.StoredSessionReply:
    left = max(0.001, deadline - time.monotonic())
    try:
        response = await bus.nc.request(t.AGGREGATOR_SESSION, encode(request), timeout=left)
        reply = decode_as(response.data, m.StoredSessionReply, t.AGGREGATOR_SESSION)
    except (TimeoutError, NatsError, DecodeError) as exc:
        raise AggregatorUnavailable(
            f"no answer from the aggregator ({type(exc).__name__})"
        ) from exc
    if reply.status not in ("ok", "not_found", "unknown_engine"):
        raise AggregatorUnavailable(f"the aggregator answered {reply.status}: {reply.detail}")
    return reply
