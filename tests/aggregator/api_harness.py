"""An aggregator's HTTP app over a real store and a real bus, without its consumers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from session_script import Published

from aggregator.app import create_app
from aggregator.config import AggregatorSettings
from aggregator.database import open_database
from aggregator.feed import FeedPublisher
from aggregator.routes import Backend
from aggregator.store import SessionStore
from echostream_shared import messages as m
from echostream_shared.bus import Bus
from echostream_shared.topology import ensure_topology


def healthy() -> Mapping[str, object]:
    return {"status": "ok"}


async def store_script(store: SessionStore, script: list[Published]) -> None:
    for item in script:
        message = item.message
        assert isinstance(
            message,
            m.SessionOpened
            | m.SessionClosed
            | m.SourceOpened
            | m.SourceClosed
            | m.TranscriptPartial
            | m.TranscriptFinal
            | m.SourceTranscribed,
        )
        await store.apply(message)


@asynccontextmanager
async def api_client(
    bus: Bus, database_url: str, script: list[Published], **settings: object
) -> AsyncIterator[tuple[httpx.AsyncClient, SessionStore]]:
    await ensure_topology(bus.js)
    engine, _ = await open_database(database_url)
    store = SessionStore(engine)
    await store_script(store, script)
    config = AggregatorSettings(database_url=database_url, **settings)  # type: ignore[arg-type]
    app = create_app(Backend(store, bus, FeedPublisher(bus), config), healthy)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://aggregator") as client:
            yield client, store
    finally:
        await engine.dispose()
