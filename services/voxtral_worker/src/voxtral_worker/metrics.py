"""Prometheus metrics of the Voxtral worker."""

from __future__ import annotations

from prometheus_client import Counter

from echostream_shared.jobs.metrics import job_metrics

JOB = job_metrics("voxtral")
TOKENS = Counter("echostream_voxtral_tokens_total", "Deltas received (one per 80 ms of audio)")
RECONNECTS = Counter(
    "echostream_voxtral_reconnects_total", "Connections to vLLM that failed and were retried"
)
ROLLOVERS = Counter(
    "echostream_voxtral_rollovers_total", "Generations renewed mid-stream", ["reason"]
)
SERVER_ERRORS = Counter(
    "echostream_voxtral_server_errors_total", "error events and refusals from vLLM", ["code"]
)
KEEPALIVE_SILENCE = Counter(
    "echostream_voxtral_keepalive_silence_seconds_total",
    "Silence sent to keep a generation alive while the source sent nothing",
)
