"""Settings of the whisper worker (``ECHOSTREAM_WHISPER_*`` plus the common ones)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from echostream_shared.config import ServiceSettings

REPO_MODEL = Path(__file__).resolve().parents[4] / "models" / "ggml-tiny.en.bin"


def default_worker_id() -> str:
    """Host name and process id: unique per process, readable in status reports."""
    host = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in socket.gethostname())
    return f"{host[:40]}-{os.getpid()}"


class WhisperWorkerSettings(ServiceSettings):
    """How a whisper worker runs."""

    model_config = SettingsConfigDict(env_prefix="ECHOSTREAM_WHISPER_")

    model_path: Path = Field(default=REPO_MODEL, description="validated ggml model file")
    model_sha256: str | None = Field(
        default=None, description="expected sha256; else the provisioned .sha256 sidecar is used"
    )
    decoders: int = Field(default=1, ge=1, le=16, description="models loaded, one per thread")
    threads_per_decoder: int = Field(default=2, ge=1, le=64)
    max_streams: int = Field(default=4, ge=1, description="streams taken before pulling no more")
    partial_interval_s: float = Field(default=1.0, gt=0)
    max_segment_s: float = Field(
        default=25.0, ge=5, le=28, description="with its pads a segment must fit Whisper's 30 s"
    )
    final_ctx_margin: int = Field(
        default=256,
        ge=0,
        le=1500,
        description="encoder frames (20 ms) a final decodes beyond its audio; 0: Whisper's full "
        "30 s window (same accuracy on the dev split, 2.5x the CPU)",
    )
    temperature_fallback: bool = Field(
        default=False,
        description="re-decode doubtful finals at higher temperatures (Whisper's fallback); "
        "it can multiply the cost of a final by up to 25",
    )
    degrade_lag_s: float = Field(
        default=2.0, gt=0, description="above this lag a worker skips partials and takes no jobs"
    )
    source_idle_timeout_s: float = Field(
        default=300.0, gt=0, description="a source with no audio this long is treated as closed"
    )
    status_interval_s: float = Field(default=5.0, gt=0)
    worker_id: str = Field(default_factory=default_worker_id, pattern=r"^[A-Za-z0-9_-]{1,64}$")
