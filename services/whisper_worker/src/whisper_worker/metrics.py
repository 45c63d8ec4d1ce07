"""Prometheus metrics of the whisper worker."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)

DECODE_SECONDS = Histogram(
    "echostream_whisper_decode_seconds",
    "Wall time of one whisper.cpp decode",
    ["purpose"],
    buckets=(0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4),
)
FINAL_LATENCY = Histogram(
    "echostream_whisper_final_latency_seconds",
    "From the capture of a segment's last sample to its final's emission",
    buckets=LATENCY_BUCKETS,
)
FIRST_PARTIAL_LATENCY = Histogram(
    "echostream_whisper_first_partial_latency_seconds",
    "From the capture of a segment's first sample to its first partial's emission",
    buckets=LATENCY_BUCKETS,
)
REAL_TIME_FACTOR = Gauge(
    "echostream_whisper_real_time_factor",
    "Decode wall time per second of audio, over the worker's active streams",
)
MAX_LAG = Gauge(
    "echostream_whisper_max_lag_seconds", "Largest lag behind real time among active streams"
)
ACTIVE_STREAMS = Gauge("echostream_whisper_active_streams", "Streams this worker holds")
JOBS = Counter("echostream_whisper_jobs_total", "Jobs by outcome", ["outcome"])
TRANSCRIPTS = Counter(
    "echostream_whisper_transcripts_total", "Transcript messages published", ["kind"]
)
