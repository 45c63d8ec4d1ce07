"""`make run` end to end, as a newcomer uses it: start it, wait for health, stream real speech
through the native protocol, read the session back from the aggregator's API, press Ctrl-C."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from capture_audio import conversation
from deployment.deploy_files import REPO
from deployment.local_run import health_status, local_run, make_run_argv, port_is_listening
from native_client import NativeClient
from nats_server import NatsServer, free_port
from pipeline_procs import require_whisper_worker
from speech_corpus import wer

RUN_PY = [sys.executable, str(REPO / "infra" / "local" / "run.py")]
MAKE_INTERRUPTED = -2
"""make dies of the SIGINT after its recipe (run.py) has stopped cleanly and exited 0."""


async def stream_speech(capture_port: int, pcm: bytes) -> str:
    """One native-protocol session; returns its id once capture says every source is done."""
    async with NativeClient(f"ws://127.0.0.1:{capture_port}") as client:
        ready = await client.start(sample_rate=16_000, channels=1, encoding="pcm_s16le")
        assert ready["type"] == "ready", ready
        await client.stream(0, pcm, frame_bytes=3200, frames_per_s=50)
        done = await client.finish(timeout_s=120)
    assert done["complete"], done
    session_id: str = ready["session_id"]
    return session_id


async def stored_session(api: str, session_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """GET /v1/sessions/{id} until the aggregator has the session closed and complete."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: Any = None
    async with httpx.AsyncClient(base_url=api, timeout=5) as http:
        while loop.time() < deadline:
            try:
                response = await http.get(f"/v1/sessions/{session_id}")
            except httpx.TransportError as exc:
                last = exc  # the supervisor may be restarting the aggregator: the log says so
            else:
                assert response.status_code in (200, 404), response.text
                last = response.json()
                if response.status_code == 200 and finished(last):
                    body: dict[str, Any] = last
                    return body
            await asyncio.sleep(0.5)
    raise AssertionError(f"session {session_id} not complete after {timeout_s} s: {last!r}")


def finished(body: Any) -> bool:
    return bool(body["status"] == "closed" and body["complete"] and body["transcript"])


@pytest.mark.slow
async def test_make_run_with_both_cpu_engines_stores_each_engines_transcript(
    tmp_path: Path,
) -> None:
    require_whisper_worker()
    speech = conversation(gap_s=1.0, names=("quick_brown_fox", "hello_world"))
    argv = [*RUN_PY, "--state-dir", str(tmp_path / "state"), "--nats-port", str(free_port())]
    with local_run(tmp_path, [*argv, "--engines", "whisper,fasterwhisper"]) as run:
        run.wait_healthy(
            [
                run.url("ECHOSTREAM_CAPTURE_PORT", "/health"),
                run.url("ECHOSTREAM_AGGREGATOR_HTTP_PORT", "/health"),
                run.url("ECHOSTREAM_WHISPER_METRICS_PORT", "/health"),
                run.url("ECHOSTREAM_FASTERWHISPER_METRICS_PORT", "/health"),
            ]
        )
        session_id = await stream_speech(run.ports["ECHOSTREAM_CAPTURE_PORT"], speech.pcm.tobytes())
        api = run.url("ECHOSTREAM_AGGREGATOR_HTTP_PORT")
        session = await stored_session(api, session_id)
        assert sorted(session["engines"]) == ["fasterwhisper", "whisper"]
        async with httpx.AsyncClient(base_url=api, timeout=5) as http:
            view = (await http.get(f"/v1/sessions/{session_id}?engine=fasterwhisper")).json()
        assert view["engine"] == "fasterwhisper"
        text = " ".join(segment["text"] for segment in view["transcript"])
        assert wer(speech.text, text) <= 0.2, text
        assert run.interrupt() == 0
    assert "restarting" not in run.output, "a service died during the session"


