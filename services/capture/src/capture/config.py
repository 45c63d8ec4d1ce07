"""Settings of the capture service (``ECHOSTREAM_CAPTURE_*`` plus the common ones)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from echostream_shared.config import ServiceSettings
from echostream_shared.messages import Token

EngineName = Token


class CaptureSettings(ServiceSettings):
    """How the capture service listens, what it accepts and where audio goes."""

    model_config = SettingsConfigDict(env_prefix="ECHOSTREAM_CAPTURE_")

    host: str = Field(default="127.0.0.1", description="address the HTTP/WebSocket server binds")
    port: int = Field(default=8000, ge=0, le=65535, description="EchoPanel's default port")
    token: SecretStr | None = Field(
        default=None, description="bearer token every client must present; unset: no auth"
    )
    allow_anonymous: bool = Field(
        default=False,
        description="serve without a token on a non-loopback address (otherwise refuse to start)",
    )
    engines: Annotated[tuple[EngineName, ...], NoDecode] = Field(
        default=("whisper",), min_length=1, description="engines that transcribe every source"
    )
    echopanel_engine: EngineName = Field(
        default="whisper", description="engine whose transcript EchoPanel clients see"
    )
    chunk_ms: int = Field(default=100, ge=20, le=1000, description="audio per published chunk")
    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    vad_floor_dbfs: float = Field(
        default=-55.0, le=0, description="quieter windows are silence without running the model"
    )
    vad_pre_roll_ms: int = Field(default=300, ge=0, le=2000)
    vad_post_roll_ms: int = Field(default=200, ge=0, le=2000)
    vad_min_speech_ms: int = Field(default=64, ge=32, le=2000)
    vad_min_silence_ms: int = Field(
        default=1000,
        ge=32,
        le=5000,
        description="silence that ends a speech segment (native, EchoPanel, uploads; the OpenAI "
        "and Deepgram endpoints use 500 as their services do): shorter cuts sentences at inner "
        "pauses, and each part decodes worse",
    )
    max_connections: int = Field(default=500, ge=1, description="open WebSockets per process")
    max_message_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_session_s: float = Field(default=4 * 3600.0, gt=0, description="audio per source")
    min_sample_rate: int = Field(default=8000, ge=1000)
    max_sample_rate: int = Field(default=96000, le=384_000)
    max_channels: int = Field(default=2, ge=1, le=8)
    max_sources: int = Field(default=8, ge=1, le=64, description="sources per native session")
    backlog_max_s: float = Field(
        default=10.0, gt=0, description="audio a source may queue before reading pauses"
    )
    backlog_warn_s: float = Field(default=2.0, gt=0, description="queued audio that is reported")
    worker_lag_warn_s: float = Field(default=3.0, gt=0, description="worker lag that is reported")
    echopanel_flush_timeout_s: float = Field(
        default=8.0, gt=0, description="wait for the last finals after stop (client waits 10 s)"
    )
    finish_timeout_s: float = Field(
        default=60.0, gt=0, description="native/upload wait for everything to be transcribed"
    )
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    upload_speed: float = Field(
        default=10.0, ge=0, description="upload publishing pace in × real time; 0 is unlimited"
    )
    aggregator_url: str = Field(
        default="http://127.0.0.1:8100",
        description="the aggregator's HTTP API, which the browser page's library reaches through capture",
    )
    aggregator_token: SecretStr | None = Field(
        default=None, description="the aggregator's API token (ECHOSTREAM_AGGREGATOR_API_TOKEN)"
    )
    browser_token_ttl_s: float = Field(
        default=600.0, ge=10, le=86400, description="life of a token minted for a browser page"
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="comma-separated origins whose pages may call capture; empty: CORS off",
    )

    @field_validator("engines", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CaptureSettings:
        if self.echopanel_engine not in self.engines:
            raise ValueError(f"echopanel_engine {self.echopanel_engine!r} is not in engines")
        if self.min_sample_rate > self.max_sample_rate:
            raise ValueError("min_sample_rate exceeds max_sample_rate")
        if self.token is None and not self.allow_anonymous and not is_loopback(self.host):
            raise ValueError(
                f"binding {self.host} without a token: set ECHOSTREAM_CAPTURE_TOKEN "
                "(or ECHOSTREAM_CAPTURE_ALLOW_ANONYMOUS=true)"
            )
        return self

    @property
    def chunk_samples(self) -> int:
        """Samples of 16 kHz audio per published chunk."""
        return self.chunk_ms * 16


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
