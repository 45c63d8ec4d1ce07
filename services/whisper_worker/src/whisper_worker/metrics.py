"""Prometheus metrics of the whisper worker."""

from __future__ import annotations

from prometheus_client import Histogram

from echostream_shared.jobs.metrics import job_metrics

JOB = job_metrics("whisper")
DECODE_SECONDS = Histogram(
    "echostream_whisper_decode_seconds",
    "Wall time of one whisper.cpp decode",
    ["purpose"],
    buckets=(0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4),
)