@pytest.mark.slow
async def test_make_run_transcribes_real_speech_into_a_stored_session(tmp_path: Path) -> None:
    require_whisper_worker()
    speech = conversation(gap_s=1.0, names=("quick_brown_fox", "hello_world"))
    argv = make_run_argv(tmp_path / "state", free_port())
    with local_run(tmp_path, argv) as run:
        health = [
            run.url("ECHOSTREAM_CAPTURE_PORT", "/health"),
            run.url("ECHOSTREAM_AGGREGATOR_HTTP_PORT", "/health"),
            run.url("ECHOSTREAM_WHISPER_METRICS_PORT", "/health"),
        ]
        started = time.monotonic()
        run.wait_healthy(health)
        healthy_after_s = time.monotonic() - started
        run.wait_for_line("ready: whisper-worker, capture, aggregator")

        session_id = await stream_speech(run.ports["ECHOSTREAM_CAPTURE_PORT"], speech.pcm.tobytes())
        session = await stored_session(run.url("ECHOSTREAM_AGGREGATOR_HTTP_PORT"), session_id)
        text = " ".join(segment["text"] for segment in session["transcript"])
        assert session["engine"] == "whisper"
        assert wer(speech.text, text) <= 0.2, text

        async with httpx.AsyncClient(timeout=5) as http:
            metrics = await http.get(run.url("ECHOSTREAM_WHISPER_METRICS_PORT", "/metrics"))
        assert metrics.status_code == 200 and "# TYPE" in metrics.text

        code = run.interrupt()
    output = run.output
    assert output.rstrip().endswith("stopped"), output[-2000:]
    assert "restarting" not in output, "a service died during the session"
    for port in run.ports.values():
        assert not port_is_listening(port), f"port {port} still open after Ctrl-C"
    # make exits by the SIGINT it was sent once its recipe stopped, or 0 when the signal reached
    # it only after the recipe had exited cleanly (seen in CI): both are a clean stop
    assert code in (MAKE_INTERRUPTED, 0), output[-2000:]
    assert healthy_after_s < 60


@pytest.mark.slow
def test_make_run_any_port_moves_nats_to_a_free_port_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        argv = [*RUN_PY, "--any-port", "--nats-port", str(busy), "--without", "whisper-worker"]
        with local_run(tmp_path, [*argv, "--without", "aggregator"]) as run:
            line = run.wait_for_line("NATS at ")
            url = line.split("NATS at ")[1].split()[0]
            assert url.startswith("nats://127.0.0.1:") and not url.endswith(f":{busy}")
            run.wait_healthy([run.url("ECHOSTREAM_CAPTURE_PORT", "/health")], timeout_s=60)
            assert run.interrupt() == 0
    assert run.output.rstrip().endswith("stopped")


@pytest.mark.slow
def test_make_run_uses_the_nats_given_and_starts_no_broker(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    try:
        env = {"ECHOSTREAM_NATS_URL": server.url}
        argv = [*RUN_PY, "--without", "whisper-worker", "--without", "aggregator"]
        with local_run(tmp_path, argv, env) as run:
            run.wait_for_line(f"NATS at {server.url}")
            run.wait_healthy([run.url("ECHOSTREAM_CAPTURE_PORT", "/health")], timeout_s=60)
            assert run.interrupt() == 0
        assert "nats           |" not in run.output
        assert not (tmp_path / ".run" / "jetstream").exists()
    finally:
        server.stop()


def test_make_run_refuses_a_service_it_does_not_know(tmp_path: Path) -> None:
    with local_run(tmp_path, [*RUN_PY, "--without", "transcoder"]) as run:
        code = run.process.wait(timeout=30)
    assert code != 0
    assert "unknown service(s) transcoder" in run.output
    assert health_status(run.url("ECHOSTREAM_CAPTURE_PORT", "/health")) is None


@pytest.mark.parametrize("url", ["banana:x", "http://127.0.0.1:4222", "nats://:4222"])
def test_make_run_refuses_a_nats_url_that_is_not_one(tmp_path: Path, url: str) -> None:
    with local_run(tmp_path, RUN_PY, {"ECHOSTREAM_NATS_URL": url}) as run:
        code = run.process.wait(timeout=30)
    assert code != 0
    assert f"ECHOSTREAM_NATS_URL is not a NATS URL: {url!r}" in run.output


@pytest.mark.slow
def test_make_run_says_so_when_the_nats_given_cannot_be_reached(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with local_run(tmp_path, RUN_PY, {"ECHOSTREAM_NATS_URL": url}) as run:
        code = run.process.wait(timeout=40)
    assert code != 0
    assert f"NATS at {url} did not accept connections within 15 s" in run.output
    assert "capture        |" not in run.output, "services started without a broker"


def test_make_run_refuses_fewer_than_one_whisper_worker(tmp_path: Path) -> None:
    with local_run(tmp_path, [*RUN_PY, "--whisper-workers", "0"]) as run:
        code = run.process.wait(timeout=30)
    assert code != 0
    assert "--whisper-workers must be at least 1" in run.output
