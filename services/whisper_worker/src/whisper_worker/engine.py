"""The whisper.cpp engine of a worker: a validated model, its decoders, and streams on it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from whisper_worker import metrics
from whisper_worker.config import WhisperWorkerSettings
from whisper_worker.model_file import ModelInfo, validate_model_file
from whisper_worker.streaming import SourceStream, StreamCheckpoint, StreamConfig
from whisper_worker.transcriber import Decoded, Purpose, TranscriberConfig, WhisperTranscriber


class _Timed:
    """Records every decode's wall time in the worker's metrics."""

    def __init__(self, transcriber: WhisperTranscriber) -> None:
        self._transcriber = transcriber

    async def transcribe(
        self, audio: npt.NDArray[np.float32], *, purpose: Purpose, prompt: str | None = None
    ) -> Decoded:
        decoded = await self._transcriber.transcribe(audio, purpose=purpose, prompt=prompt)
        if decoded.decode_s > 0:
            metrics.DECODE_SECONDS.labels(purpose).observe(decoded.decode_s)
        return decoded


class WhisperEngine:
    """Opens per-source streams that share one pool of whisper.cpp decoders.

    Raises ``ModelFileError`` on construction when the model is missing, truncated, not a ggml
    Whisper model or does not match its checksum, so no bad file ever reaches whisper.cpp.
    """

    def __init__(self, settings: WhisperWorkerSettings) -> None:
        self.model: ModelInfo = validate_model_file(
            settings.model_path, expected_sha256=settings.model_sha256
        )
        self._transcriber = WhisperTranscriber(
            TranscriberConfig(
                model_path=self.model.path,
                threads=settings.threads_per_decoder,
                workers=settings.decoders,
                sha256=self.model.sha256,
                temperature_inc=0.2 if settings.temperature_fallback else 0.0,
                final_ctx_margin=settings.final_ctx_margin,
            )
        )
        self._stream_config = StreamConfig(
            max_segment_s=settings.max_segment_s,
            partial_interval_s=settings.partial_interval_s,
            max_lag_for_partials_s=settings.degrade_lag_s / 2,
        )

    def open_stream(self, resume: StreamCheckpoint | None) -> SourceStream:
        """A new stream, or one that carries on from a checkpoint."""
        return SourceStream(_Timed(self._transcriber), self._stream_config, resume)

    async def warm_up(self) -> None:
        """Load the model into every decoder now rather than on the first audio."""
        await self._transcriber.warm_up()

    async def aclose(self) -> None:
        await self._transcriber.aclose()
