"""The faster-whisper transcriber of a worker, built from its settings on a validated directory."""

from __future__ import annotations

from fasterwhisper_worker.config import FasterWhisperWorkerSettings
from fasterwhisper_worker.model_dir import validate_model_dir
from fasterwhisper_worker.transcriber import FasterWhisperConfig, FasterWhisperTranscriber


def fasterwhisper_transcriber(settings: FasterWhisperWorkerSettings) -> FasterWhisperTranscriber:
    """The transcriber the settings ask for, its model loaded.

    Raises ``ModelDirError`` when the directory is missing, incomplete, does not match its
    checksum, or CTranslate2 cannot load it; nothing is ever downloaded.
    """
    model = validate_model_dir(settings.model_dir, settings.model_sha256)
    return FasterWhisperTranscriber(
        FasterWhisperConfig(
            model=model,
            compute_type=settings.compute_type,
            threads=settings.threads,
            decoders=settings.decoders,
            beam_size=settings.beam_size,
            final_margin_s=settings.final_margin_s,
            temperature_fallback=settings.temperature_fallback,
            batch_max=settings.batch_max,
            batch_gather_s=settings.batch_gather_ms / 1000,
        )
    )
