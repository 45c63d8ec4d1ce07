"""The aggregator as a process: crash and restart, database loss, bad input, exit codes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import nats
import pytest
from aggregator_process import AggregatorProcess
from nats_server import NatsServer
from session_script import Published, session_script

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.topology import ensure_topology

pytestmark = pytest.mark.slow

ENGINES = ("whisper", "voxtral")


async def publish(bus: Bus, script: list[Published]) -> None:
    for item in script:
        await bus.publish(item.subject, item.message)


async def exports(aggregator: AggregatorProcess, session_id: str) -> dict[str, Any]:
    return {engine: await aggregator.session(session_id, engine) for engine in ENGINES}


@pytest.fixture
def processes() -> Iterator[list[AggregatorProcess]]:
    started: list[AggregatorProcess] = []
    yield started
    for process in started:
        process.kill()


@pytest.fixture
async def topology(bus: Bus) -> AsyncIterator[Bus]:
    await ensure_topology(bus.js)
    yield bus


async def consumed(bus: Bus, timeout_s: float = 30.0) -> None:
    """Wait until the aggregator has acked everything in both streams."""
    async with asyncio.timeout(timeout_s):
        while True:
            infos = [
                await bus.js.consumer_info(stream, t.aggregator_consumer(stream))
                for stream in t.AGGREGATOR_STREAMS
            ]
            if all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos):
                return
            await asyncio.sleep(0.1)


async def undisturbed_export(
    tmp_path: Path, script: list[Published], session_id: str
) -> dict[str, Any]:
    """The session as an aggregator that never crashed stores it, on its own nats-server."""
    server = NatsServer(tmp_path / "undisturbed-js")
    server.start()
    nc = await nats.connect(server.url)
    aggregator = AggregatorProcess(
        server.url,
        f"sqlite+aiosqlite:///{tmp_path / 'undisturbed.db'}",
        tmp_path / "undisturbed.log",
    )
    try:
        bus = Bus(nc, nc.jetstream())
        await ensure_topology(bus.js)
        await publish(bus, script)
        aggregator.start()
        await aggregator.ready()
        await aggregator.wait_complete(session_id)
        return await exports(aggregator, session_id)
    finally:
        aggregator.kill()
        await nc.close()
        server.stop()


async def test_sigkill_midway_then_restart_gives_the_undisturbed_session(
    topology: Bus, nats_server: NatsServer, tmp_path: Path, processes: list[AggregatorProcess]
) -> None:
    script = session_script("crash", segments=12)
    half = len(script) // 2
    aggregator = AggregatorProcess(
        nats_server.url, f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}", tmp_path / "crash.log"
    )
    processes.append(aggregator)
    await publish(topology, script[:half])
    aggregator.start()
    await aggregator.ready()

    for _ in range(300):
        session = await aggregator.session("crash")
        if session is not None and len(session["transcript"]) >= 2:
            break
        await asyncio.sleep(0.05)
    assert session is not None and not session["complete"]
    aggregator.kill()
    await publish(topology, script[half:])
    aggregator.start()
    await aggregator.ready()
    await aggregator.wait_complete("crash")
    restarted = await exports(aggregator, "crash")
    assert restarted == await undisturbed_export(tmp_path, script, "crash")
    assert len(restarted["whisper"]["transcript"]) == 2 * 12


async def test_losing_the_database_rebuilds_the_same_session(
    topology: Bus, nats_server: NatsServer, tmp_path: Path, processes: list[AggregatorProcess]
) -> None:
    db = tmp_path / "lost" / "aggregator.db"
    aggregator = AggregatorProcess(
        nats_server.url, f"sqlite+aiosqlite:///{db}", tmp_path / "lost.log"
    )
    processes.append(aggregator)
    await publish(topology, session_script("lost"))
    aggregator.start()
    await aggregator.ready()
    await aggregator.wait_complete("lost")
    before = await exports(aggregator, "lost")
    await publish(topology, session_script("lost"))  # the whole stream delivered a second time
    await consumed(topology)
    assert await exports(aggregator, "lost") == before
    assert aggregator.stop() == 0
    for leftover in db.parent.iterdir():
        leftover.unlink()
    aggregator.start()
    await aggregator.ready()
    await aggregator.wait_complete("lost")
    assert await exports(aggregator, "lost") == before
    assert "consumer.rebuilding" in aggregator.log()


async def test_bad_messages_are_terminated_counted_and_skipped(
    topology: Bus, nats_server: NatsServer, tmp_path: Path, processes: list[AggregatorProcess]
) -> None:
    aggregator = AggregatorProcess(
        nats_server.url, f"sqlite+aiosqlite:///{tmp_path / 'bad.db'}", tmp_path / "bad.log"
    )
    processes.append(aggregator)
    subject = t.transcript("whisper", "bad", "mic")
    await topology.js.publish(subject, b"\xc1 not msgpack")
    await topology.js.publish(subject, msgpack.packb({"type": "transcript.final", "text": "x"}))
    status = m.WorkerStatus(
        worker_id="w", engine="whisper", state="ok", active_streams=0, capacity=1, reported_at=1.0
    )
    await topology.publish(subject, status)  # valid, but not for the aggregator
    await publish(topology, session_script("bad", segments=1))
    aggregator.start()
    await aggregator.ready()
    await aggregator.wait_complete("bad")
    metrics = (await aggregator.get("/metrics")).text
    assert 'echostream_bus_malformed_messages_total{stream="EP_TRANSCRIPTS"} 2.0' in metrics
    assert (
        'echostream_aggregator_messages_total{kind="worker.status",outcome="ignored"} 1.0'
        in metrics
    )
    info = await topology.js.consumer_info(
        t.TRANSCRIPT_STREAM, t.aggregator_consumer(t.TRANSCRIPT_STREAM)
    )
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_unreachable_database_exits_1_with_a_clear_message(
    nats_server: NatsServer, tmp_path: Path, processes: list[AggregatorProcess]
) -> None:
    aggregator = AggregatorProcess(
        nats_server.url,
        "postgresql+asyncpg://postgres:pw@127.0.0.1:1/none",
        tmp_path / "nodb.log",
    )
    processes.append(aggregator)
    assert aggregator.start().wait_exit() == 1
    log = aggregator.log()
    assert "database.unreachable" in log and "127.0.0.1:1" in log and "pw" not in log


async def test_unreachable_nats_exits_1(tmp_path: Path, processes: list[AggregatorProcess]) -> None:
    aggregator = AggregatorProcess(
        "nats://127.0.0.1:1",
        f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        tmp_path / "nonats.log",
        ECHOSTREAM_NATS_CONNECT_TIMEOUT_S="1",
    )
    processes.append(aggregator)
    assert aggregator.start().wait_exit() == 1
    assert "cannot reach NATS" in aggregator.log()


async def test_sigterm_with_a_feed_open_drains_and_exits_0(
    topology: Bus, nats_server: NatsServer, tmp_path: Path, processes: list[AggregatorProcess]
) -> None:
    aggregator = AggregatorProcess(
        nats_server.url, f"sqlite+aiosqlite:///{tmp_path / 'term.db'}", tmp_path / "term.log"
    )
    processes.append(aggregator)
    await publish(topology, session_script("open", segments=1)[:3])  # never closed
    aggregator.start()
    await aggregator.ready()
    for _ in range(200):
        if await aggregator.session("open") is not None:
            break
        await asyncio.sleep(0.05)
    async with (
        httpx.AsyncClient(base_url=aggregator.base_url, timeout=30) as client,
        client.stream("GET", "/v1/sessions/open/feed") as response,
    ):
        assert response.status_code == 200
        started = asyncio.get_running_loop().time()
        assert aggregator.process is not None
        aggregator.process.terminate()
        code = await asyncio.to_thread(aggregator.wait_exit, 20)
        assert code == 0, aggregator.log()
        assert asyncio.get_running_loop().time() - started < 10


async def test_a_taken_http_port_exits_1_with_the_reason(
    nats_server: NatsServer, tmp_path: Path, processes: list[AggregatorProcess]
) -> None:
    aggregator = AggregatorProcess(
        nats_server.url, f"sqlite+aiosqlite:///{tmp_path / 'port.db'}", tmp_path / "port.log"
    )
    processes.append(aggregator)
    with socket.create_server(("127.0.0.1", aggregator.port)):
        assert aggregator.start().wait_exit() == 1
    assert "Address already in use" in aggregator.log()
