from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from nats_server import NatsServer, free_port

from echostream_shared import topology as t
from echostream_shared.bus import Bus
from echostream_shared.messages import SessionClosed

SERVICE = Path(__file__).with_name("slow_service.py")
MESSAGES = 30
DRAIN_TIMEOUT_S = 5.0


def start_service(nats_url: str, pause_s: float, **extra_env: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **extra_env,
        "ECHOSTREAM_NATS_URL": nats_url,
        "ECHOSTREAM_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
        "ECHOSTREAM_NATS_CONNECT_TIMEOUT_S": "3",
    }
    return subprocess.Popen(
        [sys.executable, str(SERVICE), str(pause_s)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_sigterm_drains_and_exits_zero_with_nothing_unacked(
    bus: Bus, nats_server: NatsServer
) -> None:
    await t.ensure_topology(bus.js)
    for n in range(MESSAGES):
        await bus.publish(t.session_events(f"s{n}"), SessionClosed(session_id=f"s{n}", closed_at=1))
    service = start_service(nats_server.url, pause_s=0.2)
    await wait_for_progress(bus)

    service.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = await asyncio.to_thread(service.wait, DRAIN_TIMEOUT_S + 5)
    elapsed = time.monotonic() - started

    _out, err = service.communicate()
    assert code == 0, err.decode()
    assert elapsed < DRAIN_TIMEOUT_S
    info = await bus.js.consumer_info(t.SESSION_STREAM, "slow-service")
    assert info.num_ack_pending == 0
    assert 0 < info.ack_floor.stream_seq < MESSAGES
    assert info.num_pending == MESSAGES - info.ack_floor.stream_seq
    events = [json.loads(line)["event"] for line in err.decode().splitlines()]
    assert "service.draining" in events and events[-1] == "service.stopped"


async def wait_for_progress(bus: Bus) -> None:
    async with asyncio.timeout(15):
        while True:
            try:
                info = await bus.js.consumer_info(t.SESSION_STREAM, "slow-service")
            except Exception:
                info = None
            if info is not None and info.ack_floor.stream_seq >= 2:
                return
            await asyncio.sleep(0.05)


def test_a_service_exits_with_a_clear_error_when_nats_is_unreachable() -> None:
    service = start_service(f"nats://127.0.0.1:{free_port()}", pause_s=0)
    code = service.wait(timeout=30)
    _out, err = service.communicate()
    assert code == 1
    last = json.loads(err.decode().splitlines()[-1])
    assert last["event"] == "service.cannot_connect"
    assert "cannot reach NATS" in last["error"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_service_waiting_for_nats_stops_on_a_signal(signum: int) -> None:
    service = start_service(f"nats://127.0.0.1:{free_port()}", pause_s=0)
    assert service.stderr is not None
    events = []
    while "service.connecting" not in events:  # its signal handlers are installed by then
        line = service.stderr.readline()
        assert line, "the service ended before trying to connect"
        events.append(json.loads(line)["event"])
    service.send_signal(signum)
    assert service.wait(timeout=10) == 0
    _out, err = service.communicate()
    assert json.loads(err.decode().splitlines()[-1])["event"] == "service.stopped_before_connecting"


async def test_health_and_metrics_are_served_while_running(nats_server: NatsServer) -> None:
    port = free_port()
    service = start_service(nats_server.url, 0, ECHOSTREAM_METRICS_PORT=str(port))
    try:
        health = await asyncio.to_thread(http_get_when_up, f"http://127.0.0.1:{port}/health")
        metrics = await asyncio.to_thread(http_get_when_up, f"http://127.0.0.1:{port}/metrics")
        assert json.loads(health) == {"status": "ok"}
        assert "echostream_bus_malformed_messages_total" in metrics
    finally:
        service.terminate()
        assert service.wait(timeout=15) == 0


def http_get_when_up(url: str) -> str:
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
                return body.decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
