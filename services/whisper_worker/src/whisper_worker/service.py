"""The whisper worker service: the shared job loop and segmented policy on whisper.cpp."""

from __future__ import annotations

from echostream_shared.jobs.worker import JobWorker
from echostream_shared.segmented.decoding import ModelTranscriber
from echostream_shared.segmented.engine import segmented_worker
from whisper_worker import metrics
from whisper_worker.config import WhisperWorkerSettings

ENGINE = "whisper"
# what a stream costs against the reference decode (``segmented.calibration``), with a margin:
# reference 0.072 CPU-s per audio-s, streams 0.16-0.23 (tiny.en, 2 cores)
STREAM_COST_PER_REFERENCE = 3.5


def whisper_worker(settings: WhisperWorkerSettings, transcriber: ModelTranscriber) -> JobWorker:
    """A ``Service`` that takes whisper jobs while its measured load leaves room for one more."""
    return segmented_worker(
        ENGINE,
        settings,
        transcriber,
        decode_histogram=metrics.DECODE_SECONDS,
        job_metrics=metrics.JOB,
        stream_cost_per_reference=STREAM_COST_PER_REFERENCE,
    )
