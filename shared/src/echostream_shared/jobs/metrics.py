"""Prometheus metrics every engine worker has, named ``echostream_<engine>_...``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)


@dataclass(frozen=True)
class JobMetrics:
    """The job-level metrics of one engine's worker process."""

    final_latency: Histogram
    first_partial_latency: Histogram
    real_time_factor: Gauge
    max_lag: Gauge
    active_streams: Gauge
    admitting: Gauge
    shedding: Gauge
    partials_shed: Counter
    cpu_cores: Gauge
    cpu_wait_cores: Gauge
    jobs: Counter
    transcripts: Counter
    keep_alive_failures: Counter


def job_metrics(engine: str, registry: CollectorRegistry = REGISTRY) -> JobMetrics:
    """Register the metrics of ``engine``; call once per process, engine and registry."""
    prefix = f"echostream_{engine}"
    return JobMetrics(
        final_latency=Histogram(
            f"{prefix}_final_latency_seconds",
            "From the capture of a segment's last sample to its final's emission",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        first_partial_latency=Histogram(
            f"{prefix}_first_partial_latency_seconds",
            "From the capture of a segment's first sample to its first partial's emission",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        real_time_factor=Gauge(
            f"{prefix}_real_time_factor",
            "Engine wall time per second of audio, over the worker's active streams",
            registry=registry,
        ),
        max_lag=Gauge(
            f"{prefix}_max_lag_seconds",
            "Largest lag behind real time among active streams",
            registry=registry,
        ),
        active_streams=Gauge(
            f"{prefix}_active_streams", "Streams this worker holds", registry=registry
        ),
        admitting=Gauge(
            f"{prefix}_admitting",
            "1 while the worker takes another job (its measured load leaves room for one)",
            registry=registry,
        ),
        shedding=Gauge(
            f"{prefix}_shedding",
            "1 while partials are skipped because streams are behind real time",
            registry=registry,
        ),
        partials_shed=Counter(
            f"{prefix}_partials_shed_total",
            "Partials due and not decoded: the stream lagged, or its CPU budget was spent",
            ["reason"],
            registry=registry,
        ),
        cpu_cores=Gauge(
            f"{prefix}_cpu_cores",
            "Cores the worker process kept busy over the recent load window",
            registry=registry,
        ),
        cpu_wait_cores=Gauge(
            f"{prefix}_cpu_wait_cores",
            "Seconds per second the worker's threads waited for a core (CPU contention)",
            registry=registry,
        ),
        jobs=Counter(f"{prefix}_jobs_total", "Jobs by outcome", ["outcome"], registry=registry),
        transcripts=Counter(
            f"{prefix}_transcripts_total",
            "Transcript messages published",
            ["kind"],
            registry=registry,
        ),
        keep_alive_failures=Counter(
            f"{prefix}_job_keep_alive_failures_total",
            "Progress acks that failed (the job may move to another worker)",
            registry=registry,
        ),
    )
