"""Reading back what workers published, for tests: a source's transcripts and the job queue."""

from __future__ import annotations

import asyncio

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DeliverPolicy

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import decode


async def read_transcripts(
    bus: Bus, engine: str, session_id: str, source: str = "mic", idle_s: float = 0.5
) -> list[m.BusMessage]:
    """Everything ``engine`` published for a source, in order, until ``idle_s`` brings nothing."""
    return await read_subject(bus, t.transcript(engine, session_id, source), idle_s)


async def wait_for_jobs_done(bus: Bus, timeout_s: float, poll_s: float = 0.1) -> None:
    """The work queue is empty once every job was acked at its source's close."""

    async def poll() -> None:
        while (await bus.js.stream_info(t.JOB_STREAM)).state.messages:
            await asyncio.sleep(poll_s)

    await asyncio.wait_for(poll(), timeout_s)


async def read_subject(bus: Bus, subject: str, idle_s: float = 0.5) -> list[m.BusMessage]:
    """Every message stored on ``subject`` (wildcards allowed), oldest first, until ``idle_s``
    brings nothing."""
    subscription = await bus.js.subscribe(
        subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    found: list[m.BusMessage] = []
    try:
        while True:
            msg = await subscription.next_msg(timeout=idle_s)
            found.append(decode(msg.data, msg.subject))
    except NatsTimeoutError:
        return found
    finally:
        await subscription.unsubscribe()
