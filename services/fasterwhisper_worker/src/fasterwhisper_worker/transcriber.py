"""Async facade over faster-whisper: one CTranslate2 model, one window per clip, cut to the clip.

faster-whisper's ``transcribe`` pads every clip to Whisper's 30 s window before encoding, and its
long-form loop decodes a second window from the last word on whenever the first does not end on a
lone timestamp: on a few seconds of speech that second pass, with its own full 30 s encode, cost
as much as the first (measured). A clip here is never longer than one window (the policy's
segments are at most 28 s with their pads), so each decode is one window: the clip's features
plus a margin of padding are encoded (CTranslate2 accepts inputs shorter than 30 s; the margin
keeps Whisper from repeating itself on short inputs, as ``audio_ctx`` does for whisper.cpp), then
faster-whisper's own pieces decode it (``generate_with_fallback``: its thresholds and temperature
fallback; ``add_word_timestamps``: its word alignment), with its no-speech rule. The shared
guards screen every decode.

The model loads when the transcriber is built, so a directory CTranslate2 cannot read fails at
start-up, not at the first audio. CTranslate2 models are thread-safe: ``decoders`` executor
threads share one model with as many inter-op workers.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads starve a shared core

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from faster_whisper import WhisperModel  # type: ignore[import-untyped]  # noqa: E402
from faster_whisper.audio import pad_or_trim  # type: ignore[import-untyped]  # noqa: E402
from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped]  # noqa: E402
from faster_whisper.transcribe import TranscriptionOptions  # type: ignore[import-untyped]  # noqa: E402

from echostream_shared.segmented import guards  # noqa: E402
from echostream_shared.segmented.decoding import Decoded, DecodedWord, Purpose  # noqa: E402
from fasterwhisper_worker.model_dir import ModelDir, ModelDirError  # noqa: E402

SAMPLE_RATE = 16_000
FRAMES_PER_S = 100  # mel frames; the encoder halves them (Whisper's 1500 frames per 30 s)
FULL_WINDOW = 3000
MIN_WINDOW = 512  # below ~5 s of window tiny.en agrees much less with a full decode
WINDOW_STEP = 64
PARTIAL_MARGIN_S = 1.28
PARTIAL_TOKENS_PER_S = 5.0  # a cap on partial decodes, above fast speech (~4 tokens/s)
FINAL_TOKENS_PER_S = 10.0  # timestamps and punctuation are tokens too
MAX_WINDOWS = 3  # a clip is at most 28 s: one window, and a second for what Whisper left over
MIN_REST_S = 1.0  # audio after the last word worth another window
MAX_SAMPLED_TOKENS = 224  # Whisper samples at most half its 448-token context per window
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True, slots=True)
class FasterWhisperConfig:
    model: ModelDir
    compute_type: str = "int8"
    threads: int = 2
    decoders: int = 1
    language: str = "en"
    beam_size: int = 1
    final_margin_s: float = 2.56  # 0: Whisper's full 30 s window
    temperature_fallback: bool = False
    guards: guards.GuardConfig = field(default_factory=guards.GuardConfig)


def encoder_window(audio_s: float, margin_s: float) -> int:
    """Mel frames to encode: the clip plus a margin, in steps of 64, at least ~5 s, at most 30 s."""
    frames = max(MIN_WINDOW, math.ceil((audio_s + margin_s) * FRAMES_PER_S))
    return min(FULL_WINDOW, WINDOW_STEP * math.ceil(frames / WINDOW_STEP))


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
    """Decodes clips off the event loop; safe to share between streams."""

    def __init__(self, config: FasterWhisperConfig) -> None:
        self.config = config
        self._model = load_model(config)
        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language=config.language,
        )
        self._options = _options(config)
        self._pool = ThreadPoolExecutor(max_workers=config.decoders, thread_name_prefix="ct2")
        self._closed = False

    async def warm_up(self) -> None:
        """One decode of silence-free noise, so the first stream does not pay the first call."""
        noise = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._decode, noise, "partial", None)

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
        loop = asyncio.get_running_loop()
        raw = await loop.run_in_executor(self._pool, self._decode, samples, purpose, prompt)
        words, rejected = guards.screen(
            raw.words, confidence=raw.confidence, peak_dbfs=peak, config=self.config.guards
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

    async def aclose(self) -> None:
        """Stop the executor without waiting: queued decodes are dropped, a running one ends alone."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _margin_s(self, purpose: Purpose) -> float | None:
        """Padding beyond the clip in the encoder window; None: the full 30 s."""
        if purpose == "partial":
            return PARTIAL_MARGIN_S
        return self.config.final_margin_s or None

    def _decode(
        self, samples: npt.NDArray[np.float32], purpose: Purpose, prompt: str | None
    ) -> _Raw:
        """Runs on an executor thread: windows from the clip's start, each cut to what is left."""
        model, tokenizer = self._model, self._tokenizer
        wall0, cpu0 = time.perf_counter(), time.process_time()
        features = model.feature_extractor(samples)
        content = features.shape[-1] - 1
        margin = self._margin_s(purpose)
        previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
        words: list[DecodedWord] = []
        windows: list[int] = []
        seek = 0
        while seek < content and len(windows) < MAX_WINDOWS:
            size = min(FULL_WINDOW, content - seek)
            window = FULL_WINDOW if margin is None else encoder_window(size / FRAMES_PER_S, margin)
            windows.append(window)
            decoded, finished = self._window(features, seek, size, window, purpose, previous)
            if words and _heard_already(words, decoded):
                break  # the rest was breath or noise, and Whisper repeated the window before it
            # a word at the seam may be heard by both windows
            drop = guards.boundary_overlap([w.text for w in words], [w.text for w in decoded])
            words += decoded[drop:]
            rest = samples[round(words[-1].end_s * SAMPLE_RATE) :] if decoded else samples[:0]
            if finished or not decoded or len(rest) < SAMPLE_RATE * MIN_REST_S:
                break
            if guards.peak_frame_dbfs(rest) < self.config.guards.silence_dbfs:
                break
            # Whisper stopped before the clip's end, leaving the rest to a next window, which is
            # not conditioned on the text before it (Whisper copies a prompt onto noise)
            seek, previous = round(words[-1].end_s * FRAMES_PER_S), []
        confidence = float(np.mean([w.probability for w in words])) if words else None
        cpu_s = time.process_time() - cpu0
        return _Raw(tuple(words), confidence, time.perf_counter() - wall0, cpu_s, windows[0])

    def _window(
        self,
        features: npt.NDArray[np.float32],
        seek: int,
        size: int,
        window: int,
        purpose: Purpose,
        previous: list[int],
    ) -> tuple[list[DecodedWord], bool]:
        """One window's words (seconds from the clip's start), and whether Whisper said the
        window's speech is complete (a lone timestamp at the end)."""
        model, tokenizer = self._model, self._tokenizer
        encoded = model.encode(pad_or_trim(features[:, seek : seek + size], window))
        options = replace(
            self._options[purpose], max_new_tokens=_max_tokens(purpose, size / FRAMES_PER_S)
        )
        result, avg_logprob, _, _ = model.generate_with_fallback(
            encoded, model.get_prompt(tokenizer, previous), tokenizer, options
        )
        tokens = list(result.sequences_ids[0])
        text = [token for token in tokens if token < tokenizer.eot]
        if _no_speech(result.no_speech_prob, avg_logprob, options) or not text:
            return [], True
        segment: dict[str, Any] = {
            "seek": seek,
            "start": seek / FRAMES_PER_S,
            "end": (seek + size) / FRAMES_PER_S,
            "tokens": tokens,
        }
        model.add_word_timestamps(
            [[segment]],
            tokenizer,
            encoded,
            size,
            options.prepend_punctuations,
            options.append_punctuations,
            last_speech_timestamp=seek / FRAMES_PER_S,
        )
        finished = len(tokens) >= 2 and tokens[-2] < tokenizer.timestamp_begin <= tokens[-1]
        return _words(segment.get("words", [])), finished


