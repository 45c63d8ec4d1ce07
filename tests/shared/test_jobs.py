"""The engine-independent job machinery (echostream_shared.jobs) on a real nats-server.

The engine here is the simplest real one: it finalizes each speech segment as the text
"speech <start>-<end>", so what is checked is the machinery: replay, checkpoints, ids, acks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import bus_reading
import numpy as np
import pytest
from capture_sim import Conversation, conversation, stream_source
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import decode, decode_as
from echostream_shared.jobs.checkpoints import Checkpoint, CheckpointError, CheckpointStore
from echostream_shared.jobs.load import PartialTally
from echostream_shared.jobs.metrics import job_metrics
from echostream_shared.jobs.publisher import TranscriptPublisher
from echostream_shared.jobs.stream import EngineStream, TranscriptSink
from echostream_shared.jobs.updates import FinalUpdate, PartialUpdate, ResumePoint
from echostream_shared.jobs.worker import JobWorker, WorkerOptions

ENGINE = "whisper"  # any engine the topology has a work queue for
ACK_WAIT_S = 2.0
LIMITS = t.TopologyLimits(job_ack_wait_s=ACK_WAIT_S)


class SegmentEngine:
    """Names each speech segment by its samples; partials count the chunks heard in speech."""

    name = ENGINE

    def __init__(self) -> None:
        self.resumes: list[ResumePoint | None] = []

    def open_stream(
        self, job: m.TranscriptionJob, resume: ResumePoint | None, sink: TranscriptSink
    ) -> EngineStream:
        self.resumes.append(resume)
        return SegmentStream(resume, sink)

    def capacity(self) -> int:
        return 2

    def partial_tally(self) -> PartialTally:
        return PartialTally()

    def stream_cost(self) -> float | None:
        return None

    def condition(self) -> tuple[m.WorkerState, str]:
        return "ok", ""

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class SegmentStream:
    def __init__(self, resume: ResumePoint | None, sink: TranscriptSink) -> None:
        self._sink = sink
        self._done = resume.done if resume else 0
        self._open: int | None = resume.state.get("open") if resume else None
        self._revision = 0
        self.busy_s = 0.0

    async def on_audio(self, chunk: m.AudioChunk) -> None:
        if self._open is not None:
            self._revision += 1
            await self._sink.partial(
                PartialUpdate(self._open, chunk.end_sample, self._revision, "..." * self._revision)
            )

    async def on_speech_started(self, sample: int) -> None:
        if sample >= self._done and self._open is None:
            self._open, self._revision = sample, 0

    async def on_speech_ended(self, sample: int) -> None:
        if self._open is None or sample <= self._done:
            return
        start, self._open, self._done = self._open, None, sample
        await self._sink.final(
            FinalUpdate(start, sample, f"speech {start}-{sample}"), self._resume()
        )

    async def on_closed(self, end_sample: int) -> ResumePoint:
        self._done = end_sample
        return self._resume()

    def failure(self) -> BaseException | None:
        return None

    async def aclose(self) -> None:
        pass

    def _resume(self) -> ResumePoint:
        return ResumePoint(self._done, {"open": self._open})


@pytest.fixture(autouse=True)
async def topology(bus: Bus) -> None:
    await t.ensure_topology(bus.js, LIMITS)


@pytest.fixture
def engine() -> SegmentEngine:
    return SegmentEngine()


@pytest.fixture
async def worker(bus: Bus, engine: SegmentEngine) -> AsyncIterator[asyncio.Event]:
    """A running JobWorker; set the returned event to stop it."""
    stop = asyncio.Event()
    metrics = job_metrics(ENGINE, CollectorRegistry())
    service = JobWorker(
        engine, WorkerOptions(worker_id="w1", status_interval_s=0.2, limits=LIMITS), metrics
    )
    task = asyncio.create_task(service.run(bus, stop))
    yield stop
    stop.set()
    await asyncio.wait_for(task, 10)


async def transcripts(bus: Bus, session_id: str) -> list[m.BusMessage]:
    return await bus_reading.read_transcripts(bus, ENGINE, session_id, "mic", idle_s=0.3)


async def jobs_done(bus: Bus, timeout_s: float = 15) -> None:
    await bus_reading.wait_for_jobs_done(bus, timeout_s, poll_s=0.05)


def talk() -> Conversation:
    tone = (3000 * np.sin(np.arange(8000) / 5)).astype(np.int16)
    return conversation([tone, tone, tone], gap_s=0.5)


async def test_checkpoints_round_trip_and_a_corrupt_one_is_a_clear_error(bus: Bus) -> None:
    kv = await bus.js.key_value(t.CHECKPOINT_BUCKET)
    store = CheckpointStore(kv, "voxtral")
    assert await store.load("s", "mic") is None
    saved = Checkpoint(ResumePoint(1280, {"segment_start": None, "revision": 0}), 7, finals=2)
    await store.save("s", "mic", saved)
    assert await store.load("s", "mic") == saved
    await kv.put(t.checkpoint_key("voxtral", "s", "mic"), b"\x93garbage")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        await store.load("s", "mic")


async def test_republished_transcripts_are_dropped_by_their_ids(bus: Bus) -> None:
    publisher = TranscriptPublisher(bus, ENGINE, "s", "mic")
    for _ in range(2):
        await publisher.partial(PartialUpdate(0, 100, 1, "he"))
        await publisher.final(FinalUpdate(0, 100, "hello"))
        await publisher.source_transcribed(100, finals=1)
    kinds = [type(msg).__name__ for msg in await transcripts(bus, "s")]
    assert kinds == ["TranscriptPartial", "TranscriptFinal", "SourceTranscribed"]


async def test_a_job_runs_from_open_to_close_and_is_acked(bus: Bus, worker: asyncio.Event) -> None:
    audio = talk()
    statuses: list[m.WorkerStatus] = []

    async def on_status(msg: Msg) -> None:
        statuses.append(decode_as(msg.data, m.WorkerStatus))

    await bus.nc.subscribe(t.worker_status(ENGINE, "w1"), cb=on_status)
    await bus.js.publish(t.job(ENGINE), b"not a job")  # terminated, not retried
    kv = await bus.js.key_value(t.CHECKPOINT_BUCKET)
    await kv.put(t.checkpoint_key(ENGINE, "s1", "mic"), b"\xc1")  # unreadable: start over
    garbage = asyncio.create_task(_garbage(bus, t.audio("s1", "mic")))
    await stream_source(bus, "s1", "mic", audio, engines=(ENGINE,), speed=8.0)
    await garbage
    await jobs_done(bus)

    messages = await transcripts(bus, "s1")
    finals = [msg for msg in messages if isinstance(msg, m.TranscriptFinal)]
    assert [(f.start_sample, f.end_sample) for f in finals] == list(audio.speech)
    assert [f.text for f in finals] == [f"speech {s}-{e}" for s, e in audio.speech]
    assert isinstance(messages[-1], m.SourceTranscribed) and messages[-1].finals == 3
    stored = await CheckpointStore(kv, ENGINE).load("s1", "mic")
    assert stored is not None and stored.closed and stored.finals == 3
    assert any(status.active_streams == 1 for status in statuses)


async def _garbage(bus: Bus, subject: str) -> None:
    for payload in (b"\x00garbage", b"\x81\xa4type\xa4nope", b""):
        await asyncio.sleep(0.1)
        await bus.js.publish(subject, payload)


@pytest.mark.slow
async def test_a_stopped_worker_hands_back_and_the_next_resumes_from_its_checkpoint(
    bus: Bus, engine: SegmentEngine
) -> None:
    audio = talk()
    metrics = job_metrics(ENGINE, CollectorRegistry())
    first_stop = asyncio.Event()
    first = JobWorker(engine, WorkerOptions(worker_id="w1", limits=LIMITS), metrics)
    running = asyncio.create_task(first.run(bus, first_stop))
    streaming = asyncio.create_task(stream_source(bus, "s2", "mic", audio, engines=(ENGINE,)))
    first_final = asyncio.Event()

    async def on_transcript(msg: Msg) -> None:
        if isinstance(decode(msg.data), m.TranscriptFinal):
            first_final.set()

    await bus.nc.subscribe(t.transcript(ENGINE, "s2", "mic"), cb=on_transcript)
    await asyncio.wait_for(first_final.wait(), 10)
    first_stop.set()
    await asyncio.wait_for(running, 10)

    second_stop = asyncio.Event()
    second = JobWorker(engine, WorkerOptions(worker_id="w2", limits=LIMITS), metrics)
    running = asyncio.create_task(second.run(bus, second_stop))
    await streaming
    await jobs_done(bus)
    second_stop.set()
    await asyncio.wait_for(running, 10)

    assert engine.resumes[0] is None and engine.resumes[-1] is not None
    finals = [msg for msg in await transcripts(bus, "s2") if isinstance(msg, m.TranscriptFinal)]
    assert [(f.start_sample, f.end_sample) for f in finals] == list(audio.speech)
