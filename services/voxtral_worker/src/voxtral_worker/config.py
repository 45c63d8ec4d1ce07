"""Settings of the Voxtral worker (``ECHOSTREAM_VOXTRAL_*`` plus the common ones)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from echostream_shared.config import WorkerSettings

DEFAULT_MODEL = "mistralai/Voxtral-Mini-4B-Realtime-2602"
REALTIME_PATH = "/v1/realtime"


def realtime_url(url: str) -> str:
    """The ``/v1/realtime`` WebSocket URL of a vLLM server given as ws(s):// or http(s)://."""
    parts = urlsplit(url.strip())
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not a vLLM URL (ws://, wss://, http:// or https://): {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(REALTIME_PATH):
        path = path.removesuffix("/v1") + REALTIME_PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class VoxtralWorkerSettings(WorkerSettings):
    """How a Voxtral worker runs."""

    model_config = SettingsConfigDict(env_prefix="ECHOSTREAM_VOXTRAL_")

    vllm_url: str = Field(
        default="ws://127.0.0.1:8001/v1/realtime",
        description="comma-separated vLLM servers (ws:// or http:// base); /v1/realtime is added",
    )
    model: str = Field(
        default=DEFAULT_MODEL, description="the served model name (vLLM --served-model-name)"
    )
    api_key: SecretStr | None = Field(
        default=None, description="vLLM --api-key, sent as a bearer token"
    )
    max_streams: int = Field(
        default=4, ge=1, le=256, description="concurrent streams per vLLM server"
    )
    chunk_ms: int = Field(default=80, ge=20, le=1000, description="audio per append event")
    delay_ms: int = Field(
        default=480,
        ge=80,
        le=2400,
        description="the model's transcription_delay_ms (tekken.json); a multiple of 80",
    )
    keepalive_s: float = Field(
        default=5.0, gt=0, description="silence is sent after this long without source audio"
    )
    stall_s: float = Field(
        default=10.0, gt=0, description="no event this long while tokens are due: reconnect"
    )
    done_timeout_s: float = Field(
        default=15.0, gt=0, description="transcription.done this late after the final: reconnect"
    )
    reconnect_min_s: float = Field(
        default=0.5, gt=0, description="first reconnect backoff; it doubles per failure"
    )
    reconnect_max_s: float = Field(default=15.0, gt=0, description="longest reconnect backoff")
    reconnect_attempts: int = Field(
        default=8, ge=1, description="failed connections in a row before a job is handed back"
    )
    rollover_tokens: int = Field(
        default=36_000,
        ge=20,
        description="a generation this long (80 ms each: 48 min) is renewed at the next pause",
    )
    max_segment_s: float = Field(
        default=30.0, ge=5, description="speech this long without a pause is cut at a word"
    )
    vad_latency_s: float = Field(
        default=2.0,
        ge=0,
        description="how late capture may report a speech start; silence older is forgotten",
    )

    @field_validator("delay_ms")
    @classmethod
    def _whole_tokens(cls, delay_ms: int) -> int:
        if delay_ms % 80:
            raise ValueError("the model's delay is a multiple of 80 ms")
        return delay_ms

    @field_validator("vllm_url")
    @classmethod
    def _valid_urls(cls, value: str) -> str:
        urls = [realtime_url(url) for url in value.split(",") if url.strip()]
        if not urls:
            raise ValueError("at least one vLLM URL is needed")
        return ",".join(urls)

    @property
    def vllm_urls(self) -> list[str]:
        return self.vllm_url.split(",")