@dataclass(frozen=True, slots=True)
class _Raw:
    words: tuple[DecodedWord, ...]
    confidence: float | None
    decode_s: float
    cpu_s: float  # the process's CPU time over the decode: exact with one decoder at a time
    window: int


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


def _max_tokens(purpose: Purpose, audio_s: float) -> int:
    """A cap on tokens per decoding pass, so a loop (and each fallback retrying it) ends early."""
    rate, extra = (PARTIAL_TOKENS_PER_S, 10) if purpose == "partial" else (FINAL_TOKENS_PER_S, 20)
    return min(MAX_SAMPLED_TOKENS, math.ceil(rate * audio_s) + extra)


def _heard_already(before: list[DecodedWord], window: list[DecodedWord]) -> bool:
    """A follow-up window whose whole text repeats the words decoded before it."""
    said = guards.norm_text(" ".join(w.text for w in before))
    again = guards.norm_text(" ".join(w.text for w in window))
    return bool(again) and f" {again} " in f" {said} "


def _no_speech(no_speech_prob: float, avg_logprob: float, options: TranscriptionOptions) -> bool:
    """faster-whisper's rule: likely silence, unless the text was decoded confidently."""
    if options.no_speech_threshold is None or no_speech_prob <= options.no_speech_threshold:
        return False
    return options.log_prob_threshold is None or avg_logprob <= options.log_prob_threshold


def _words(aligned: list[dict[str, Any]]) -> list[DecodedWord]:
    """faster-whisper's aligned words (seconds from the clip's start), without empty ones."""
    words: list[DecodedWord] = []
    for word in aligned:
        text = str(word["word"]).strip()
        if text:
            start, end = float(word["start"]), float(word["end"])
            words.append(DecodedWord(text, start, max(start, end), float(word["probability"])))
    return words
