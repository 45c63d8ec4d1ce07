"""Plays an engine worker's part on the bus, without a model: scripted transcripts per speech segment.

It takes jobs from the engine's work queue like a real worker, reads the source's audio in
order, publishes a partial per chunk of speech and a final at each speech end (or at the close),
then publishes ``source.transcribed`` and acks the job, as the real workers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import decode
from echostream_shared.ids import segment_id


def segment_text(start_sample: int, end_sample: int) -> str:
    """What the fake hears in a segment: its place on the clock, in words."""
    return f"Speech from {start_sample} to {end_sample}."


@dataclass
class FakeWorker:
    bus: Bus
    engine: str = "whisper"
    close_delay_s: float = 0.0
    finals: list[m.TranscriptFinal] = field(default_factory=list)
    chunks: dict[tuple[str, str], list[m.AudioChunk]] = field(default_factory=dict)
    audio_events: dict[tuple[str, str], list[m.BusMessage]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        await t.ensure_worker_consumer(self.bus.js, self.engine)
        queue = await self.bus.js.pull_subscribe_bind(
            t.worker_consumer(self.engine), stream=t.JOB_STREAM
        )
        while not stop.is_set():
            try:
                msgs = await queue.fetch(1, timeout=0.2)
            except NatsTimeoutError:
                continue
            for msg in msgs:
                job = decode(msg.data)
                assert isinstance(job, m.TranscriptionJob)
                task = asyncio.create_task(self._transcribe(job, msg, stop))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        for task in list(self._tasks):
            task.cancel()

    async def _transcribe(self, job: m.TranscriptionJob, job_msg: Msg, stop: asyncio.Event) -> None:
        key = (job.session_id, job.source)
        events = self.audio_events.setdefault(key, [])
        sub = await self.bus.js.subscribe(
            t.audio(job.session_id, job.source),
            stream=t.AUDIO_STREAM,
            ordered_consumer=True,
            idle_heartbeat=0.5,
        )
        speech_start: int | None = None
        revision = 0
        try:
            while not stop.is_set():
                with contextlib.suppress(NatsTimeoutError):
                    message = decode((await sub.next_msg(timeout=0.5)).data)
                    events.append(message)
                    match message:
                        case m.AudioChunk() if speech_start is not None:
                            self.chunks.setdefault(key, []).append(message)
                            await self._partial(job, speech_start, message.end_sample, revision)
                            revision += 1
                        case m.AudioChunk():
                            self.chunks.setdefault(key, []).append(message)
                        case m.SpeechStarted():
                            speech_start, revision = message.sample, 0
                        case m.SpeechEnded() if speech_start is not None:
                            await self._final(job, speech_start, message.sample)
                            speech_start = None
                        case m.SourceClosed():
                            if speech_start is not None:
                                await self._final(job, speech_start, message.end_sample)
                            await asyncio.sleep(self.close_delay_s)
                            await self._mark_transcribed(job, message.end_sample)
                            await job_msg.ack()
                            return
        finally:
            await sub.unsubscribe()

    async def _partial(self, job: m.TranscriptionJob, start: int, end: int, revision: int) -> None:
        seg = segment_id(job.session_id, job.source, self.engine, start)
        partial = m.TranscriptPartial(
            session_id=job.session_id,
            source=job.source,
            engine=self.engine,
            segment_id=seg,
            revision=revision,
            start_sample=start,
            end_sample=end,
            text=f"Speech from {start}",
            emitted_at=time.time(),
        )
        await self.bus.publish(t.transcript(self.engine, job.session_id, job.source), partial)

    async def _final(self, job: m.TranscriptionJob, start: int, end: int) -> None:
        final = m.TranscriptFinal(
            session_id=job.session_id,
            source=job.source,
            engine=self.engine,
            segment_id=segment_id(job.session_id, job.source, self.engine, start),
            start_sample=start,
            end_sample=end,
            text=segment_text(start, end),
            confidence=0.8,
            emitted_at=time.time(),
        )
        self.finals.append(final)
        await self.bus.publish(t.transcript(self.engine, job.session_id, job.source), final)

    async def _mark_transcribed(self, job: m.TranscriptionJob, end_sample: int) -> None:
        done = m.SourceTranscribed(
            session_id=job.session_id,
            source=job.source,
            engine=self.engine,
            end_sample=end_sample,
            finals=sum(1 for final in self.finals if final.source == job.source),
            emitted_at=time.time(),
        )
        await self.bus.publish(t.transcript(self.engine, job.session_id, job.source), done)
