"""An aggregator service in the test's event loop, storing what the test's bus carries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from waiting import wait_until

from aggregator.config import AggregatorSettings
from aggregator.service import Aggregator
from echostream_shared.bus import Bus
from echostream_shared.topology import ensure_topology


@asynccontextmanager
async def running_aggregator(bus: Bus, database_url: str) -> AsyncIterator[Aggregator]:
    """The aggregator (HTTP on a free port), running until the block ends."""
    await ensure_topology(bus.js)
    service = Aggregator(AggregatorSettings(database_url=database_url, http_port=0))
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(bus, stop))
    await wait_until(lambda: service.health()["status"] == "ok" or task.done(), what="start")
    if task.done():
        task.result()
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
