"""The Voxtral worker as a process, on a real nats-server, against the fake vLLM server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from capture_sim import Conversation, conversation, stream_source
from fake_vllm import FakeVllm, FakeVllmConfig, speak
from fake_vllm.harness import (
    SCRIPT,
    StartWorker,
    VoxtralProcess,
    finals_of,
    read_transcripts,
    stream_with_pause,
    wait_for_jobs_done,
)
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from nats_server import NatsServer, free_port
from waiting import wait_until

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import decode_as

pytestmark = pytest.mark.slow

ENGINES = ("voxtral",)


def talk(script: tuple[str, ...] = SCRIPT, gap_s: float = 1.0) -> Conversation:
    return conversation([speak(k, len(text.split())) for k, text in enumerate(script)], gap_s=gap_s)


def assert_transcribed(messages: list[m.BusMessage], audio: Conversation) -> None:
    """The script's text as one final per utterance, at the capture's boundaries, in order."""
    finals = finals_of(messages)
    assert [f.text for f in finals] == list(SCRIPT)
    assert [(f.start_sample, f.end_sample) for f in finals] == list(audio.speech)
    assert len({f.segment_id for f in finals}) == len(finals), "a segment was finalized twice"
    for earlier, later in zip(finals, finals[1:], strict=False):
        assert earlier.end_sample <= later.start_sample
    (done,) = [msg for msg in messages if isinstance(msg, m.SourceTranscribed)]
    assert messages[-1] == done and done.finals == len(SCRIPT)
    assert done.end_sample == len(audio.audio)


def assert_partials_grow(messages: list[m.BusMessage]) -> None:
    finals = {f.segment_id: f for f in finals_of(messages)}
    partials = [msg for msg in messages if isinstance(msg, m.TranscriptPartial)]
    assert partials
    for segment_id, final in finals.items():
        texts = [p.text for p in partials if p.segment_id == segment_id]
        revisions = [p.revision for p in partials if p.segment_id == segment_id]
        assert revisions == sorted(set(revisions))
        assert all(len(a) < len(b) for a, b in zip(texts, texts[1:], strict=False))
        assert all(final.text.startswith(text) for text in texts)


async def test_utterances_become_finals_at_the_speech_boundaries(
    bus: Bus, vllm: FakeVllm, start_worker: StartWorker
) -> None:
    port = free_port()
    worker = start_worker("a", vllm.url, ECHOSTREAM_VOXTRAL_METRICS_PORT=str(port))
    statuses: list[m.WorkerStatus] = []

    async def on_status(msg: Msg) -> None:
        statuses.append(decode_as(msg.data, m.WorkerStatus, msg.subject))

    await bus.nc.subscribe("ep.status.voxtral.*", cb=on_status)
    audio = talk()
    await stream_source(bus, "multi", "mic", audio, engines=ENGINES, speed=3.0)
    await wait_for_jobs_done(bus)
    health = json.loads(await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/health"))
    metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics")
    assert worker.stop() == 0

    messages = await read_transcripts(bus, "multi")
    assert_transcribed(messages, audio)
    assert_partials_grow(messages)
    assert health["status"] == "ok" and health["capacity"] == 4
    assert "echostream_voxtral_final_latency_seconds_count 3.0" in metrics
    assert any(status.active_streams == 1 for status in statuses)
    await wait_until(lambda: statuses[-1].state == "stopping", 5, "the last status")
    assert vllm.stats.connections == 1 and vllm.stats.done_requested == 1
    assert "seventeen" not in worker.log(), "transcript text leaked into the logs"


async def test_a_length_limit_rollover_loses_and_doubles_nothing(
    bus: Bus, start_worker: StartWorker
) -> None:
    # 60 tokens (4.8 s) per generation: the stream needs at least two rollovers.
    config = FakeVllmConfig(script=SCRIPT, max_model_len=39 + 60)
    async with FakeVllm(config) as vllm:
        worker = start_worker("a", vllm.url)
        audio = talk()
        await stream_source(bus, "rollover", "mic", audio, engines=ENGINES, speed=3.0)
        await wait_for_jobs_done(bus)
        assert worker.stop() == 0
    assert vllm.stats.done_unsolicited >= 2
    messages = await read_transcripts(bus, "rollover")
    assert_transcribed(messages, audio)
    assert_partials_grow(messages)
    assert '"event": "vllm.unrequested_done"' in worker.log()


async def test_a_dropped_connection_mid_utterance_loses_and_doubles_nothing(
    bus: Bus, vllm: FakeVllm, start_worker: StartWorker
) -> None:
    vllm.drop_after_deltas(6)  # inside the second utterance
    worker = start_worker("a", vllm.url)
    audio = talk()
    await stream_source(bus, "dropped", "mic", audio, engines=ENGINES, speed=3.0)
    await wait_for_jobs_done(bus)
    assert worker.stop() == 0
    assert vllm.stats.dropped == 1 and vllm.stats.connections == 2
    messages = await read_transcripts(bus, "dropped")
    assert_transcribed(messages, audio)
    assert_partials_grow(messages)
    assert '"event": "vllm.connection_failed"' in worker.log()


async def test_silence_keepalive_holds_an_old_server_through_a_pause(
    bus: Bus, start_worker: StartWorker
) -> None:
    config = FakeVllmConfig(script=SCRIPT, stall_after_s=1.0)
    async with FakeVllm(config) as vllm:
        worker = start_worker("a", vllm.url, ECHOSTREAM_VOXTRAL_KEEPALIVE_S="0.3")
        audio = talk()
        await stream_with_pause(bus, "paused", "mic", audio, pause_at_s=3.2, pause_s=2.5, speed=3.0)
        await wait_for_jobs_done(bus)
        assert worker.stop() == 0
    assert vllm.stats.stalled == 0 and vllm.stats.connections == 1
    assert_transcribed(await read_transcripts(bus, "paused"), audio)


async def test_a_stalled_generation_is_detected_and_redone(
    bus: Bus, start_worker: StartWorker
) -> None:
    config = FakeVllmConfig(script=SCRIPT, stall_after_s=0.5)
    async with FakeVllm(config) as vllm:
        # No keep-alive in time: the server stops; the stall watchdog reconnects.
        worker = start_worker(
            "a",
            vllm.url,
            ECHOSTREAM_VOXTRAL_KEEPALIVE_S="30",
            ECHOSTREAM_VOXTRAL_STALL_S="1",
        )
        audio = talk()
        await stream_source(bus, "stalled", "mic", audio, engines=ENGINES, speed=3.0)
        await wait_for_jobs_done(bus)
        assert worker.stop() == 0
    assert_transcribed(await read_transcripts(bus, "stalled"), audio)


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), dtype=np.int16)


async def test_a_killed_workers_stream_completes_on_another_worker(
    bus: Bus, vllm: FakeVllm, start_worker: StartWorker
) -> None:
    first = start_worker("first", vllm.url)
    audio = talk()
    streaming = asyncio.create_task(
        stream_source(bus, "failover", "mic", audio, engines=ENGINES, speed=1.0)
    )
    await _first_final(bus, "failover")
    second = start_worker("second", vllm.url)
    first.kill()
    await streaming
    await wait_for_jobs_done(bus)
    assert second.stop() == 0
    assert '"resumed": true' in second.log()
    assert_transcribed(await read_transcripts(bus, "failover"), audio)


async def test_sigterm_hands_a_live_stream_to_another_worker(
    bus: Bus, vllm: FakeVllm, start_worker: StartWorker
) -> None:
    first = start_worker("first", vllm.url)
    audio = talk()
    streaming = asyncio.create_task(
        stream_source(bus, "handoff", "mic", audio, engines=ENGINES, speed=1.0)
    )
    await _first_final(bus, "handoff")
    second = start_worker("second", vllm.url)
    assert await asyncio.to_thread(first.stop, 15) == 0
    await streaming
    await wait_for_jobs_done(bus)
    assert second.stop() == 0
    assert '"job.handed_back"' in first.log()
    assert '"job.failed"' not in first.log() + second.log()
    assert_transcribed(await read_transcripts(bus, "handoff"), audio)


async def test_a_refused_model_reports_error_and_hands_the_job_to_a_working_worker(
    bus: Bus, vllm: FakeVllm, start_worker: StartWorker
) -> None:
    statuses: list[m.WorkerStatus] = []

    async def on_status(msg: Msg) -> None:
        statuses.append(decode_as(msg.data, m.WorkerStatus, msg.subject))

    await bus.nc.subscribe("ep.status.voxtral.*", cb=on_status)
    wrong = start_worker(
        "wrong",
        vllm.url,
        ECHOSTREAM_VOXTRAL_MODEL="voxtral-mini",
        ECHOSTREAM_VOXTRAL_WORKER_ID="wrong",
    )
    audio = talk()
    streaming = asyncio.create_task(
        stream_source(bus, "refused", "mic", audio, engines=ENGINES, speed=3.0)
    )
    await wait_until(
        lambda: any(s.worker_id == "wrong" and s.state == "error" for s in statuses), 15, "error"
    )
    error = next(s for s in statuses if s.state == "error")
    assert "model_not_found" in error.detail and error.capacity == 0
    right = start_worker("right", vllm.url)
    await streaming
    await wait_for_jobs_done(bus)
    assert right.stop() == 0 and wrong.stop() == 0
    assert '"event": "vllm.misconfigured"' in wrong.log()
    assert_transcribed(await read_transcripts(bus, "refused"), audio)


async def test_api_key_and_the_stream_limit_per_server(bus: Bus, start_worker: StartWorker) -> None:
    config = FakeVllmConfig(script=SCRIPT, api_keys=("s3cret",))
    async with FakeVllm(config) as vllm:
        worker = start_worker(
            "a", vllm.url, ECHOSTREAM_VOXTRAL_API_KEY="s3cret", ECHOSTREAM_VOXTRAL_MAX_STREAMS="1"
        )
        audio = talk()
        await asyncio.gather(
            stream_source(bus, "one", "mic", audio, engines=ENGINES, speed=3.0),
            stream_source(bus, "two", "mic", audio, engines=ENGINES, speed=3.0),
        )
        await wait_for_jobs_done(bus)
        assert worker.stop() == 0
    assert vllm.stats.max_open == 1 and vllm.stats.connections == 2
    assert_transcribed(await read_transcripts(bus, "one"), audio)
    assert_transcribed(await read_transcripts(bus, "two"), audio)


async def test_a_wrong_api_key_is_an_error_not_a_retry_loop(
    bus: Bus, start_worker: StartWorker
) -> None:
    config = FakeVllmConfig(script=SCRIPT, api_keys=("s3cret",))
    async with FakeVllm(config) as vllm:
        worker = start_worker("a", vllm.url, ECHOSTREAM_VOXTRAL_API_KEY="wrong")
        streaming = asyncio.create_task(
            stream_source(bus, "denied", "mic", talk(), engines=ENGINES, speed=3.0)
        )
        await wait_until(lambda: '"event": "vllm.misconfigured"' in worker.log(), 15, "refusal")
        assert "HTTP 401" in worker.log()
        assert vllm.stats.connections == 0
        streaming.cancel()
        assert worker.stop() == 0


async def _first_final(bus: Bus, session_id: str) -> None:
    """Return as soon as the source's first final is published."""
    seen = asyncio.Event()

    async def on_transcript(msg: Msg) -> None:
        if b"transcript.final" in msg.data:
            seen.set()

    subscription = await bus.nc.subscribe(f"ep.transcript.voxtral.{session_id}.*", cb=on_transcript)
    try:
        await asyncio.wait_for(seen.wait(), 30)
    finally:
        await subscription.unsubscribe()
    # and its checkpoint, saved right after it
    kv = await bus.js.key_value(t.CHECKPOINT_BUCKET)
    key = t.checkpoint_key("voxtral", session_id, "mic")

    async def saved() -> None:
        while True:
            with contextlib.suppress(KeyNotFoundError):
                await kv.get(key)
                return
            await asyncio.sleep(0.02)

    await asyncio.wait_for(saved(), 5)


