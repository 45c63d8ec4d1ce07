"""The Voxtral worker service: the shared job loop on the Voxtral engine."""

from __future__ import annotations

from echostream_shared.jobs.worker import JobWorker
from voxtral_worker import metrics
from voxtral_worker.config import VoxtralWorkerSettings
from voxtral_worker.engine import VoxtralEngine


def voxtral_worker(settings: VoxtralWorkerSettings) -> JobWorker:
    """A ``Service`` that takes voxtral jobs while its vLLM servers have free stream slots."""
    return JobWorker(VoxtralEngine(settings), settings.worker_options(), metrics.JOB)
