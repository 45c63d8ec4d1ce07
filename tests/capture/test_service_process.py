"""``python -m capture`` as a process: starts, serves, drains on SIGTERM, refuses bad settings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys

import httpx
from capture_audio import conversation
from capture_harness import MAX_WER
from echopanel_client import EchoPanelClient
from fasterwhisper_inprocess import ENGINE
from nats_server import NatsServer, free_port
from speech_corpus import wer

from echostream_shared import topology as t
from echostream_shared.bus import Bus
from echostream_shared.jobs.worker import JobWorker


async def start(nats_url: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "capture",
        env={
            **os.environ,
            "ECHOSTREAM_NATS_URL": nats_url,
            "ECHOSTREAM_NATS_CONNECT_TIMEOUT_S": "3",
            "ECHOSTREAM_DRAIN_TIMEOUT_S": "6",
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_healthy(url: str) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        for _ in range(150):
            try:
                response = await http.get(url + "/health")
                if response.status_code == 200:
                    body: dict[str, object] = response.json()
                    return body
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("capture never became healthy")


async def test_the_process_serves_a_session_and_drains_on_sigterm(
    nats_server: NatsServer, bus: Bus, worker: JobWorker
) -> None:
    port = free_port()
    process = await start(
        nats_server.url,
        ECHOSTREAM_CAPTURE_PORT=str(port),
        ECHOSTREAM_CAPTURE_ENGINES=f"whisper,{ENGINE}",
        ECHOSTREAM_CAPTURE_ECHOPANEL_ENGINE=ENGINE,
    )
    speech = conversation(names=("quick_brown_fox",))
    try:
        health = await wait_healthy(f"http://127.0.0.1:{port}")
        assert health["status"] == "ok" and health["model"] == ENGINE
        async with EchoPanelClient(f"ws://127.0.0.1:{port}") as client:
            await client.stream({"mic": speech.pcm}, speed=8.0)
            summary = await client.stop()
        assert summary is not None
        said = " ".join(item["text"] for item in summary["json"]["transcript"])
        assert wer(speech.text, said) <= MAX_WER, said
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 15)
    _out, err = await process.communicate()
    events = [json.loads(line)["event"] for line in err.decode().splitlines()]
    assert code == 0, err.decode()[-2000:]
    assert "capture.listening" in events and events[-1] == "service.stopped"
    assert "fox" not in err.decode().lower(), "transcript text never reaches the logs"
    info = await bus.js.stream_info(t.SESSION_STREAM)
    assert info.state.messages >= 4


async def test_a_non_loopback_address_without_a_token_is_refused(nats_server: NatsServer) -> None:
    process = await start(nats_server.url, ECHOSTREAM_CAPTURE_HOST="0.0.0.0")
    code = await asyncio.wait_for(process.wait(), 15)
    _out, err = await process.communicate()
    assert code == 1
    last = json.loads(err.decode().splitlines()[-1])
    assert last["event"] == "settings.invalid" and "ECHOSTREAM_CAPTURE_TOKEN" in last["error"]


async def test_a_busy_port_fails_with_a_clear_error(nats_server: NatsServer) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = await start(nats_server.url, ECHOSTREAM_CAPTURE_PORT=str(port))
        code = await asyncio.wait_for(process.wait(), 15)
    _out, err = await process.communicate()
    assert code == 1
    assert "Address already in use" in err.decode()
