from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig
from nats_server import NatsServer
from waiting import wait_until

from echostream_shared import topology as t
from echostream_shared.bus import Bus, PermanentError, PullConsumer
from echostream_shared.messages import BusMessage, SessionClosed

DURABLE = "test-consumer"


def closed(session_id: str) -> SessionClosed:
    return SessionClosed(session_id=session_id, closed_at=1.0)


@pytest.fixture
async def topology(bus: Bus) -> AsyncIterator[Bus]:
    await t.ensure_topology(bus.js)
    await bus.js.add_consumer(
        t.SESSION_STREAM, ConsumerConfig(durable_name=DURABLE, ack_wait=30, max_deliver=5)
    )
    yield bus


async def run_until(
    consumer: PullConsumer, done: Callable[[], bool], timeout_s: float = 10.0
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(done, timeout_s)
    finally:
        stop.set()
        await task


def recording(seen: list[str]) -> Callable[[BusMessage, Msg], Awaitable[None]]:
    async def handle(message: BusMessage, _msg: Msg) -> None:
        assert isinstance(message, SessionClosed)
        seen.append(message.session_id)

    return handle


async def test_a_malformed_message_is_terminated_counted_and_skipped(topology: Bus) -> None:
    bus = topology
    await bus.publish(t.session_events("a"), closed("a"))
    await bus.js.publish(t.session_events("bad"), b"\xc1 not msgpack")
    await bus.js.publish(t.session_events("bad"), b"\x81\xa4type\xa4nope")
    await bus.publish(t.session_events("b"), closed("b"))
    seen: list[str] = []
    consumer = PullConsumer(bus, t.SESSION_STREAM, DURABLE, recording(seen), batch=2)

    await run_until(consumer, lambda: len(seen) == 2)

    assert seen == ["a", "b"]
    assert consumer.stats.malformed == 2
    info = await bus.js.consumer_info(t.SESSION_STREAM, DURABLE)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0
    assert info.num_redelivered == 0


async def test_a_failing_handler_gets_the_message_again(topology: Bus) -> None:
    bus = topology
    await bus.publish(t.session_events("a"), closed("a"))
    attempts: list[str] = []

    async def flaky(message: BusMessage, _msg: Msg) -> None:
        attempts.append("try")
        if len(attempts) == 1:
            raise RuntimeError("transient")

    consumer = PullConsumer(bus, t.SESSION_STREAM, DURABLE, flaky, retry_delay_s=0.1)
    await run_until(consumer, lambda: consumer.stats.handled == 1)
    assert len(attempts) == 2
    assert consumer.stats.failed == 1


async def test_a_permanent_error_terminates_the_message(topology: Bus) -> None:
    bus = topology
    await bus.publish(t.session_events("a"), closed("a"))
    await bus.publish(t.session_events("b"), closed("b"))
    seen: list[str] = []

    async def reject_a(message: BusMessage, msg: Msg) -> None:
        assert isinstance(message, SessionClosed)
        if message.session_id == "a":
            raise PermanentError("cannot ever handle a")
        await recording(seen)(message, msg)

    consumer = PullConsumer(bus, t.SESSION_STREAM, DURABLE, reject_a, retry_delay_s=0.1)
    await run_until(consumer, lambda: seen == ["b"])
    await asyncio.sleep(0.3)
    assert consumer.stats.failed == 1
    info = await bus.js.consumer_info(t.SESSION_STREAM, DURABLE)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_consuming_survives_a_nats_restart(topology: Bus, nats_server: NatsServer) -> None:
    bus = topology
    seen: list[str] = []
    consumer = PullConsumer(bus, t.SESSION_STREAM, DURABLE, recording(seen), retry_delay_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await bus.publish(t.session_events("before"), closed("before"))
        await wait_until(lambda: seen == ["before"])
        nats_server.stop()
        await asyncio.sleep(0.5)
        nats_server.start()
        await wait_until(lambda: bus.nc.is_connected, 20, "reconnection")
        await bus.publish(t.session_events("after"), closed("after"))
        await wait_until(lambda: seen == ["before", "after"], 20)
    finally:
        stop.set()
        await task
