"""Async facade over faster-whisper: one CTranslate2 model, clips of many streams decoded in batches.

faster-whisper's ``transcribe`` pads every clip to Whisper's 30 s window before encoding, and its
long-form loop decodes a second window from the last word on whenever the first does not end on a
lone timestamp: on a few seconds of speech that second pass, with its own full 30 s encode, cost
as much as the first (measured). A clip here is never longer than one window (the policy's
segments are at most 28 s with their pads), so each decode is one window: the clip's features
plus a margin of padding are encoded (CTranslate2 accepts inputs shorter than 30 s; the margin
keeps Whisper from repeating itself on short inputs, as ``audio_ctx`` does for whisper.cpp), then
decoded as faster-whisper's own pieces do (``generate_with_fallback``: its thresholds and
temperature fallback; ``add_word_timestamps``: its word alignment), with its no-speech rule. The
shared guards screen every decode.

Concurrent ``transcribe`` calls (the streams of one worker) are gathered by a ``BatchScheduler``
and decoded together by a ``BatchDecoder`` (``batch_decode``): first-text partials, finals, then later partials; clips of
similar length in one CTranslate2 encode, generate and align.

The model loads when the transcriber is built, so a directory CTranslate2 cannot read fails at
start-up, not at the first audio. CTranslate2 models are thread-safe: ``decoders`` batch threads
share one model with as many inter-op workers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel  # type: ignore[import-untyped]
from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped]
from faster_whisper.transcribe import TranscriptionOptions  # type: ignore[import-untyped]

from echostream_shared.segmented import guards
from echostream_shared.segmented.decoding import Decoded, Purpose
from fasterwhisper_worker.batch_decode import (
    FULL_WINDOW,
    MIN_WINDOW,
    PARTIAL_MARGIN_S,
    SAMPLE_RATE,
    BatchDecoder,
    Clip,
    Raw,
    encoder_window,
)
from fasterwhisper_worker.model_dir import ModelDir, ModelDirError
from fasterwhisper_worker.scheduler import BatchScheduler, SchedulerClosedError

__all__ = ["FULL_WINDOW", "MIN_WINDOW", "FasterWhisperConfig", "FasterWhisperTranscriber"]
__all__ += ["encoder_window", "load_model"]

FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True, slots=True)
class FasterWhisperConfig:
    model: ModelDir
    compute_type: str = "int8"
    threads: int = 1  # CTranslate2 threads per batch
    decoders: int = 2  # batches decoded at once
    language: str = "en"
    beam_size: int = 1
    final_margin_s: float = 2.56  # 0: Whisper's full 30 s window
    temperature_fallback: bool = False
    batch_max: int = 16  # clips per batch
    batch_gather_s: float = 0.005  # an idle decoder waits this long for concurrent clips
    guards: guards.GuardConfig = field(default_factory=guards.GuardConfig)


def load_model(config: FasterWhisperConfig) -> WhisperModel:
    """The model of a validated directory; CTranslate2's refusal becomes a ``ModelDirError``."""
    try:
        return WhisperModel(
            str(config.model.path),
            device="cpu",
            compute_type=config.compute_type,
            cpu_threads=config.threads,
            num_workers=config.decoders,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelDirError(
            f"CTranslate2 cannot load {config.model.path}: {type(exc).__name__}: {exc}"
        ) from None


class FasterWhisperTranscriber:
    """Decodes clips off the event loop, in batches across callers; safe to share between streams."""

    def __init__(self, config: FasterWhisperConfig) -> None:
        self.config = config
        self._model = load_model(config)
        tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language=config.language,
        )
        self._decoder = BatchDecoder(
            self._model, tokenizer, _options(config), config.guards.silence_dbfs
        )
        self._scheduler: BatchScheduler[Clip, Raw] = BatchScheduler(
            self._decoder.decode,
            lambda clip: clip.rank,
            max_batch=config.batch_max,
            gather_s=config.batch_gather_s,
            threads=config.decoders,
            name="ct2",
        )
        self._closed = False

    async def warm_up(self) -> None:
        """A decode of silence-free noise per decoder, so no stream pays a first call."""
        noise = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
        clip = Clip(noise, "partial", None, PARTIAL_MARGIN_S)
        await asyncio.gather(*(self._scheduler.submit(clip) for _ in range(self.config.decoders)))

    async def transcribe(
        self, audio: npt.NDArray[np.float32], *, purpose: Purpose, prompt: str | None = None
    ) -> Decoded:
        if self._closed:
            raise RuntimeError("transcriber is closed")
        samples = np.ascontiguousarray(np.asarray(audio).reshape(-1), dtype=np.float32)
        audio_s = len(samples) / SAMPLE_RATE
        peak = guards.peak_frame_dbfs(samples)
        language = self.config.language
        if len(samples) == 0 or peak < self.config.guards.silence_dbfs:
            return Decoded("", (), language, None, 0.0, 0.0, audio_s, 0, purpose, "silence")
        try:
            raw = await self._scheduler.submit(
                Clip(samples, purpose, prompt, self._margin_s(purpose))
            )
        except SchedulerClosedError:
            raise RuntimeError("transcriber is closed") from None
        words, rejected = guards.screen(
            raw.words,
            confidence=raw.confidence,
            peak_dbfs=peak,
            audio_s=audio_s,
            config=self.config.guards,
        )
        return Decoded(
            " ".join(w.text for w in words),
            words,
            language,
            raw.confidence,
            raw.decode_s,
            raw.cpu_s,
            audio_s,
            raw.window // 2 if raw.window < FULL_WINDOW else 0,
            purpose,
            rejected,
        )

    @property
    def queued(self) -> int:
        """Clips waiting for a batch."""
        return self._scheduler.queued

    @property
    def batches(self) -> int:
        """Batches decoded so far."""
        return self._scheduler.batches

    async def aclose(self) -> None:
        """Queued decodes fail with ``RuntimeError``; a running batch ends alone."""
        if self._closed:
            return
        self._closed = True
        self._scheduler.close()

    def _margin_s(self, purpose: Purpose) -> float | None:
        """Padding beyond the clip in the encoder window; None: the full 30 s."""
        if purpose == "partial":
            return PARTIAL_MARGIN_S
        return self.config.final_margin_s or None


def _options(config: FasterWhisperConfig) -> dict[Purpose, TranscriptionOptions]:
    """Decoding options per purpose: partials greedy with no fallback, finals as configured."""
    final = TranscriptionOptions(
        beam_size=config.beam_size,
        best_of=5,
        patience=1.0,
        length_penalty=1.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        log_prob_threshold=-1.0,
        no_speech_threshold=0.6,
        compression_ratio_threshold=2.4,
        condition_on_previous_text=False,
        prompt_reset_on_temperature=0.5,
        temperatures=list(FALLBACK_TEMPERATURES if config.temperature_fallback else (0.0,)),
        initial_prompt=None,
        prefix=None,
        suppress_blank=True,
        suppress_tokens=[-1],
        without_timestamps=False,
        max_initial_timestamp=1.0,
        word_timestamps=True,
        prepend_punctuations="\"'“¿([{-",
        append_punctuations="\"'.。,，!！?？:：”)]}、",
        multilingual=False,
        max_new_tokens=None,
        clip_timestamps="0",
        hallucination_silence_threshold=None,
        hotwords=None,
    )
    partial = replace(final, beam_size=1, temperatures=[0.0])
    return {"final": final, "partial": partial}
