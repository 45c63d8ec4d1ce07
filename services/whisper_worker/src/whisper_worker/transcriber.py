"""Async facade over pywhispercpp: one model per executor thread, explicit parameters, guarded output.

pywhispercpp hazards this module exists to contain (reference/whisper-cpp-offline-models.md):
a ``Model`` shared by two threads crashes the process; a bad model file segfaults on first use and a
missing path triggers a hub download; non-contiguous or int16 arrays give garbage silently; and every
decode parameter is sticky across calls. So the file is validated up front (``model_file``), each
executor thread lazily builds its own ``Model``, audio is made contiguous float32, and every call
sets every parameter but ``suppress_regex``, which must stay unset (see ``_params``).

Two more, found while building this: with flash attention (whisper.cpp's default) the decoder reads
cross-attention frames up to the next multiple of 256, which hold an earlier call's audio whenever
``audio_ctx`` changes between calls, so partials and finals corrupted each other (flash attention is
off here); and a temperature fallback on a 1 s clip can run for 30 s (partials get a token cap and
no fallback).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _pywhispercpp as pw  # type: ignore[import-not-found]
import numpy as np
import numpy.typing as npt
from pywhispercpp.model import Model

from echostream_shared.segmented import guards
from echostream_shared.segmented.decoding import Decoded, DecodedWord, Purpose
from whisper_worker.model_file import ModelInfo, validate_model_file

SAMPLE_RATE = 16_000
FULL_AUDIO_CTX = 1500  # encoder frames in Whisper's 30 s window
CTX_PER_SECOND = 50
MIN_PARTIAL_CTX = 256
PARTIAL_TOKENS_PER_S = 5.0  # a cap on partial decodes, above fast speech (~4 tokens/s)
FINAL_TOKENS_PER_S = 7.0


@dataclass(frozen=True, slots=True)
class TranscriberConfig:
    model_path: Path
    threads: int = 2  # whisper.cpp threads for finals
    partial_threads: int = 1  # a second thread does not speed up a short partial decode
    workers: int = 1  # executor threads, each with its own Model (~145 MB for tiny.en)
    language: str = "en"
    sha256: str | None = None
    partial_ctx_max_audio_s: float = 10.0  # reduced audio_ctx is only safe on short audio
    partial_ctx_margin: int = 64  # encoder frames added to the audio's own length
    # finals: the same, with a wider margin (0: Whisper's full 30 s window). On the dev split a
    # 256-frame margin matched full context's WER at 40 % of its CPU; 64 lost 0.35 points
    final_ctx_margin: int = 256
    temperature_inc: float = 0.2  # finals: whisper's temperature fallback against loops
    best_of: int = 5
    guards: guards.GuardConfig = field(default_factory=guards.GuardConfig)


def partial_audio_ctx(audio_s: float, margin: int, max_audio_s: float) -> int:
    """Encoder frames for a partial decode: the audio's length plus a margin, or 0 (full) when long.

    Below 256 frames tiny.en agrees much less with a full decode on 1-2 s clips, for little saving.
    """
    if audio_s > max_audio_s:
        return 0
    return reduced_audio_ctx(audio_s, margin)


def reduced_audio_ctx(audio_s: float, margin: int) -> int:
    """The audio's encoder frames plus ``margin``, in multiples of 32; 0 (full) when that is all."""
    frames = max(MIN_PARTIAL_CTX, math.ceil(audio_s * CTX_PER_SECOND) + margin)
    ctx = 32 * math.ceil(frames / 32)
    return 0 if ctx >= FULL_AUDIO_CTX else ctx


