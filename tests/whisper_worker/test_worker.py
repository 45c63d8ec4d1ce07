"""The whisper worker as a process, on a real nats-server, with real speech and the real model."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import bus_reading
import numpy as np
import numpy.typing as npt
import pytest
from capture_sim import Conversation, conversation, stream_source
from nats.aio.msg import Msg
from nats_server import NatsServer, free_port
from speech_corpus import item, normalize, read_wav, wer
from waiting import wait_until
from worker_process import MODEL, WorkerProcess, require_model

from bench.worker_metrics import worker_counters
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import decode_as

pytestmark = pytest.mark.slow

ACK_WAIT_S = 4.0
PASSAGE_IDS = [f"1688-142285-000{n}" for n in range(4)]


@pytest.fixture(autouse=True)
async def topology(bus: Bus) -> None:
    """What capture creates at its start, with the short ack wait the workers are given."""
    await t.ensure_topology(bus.js, t.TopologyLimits(job_ack_wait_s=ACK_WAIT_S))


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(nats_server: NatsServer, tmp_path: Path) -> Iterator[StartWorker]:
    """Starts worker processes; whatever a test leaves running is killed afterwards."""
    require_model()
    started: list[WorkerProcess] = []

    def start(name: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(
            nats_server.url,
            tmp_path / f"{name}.log",
            ECHOSTREAM_JOB_ACK_WAIT_S=str(ACK_WAIT_S),
            **env,
        ).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


async def read_transcripts(bus: Bus, session_id: str, source: str = "mic") -> list[m.BusMessage]:
    """Everything the worker published for a source, in order."""
    return await bus_reading.read_transcripts(bus, "whisper", session_id, source, idle_s=1.0)


async def wait_for_jobs_done(bus: Bus, timeout_s: float = 120) -> None:
    await bus_reading.wait_for_jobs_done(bus, timeout_s, poll_s=0.2)


def finals(messages: list[m.BusMessage]) -> list[m.TranscriptFinal]:
    found = [msg for msg in messages if isinstance(msg, m.TranscriptFinal)]
    return sorted(found, key=lambda final: final.start_sample)


def text_of(messages: list[m.BusMessage]) -> str:
    return " ".join(final.text for final in finals(messages))


async def transcribe(
    bus: Bus, session_id: str, talk: Conversation, speed: float
) -> list[m.BusMessage]:
    await stream_source(bus, session_id, "mic", talk, speed=speed)
    await wait_for_jobs_done(bus)
    return await read_transcripts(bus, session_id)


async def offline_text(audio: npt.NDArray[np.int16]) -> str:
    """The accuracy limit: the whole audio decoded in one call with the same model."""
    from whisper_worker.transcriber import TranscriberConfig, WhisperTranscriber

    async with WhisperTranscriber(TranscriberConfig(model_path=MODEL)) as transcriber:
        decoded = await transcriber.transcribe(audio.astype(np.float32) / 32768.0, purpose="final")
    return decoded.text


@pytest.fixture
def passage() -> tuple[Conversation, str]:
    """About 40 s of one dev-split LibriSpeech speaker, utterances separated by pauses."""
    items = [item(item_id) for item_id in PASSAGE_IDS]
    talk = conversation([read_wav(i.path) for i in items])
    return talk, " ".join(i.text for i in items)


async def test_streaming_jfk_gives_the_reference_text(bus: Bus, start_worker: StartWorker) -> None:
    jfk = item("jfk")
    port = free_port()
    worker = start_worker("a", ECHOSTREAM_WHISPER_METRICS_PORT=str(port))
    statuses: list[m.WorkerStatus] = []

    async def on_status(msg: Msg) -> None:
        statuses.append(decode_as(msg.data, m.WorkerStatus, msg.subject))

    await bus.nc.subscribe("ep.status.whisper.*", cb=on_status)
    messages = await transcribe(bus, "jfk", conversation([read_wav(jfk.path)]), speed=1.0)
    health = json.loads(await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/health"))
    metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics")
    assert worker.stop() == 0

    assert health["status"] == "ok" and health["active_streams"] == 0
    assert "echostream_whisper_final_latency_seconds_count 1.0" in metrics
    counters = worker_counters(metrics)  # what the bench reads
    assert any(status.active_streams == 1 for status in statuses)
    await wait_until(lambda: statuses[-1].state == "stopping", 5, "the last status")

    assert normalize(text_of(messages)) == normalize(jfk.text)
    partials = [msg for msg in messages if isinstance(msg, m.TranscriptPartial)]
    assert partials, "no partial while speech went on"
    (final,) = finals(messages)
    assert {p.segment_id for p in partials} == {final.segment_id}
    decodes = 'echostream_whisper_decode_seconds_count{purpose="%s"}'
    assert counters[decodes % "final"] == 1.0
    assert counters[decodes % "partial"] >= len(partials)
    assert counters['echostream_whisper_decode_seconds_sum{purpose="final"}'] > 0
    assert [p.revision for p in partials] == sorted({p.revision for p in partials})
    assert final.language == "en"
    starts = [word.start_sample for word in final.words]
    assert len(final.words) >= 20 and starts == sorted(starts)
    assert final.start_sample <= starts[0] < final.words[-1].end_sample <= final.end_sample + 8000
    assert "ask not" not in worker.log().lower(), "transcript text leaked into the logs"


async def test_malformed_audio_messages_are_skipped_and_nothing_is_lost(
    bus: Bus, start_worker: StartWorker
) -> None:
    jfk = item("jfk")
    worker = start_worker("a")
    garbage = asyncio.create_task(_inject_garbage(bus, t.audio("jfk-bad", "mic")))
    messages = await transcribe(bus, "jfk-bad", conversation([read_wav(jfk.path)]), speed=4.0)
    await garbage
    assert worker.stop() == 0
    assert normalize(text_of(messages)) == normalize(jfk.text)
    assert '"event": "bus.malformed"' in worker.log()


async def _inject_garbage(bus: Bus, subject: str) -> None:
    for payload in (b"\x00\x01garbage", b"\x81\xa4type\xa4nope", b""):
        await asyncio.sleep(0.7)
        await bus.js.publish(subject, payload)


async def test_streaming_wer_is_within_two_points_of_offline(
    bus: Bus, start_worker: StartWorker, passage: tuple[Conversation, str]
) -> None:
    talk, reference = passage
    worker = start_worker("a")
    messages = await transcribe(bus, "passage", talk, speed=2.0)
    assert worker.stop() == 0
    streaming_wer = wer(reference, text_of(messages))
    offline_wer = wer(reference, await offline_text(talk.audio))
    assert streaming_wer <= offline_wer + 0.02, (streaming_wer, offline_wer)


async def test_a_killed_workers_stream_completes_on_another_worker(
    bus: Bus, start_worker: StartWorker, passage: tuple[Conversation, str]
) -> None:
    talk, reference = passage
    undisturbed = start_worker("undisturbed")
    baseline = await transcribe(bus, "calm", talk, speed=2.0)
    undisturbed.stop()

    first = start_worker("first")
    streaming = asyncio.create_task(stream_source(bus, "failover", "mic", talk, speed=1.0))
    await wait_until(lambda: '"job.started"' in first.log(), 30, "the first worker's job")
    second = start_worker("second")
    await _first_final(bus, "failover")
    first.kill()
    await streaming
    await wait_for_jobs_done(bus)
    second.stop()

    messages = await read_transcripts(bus, "failover")
    ids = [final.segment_id for final in finals(messages)]
    assert len(ids) == len(set(ids)), "a segment was finalized twice"
    assert '"resumed": true' in second.log()
    assert wer(reference, text_of(messages)) <= wer(reference, text_of(baseline)) + 0.02


async def test_sigterm_hands_a_live_stream_to_another_worker(
    bus: Bus, start_worker: StartWorker, passage: tuple[Conversation, str]
) -> None:
    talk, reference = passage
    first = start_worker("first")
    streaming = asyncio.create_task(stream_source(bus, "handoff", "mic", talk, speed=2.0))
    await _first_final(bus, "handoff")
    second = start_worker("second")
    assert await asyncio.to_thread(first.stop, 15) == 0
    await streaming
    await wait_for_jobs_done(bus)
    assert second.stop() == 0

    assert '"job.handed_back"' in first.log()
    assert '"job.failed"' not in first.log() + second.log()
    messages = await read_transcripts(bus, "handoff")
    ids = [final.segment_id for final in finals(messages)]
    assert len(ids) == len(set(ids))
    (done,) = [msg for msg in messages if isinstance(msg, m.SourceTranscribed)]
    assert done.finals == len(ids) and done.end_sample == len(talk.audio)
    assert (
        wer(reference, text_of(messages)) <= wer(reference, await offline_text(talk.audio)) + 0.02
    )


async def _first_final(bus: Bus, session_id: str) -> None:
    async def poll() -> None:
        while not finals(await read_transcripts(bus, session_id)):
            await asyncio.sleep(0.5)

    await asyncio.wait_for(poll(), 60)


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


def test_a_worker_with_a_bad_model_exits_with_a_clear_error(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    require_model()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(MODEL.read_bytes()[: 5 * 1024 * 1024])
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(np.random.default_rng(0).bytes(2 * 1024 * 1024))
    for path in (tmp_path / "missing.bin", truncated, garbage, Path("tiny.en")):
        worker = WorkerProcess(
            nats_server.url, tmp_path / f"{path.name}.log", ECHOSTREAM_WHISPER_MODEL_PATH=str(path)
        ).start()
        assert worker.process is not None
        assert worker.process.wait(timeout=30) == 1
        assert '"event": "model.invalid"' in worker.log()
        assert str(path) in worker.log()
