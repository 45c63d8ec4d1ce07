"""Settings of the aggregator (``ECHOSTREAM_AGGREGATOR_*`` plus the common ones)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from echostream_shared.config import ServiceSettings
from echostream_shared.messages import Token

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/aggregator.db"


class AggregatorSettings(ServiceSettings):
    """How the aggregator stores and serves sessions."""

    model_config = SettingsConfigDict(env_prefix="ECHOSTREAM_AGGREGATOR_")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://…",
    )
    http_host: str = Field(default="127.0.0.1")
    http_port: int = Field(default=8100, ge=0, le=65535, description="0 picks a free port")
    api_token: SecretStr | None = Field(
        default=None,
        description="when set, every /v1 request needs 'Authorization: Bearer <token>'",
    )
    primary_engine: Token = Field(default="whisper")
    page_size: int = Field(default=50, ge=1, le=1000, description="sessions per page by default")
    max_page_size: int = Field(default=200, ge=1, le=1000)
    summary_max_wait_s: float = Field(
        default=10.0,
        ge=0,
        le=30,
        description="longest a stored-session request (capture's summary) waits for completion",
    )
    consumer_batch: int = Field(default=32, ge=1, le=1000)
    consumer_ack_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="how long a message fetched by a crashed aggregator waits before redelivery; "
        "applied when the consumer is created",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="comma-separated origins whose browser pages may call the API; empty: CORS off",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
