"""The whisper.cpp transcriber of a worker, built from its settings on a validated model file."""

from __future__ import annotations

from whisper_worker.config import WhisperWorkerSettings
from whisper_worker.model_file import validate_model_file
from whisper_worker.transcriber import TranscriberConfig, WhisperTranscriber


def whisper_transcriber(settings: WhisperWorkerSettings) -> WhisperTranscriber:
    """The transcriber the settings ask for.

    Raises ``ModelFileError`` when the model is missing, truncated, not a ggml Whisper model or
    does not match its checksum, so no bad file ever reaches whisper.cpp.
    """
    model = validate_model_file(settings.model_path, expected_sha256=settings.model_sha256)
    return WhisperTranscriber(
        TranscriberConfig(
            model_path=model.path,
            threads=settings.threads_per_decoder,
            workers=settings.decoders,
            sha256=model.sha256,
            temperature_inc=0.2 if settings.temperature_fallback else 0.0,
            final_ctx_margin=settings.final_ctx_margin,
        )
    )
