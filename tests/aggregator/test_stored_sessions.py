"""Stored sessions over NATS request/reply: the contract capture reads sessions through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgpack
import pytest
from session_script import OPENED_AT, Published, session_script
from waiting import wait_until

from aggregator.config import AggregatorSettings
from aggregator.service import Aggregator
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import decode_as, encode
from echostream_shared.ids import segment_id
from echostream_shared.topology import ensure_topology

RATE = m.SAMPLE_RATE


@pytest.fixture
async def aggregator(bus: Bus, database_url: str) -> AsyncIterator[None]:
    """An aggregator on SQLite, then on PostgreSQL, consuming the test's bus."""
    await ensure_topology(bus.js)
    settings = AggregatorSettings(database_url=database_url, http_port=0)
    service = Aggregator(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(bus, stop))
    await wait_until(lambda: service.health()["status"] == "ok" or task.done(), what="start")
    yield
    stop.set()
    await asyncio.wait_for(task, 15)


async def publish(bus: Bus, script: list[Published]) -> None:
    for item in script:
        await bus.publish(item.subject, item.message)


async def ask(bus: Bus, payload: bytes) -> m.StoredSessionReply:
    reply = await bus.nc.request(t.AGGREGATOR_SESSION, payload, timeout=15)
    return decode_as(reply.data, m.StoredSessionReply)


async def request(bus: Bus, session_id: str, **fields: object) -> m.StoredSessionReply:
    return await ask(bus, encode(m.StoredSessionRequest(session_id=session_id, **fields)))


def published_finals(script: list[Published], engine: str) -> list[m.TranscriptFinal]:
    finals = [
        p.message
        for p in script
        if isinstance(p.message, m.TranscriptFinal) and p.message.engine == engine
    ]
    return sorted(finals, key=lambda f: (f.start_sample, f.source))


async def stored(bus: Bus, session_id: str) -> None:
    for _ in range(200):
        if (await request(bus, session_id)).status == "ok":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{session_id} never stored")


async def test_a_request_waits_for_the_engine_and_gets_the_stored_finals(
    bus: Bus, aggregator: None
) -> None:
    script = session_script("sum", segments=2)
    done = [p for p in script if isinstance(p.message, m.SourceTranscribed)]
    await publish(bus, [p for p in script if p not in done])
    asking = asyncio.create_task(request(bus, "sum", engine="whisper", wait_s=10))
    await asyncio.sleep(0.5)
    assert not asking.done(), "the reply waits for the engine's source.transcribed markers"
    await publish(bus, done)
    reply = await asking
    assert reply.status == "ok" and reply.complete
    assert list(reply.finals) == published_finals(script, "whisper")
    await wait_closed(bus, "sum")  # session events are another stream, stored at their own pace
    reply = await request(bus, "sum", engine="whisper")
    assert reply.complete and reply.closed
    assert (reply.session_id, reply.client, reply.engine) == ("sum", "native", "whisper")
    assert set(reply.engines) == {"whisper", "voxtral"}
    assert {(s.source, s.end_sample, s.transcribed) for s in reply.sources} == {
        ("system", 6 * RATE, True),
        ("mic", 6 * RATE, True),
    }
    assert list(reply.finals) == published_finals(script, "whisper")
    assert reply.next_offset is None
    other = await request(bus, "sum", engine="voxtral")
    assert list(other.finals) == published_finals(script, "voxtral")


async def test_complete_is_false_until_the_engine_finished_every_source(
    bus: Bus, aggregator: None
) -> None:
    script = session_script("open", segments=2)
    transcribed = [p for p in script if isinstance(p.message, m.SourceTranscribed)]
    whisper_mic = [p for p in transcribed if p.message.engine == "whisper"][-1]  # type: ignore[attr-defined]
    await publish(bus, [p for p in script if p is not whisper_mic])
    # Voxtral's last marker is the last transcript published: once stored, all before it are.
    voxtral = await request(bus, "open", engine="voxtral", wait_s=10)
    assert voxtral.complete, "complete is per engine"
    await wait_closed(bus, "open")
    reply = await request(bus, "open", engine="whisper", wait_s=0.3)
    assert reply.status == "ok" and reply.closed and not reply.complete
    assert {(s.source, s.transcribed) for s in reply.sources} == {
        ("system", True),
        ("mic", False),
    }
    assert list(reply.finals) == published_finals(script, "whisper")
    started = script[:3]  # opened, two sources opened: nothing closed yet
    await publish(bus, [Published(p.subject, _renamed(p.message, "live")) for p in started])
    for _ in range(200):
        live = await request(bus, "live")
        if len(live.sources) == 2:
            break
        await asyncio.sleep(0.05)
    assert live.engine == "whisper", "the primary engine when none is asked for"
    assert not live.closed and not live.complete and not live.finals
    assert {(s.source, s.end_sample) for s in live.sources} == {("system", None), ("mic", None)}


async def wait_closed(bus: Bus, session_id: str) -> None:
    for _ in range(200):
        if (await request(bus, session_id)).closed:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{session_id} never closed")


def _renamed(message: m.Message, session_id: str) -> m.Message:
    return message.model_copy(update={"session_id": session_id})


async def test_a_long_transcript_comes_in_pages_that_fit_a_message(
    bus: Bus, aggregator: None
) -> None:
    script = session_script("long", segments=1, engines=("whisper",))
    text = "word " * 3900
    finals = [
        m.TranscriptFinal(
            session_id="long",
            source="mic",
            engine="whisper",
            segment_id=segment_id("long", "mic", "whisper", (index + 1) * 10 * RATE),
            start_sample=(index + 1) * 10 * RATE,
            end_sample=(index + 1) * 10 * RATE + RATE,
            text=text,
            emitted_at=OPENED_AT + index,
        )
        for index in range(60)
    ]
    done = [p for p in script if isinstance(p.message, m.SourceTranscribed)]
    await publish(bus, [p for p in script if p not in done])
    for final in finals:
        await bus.publish(t.transcript("whisper", "long", "mic"), final)
    await publish(bus, done)
    expected = sorted(published_finals(script, "whisper") + finals, key=lambda f: f.start_sample)
    first = await request(bus, "long", wait_s=10)
    assert first.complete
    pages, offset = [first], first.next_offset
    while offset is not None:
        pages.append(await request(bus, "long", offset=offset))
        offset = pages[-1].next_offset
    assert len(pages) >= 2
    assert [f for page in pages for f in page.finals] == expected


async def test_bad_requests_unknown_sessions_and_engines_are_answered(
    bus: Bus, aggregator: None
) -> None:
    await publish(bus, session_script("known", segments=1))
    unknown = await request(bus, "nobody")
    assert unknown.status == "not_found" and not unknown.finals
    garbage = await ask(bus, b"\x93not a request")
    assert garbage.status == "bad_request" and garbage.detail
    wrong_type = await ask(bus, encode(m.SessionClosed(session_id="known", closed_at=1.0)))
    assert wrong_type.status == "bad_request" and "StoredSessionRequest" in wrong_type.detail
    too_long = {"type": "stored_session.request", "schema_version": 1, "session_id": "known"}
    invalid = await ask(bus, msgpack.packb(too_long | {"wait_s": 3600}))
    assert invalid.status == "bad_request" and "wait_s" in invalid.detail
    await stored(bus, "known")
    engine = await request(bus, "known", engine="kaldi")
    assert engine.status == "unknown_engine" and "kaldi" in engine.detail
    assert set(engine.engines) == {"whisper", "voxtral"}
