"""The Voxtral worker service: the shared job loop on the Voxtral engine."""

from __future__ import annotations

from echostream_shared.jobs.worker import JobWorker, WorkerOptions
from voxtral_worker import metrics
from voxtral_worker.config import VoxtralWorkerSettings
from voxtral_worker.engine import VoxtralEngine


def voxtral_worker(settings: VoxtralWorkerSettings) -> JobWorker:
    """A ``Service`` that takes voxtral jobs while its vLLM servers have free stream slots."""
    options = WorkerOptions(
        worker_id=settings.worker_id,
        status_interval_s=settings.status_interval_s,
        degrade_lag_s=settings.degrade_lag_s,
        source_idle_timeout_s=settings.source_idle_timeout_s,
        ack_wait_s=settings.job_ack_wait_s,
    )
    return JobWorker(VoxtralEngine(settings), options, metrics.JOB)
