"""What capture publishes, in which order, and that a NATS outage delays audio but loses none."""

from __future__ import annotations

import httpx
import nats
import numpy as np
import pytest
from bus_reading import BusRecorder, read_subject
from capture_audio import conversation
from capture_harness import WORDED, WORKER_SETTINGS, StartCapture
from native_client import NativeClient
from nats_server import NatsServer
from waiting import wait_until

from capture.ingest import IngestConfig
from capture.session import Session
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import decode
from echostream_shared.jobs.worker import JobWorker

RATE = 16_000


@pytest.mark.parametrize("block", [320, 48_000], ids=["20ms-frames", "3s-upload-blocks"])
async def test_session_source_and_audio_messages_follow_the_contract(bus: Bus, block: int) -> None:
    await t.ensure_topology(bus.js)
    speech = conversation(gap_s=0.8).pcm
    session = Session(bus, IngestConfig(chunk_samples=1600), client="test", engines=("whisper",))
    await session.open()
    ingest = await session.source("mic")
    for k in range(0, len(speech), block):
        await ingest.write(speech[k : k + block])
    ends = await session.close("client")
    assert ends == {"mic": len(speech)}

    sid = session.session_id
    events = await read_subject(bus, t.session_events(sid))
    assert [e.type for e in events] == [
        "session.opened",
        "source.opened",
        "source.closed",
        "session.closed",
    ]
    job = decode((await bus.js.get_last_msg(t.JOB_STREAM, t.job("whisper"))).data or b"")
    assert isinstance(job, m.TranscriptionJob) and (job.session_id, job.source) == (sid, "mic")

    audio = await read_subject(bus, t.audio(sid, "mic"))
    chunks = [a for a in audio if isinstance(a, m.AudioChunk)]
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [c.first_sample for c in chunks] == list(range(0, len(speech), 1600))
    assert all(c.num_samples == 1600 for c in chunks[:-1])
    assert np.array_equal(np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2"), speech)
    assert all(b.captured_at <= a.captured_at for a, b in zip(chunks[1:], chunks, strict=False))
    assert isinstance(audio[-1], m.SourceClosed) and audio[-1].end_sample == len(speech)
    published_end = 0
    kinds = []
    for message in audio:
        if isinstance(message, m.AudioChunk):
            published_end = message.end_sample
        elif isinstance(message, m.SpeechStarted | m.SpeechEnded):
            assert message.sample <= published_end, "a boundary follows the chunk holding it"
            kinds.append(message.type)
    assert kinds == ["speech.started", "speech.ended"] * 3


async def test_a_nats_outage_pauses_publishing_reports_backpressure_and_loses_nothing(
    worker: JobWorker,
    start_capture: StartCapture,
    recorder: BusRecorder,
    nats_server: NatsServer,
    bus: Bus,
) -> None:
    capture = await start_capture(backlog_warn_s=0.5, backlog_max_s=30, **WORKER_SETTINGS)
    speech = conversation(names=WORDED).pcm
    half = len(speech) // 2 // 640 * 640
    async with NativeClient(capture.ws) as client:
        await client.start()
        await client.stream(0, speech[:half].tobytes(), frame_bytes=640)
        await wait_until(lambda: bool(recorder.chunks()), 5, "audio on the bus")
        nats_server.stop()
        await client.stream(0, speech[half:].tobytes(), frame_bytes=640, frames_per_s=100)
        notice = await client.wait_for(lambda msg: msg["type"] == "backpressure", 5)
        async with httpx.AsyncClient() as http:
            health = await http.get(capture.http + "/health")
        nats_server.start()
        done = await client.finish(timeout_s=30)
    assert notice["reason"] == "bus" and notice["backlog_s"] >= 0.5
    assert health.status_code == 503 and "NATS" in health.json()["detail"]["reason"]
    assert done["complete"] and done["sources"]["default"]["end_sample"] == len(speech)

    nc = await nats.connect(nats_server.url)
    try:
        audio = await read_subject(Bus(nc, nc.jetstream()), t.audio(done["session_id"], "default"))
    finally:
        await nc.close()
    chunks = [a for a in audio if isinstance(a, m.AudioChunk)]
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert np.array_equal(np.frombuffer(b"".join(c.pcm for c in chunks), "<i2"), speech)
