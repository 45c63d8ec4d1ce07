"""One job: transcribe one source of a session, from its checkpoint to its close."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import Histogram

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus, report_malformed
from echostream_shared.codec import DecodeError, decode
from echostream_shared.ids import segment_id
from echostream_shared.logging import get_logger
from whisper_worker import metrics
from whisper_worker.checkpoints import ENGINE, Checkpoint, CheckpointStore
from whisper_worker.streaming import (
    FinalUpdate,
    PartialUpdate,
    SourceStream,
    StreamCheckpoint,
    Update,
)

log = get_logger("source_job")

StreamFactory = Callable[[StreamCheckpoint | None], SourceStream]
"""Opens a stream, fresh or resumed from a checkpoint."""


class Outcome(Enum):
    """How a job ended."""

    FINISHED = "finished"
    HANDED_BACK = "handed_back"


@dataclass(frozen=True)
class _ChunkSeen:
    stream_seq: int
    first_sample: int
    end_sample: int
    captured_at: float


class SourceJob:
    """Reads a source's audio from JetStream in order and publishes its transcripts."""

    def __init__(
        self,
        bus: Bus,
        job: m.TranscriptionJob,
        job_msg: Msg,
        checkpoints: CheckpointStore,
        make_stream: StreamFactory,
        *,
        ack_wait_s: float,
        idle_timeout_s: float,
    ) -> None:
        self.job = job
        self._bus = bus
        self._job_msg = job_msg
        self._checkpoints = checkpoints
        self._make_stream = make_stream
        self._ack_wait_s = ack_wait_s
        self._idle_timeout_s = idle_timeout_s
        self._chunks: deque[_ChunkSeen] = deque()
        self._last_seq = 0
        self._end_sample = 0
        self._with_partials: set[int] = set()
        self._finals = 0
        self._lag_s = 0.0
        self._capture_end = 0.0
        self._handling = False
        self.audio_s = 0.0
        self.busy_s = 0.0

    async def run(self, stop: asyncio.Event) -> Outcome:
        """Transcribe until the source closes (ack) or the worker stops (hand back)."""
        with structlog.contextvars.bound_contextvars(
            session_id=self.job.session_id, source=self.job.source
        ):
            stored = await self._checkpoints.load(self.job.session_id, self.job.source)
            if stored is not None and stored.closed:
                await self._job_msg.ack()
                return Outcome.FINISHED
            log.info("job.started", resumed=stored is not None)
            self._finals = stored.finals if stored else 0
            stream = self._make_stream(stored.stream if stored else None)
            keep_alive = asyncio.create_task(self._keep_alive())
            try:
                return await self._consume(stream, stored, stop)
            finally:
                keep_alive.cancel()

    async def _consume(
        self, stream: SourceStream, stored: Checkpoint | None, stop: asyncio.Event
    ) -> Outcome:
        subscription = await self._bus.js.subscribe(
            t.audio(self.job.session_id, self.job.source),
            ordered_consumer=True,
            config=_replay_config(stored),
        )
        idle_since = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    msg = await subscription.next_msg(timeout=1.0)
                except NatsTimeoutError:
                    if time.monotonic() - idle_since > self._idle_timeout_s:
                        log.warning("job.source_idle", idle_s=self._idle_timeout_s)
                        await self._close(stream, self._end_sample)
                        return Outcome.FINISHED
                    continue
                idle_since = time.monotonic()
                if await _unless_stopped(self._handle(stream, msg), stop):
                    return Outcome.FINISHED
            # Work since the last final is redone from the checkpoint by whoever takes the job.
            await self._job_msg.nak()
            log.info("job.handed_back")
            return Outcome.HANDED_BACK
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _handle(self, stream: SourceStream, msg: Msg) -> bool:
        """Apply one audio-stream message; True once the source is closed."""
        try:
            message = decode(msg.data, msg.subject)
        except DecodeError as exc:
            report_malformed(t.AUDIO_STREAM, exc)
            return False
        self._last_seq = msg.metadata.sequence.stream
        started = time.perf_counter()
        self._handling = True
        try:
            return await self._apply(stream, message, started)
        finally:
            self._handling = False

    @property
    def lag_s(self) -> float:
        """How far behind real time this stream is, growing while a decode holds it."""
        if self._handling and self._capture_end:
            return max(self._lag_s, time.time() - self._capture_end)
        return self._lag_s

    async def _apply(self, stream: SourceStream, message: m.BusMessage, started: float) -> bool:
        match message:
            case m.AudioChunk():
                updates = await self._on_chunk(stream, message)
            case m.SpeechStarted():
                updates = await stream.on_speech_started(message.sample)
            case m.SpeechEnded():
                updates = await stream.on_speech_ended(message.sample)
            case m.SourceClosed():
                await self._close(stream, message.end_sample)
                return True
            case _:
                return False
        self.busy_s += time.perf_counter() - started
        await self._publish(stream, updates)
        return False

    async def _on_chunk(self, stream: SourceStream, chunk: m.AudioChunk) -> list[Update]:
        self._chunks.append(
            _ChunkSeen(self._last_seq, chunk.first_sample, chunk.end_sample, chunk.captured_at)
        )
        self._end_sample = max(self._end_sample, chunk.end_sample)
        self.audio_s += chunk.num_samples / m.SAMPLE_RATE
        self._capture_end = chunk.captured_at + chunk.num_samples / m.SAMPLE_RATE
        self._lag_s = max(0.0, time.time() - self._capture_end)
        stream.lag_s = self._lag_s
        pcm = np.frombuffer(chunk.pcm, dtype="<i2")
        return await stream.on_audio(chunk.first_sample, pcm)

    async def _close(self, stream: SourceStream, end_sample: int) -> None:
        updates = await stream.on_closed(end_sample)
        await self._publish(stream, updates, closing=True)
        job = self.job
        done = m.SourceTranscribed(
            session_id=job.session_id,
            source=job.source,
            engine=ENGINE,
            end_sample=end_sample,
            finals=self._finals,
            emitted_at=time.time(),
        )
        await self._bus.publish(
            t.transcript(ENGINE, job.session_id, job.source),
            done,
            msg_id=f"done.{ENGINE}.{job.session_id}.{job.source}",
        )
        await self._job_msg.ack_sync()
        log.info("job.finished", audio_s=round(self.audio_s, 2))

    async def _publish(
        self, stream: SourceStream, updates: list[Update], closing: bool = False
    ) -> None:
        finals = False
        for update in updates:
            if isinstance(update, FinalUpdate):
                finals = True
                if update.text or update.segment_start in self._with_partials:
                    await self._publish_final(update)
            elif isinstance(update, PartialUpdate):
                await self._publish_partial(update)
        if finals or closing:
            await self._save_checkpoint(stream.checkpoint(), closed=closing)

    async def _publish_partial(self, update: PartialUpdate) -> None:
        job = self.job
        self._with_partials.add(update.segment_start)
        seg = segment_id(job.session_id, job.source, ENGINE, update.segment_start)
        partial = m.TranscriptPartial(
            session_id=job.session_id,
            source=job.source,
            engine=ENGINE,
            segment_id=seg,
            revision=update.revision,
            start_sample=update.segment_start,
            end_sample=update.segment_end,
            text=update.text,
            emitted_at=time.time(),
        )
        subject = t.transcript(ENGINE, job.session_id, job.source)
        await self._bus.publish(subject, partial, msg_id=f"p.{seg}.{update.revision}")
        metrics.TRANSCRIPTS.labels("partial").inc()
        if update.revision == 1:
            self._observe(metrics.FIRST_PARTIAL_LATENCY, update.segment_start, partial.emitted_at)

    async def _publish_final(self, update: FinalUpdate) -> None:
        job = self.job
        seg = segment_id(job.session_id, job.source, ENGINE, update.segment_start)
        final = m.TranscriptFinal(
            session_id=job.session_id,
            source=job.source,
            engine=ENGINE,
            segment_id=seg,
            start_sample=update.segment_start,
            end_sample=update.segment_end,
            text=update.text,
            words=tuple(
                m.Word(
                    text=w.text,
                    start_sample=w.start,
                    end_sample=w.end,
                    probability=min(1.0, max(0.0, w.probability)),
                )
                for w in update.words
            ),
            confidence=update.confidence,
            language=update.language,
            emitted_at=time.time(),
        )
        subject = t.transcript(ENGINE, job.session_id, job.source)
        await self._bus.publish(subject, final, msg_id=f"f.{seg}")
        self._with_partials.discard(update.segment_start)
        self._finals += 1
        metrics.TRANSCRIPTS.labels("final").inc()
        self._observe(metrics.FINAL_LATENCY, update.segment_end, final.emitted_at)
        log.info("transcript.final", segment_id=seg, chars=len(final.text))

    async def _save_checkpoint(self, state: StreamCheckpoint, closed: bool) -> None:
        while self._chunks and self._chunks[0].end_sample <= state.done:
            self._chunks.popleft()
        replay_from = self._chunks[0].stream_seq if self._chunks else self._last_seq + 1
        await self._checkpoints.save(
            self.job.session_id,
            self.job.source,
            Checkpoint(state, replay_from, finals=self._finals, closed=closed),
        )

    def _observe(self, histogram: Histogram, sample: int, emitted_at: float) -> None:
        captured = self._capture_time(sample)
        if captured is not None:
            histogram.observe(max(0.0, emitted_at - captured))

    def _capture_time(self, sample: int) -> float | None:
        for chunk in reversed(self._chunks):
            if chunk.first_sample <= sample <= chunk.end_sample:
                return chunk.captured_at + (sample - chunk.first_sample) / m.SAMPLE_RATE
        return None

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._ack_wait_s / 3)
            with contextlib.suppress(Exception):
                await self._job_msg.in_progress()


async def _unless_stopped(work: Coroutine[Any, Any, bool], stop: asyncio.Event) -> bool:
    """The work's result, or False if ``stop`` is set first (the work is then cancelled)."""
    task = asyncio.create_task(work)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


def _replay_config(stored: Checkpoint | None) -> ConsumerConfig:
    if stored is None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    return ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=stored.replay_from_seq
    )
