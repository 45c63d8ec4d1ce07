"""One job: one source of a session on one engine, from its checkpoint to its close."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import Histogram

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus, report_malformed
from echostream_shared.codec import DecodeError, decode
from echostream_shared.jobs.checkpoints import Checkpoint, CheckpointError, CheckpointStore
from echostream_shared.jobs.metrics import JobMetrics
from echostream_shared.jobs.publisher import TranscriptPublisher
from echostream_shared.jobs.stream import EngineStream, HandBack, JobFailed, TranscriptSink
from echostream_shared.jobs.updates import FinalUpdate, PartialUpdate, ResumePoint
from echostream_shared.logging import get_logger
from echostream_shared.tasks import cancel_and_wait

log = get_logger("source_job")

StreamFactory = Callable[[m.TranscriptionJob, ResumePoint | None, TranscriptSink], EngineStream]
"""Opens an engine stream for a job, fresh or resumed, reporting to the sink."""

HAND_BACK_DELAY_S = 5.0
"""A job given away because the engine failed is not offered again sooner than this; the delay
doubles with each delivery, up to ``MAX_RETRY_DELAY_S``."""
MAX_RETRY_DELAY_S = 60.0
UNEXPECTED_ERROR_ATTEMPTS = 3
"""Deliveries an unclassified engine error may take before the job is failed for good."""
BUS_ERRORS = (NatsError, ConnectionError)
"""Failures of the bus, not of the engine: never counted against a job."""


class Outcome(Enum):
    """How a job ended."""

    FINISHED = "finished"
    HANDED_BACK = "handed_back"
    RETRYING = "retrying"
    FAILED = "failed"


def retry_delay_s(delivery: int) -> float:
    """The back-off before a job that failed on its ``delivery``-th delivery is offered again."""
    return min(MAX_RETRY_DELAY_S, HAND_BACK_DELAY_S * 2.0 ** max(0, delivery - 1))


@dataclass(frozen=True)
class _ChunkSeen:
    stream_seq: int
    first_sample: int
    end_sample: int
    captured_at: float


class SourceJob:
    """Replays a source's audio from JetStream in order into an engine stream, publishes its
    transcripts, checkpoints after each final, keeps the job in progress, acks it at the close.
    """

    def __init__(
        self,
        bus: Bus,
        job: m.TranscriptionJob,
        job_msg: Msg,
        checkpoints: CheckpointStore,
        open_stream: StreamFactory,
        metrics: JobMetrics,
        *,
        ack_wait_s: float,
        idle_timeout_s: float,
        max_deliveries: int = 20,
    ) -> None:
        self.job = job
        self._bus = bus
        self._job_msg = job_msg
        self._checkpoints = checkpoints
        self._open_stream = open_stream
        self._metrics = metrics
        self._ack_wait_s = ack_wait_s
        self._idle_timeout_s = idle_timeout_s
        self._max_deliveries = max_deliveries
        self._publisher = TranscriptPublisher(bus, job.engine, job.session_id, job.source)
        self._chunks: deque[_ChunkSeen] = deque()
        self._last_seq = 0
        self._end_sample = 0
        self._with_partials: set[int] = set()
        self._finalizing: set[asyncio.Task[None]] = set()
        self._finals = 0
        self._lag_s = 0.0
        self._capture_end = 0.0
        self._handling = False
        self._stream: EngineStream | None = None
        self._halt = asyncio.Event()
        self.released = False
        self.audio_s = 0.0

    @property
    def busy_s(self) -> float:
        return self._stream.busy_s if self._stream is not None else 0.0

    @property
    def lag_s(self) -> float:
        """How far behind real time this stream is, growing while the engine holds a message."""
        if self._handling and self._capture_end:
            return max(self._lag_s, time.time() - self._capture_end)
        return self._lag_s

    def release(self) -> None:
        """Hand the job back to the queue as a stop would, for another worker or a later turn."""
        self.released = True
        self._halt.set()

    async def run(self, stop: asyncio.Event) -> Outcome:
        """Transcribe until the source closes (ack), or the worker stops or releases the job
        (hand back)."""
        with structlog.contextvars.bound_contextvars(
            session_id=self.job.session_id, source=self.job.source, engine=self.job.engine
        ):
            stored = await self._load_checkpoint()
            if stored is not None and stored.closed:
                await self._job_msg.ack()
                return Outcome.FINISHED
            log.info("job.started", resumed=stored is not None)
            self._finals = stored.finals if stored else 0
            keep_alive = asyncio.create_task(self._keep_alive())
            stopping = asyncio.create_task(_relay(stop, self._halt))
            try:
                return await self._transcribe(stored, self._halt)
            finally:
                keep_alive.cancel()
                stopping.cancel()

    async def _transcribe(self, stored: Checkpoint | None, stop: asyncio.Event) -> Outcome:
        try:
            stream = self._open_stream(self.job, stored.resume if stored else None, _Sink(self))
        except Exception as exc:
            return await self.settle_failure(exc)
        self._stream = stream
        try:
            return await self._consume(stream, stored, stop)
        except BUS_ERRORS:
            raise  # not the engine's fault: the job is redelivered after the ack wait
        except Exception as exc:
            with contextlib.suppress(Exception):
                await stream.aclose()
            return await self.settle_failure(exc)

    async def _load_checkpoint(self) -> Checkpoint | None:
        try:
            return await self._checkpoints.load(self.job.session_id, self.job.source)
        except CheckpointError as exc:
            # Replaying the whole source re-publishes the same segment ids: nothing is doubled.
            log.error("checkpoint.unreadable", reason=str(exc))
            return None

    async def _consume(
        self, stream: EngineStream, stored: Checkpoint | None, stop: asyncio.Event
    ) -> Outcome:
        subscription = await self._bus.js.subscribe(
            t.audio(self.job.session_id, self.job.source),
            ordered_consumer=True,
            config=_replay_config(stored),
        )
        idle_since = time.monotonic()
        try:
            while not stop.is_set():
                if (failure := stream.failure()) is not None:
                    raise failure
                try:
                    msg = await subscription.next_msg(timeout=1.0)
                except TimeoutError:
                    if time.monotonic() - idle_since > self._idle_timeout_s:
                        log.warning("job.source_idle", idle_s=self._idle_timeout_s)
                        await self._close(stream, self._end_sample)
                        return Outcome.FINISHED
                    continue
                idle_since = time.monotonic()
                if await _unless_stopped(self._handle(stream, msg), stop):
                    return Outcome.FINISHED
            # Work since the last final is redone from the checkpoint by whoever takes the job,
            # so a final caught by the stop must have its checkpoint stored before the hand-back.
            if self._finalizing:
                await asyncio.wait(self._finalizing)
            await stream.aclose()
            await self._job_msg.nak()
            log.info("job.handed_back", released=self.released)
            return Outcome.HANDED_BACK
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def settle_failure(self, error: Exception) -> Outcome:
        """Classify an engine error: retry later (nak with back-off) or fail the job for good.

        ``HandBack`` is retried until the consumer's delivery limit is near, an unclassified
        error ``UNEXPECTED_ERROR_ATTEMPTS`` times, ``JobFailed`` never. A failed job is
        terminated and its source marked failed on the transcript subject, so the aggregator
        and the client's connection learn it instead of waiting for a redelivery.
        """
        delivery = self._delivery()
        attempts = self._max_deliveries - 1 if isinstance(error, HandBack) else 1
        if not isinstance(error, HandBack | JobFailed):
            attempts = UNEXPECTED_ERROR_ATTEMPTS
        reason = f"{type(error).__name__}: {error}"
        if not isinstance(error, JobFailed) and delivery < attempts:
            delay = retry_delay_s(delivery)
            await self._job_msg.nak(delay=delay)
            log.warning("job.retrying", reason=reason, delivery=delivery, delay_s=delay)
            return Outcome.RETRYING
        await self._publisher.source_transcribed(self._end_sample, self._finals, failure=reason)
        await self._job_msg.term()
        log.error("job.failed", reason=reason, delivery=delivery)
        return Outcome.FAILED

    def _delivery(self) -> int:
        try:
            return int(self._job_msg.metadata.num_delivered)
        except Exception:  # a message without JetStream metadata: count it as the first
            return 1

    async def _handle(self, stream: EngineStream, msg: Msg) -> bool:
        """Apply one audio-stream message; True once the source is closed."""
        try:
            message = decode(msg.data, msg.subject)
        except DecodeError as exc:
            report_malformed(t.AUDIO_STREAM, exc)
            return False
        self._last_seq = msg.metadata.sequence.stream
        self._handling = True
        try:
            match message:
                case m.AudioChunk():
                    self._track(message)
                    await stream.on_audio(message)
                case m.SpeechStarted():
                    await stream.on_speech_started(message.sample)
                case m.SpeechEnded():
                    await stream.on_speech_ended(message.sample)
                case m.SourceClosed():
                    await self._close(stream, message.end_sample)
                    return True
            return False
        finally:
            self._handling = False

    def _track(self, chunk: m.AudioChunk) -> None:
        self._chunks.append(
            _ChunkSeen(self._last_seq, chunk.first_sample, chunk.end_sample, chunk.captured_at)
        )
        self._end_sample = max(self._end_sample, chunk.end_sample)
        self.audio_s += chunk.num_samples / m.SAMPLE_RATE
        self._capture_end = chunk.captured_at + chunk.num_samples / m.SAMPLE_RATE
        self._lag_s = max(0.0, time.time() - self._capture_end)

    async def _close(self, stream: EngineStream, end_sample: int) -> None:
        resume = await stream.on_closed(end_sample)
        await self._save_checkpoint(resume, closed=True)
        await self._publisher.source_transcribed(end_sample, self._finals)
        await self._job_msg.ack_sync()
        log.info("job.finished", audio_s=round(self.audio_s, 2), finals=self._finals)

    async def publish_partial(self, update: PartialUpdate) -> None:
        self._with_partials.add(update.segment_start)
        partial = await self._publisher.partial(update)
        self._metrics.transcripts.labels("partial").inc()
        if update.revision == 1:
            self._observe(
                self._metrics.first_partial_latency, update.segment_start, partial.emitted_at
            )

    async def publish_final(self, update: FinalUpdate, resume: ResumePoint) -> None:
        """Publish a final and store the checkpoint after it, as one step a stop cannot split."""
        task = asyncio.create_task(self._publish_final(update, resume))
        self._finalizing.add(task)
        task.add_done_callback(self._finalizing.discard)
        await asyncio.shield(task)

    async def _publish_final(self, update: FinalUpdate, resume: ResumePoint) -> None:
        # An empty final only retracts partials; a segment nobody saw needs no message.
        if update.text or update.segment_start in self._with_partials:
            final = await self._publisher.final(update)
            self._with_partials.discard(update.segment_start)
            self._finals += 1
            self._metrics.transcripts.labels("final").inc()
            self._observe(self._metrics.final_latency, update.segment_end, final.emitted_at)
            log.info("transcript.final", segment_id=final.segment_id, chars=len(final.text))
        await self._save_checkpoint(resume, closed=False)

    async def _save_checkpoint(self, resume: ResumePoint, closed: bool) -> None:
        while self._chunks and self._chunks[0].end_sample <= resume.done:
            self._chunks.popleft()
        replay_from = self._chunks[0].stream_seq if self._chunks else self._last_seq + 1
        await self._checkpoints.save(
            self.job.session_id,
            self.job.source,
            Checkpoint(resume, replay_from, finals=self._finals, closed=closed),
        )

    def _observe(self, histogram: Histogram, sample: int, emitted_at: float) -> None:
        for chunk in reversed(self._chunks):
            if chunk.first_sample <= sample <= chunk.end_sample:
                captured = chunk.captured_at + (sample - chunk.first_sample) / m.SAMPLE_RATE
                histogram.observe(max(0.0, emitted_at - captured))
                return

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._ack_wait_s / 3)
            try:
                await self._job_msg.in_progress()
            except Exception as exc:
                # The job may move to another worker after the ack wait; the replay from the
                # checkpoint keeps that safe, but it must be visible.
                self._metrics.keep_alive_failures.inc()
                log.warning("job.keep_alive_failed", error=repr(exc))


class _Sink:
    """The sink a job hands its engine stream."""

    def __init__(self, job: SourceJob) -> None:
        self._job = job

    async def partial(self, update: PartialUpdate) -> None:
        await self._job.publish_partial(update)

    async def final(self, update: FinalUpdate, resume: ResumePoint) -> None:
        await self._job.publish_final(update, resume)


async def _relay(stop: asyncio.Event, halt: asyncio.Event) -> None:
    await stop.wait()
    halt.set()


async def _unless_stopped(work: Coroutine[Any, Any, bool], stop: asyncio.Event) -> bool:
    """The work's result, or False if ``stop`` is set first (the work is then cancelled).

    A cancellation of the caller is never swallowed: it cancels the work and propagates, also
    when it arrives while the work cancelled for the stop is still winding down.
    """
    task = asyncio.create_task(work)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopping.cancel()
    if task.done():
        return task.result()
    await cancel_and_wait(task)
    return False


def _replay_config(stored: Checkpoint | None) -> ConsumerConfig:
    if stored is None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    return ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=stored.replay_from_seq
    )
