"""Knowing that a source has been transcribed to its end.

An engine publishes ``source.transcribed`` on the source's transcript subject right after its
last final, so the transcript is complete once that message is in the stream.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.errors import Error as NatsError
from nats.js.api import DeliverPolicy

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import DecodeError, decode


async def transcribed(
    bus: Bus, engine: str, session_id: str, source: str, timeout_s: float
) -> bool:
    """Wait until ``engine`` finished ``source``; False after ``timeout_s``."""
    subscription = await bus.js.subscribe(
        t.transcript(engine, session_id, source),
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                with contextlib.suppress(TimeoutError):
                    msg = await subscription.next_msg(timeout=1.0)
                    if _is_marker(msg.data, msg.subject):
                        return True
    except TimeoutError:
        return False
    finally:
        with contextlib.suppress(NatsError):
            await subscription.unsubscribe()


async def is_transcribed(bus: Bus, engine: str, session_id: str, source: str) -> bool:
    """Whether ``engine`` finished ``source`` already: the subject's last message is the marker."""
    try:
        last = await bus.js.get_last_msg(
            t.TRANSCRIPT_STREAM, t.transcript(engine, session_id, source)
        )
    except NatsError:
        return False
    return last.data is not None and _is_marker(last.data, last.subject or "")


def _is_marker(data: bytes, subject: str) -> bool:
    try:
        return isinstance(decode(data, subject), m.SourceTranscribed)
    except DecodeError:
        return False
