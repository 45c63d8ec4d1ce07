"""The contract between the job machinery and an engine."""

from __future__ import annotations

from typing import Protocol

from echostream_shared import messages as m
from echostream_shared.jobs.updates import FinalUpdate, PartialUpdate, ResumePoint


class HandBack(Exception):
    """The engine cannot serve this stream now (e.g. misconfigured); another worker may.

    Retryable: the job goes back to the queue with a growing delay.
    """


class JobFailed(Exception):
    """This stream can never be transcribed (e.g. audio the engine rejects): permanent.

    The job is terminated, the source marked failed for the engine, and readers told.
    """


class TranscriptSink(Protocol):
    """Where an engine stream reports, in order; finals are checkpointed before returning."""

    async def partial(self, update: PartialUpdate) -> None: ...

    async def final(self, update: FinalUpdate, resume: ResumePoint) -> None: ...


class EngineStream(Protocol):
    """One source on one engine: fed audio and speech boundaries in stream order.

    Updates may be reported to the sink during a call or later (an engine that streams to a
    server reports when the server answers); ``on_closed`` returns after the last one.
    """

    async def on_audio(self, chunk: m.AudioChunk) -> None: ...

    async def on_speech_started(self, sample: int) -> None: ...

    async def on_speech_ended(self, sample: int) -> None: ...

    async def on_closed(self, end_sample: int) -> ResumePoint:
        """Flush every final up to ``end_sample``; returns the stream's last resume point."""
        ...

    def failure(self) -> BaseException | None:
        """Why the stream can no longer work (raise ``HandBack`` to give the job away), if so."""
        ...

    @property
    def busy_s(self) -> float:
        """Engine wall time spent so far, for the real-time factor."""
        ...

    async def aclose(self) -> None:
        """Stop without finishing: the job is handed back."""
        ...
