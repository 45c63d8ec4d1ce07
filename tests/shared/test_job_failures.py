"""Engine failures on the job path are classified: retried with back-off (``HandBack``, or an
unclassified error a few times) or failed for good (``JobFailed``, or retries spent): the job is
terminated, counted, and the source marked failed for the engine on its transcript subject.
Never a silent redelivery after each ack wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import bus_reading
import numpy as np
import pytest
from capture_sim import conversation, stream_source
from prometheus_client import CollectorRegistry

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.jobs import source_job
from echostream_shared.jobs.load import PartialTally
from echostream_shared.jobs.metrics import JobMetrics, job_metrics
from echostream_shared.jobs.stream import EngineStream, HandBack, JobFailed, TranscriptSink
from echostream_shared.jobs.updates import FinalUpdate, ResumePoint
from echostream_shared.jobs.worker import JobWorker, WorkerOptions

ENGINE = "failing"
ACK_WAIT_S = 2.0
LIMITS = t.TopologyLimits(job_ack_wait_s=ACK_WAIT_S, job_max_deliver=4)


class FailingEngine:
    """Finalizes the first speech segment, then fails on later audio with ``error()``."""

    name = ENGINE

    def __init__(self, error: Callable[[], Exception]) -> None:
        self.error = error
        self.deliveries: list[float] = []

    def open_stream(
        self, job: m.TranscriptionJob, resume: ResumePoint | None, sink: TranscriptSink
    ) -> EngineStream:
        self.deliveries.append(time.monotonic())
        return FailingStream(self, resume, sink)

    def capacity(self) -> int:
        return 2

    def partial_tally(self) -> PartialTally:
        return PartialTally()

    def condition(self) -> tuple[m.WorkerState, str]:
        return "ok", ""

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class FailingStream:
    def __init__(self, engine: FailingEngine, resume: ResumePoint | None, sink: TranscriptSink):
        self._engine = engine
        self._sink = sink
        self._done = resume.done if resume else 0
        self._open: int | None = None
        self.busy_s = 0.0

    async def on_audio(self, chunk: m.AudioChunk) -> None:
        if self._done > 0 and chunk.first_sample >= self._done:
            raise self._engine.error()

    async def on_speech_started(self, sample: int) -> None:
        if sample >= self._done:
            self._open = sample

    async def on_speech_ended(self, sample: int) -> None:
        if self._open is not None and sample > self._done:
            start, self._open, self._done = self._open, None, sample
            await self._sink.final(FinalUpdate(start, sample, "first words"), ResumePoint(sample))

    async def on_closed(self, end_sample: int) -> ResumePoint:
        return ResumePoint(end_sample)

    def failure(self) -> BaseException | None:
        return None

    async def aclose(self) -> None:
        pass


@pytest.fixture(autouse=True)
async def topology(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    await t.ensure_topology(bus.js, LIMITS)
    monkeypatch.setattr(source_job, "HAND_BACK_DELAY_S", 0.3)


async def run_worker(
    bus: Bus, engine: FailingEngine, until: Callable[[], bool], timeout_s: float
) -> JobMetrics:
    metrics = job_metrics(ENGINE, CollectorRegistry())
    stop = asyncio.Event()
    worker = JobWorker(engine, WorkerOptions(worker_id="w1", limits=LIMITS), metrics)
    task = asyncio.create_task(worker.run(bus, stop))
    tone = (3000 * np.sin(np.arange(8000) / 5)).astype(np.int16)
    await stream_source(
        bus, "s", "mic", conversation([tone, tone], gap_s=0.5), engines=(ENGINE,), speed=8.0
    )
    deadline = time.monotonic() + timeout_s
    while not until() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(2 * ACK_WAIT_S)  # a silent redelivery would show up here
    stop.set()
    await asyncio.wait_for(task, 10)
    return metrics


async def failure_marker(bus: Bus) -> m.SourceTranscribed:
    messages = await bus_reading.read_transcripts(bus, ENGINE, "s", "mic", idle_s=0.3)
    finals = [msg for msg in messages if isinstance(msg, m.TranscriptFinal)]
    assert [f.text for f in finals] == ["first words"], "what was transcribed is kept"
    last = messages[-1]
    assert isinstance(last, m.SourceTranscribed) and last.failure is not None
    assert last.finals == 1
    return last


def outcomes(metrics: JobMetrics) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for metric in metrics.jobs.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


async def test_a_permanent_failure_terminates_the_job_at_once(bus: Bus) -> None:
    engine = FailingEngine(lambda: JobFailed("audio the engine rejects"))
    metrics = await run_worker(bus, engine, lambda: len(engine.deliveries) >= 1, 10)
    marker = await failure_marker(bus)
    assert marker.failure == "JobFailed: audio the engine rejects"
    assert len(engine.deliveries) == 1, "terminated, never redelivered"
    assert outcomes(metrics) == {"failed": 1.0}
    assert (await bus.js.stream_info(t.JOB_STREAM)).state.messages == 0


async def test_an_unclassified_error_is_retried_with_back_off_then_failed(bus: Bus) -> None:
    engine = FailingEngine(lambda: RuntimeError("decoder crashed"))
    metrics = await run_worker(
        bus, engine, lambda: len(engine.deliveries) >= source_job.UNEXPECTED_ERROR_ATTEMPTS, 20
    )
    marker = await failure_marker(bus)
    assert marker.failure == "RuntimeError: decoder crashed"
    assert len(engine.deliveries) == source_job.UNEXPECTED_ERROR_ATTEMPTS
    gaps = np.diff(engine.deliveries)
    assert gaps[1] > gaps[0], "the delay grows with each delivery"
    assert outcomes(metrics) == {"retrying": 2.0, "failed": 1.0}


async def test_a_hand_back_is_retried_until_the_delivery_limit_is_near(bus: Bus) -> None:
    engine = FailingEngine(lambda: HandBack("server unreachable"))
    metrics = await run_worker(bus, engine, lambda: len(engine.deliveries) >= 3, 20)
    await failure_marker(bus)
    assert len(engine.deliveries) == LIMITS.job_max_deliver - 1
    assert outcomes(metrics) == {"retrying": 2.0, "failed": 1.0}


def test_the_back_off_doubles_up_to_a_ceiling() -> None:
    base = source_job.HAND_BACK_DELAY_S
    delays = [source_job.retry_delay_s(n) for n in range(1, 12)]
    assert delays[:3] == [base, 2 * base, 4 * base]
    assert delays[-1] == source_job.MAX_RETRY_DELAY_S
