"""A ``SegmentedStream`` as the job machinery's ``EngineStream``."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import asdict
from typing import Any

import numpy as np

from echostream_shared import messages as m
from echostream_shared.jobs.stream import TranscriptSink
from echostream_shared.jobs.updates import FinalUpdate, ResumePoint, TimedWord, Update
from echostream_shared.segmented.policy import SegmentedStream, SegmenterState


def resume_point(state: SegmenterState) -> ResumePoint:
    saved = asdict(state)
    if state.committed_end is None:  # the layout workers without early commits read
        del saved["committed_end"]
    return ResumePoint(state.published, saved)


def segmenter_state(resume: ResumePoint) -> SegmenterState:
    """The state saved by ``resume_point``; a foreign layout raises ``TypeError``/``KeyError``."""
    state: dict[str, Any] = dict(resume.state)
    tail = tuple(TimedWord(**word) for word in state.pop("tail"))
    return SegmenterState(**state, tail=tail)


class SegmentedJobStream:
    """Feeds one job's audio to a ``SegmentedStream`` and reports its updates to the job's sink."""

    def __init__(self, stream: SegmentedStream, sink: TranscriptSink) -> None:
        self._stream = stream
        self._sink = sink
        self._resume = resume_point(stream.state())
        self._busy_s = 0.0

    @property
    def busy_s(self) -> float:
        return self._busy_s

    async def on_audio(self, chunk: m.AudioChunk) -> None:
        captured_end = chunk.captured_at + chunk.num_samples / m.SAMPLE_RATE
        self._stream.lag_s = max(0.0, time.time() - captured_end)
        pcm = np.frombuffer(chunk.pcm, dtype="<i2")
        await self._report(await self._timed(self._stream.on_audio(chunk.first_sample, pcm)))

    async def on_speech_started(self, sample: int) -> None:
        await self._report(await self._timed(self._stream.on_speech_started(sample)))

    async def on_speech_ended(self, sample: int) -> None:
        await self._report(await self._timed(self._stream.on_speech_ended(sample)))

    async def on_closed(self, end_sample: int) -> ResumePoint:
        await self._report(await self._timed(self._stream.on_closed(end_sample)))
        return resume_point(self._stream.state())

    def failure(self) -> BaseException | None:
        return None

    async def aclose(self) -> None:
        """Nothing to release: the transcriber belongs to the engine."""

    async def _timed(self, work: Awaitable[list[Update]]) -> list[Update]:
        started = time.perf_counter()
        try:
            return await work
        finally:
            self._busy_s += time.perf_counter() - started

    async def _report(self, updates: list[Update]) -> None:
        finals = [i for i, update in enumerate(updates) if isinstance(update, FinalUpdate)]
        after = resume_point(self._stream.state()) if finals else self._resume
        for i, update in enumerate(updates):
            if not isinstance(update, FinalUpdate):
                await self._sink.partial(update)
                continue
            # Only the batch's last final may move the checkpoint past the batch: a crash
            # between two finals must replay the second.
            await self._sink.final(update, after if i == finals[-1] else self._resume)
        self._resume = after
