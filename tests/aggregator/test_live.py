"""The running service's live side: the NATS and SSE feeds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats_server import free_port
from session_script import Published, session_script
from waiting import wait_until

from aggregator.config import AggregatorSettings
from aggregator.service import Aggregator
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import decode_as
from echostream_shared.topology import ensure_topology


@pytest.fixture
async def running(bus: Bus, tmp_path: Path) -> AsyncIterator[str]:
    """An aggregator served in this event loop; yields its base URL."""
    await ensure_topology(bus.js)
    port = free_port()
    settings = AggregatorSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'live.db'}", http_port=port
    )
    service = Aggregator(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(bus, stop))
    await wait_until(lambda: service.health()["status"] == "ok" or task.done(), what="start")
    yield f"http://127.0.0.1:{port}"
    stop.set()
    await asyncio.wait_for(task, 15)


async def publish(bus: Bus, script: list[Published]) -> None:
    for item in script:
        await bus.publish(item.subject, item.message)


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    event, data = "", ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif not line and event:
            yield event, data
            event, data = "", ""


async def test_feed_on_nats_and_over_sse(bus: Bus, running: str) -> None:
    script = session_script("live", segments=2)
    on_nats: list[m.SessionUpdate] = []

    async def collect(msg: object) -> None:
        on_nats.append(decode_as(msg.data, m.SessionUpdate))  # type: ignore[attr-defined]

    await bus.nc.subscribe(t.session_feed("live"), cb=collect)
    await publish(bus, script[:1])
    async with httpx.AsyncClient(base_url=running, timeout=10) as client:
        await wait_until_stored(client, "live")
        async with client.stream("GET", "/v1/sessions/live/feed") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response)
            kind, data = await anext(events)
            assert kind == "snapshot" and json.loads(data)["session_id"] == "live"
            await publish(bus, script[1:])
            updates = [json.loads(data) async for kind, data in events if kind == "update"]
    kinds = [update["kind"] for update in updates]
    assert kinds[-1] == "session.completed"
    assert {"transcript.partial", "transcript.final", "source.transcribed"} <= set(kinds)
    assert {update["engine"] for update in updates} <= {None, "whisper"}  # the primary's only
    await wait_until(lambda: any(u.kind == "session.completed" for u in on_nats), what="feed")
    finals = [u for u in on_nats if u.kind == "transcript.final"]
    assert len(finals) == 2 * 2 * 2 and all(u.text for u in finals)
    seen = len(on_nats)
    await publish(bus, script)  # a replay stores nothing, so it publishes nothing
    await asyncio.sleep(1.0)
    assert len(on_nats) == seen


async def wait_until_stored(client: httpx.AsyncClient, session_id: str) -> None:
    for _ in range(200):
        if (await client.get(f"/v1/sessions/{session_id}")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{session_id} never stored")