async def test_a_long_generation_is_renewed_at_a_pause(
    bus: Bus, vllm: FakeVllm, start_worker: StartWorker
) -> None:
    worker = start_worker("a", vllm.url, ECHOSTREAM_VOXTRAL_ROLLOVER_TOKENS="40")
    audio = talk()
    await stream_source(bus, "renewed", "mic", audio, engines=ENGINES, speed=3.0)
    await wait_for_jobs_done(bus)
    assert worker.stop() == 0
    assert vllm.stats.done_requested >= 2 and vllm.stats.done_unsolicited == 0
    assert vllm.stats.connections == 1
    assert '"event": "vllm.rollover"' in worker.log()
    assert_transcribed(await read_transcripts(bus, "renewed"), audio)


@pytest.mark.parametrize(
    "env",
    [
        {"ECHOSTREAM_VOXTRAL_DELAY_MS": "500"},
        {"ECHOSTREAM_VOXTRAL_VLLM_URL": "gpu-box:8000"},
        {"ECHOSTREAM_VOXTRAL_MAX_STREAMS": "0"},
    ],
    ids=["delay", "url", "streams"],
)
def test_bad_settings_exit_with_a_clear_error(
    nats_server: NatsServer, tmp_path: Path, env: dict[str, str]
) -> None:
    worker = VoxtralProcess(nats_server.url, "ws://127.0.0.1:1/v1/realtime", tmp_path / "w.log")
    worker._env.update(env)
    worker.start()
    assert worker.process is not None and worker.process.wait(timeout=30) == 1
    assert '"event": "settings.invalid"' in worker.log()
    assert next(iter(env)).removeprefix("ECHOSTREAM_VOXTRAL_").lower() in worker.log()
