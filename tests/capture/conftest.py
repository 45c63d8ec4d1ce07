from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from capture_harness import RunningCapture, StartCapture
from fake_worker import FakeWorker
from nats_server import NatsServer

from capture.config import CaptureSettings
from capture.service import CaptureService
from echostream_shared import topology as t
from echostream_shared.bus import Bus


@pytest.fixture
async def start_capture(bus: Bus, nats_server: NatsServer) -> AsyncIterator[StartCapture]:
    """Starts capture services in this process, each with its own NATS connection."""
    await t.ensure_topology(bus.js)
    running: list[tuple[asyncio.Event, asyncio.Task[None], Any]] = []

    async def start(**overrides: Any) -> RunningCapture:
        settings = CaptureSettings(port=0, **overrides)
        service = CaptureService(settings)
        nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(Bus(nc, nc.jetstream()), stop))
        running.append((stop, task, nc))
        ready = asyncio.create_task(service.ready.wait())
        await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert service.ready.is_set(), "capture did not start"
        return RunningCapture(service, settings, stop, task)

    yield start
    for stop, task, nc in running:
        stop.set()
        await asyncio.wait_for(task, 20)
        await nc.close()


@pytest.fixture
async def capture(start_capture: StartCapture) -> RunningCapture:
    return await start_capture()


@pytest.fixture
async def fake_worker(bus: Bus) -> AsyncIterator[FakeWorker]:
    await t.ensure_topology(bus.js)
    worker = FakeWorker(bus)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    yield worker
    stop.set()
    await asyncio.wait_for(task, 10)
