"""Fixtures of the Voxtral worker tests: the fake vLLM, worker processes, the bus topology."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fake_vllm import FakeVllm, FakeVllmConfig
from fake_vllm.harness import ACK_WAIT_S, SCRIPT, StartWorker, VoxtralProcess
from nats_server import NatsServer

from echostream_shared import topology as t
from echostream_shared.bus import Bus


@pytest.fixture(autouse=True)
async def topology(bus: Bus) -> None:
    await t.ensure_topology(bus.js, t.TopologyLimits(job_ack_wait_s=ACK_WAIT_S))


@pytest.fixture
async def vllm() -> AsyncIterator[FakeVllm]:
    async with FakeVllm(FakeVllmConfig(script=SCRIPT)) as server:
        yield server


@pytest.fixture
def start_worker(nats_server: NatsServer, tmp_path: Path) -> Iterator[StartWorker]:
    """Starts worker processes against a vLLM URL; whatever a test leaves running is killed."""
    started: list[VoxtralProcess] = []

    def start(name: str, vllm_url: str, **env: str) -> VoxtralProcess:
        worker = VoxtralProcess(nats_server.url, vllm_url, tmp_path / f"{name}.log", **env)
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.kill()
