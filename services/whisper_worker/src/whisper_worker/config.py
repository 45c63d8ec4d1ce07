"""Settings of the whisper worker (``ECHOSTREAM_WHISPER_*`` plus the common ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from echostream_shared.segmented.settings import SegmentedWorkerSettings

REPO_MODEL = Path(__file__).resolve().parents[4] / "models" / "ggml-tiny.en.bin"


class WhisperWorkerSettings(SegmentedWorkerSettings):
    """How a whisper worker runs."""

    model_config = SettingsConfigDict(env_prefix="ECHOSTREAM_WHISPER_")

    model_path: Path = Field(default=REPO_MODEL, description="validated ggml model file")
    model_sha256: str | None = Field(
        default=None, description="expected sha256; else the provisioned .sha256 sidecar is used"
    )
    decoders: int = Field(default=1, ge=1, le=16, description="models loaded, one per thread")
    threads_per_decoder: int = Field(default=2, ge=1, le=64)
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
