"""The whisper worker service: the shared job loop and segmented policy on whisper.cpp."""

from __future__ import annotations

from echostream_shared.jobs.worker import JobWorker
from echostream_shared.segmented.engine import SegmentedEngine
from whisper_worker import metrics
from whisper_worker.config import WhisperWorkerSettings
from whisper_worker.transcriber import WhisperTranscriber

ENGINE = "whisper"


def whisper_worker(settings: WhisperWorkerSettings, transcriber: WhisperTranscriber) -> JobWorker:
    """A ``Service`` that takes whisper jobs while it has free stream slots and no lag."""
    engine = SegmentedEngine(
        ENGINE,
        transcriber,
        settings.segment_policy(),
        max_streams=settings.max_streams,
        decode_histogram=metrics.DECODE_SECONDS,
    )
    return JobWorker(engine, settings.worker_options(), metrics.JOB)
