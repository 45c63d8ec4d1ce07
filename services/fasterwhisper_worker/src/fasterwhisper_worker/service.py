"""The faster-whisper worker service: the shared job loop and segmented policy on CTranslate2."""

from __future__ import annotations

from echostream_shared.jobs.worker import JobWorker
from echostream_shared.segmented.decoding import ModelTranscriber
from echostream_shared.segmented.engine import segmented_worker
from fasterwhisper_worker import metrics
from fasterwhisper_worker.config import FasterWhisperWorkerSettings

ENGINE = "fasterwhisper"
# what a stream costs against the reference decode (``segmented.calibration``), with a margin:
# reference 0.012 CPU-s per audio-s, streams 0.067-0.072 at 8-16 streams (AMD EPYC, VNNI)
STREAM_COST_PER_REFERENCE = 7.0


def fasterwhisper_worker(
    settings: FasterWhisperWorkerSettings, transcriber: ModelTranscriber
) -> JobWorker:
    """A ``Service`` that takes fasterwhisper jobs while its measured load leaves room for one more."""
    return segmented_worker(
        ENGINE,
        settings,
        transcriber,
        decode_histogram=metrics.DECODE_SECONDS,
        job_metrics=metrics.JOB,
        stream_cost_per_reference=STREAM_COST_PER_REFERENCE,
    )
