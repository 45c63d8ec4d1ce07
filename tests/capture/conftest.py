from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
from bus_reading import BusRecorder
from capture_harness import WORKER_SETTINGS, RunningCapture, StartCapture
from fasterwhisper_inprocess import SharedTranscriber, load_transcriber, running_worker
from nats_server import NatsServer
from worker_process import require_ct2_model

from capture.config import CaptureSettings
from capture.service import CaptureService
from echostream_shared import topology as t
from echostream_shared.bus import Bus
from echostream_shared.jobs.worker import JobWorker


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


@pytest.fixture(scope="session")
def transcriber() -> Iterator[SharedTranscriber]:
    """tiny.en on CTranslate2, loaded once for every test that runs a worker."""
    require_ct2_model()
    shared = load_transcriber()
    yield shared
    shared.close()


@pytest.fixture
async def worker(
    bus: Bus, nats_server: NatsServer, transcriber: SharedTranscriber
) -> AsyncIterator[JobWorker]:
    """A real faster-whisper worker on the test's nats-server, in this process."""
    await t.ensure_topology(bus.js)
    async with running_worker(nats_server.url, transcriber, worker_id="capture-tests") as running:
        yield running


@pytest.fixture
async def capture_with_worker(worker: JobWorker, start_capture: StartCapture) -> RunningCapture:
    """Capture sending every source to the faster-whisper worker that runs beside it."""
    return await start_capture(**WORKER_SETTINGS)


@pytest.fixture
async def recorder(bus: Bus) -> AsyncIterator[BusRecorder]:
    """Audio and transcripts on the bus from the start of the test on."""
    recording = BusRecorder(bus)
    await recording.start()
    yield recording
    await recording.stop()
