"""Prometheus metrics of the faster-whisper worker."""

from __future__ import annotations

from echostream_shared.jobs.metrics import job_metrics
from echostream_shared.segmented.engine import decode_seconds

JOB = job_metrics("fasterwhisper")
DECODE_SECONDS = decode_seconds("fasterwhisper")
