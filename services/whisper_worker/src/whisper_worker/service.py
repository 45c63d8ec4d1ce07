"""The whisper worker service: the shared job loop on whisper.cpp."""

from __future__ import annotations

from echostream_shared import messages as m
from echostream_shared.jobs.stream import EngineStream, TranscriptSink
from echostream_shared.jobs.updates import Resume
from echostream_shared.jobs.worker import JobWorker, WorkerOptions
from whisper_worker import metrics
from whisper_worker.config import WhisperWorkerSettings
from whisper_worker.engine import WhisperEngine
from whisper_worker.job_stream import WhisperJobStream, checkpoint_of

ENGINE = "whisper"


class WhisperJobEngine:
    """Implements the job machinery's ``Engine`` on a pool of whisper.cpp decoders."""

    name = ENGINE

    def __init__(self, engine: WhisperEngine, max_streams: int) -> None:
        self._engine = engine
        self._max_streams = max_streams

    def open_stream(
        self, job: m.TranscriptionJob, resume: Resume | None, sink: TranscriptSink
    ) -> EngineStream:
        stream = self._engine.open_stream(checkpoint_of(resume) if resume else None)
        return WhisperJobStream(stream, sink)

    def capacity(self) -> int:
        return self._max_streams

    def condition(self) -> tuple[m.WorkerState, str]:
        return "ok", ""

    async def start(self) -> None:
        await self._engine.warm_up()

    async def aclose(self) -> None:
        await self._engine.aclose()


def whisper_worker(settings: WhisperWorkerSettings, engine: WhisperEngine) -> JobWorker:
    """A ``Service`` that takes whisper jobs while it has free stream slots and no lag."""
    options = WorkerOptions(
        worker_id=settings.worker_id,
        status_interval_s=settings.status_interval_s,
        degrade_lag_s=settings.degrade_lag_s,
        source_idle_timeout_s=settings.source_idle_timeout_s,
        ack_wait_s=settings.job_ack_wait_s,
    )
    return JobWorker(WhisperJobEngine(engine, settings.max_streams), options, metrics.JOB)