def as_float32(audio: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """1-D contiguous float32 in [-1, 1]; int16 PCM is scaled (whisper.cpp would not)."""
    flat = np.asarray(audio).reshape(-1)
    if flat.dtype == np.int16:
        flat = flat.astype(np.float32) / 32768.0
    return np.ascontiguousarray(flat, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class _Raw:
    words: tuple[DecodedWord, ...]
    language: str
    confidence: float | None
    decode_s: float


class WhisperTranscriber:
    """Decodes audio clips off the event loop; safe to share between streams."""

    def __init__(self, config: TranscriberConfig) -> None:
        self.config = config
        self.model_info: ModelInfo = validate_model_file(
            config.model_path, expected_sha256=config.sha256
        )
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="whisper")
        self._local = threading.local()
        self._models: list[Model] = []
        self._lock = threading.Lock()
        self._closed = False

    async def __aenter__(self) -> WhisperTranscriber:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def warm_up(self) -> None:
        """Load the model in every executor thread now rather than on the first decode."""
        barrier = threading.Barrier(self.config.workers)
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(
                loop.run_in_executor(self._pool, self._load_waiting, barrier)
                for _ in range(self.config.workers)
            )
        )

    async def transcribe(
        self, audio: npt.NDArray[Any], *, purpose: Purpose, prompt: str | None = None
    ) -> Decoded:
        """Decode one clip (16 kHz mono), with the encoder window cut to the clip (see ``_audio_ctx``)."""
        if self._closed:
            raise RuntimeError("transcriber is closed")
        samples = as_float32(audio)
        audio_s = len(samples) / SAMPLE_RATE
        peak = guards.peak_frame_dbfs(samples)
        params = self._params(purpose, audio_s, prompt)
        if len(samples) == 0 or peak < self.config.guards.silence_dbfs:
            ctx = params["audio_ctx"]
            return Decoded(
                "", (), self.config.language, None, 0.0, 0.0, audio_s, ctx, purpose, "silence"
            )
        loop = asyncio.get_running_loop()
        raw = await loop.run_in_executor(self._pool, self._decode, samples, params)
        return self._guarded(raw, peak, params, audio_s, purpose)

    async def aclose(self) -> None:
        """Stop the executor without waiting: queued decodes are dropped, a running one ends alone."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._models.clear()

    def _audio_ctx(self, purpose: Purpose, audio_s: float) -> int:
        """Encoder frames: partials a tight window up to 10 s, finals a 5 s margin (0 = full).

        A window narrower than the audio ruins the text (the reference's fixed 512 frames on 30 s);
        one as wide as the audio plus a margin of padding does not (measured on the dev split).
        """
        cfg = self.config
        if purpose == "final":
            return reduced_audio_ctx(audio_s, cfg.final_ctx_margin) if cfg.final_ctx_margin else 0
        return partial_audio_ctx(audio_s, cfg.partial_ctx_margin, cfg.partial_ctx_max_audio_s)

    def _params(self, purpose: Purpose, audio_s: float, prompt: str | None) -> dict[str, Any]:
        """Every decode parameter, every call: pywhispercpp keeps whatever the last call set.

        Partials are disposable, so they get a bounded cost: one segment, a tight token cap and no
        temperature fallback (a fallback on a 1 s clip can cost 30 s). Finals keep the fallback,
        under a looser cap (a 1 s final once took 15 CPU-s without one).

        ``suppress_regex`` is the one parameter left unset: the Model starts with none, and any
        string, even an empty one, makes whisper.cpp match a regex against all 51,864 vocabulary
        entries at every token, about 11 ms per token (a third of a 12 s final's decode, measured).
        """
        partial = purpose == "partial"
        return {
            "n_threads": self.config.partial_threads if partial else self.config.threads,
            "audio_ctx": self._audio_ctx(purpose, audio_s),
            "initial_prompt": prompt or "",
            "prompt_tokens": None,
            "carry_initial_prompt": False,
            "n_max_text_ctx": 16384,
            "offset_ms": 0,
            "duration_ms": 0,
            "translate": False,
            "no_context": True,
            "no_timestamps": False,
            "single_segment": partial,
            "print_special": False,
            "print_progress": False,
            "print_realtime": False,
            "print_timestamps": False,
            "token_timestamps": True,
            "thold_pt": 0.01,
            "thold_ptsum": 0.01,
            "max_len": 0,
            "split_on_word": False,
            "max_tokens": self._max_tokens(purpose, audio_s),
            "debug_mode": False,
            "tdrz_enable": False,
            "language": self.config.language,
            "detect_language": False,
            "suppress_blank": True,
            "suppress_nst": True,
            "temperature": 0.0,
            "temperature_inc": 0.0 if partial else self.config.temperature_inc,
            "max_initial_ts": 1.0,
            "length_penalty": -1.0,
            "entropy_thold": 2.4,
            "logprob_thold": -1.0,
            "no_speech_thold": 0.6,
            "greedy": {"best_of": self.config.best_of},
            "vad": False,
        }

    @staticmethod
    def _max_tokens(purpose: Purpose, audio_s: float) -> int:
        """A cap on tokens per decoding pass, so a loop (and each fallback retrying it) ends early.

        Finals get room for fast speech plus timestamps; whisper.cpp carries on after a capped pass.
        """
        if purpose == "partial":
            return math.ceil(PARTIAL_TOKENS_PER_S * audio_s) + 10
        return math.ceil(FINAL_TOKENS_PER_S * audio_s) + 20

    def _model(self) -> Model:
        model: Model | None = getattr(self._local, "model", None)
        if model is None:
            # flash attention reads stale cross-attention frames when audio_ctx changes between
            # calls (whisper.cpp pads the view to 256 frames but writes only audio_ctx of them)
            model = Model(
                str(self.model_info.path),
                context_params={"flash_attn": False},
                redirect_whispercpp_logs_to=None,
                n_threads=self.config.threads,
                print_progress=False,
            )
            self._local.model = model
            with self._lock:
                self._models.append(model)
        return model

    def _load_waiting(self, barrier: threading.Barrier) -> None:
        self._model()
        barrier.wait(timeout=60)

    def _decode(self, samples: npt.NDArray[np.float32], params: dict[str, Any]) -> _Raw:
        """Runs on an executor thread with that thread's own Model."""
        model = self._model()
        start = time.perf_counter()
        model.transcribe(samples, new_segment_callback=None, abort_callback=None, **params)
        elapsed = time.perf_counter() - start
        ctx = getattr(model, "_ctx")  # noqa: B009  (not in the stubs)
        words, probs = _words(ctx)
        language = str(pw.whisper_lang_str(pw.whisper_full_lang_id(ctx)) or self.config.language)
        confidence = float(np.mean(probs)) if probs else None
        return _Raw(tuple(words), language, confidence, elapsed)

    def _guarded(
        self, raw: _Raw, peak: float, params: dict[str, Any], audio_s: float, purpose: Purpose
    ) -> Decoded:
        words, rejected = guards.screen(
            raw.words,
            confidence=raw.confidence,
            peak_dbfs=peak,
            audio_s=audio_s,
            config=self.config.guards,
        )
        cpu = raw.decode_s * params["n_threads"]
        ctx = params["audio_ctx"]
        return Decoded(
            " ".join(w.text for w in words),
            words,
            raw.language,
            raw.confidence,
            raw.decode_s,
            cpu,
            audio_s,
            ctx,
            purpose,
            rejected,
        )


def _words(ctx: Any) -> tuple[list[DecodedWord], list[float]]:
    """Words from whisper.cpp's token data: a token starting with a space starts a new word."""
    eot = pw.whisper_token_eot(ctx)
    words: list[DecodedWord] = []
    probs: list[float] = []
    pieces: list[bytes] = []
    tokens: list[Any] = []
    for seg in range(pw.whisper_full_n_segments(ctx)):
        for tok in range(pw.whisper_full_n_tokens(ctx, seg)):
            data = pw.whisper_full_get_token_data(ctx, seg, tok)
            if data.id >= eot:
                continue
            piece = bytes(pw.whisper_token_to_bytes(ctx, data.id))
            probs.append(float(data.p))
            if piece.startswith(b" ") and pieces:
                words.append(_word(pieces, tokens))
                pieces, tokens = [], []
            pieces.append(piece)
            tokens.append(data)
    if pieces:
        words.append(_word(pieces, tokens))
    return [w for w in words if w.text], probs


def _word(pieces: Sequence[bytes], tokens: Sequence[Any]) -> DecodedWord:
    text = b"".join(pieces).decode("utf-8", errors="replace").strip()
    start = min(int(t.t0) for t in tokens) / 100.0
    end = max(int(t.t1) for t in tokens) / 100.0
    prob = float(np.mean([float(t.p) for t in tokens]))
    return DecodedWord(text, start, max(start, end), prob)
