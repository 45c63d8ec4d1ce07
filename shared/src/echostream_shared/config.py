"""Settings shared by every service; each service subclasses ``ServiceSettings`` (an engine worker
``WorkerSettings``).

Common settings read ``ECHOSTREAM_<NAME>``; a service's own settings read
``ECHOSTREAM_<SERVICE>_<NAME>`` through the subclass's ``env_prefix``.
"""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from echostream_shared.jobs.worker import WorkerOptions
from echostream_shared.topology import TopologyLimits

COMMON_PREFIX = "ECHOSTREAM_"


def common(name: str) -> AliasChoices:
    """The environment variable of a setting every service shares."""
    return AliasChoices(f"{COMMON_PREFIX}{name.upper()}")


class ServiceSettings(BaseSettings):
    """Settings every service has."""

    model_config = SettingsConfigDict(
        env_prefix=COMMON_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True
    )

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=common("nats_url"),
        description="comma-separated NATS server URLs",
    )
    nats_token: str | None = Field(default=None, validation_alias=common("nats_token"))
    nats_connect_timeout_s: float = Field(
        default=30.0, gt=0, validation_alias=common("nats_connect_timeout_s")
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", validation_alias=common("log_level")
    )
    log_format: Literal["json", "console"] = Field(
        default="json", validation_alias=common("log_format")
    )
    drain_timeout_s: float = Field(default=10.0, gt=0, validation_alias=common("drain_timeout_s"))
    job_ack_wait_s: float = Field(
        default=30.0,
        gt=0,
        validation_alias=common("job_ack_wait_s"),
        description="how long a dead worker's stream waits before another worker takes it",
    )
    audio_retention_s: float = Field(
        default=24 * 3600.0, gt=0, validation_alias=common("audio_retention_s")
    )
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        validation_alias=common("stream_replicas"),
        description="replicas of every stream, consumer and bucket; 3 on a three-node cluster",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="port of GET /health and GET /metrics; 0 disables them",
    )

    def topology_limits(self) -> TopologyLimits:
        """The JetStream limits these settings ask for."""
        return TopologyLimits(
            job_ack_wait_s=self.job_ack_wait_s,
            audio_max_age_s=self.audio_retention_s,
            replicas=self.stream_replicas,
        )

    @property
    def nats_servers(self) -> list[str]:
        """The NATS URLs as a list."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]


def default_worker_id() -> str:
    """Host name and process id: unique per process, readable in status reports."""
    host = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in socket.gethostname())
    return f"{host[:40]}-{os.getpid()}"


class WorkerSettings(ServiceSettings):
    """Settings every engine worker has; a worker subclasses it with its own ``env_prefix``."""

    max_streams: int = Field(
        default=64,
        ge=1,
        le=256,
        description="most streams held at once, a safety cap: below it the worker takes jobs while "
        "its measured lag and CPU leave room for one more",
    )
    degrade_lag_s: float = Field(
        default=2.0,
        gt=0,
        description="above this lag the worker reports degraded; a stream that stays above half "
        "of it for 5 s without catching up (batch engines stop partials there) stops admission",
    )
    admit_cpu_share: float = Field(
        default=0.75,
        gt=0,
        le=1,
        description="share of the usable cores the worker's CPU may reach with one more stream, "
        "each costing the CPU-s per audio-s measured over the last seconds",
    )
    admit_settle_s: float = Field(
        default=0.3,
        ge=0,
        description="pause after taking a job before the next (streams taken in the last 10 s are "
        "counted at their predicted cost until their load shows)",
    )
    admit_prior_cpu_per_audio_s: float | None = Field(
        default=None,
        gt=0,
        le=4,
        description="what a stream is assumed to cost (CPU-s per audio-s) until a minute of audio "
        "has shown it: a fresh worker takes a burst of sessions at this price (unset: estimated "
        "at start from a reference decode on this machine; engines without one 0.25)",
    )
    hand_back_lag_s: float = Field(
        default=0.0,
        ge=0,
        description="a stream this far behind real time all through the last 5 s makes the worker "
        "hand its newest job back to the queue (one per 5 s); 0: never",
    )
    source_idle_timeout_s: float = Field(
        default=300.0, gt=0, description="a source with no audio this long is treated as closed"
    )
    status_interval_s: float = Field(default=5.0, gt=0, description="worker status period")
    worker_id: str = Field(
        default_factory=default_worker_id,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="name in status reports; default host name and process id",
    )

    def worker_options(self) -> WorkerOptions:
        """How the job loop runs, and the work-queue consumer the worker creates."""
        return WorkerOptions(
            worker_id=self.worker_id,
            status_interval_s=self.status_interval_s,
            degrade_lag_s=self.degrade_lag_s,
            admit_cpu_share=self.admit_cpu_share,
            admit_settle_s=self.admit_settle_s,
            admit_prior_cpu_per_audio_s=self.admit_prior_cpu_per_audio_s,
            hand_back_lag_s=self.hand_back_lag_s,
            source_idle_timeout_s=self.source_idle_timeout_s,
            limits=self.topology_limits(),
        )
