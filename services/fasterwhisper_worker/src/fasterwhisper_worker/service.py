"""The faster-whisper worker service: the shared job loop and segmented policy on CTranslate2."""

from __future__ import annotations

from echostream_shared.jobs.worker import JobWorker
from echostream_shared.segmented.engine import SegmentedEngine
from fasterwhisper_worker import metrics
from fasterwhisper_worker.config import FasterWhisperWorkerSettings
from fasterwhisper_worker.transcriber import FasterWhisperTranscriber

ENGINE = "fasterwhisper"


def fasterwhisper_worker(
    settings: FasterWhisperWorkerSettings, transcriber: FasterWhisperTranscriber
) -> JobWorker:
    """A ``Service`` that takes fasterwhisper jobs while it has free stream slots and no lag."""
    engine = SegmentedEngine(
        ENGINE,
        transcriber,
        settings.segment_policy(),
        max_streams=settings.max_streams,
        decode_histogram=metrics.DECODE_SECONDS,
    )
    return JobWorker(engine, settings.worker_options(), metrics.JOB)
