"""Engine failures on the job path are classified: retried with back-off (``HandBack``, or an
unclassified error a few times) or failed for good (``JobFailed``, or retries spent): the job is
terminated, counted, and the source marked failed for the engine on its transcript subject.
Never a silent redelivery after each ack wait. Keep-alive failures and cancellations are not
swallowed either."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import bus_reading
import nats
import numpy as np
import pytest
import structlog
from capture_sim import conversation, stream_source
from nats.aio.msg import Msg
from nats_server import NatsServer
from prometheus_client import CollectorRegistry
from starlette.websockets import WebSocket

from capture.outbox import Outbox
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import decode_as
from echostream_shared.jobs import source_job
from echostream_shared.jobs.checkpoints import CheckpointStore
from echostream_shared.jobs.load import PartialTally
from echostream_shared.jobs.metrics import JobMetrics, job_metrics
from echostream_shared.jobs.source_job import Outcome, SourceJob
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

    def stream_cost(self) -> float | None:
        return None

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


class StuckStream:
    """An engine stream stuck on its first chunk; cancelled, it winds down for ``wind_down_s``
    (as a stream closing its socket would) before the cancellation completes."""

    def __init__(self, wind_down_s: float = 0.0) -> None:
        self.wind_down_s = wind_down_s
        self.stuck = asyncio.Event()
        self.winding_down = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.busy_s = 0.0

    async def on_audio(self, chunk: m.AudioChunk) -> None:
        self.stuck.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.winding_down.set()
            try:
                await asyncio.sleep(self.wind_down_s)
            finally:
                self.cancelled.set()
            raise

    async def on_speech_started(self, sample: int) -> None:
        pass

    async def on_speech_ended(self, sample: int) -> None:
        pass

    async def on_closed(self, end_sample: int) -> ResumePoint:
        return ResumePoint(end_sample)

    def failure(self) -> BaseException | None:
        return None

    async def aclose(self) -> None:
        pass


@pytest.fixture
async def job_connection(nats_server: NatsServer) -> AsyncIterator[nats.NATS]:
    """A second connection, the one the job message is taken on (and its keep-alives sent)."""
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def take_job(bus: Bus, nc: nats.NATS) -> Msg:
    tone = (3000 * np.sin(np.arange(8000) / 5)).astype(np.int16)
    await stream_source(bus, "s", "mic", conversation([tone]), engines=(ENGINE,), speed=50.0)
    await t.ensure_worker_consumer(nc.jetstream(), ENGINE, LIMITS)
    queue = await nc.jetstream().pull_subscribe_bind(t.worker_consumer(ENGINE), stream=t.JOB_STREAM)
    [msg] = await queue.fetch(1, timeout=5)
    return msg


async def start_job(
    bus: Bus, msg: Msg, stream: StuckStream, stop: asyncio.Event, ack_wait_s: float = ACK_WAIT_S
) -> tuple[asyncio.Task[Outcome], JobMetrics]:
    metrics = job_metrics(ENGINE, CollectorRegistry())
    job = SourceJob(
        bus,
        decode_as(msg.data, m.TranscriptionJob, msg.subject),
        msg,
        CheckpointStore(await bus.js.key_value(t.CHECKPOINT_BUCKET), ENGINE),
        lambda _job, _resume, _sink: cast(EngineStream, stream),
        metrics,
        ack_wait_s=ack_wait_s,
        idle_timeout_s=30.0,
    )
    task = asyncio.create_task(job.run(stop))
    await asyncio.wait_for(stream.stuck.wait(), 10)
    return task, metrics


async def test_cancelling_a_running_job_propagates_and_cancels_the_engine_work(
    bus: Bus, job_connection: nats.NATS
) -> None:
    stream = StuckStream()
    task, _ = await start_job(bus, await take_job(bus, job_connection), stream, asyncio.Event())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    await asyncio.wait_for(stream.cancelled.wait(), 1)  # the engine's work is not left running


async def test_a_cancel_during_the_stops_wind_down_is_not_swallowed(
    bus: Bus, job_connection: nats.NATS
) -> None:
    stream = StuckStream(wind_down_s=1.0)
    stop = asyncio.Event()
    task, _ = await start_job(bus, await take_job(bus, job_connection), stream, stop)
    stop.set()  # the job cancels the engine's work to hand the job back...
    await asyncio.wait_for(stream.winding_down.wait(), 5)
    task.cancel()  # ...and is cancelled itself while that work winds down
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


def keep_alive_failures(metrics: JobMetrics) -> float:
    [sample] = [
        sample
        for metric in metrics.keep_alive_failures.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    ]
    return sample.value


async def test_a_failing_keep_alive_is_counted_and_logged(
    bus: Bus, job_connection: nats.NATS
) -> None:
    stream = StuckStream()
    msg = await take_job(bus, job_connection)
    with structlog.testing.capture_logs() as logs:
        task, metrics = await start_job(bus, msg, stream, asyncio.Event(), ack_wait_s=0.3)
        await job_connection.close()  # the connection the job's progress acks go out on
        deadline = time.monotonic() + 5
        while keep_alive_failures(metrics) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
    failures = keep_alive_failures(metrics)
    assert failures >= 2, "each failed progress ack is counted"
    warnings = [e for e in logs if e["event"] == "job.keep_alive_failed"]
    assert len(warnings) == failures
    assert all("ConnectionClosedError" in e["error"] for e in warnings)
    assert warnings[0]["log_level"] == "warning"


class SlowToCloseSocket:
    """A WebSocket whose send hangs; cancelled, it takes ``wind_down_s`` to give up."""

    def __init__(self, wind_down_s: float) -> None:
        self.wind_down_s = wind_down_s
        self.sending = asyncio.Event()
        self.winding_down = asyncio.Event()

    async def send_text(self, data: str) -> None:
        self.sending.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.winding_down.set()
            await asyncio.sleep(self.wind_down_s)
            raise


async def test_capture_outbox_stop_does_not_swallow_its_callers_cancellation() -> None:
    socket = SlowToCloseSocket(wind_down_s=1.0)
    outbox = Outbox(cast(WebSocket, cast(Any, socket)))
    outbox.start()
    outbox.send({"type": "hello"})
    await asyncio.wait_for(socket.sending.wait(), 1)
    stopping = asyncio.create_task(outbox.stop())
    await asyncio.wait_for(socket.winding_down.wait(), 1)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(stopping, 5)


async def test_capture_outbox_stop_itself_ends_quietly() -> None:
    socket = SlowToCloseSocket(wind_down_s=0.0)
    outbox = Outbox(cast(WebSocket, cast(Any, socket)))
    outbox.start()
    outbox.send({"type": "hello"})
    await asyncio.wait_for(socket.sending.wait(), 1)
    await asyncio.wait_for(outbox.stop(), 5)
