"""Prometheus metrics of the capture service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("echostream_capture_connections", "Open WebSocket connections", ["protocol"])
SESSIONS = Counter("echostream_capture_sessions_total", "Sessions opened", ["protocol"])
AUDIO_SECONDS = Counter("echostream_capture_audio_seconds_total", "16 kHz audio published")
PUBLISH_SECONDS = Histogram(
    "echostream_capture_publish_seconds",
    "Time from publishing an audio chunk to JetStream's acknowledgement",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0),
)
SPEECH_EVENTS = Counter(
    "echostream_capture_speech_events_total", "Speech boundaries detected", ["kind"]
)
PROTOCOL_ERRORS = Counter(
    "echostream_capture_protocol_errors_total", "Client input rejected", ["protocol", "code"]
)
BACKPRESSURE = Counter(
    "echostream_capture_backpressure_total", "Backpressure notices sent", ["reason"]
)
UPLOADS = Counter("echostream_capture_uploads_total", "File uploads", ["outcome"])
SUMMARIES = Counter(
    "echostream_capture_summaries_total",
    "EchoPanel final summaries sent, by where they came from (aggregator or relay)",
    ["origin"],
)
