"""Decodes a batch of clips on one CTranslate2 Whisper model, with each clip's own semantics.

A clip is decoded in windows cut to its audio (see ``transcriber``): a first window, and a
follow-up window for what Whisper left over. A batch decodes segments' first-text partials
first, then finals, then the other partials (``Clip.rank``), each in rounds: every clip's next window is decoded in the same round. In a round, windows of
the same size (partials: of similar size, padded to the largest) form a group. Each window is
encoded alone (a batched ``encode`` measured 1.0-1.9x the CPU of lone ones on this CPU), the
encoder outputs of a group are stacked, and the group runs one ``generate`` per prompt length
(CTranslate2 requires the start token at one position in a batch; prompts are cut to their last
``PROMPT_TOKENS``, so most finals share one) and one ``align``. faster-whisper's own code
finishes each clip alone: its prompt, its word timing post-processing, its no-speech rule.

Per-clip semantics a shared ``generate`` cannot give are restored per clip, after the batch:

- a token cap per clip: the group generates up to its largest cap; a clip that ran past its own
  cap (a loop) is decoded again alone with its cap, so it gets what a lone decode gives;
- temperature fallback: a clip whose greedy decode needs it is decoded again alone with
  faster-whisper's ``generate_with_fallback`` (off by default);
- a final whose last words hold one longer than ``STRETCHED_WORD_S`` (Whisper stopped before the
  words after it and aligned it over their audio) starts over in Whisper's full window, which
  stops early less often, in the next round; the decode with fewer stretched seconds is kept.

A group that fails is retried one clip at a time, so one bad clip fails alone. CPU time is
measured per stage (``CpuLedger``: stages of concurrent batches share the time they overlap) and
charged to the clips that ran it: its own encode to each clip, a shared generate or align by
tokens.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from types import SimpleNamespace
from typing import Any

import ctranslate2  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel  # type: ignore[import-untyped]
from faster_whisper.audio import pad_or_trim  # type: ignore[import-untyped]
from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped]
from faster_whisper.transcribe import (  # type: ignore[import-untyped]
    TranscriptionOptions,
    get_compression_ratio,
)

from echostream_shared.segmented import guards
from echostream_shared.segmented.decoding import DecodedWord, Purpose
from fasterwhisper_worker.cpu_ledger import CpuLedger

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
# Whisper now and then stops before the last words of a window and aligns the words it ended on
# over their audio: a final with one of its last words this long is decoded again in Whisper's full
# 30 s window. Earlier words this long are a pause given to a word ("ask" after "fellow Americans")
STRETCHED_WORD_S = 1.5
STRETCHED_TAIL_WORDS = 2
FIRST_TEXT_MAX_S = 1.6  # a segment's first partial try (~1 s with the pad) and its retries
# a prompt's last tokens only: clips whose prompts have one length share a generate, and finals
# prompted with the words before them mostly reach this length
PROMPT_TOKENS = 16
MAX_SAMPLED_TOKENS = 224  # Whisper samples at most half its 448-token context per window
# A window joins a group when padded by at most this share. Padding changes a decode a little,
# and finals must decode as they do alone; partials' windows (5.12-6.4 s) then share one group.
GROUP_SLACK: dict[Purpose, float] = {"final": 0.0, "partial": 0.25}


def encoder_window(audio_s: float, margin_s: float) -> int:
    """Mel frames to encode: the clip plus a margin, in steps of 64, at least ~5 s, at most 30 s."""
    frames = max(MIN_WINDOW, math.ceil((audio_s + margin_s) * FRAMES_PER_S))
    return min(FULL_WINDOW, WINDOW_STEP * math.ceil(frames / WINDOW_STEP))


@dataclass(frozen=True, slots=True)
class Clip:
    """One ``transcribe`` call: audio that is not silent, why it is decoded, the text before it."""

    samples: npt.NDArray[np.float32]
    purpose: Purpose
    prompt: str | None
    margin_s: float | None  # padding beyond the clip in its encoder window; None: the full 30 s

    @property
    def rank(self) -> int:
        """Decode order: a segment's first text before finals, finals before later partials.

        A partial of at most ``FIRST_TEXT_MAX_S`` is a segment's first try (or a retry of it):
        the first words its listener sees, and the cheapest decode there is; a final waiting
        behind it loses a few tens of milliseconds, a first partial waiting behind a long final
        loses most of its latency budget."""
        if self.purpose == "final":
            return 1
        return 0 if len(self.samples) <= FIRST_TEXT_MAX_S * SAMPLE_RATE else 2


@dataclass(frozen=True, slots=True)
class Raw:
    """A clip's decode before the guards."""

    words: tuple[DecodedWord, ...]
    confidence: float | None
    decode_s: float  # from the batch's start to this clip's last window
    cpu_s: float  # this clip's share of the process CPU time the batch took
    window: int  # the first window's encoder frames (mel, 10 ms)


@dataclass(slots=True)
class _Clip:
    """A clip's progress through the rounds of a batch (faster-whisper's seek loop, one window per
    round)."""

    index: int  # in the batch
    clip: Clip
    features: npt.NDArray[np.float32]
    previous: list[int]
    seek: int = 0
    words: list[DecodedWord] = field(default_factory=list)
    windows: list[int] = field(default_factory=list)
    cpu_s: float = 0.0
    decode_s: float = 0.0
    done: bool = False
    prompt: list[int] = field(default_factory=list)  # the clip's own, for a decode again
    first_try: list[DecodedWord] | None = None  # the words of the cut window's decode

    @property
    def full_window(self) -> bool:
        """Decoding again in the full window."""
        return self.first_try is not None

    @property
    def content(self) -> int:
        return int(self.features.shape[-1]) - 1

    def next_size(self) -> int | None:
        """Mel frames of the next window's audio, or None when the clip is decoded."""
        if self.done or self.seek >= self.content or len(self.windows) >= MAX_WINDOWS:
            return None
        return min(FULL_WINDOW, self.content - self.seek)

    def take(self, decoded: list[DecodedWord], finished: bool, silence_dbfs: float) -> None:
        """A window's words: keep them, and decide whether the rest needs another window."""
        if self.words and _heard_already(self.words, decoded):
            self.done = True  # the rest was breath or noise, and Whisper repeated the window before
            return
        # a word at the seam may be heard by both windows
        drop = guards.boundary_overlap([w.text for w in self.words], [w.text for w in decoded])
        self.words += decoded[drop:]
        samples = self.clip.samples
        rest = samples[round(self.words[-1].end_s * SAMPLE_RATE) :] if decoded else samples[:0]
        short = len(rest) < SAMPLE_RATE * MIN_REST_S
        if finished or not decoded or short or guards.peak_frame_dbfs(rest) < silence_dbfs:
            self.done = True
        else:
            # Whisper stopped before the clip's end, leaving the rest to a next window, which is
            # not conditioned on the text before it (Whisper copies a prompt onto noise)
            self.seek, self.previous = round(self.words[-1].end_s * FRAMES_PER_S), []

    def decode_again(self) -> bool:
        """A final decoded in a cut window whose words hold a stretched one starts over in the
        full window (once)."""
        if self.clip.purpose != "final" or self.clip.margin_s is None or self.full_window:
            return False
        if _stretched_s(self.words) == 0:
            return False
        self.first_try, self.words, self.windows = self.words, [], []
        self.done = False
        self.seek, self.previous = 0, self.prompt
        return True

    def raw(self) -> Raw:
        words = self.words
        if self.first_try is not None and _stretched_s(self.first_try) < _stretched_s(words):
            words = self.first_try
        confidence = float(np.mean([w.probability for w in words])) if words else None
        window = self.windows[0] if self.windows else 0
        return Raw(tuple(words), confidence, self.decode_s, self.cpu_s, window)


@dataclass(slots=True)
class _Pass:
    """One window of one clip in a round."""

    state: _Clip
    size: int  # mel frames of audio in the window
    window: int  # mel frames the clip asks to encode
    prompt: list[int]
    options: TranscriptionOptions
    tokens: list[int] = field(default_factory=list)
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    words: list[DecodedWord] = field(default_factory=list)
    finished: bool = True

    @property
    def max_length(self) -> int:
        return len(self.prompt) + int(self.options.max_new_tokens)


Deliver = Callable[[int, "Raw | Exception"], None]
"""Receives the result of the clip of an index in the batch."""


class BatchDecoder:
    """Decodes lists of clips; one batch at a time per caller thread (the model is thread-safe)."""

    def __init__(
        self,
        model: WhisperModel,
        tokenizer: Tokenizer,
        options: dict[Purpose, TranscriptionOptions],
        silence_dbfs: float,
        group_slack: dict[Purpose, float] | None = None,
    ) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._options = options
        self._silence_dbfs = silence_dbfs
        self._group_slack = group_slack or GROUP_SLACK
        self._cpu = CpuLedger()  # one for every thread that decodes with it

    def decode(self, clips: Sequence[Clip], deliver: Deliver) -> None:
        """Delivers each clip's words (by its index), or the exception that failed it alone, as
        soon as it is decoded, in the order of ``Clip.rank``: a segment's first-text partials,
        then finals, then later partials (their windows rarely share a group with a final's)."""
        wall0 = time.perf_counter()
        for rank in sorted({clip.rank for clip in clips}):
            chosen = [i for i, clip in enumerate(clips) if clip.rank == rank]
            purpose = clips[chosen[0]].purpose
            states: list[_Clip] = []
            for i in chosen:
                try:
                    states.append(self._start(i, clips[i]))
                except Exception as exc:  # noqa: BLE001 - that clip fails, the batch goes on
                    deliver(i, exc)
            self._rounds(states, self._group_slack[purpose], wall0, deliver)

    def _rounds(self, states: list[_Clip], slack: float, wall0: float, deliver: Deliver) -> None:
        for state in states:
            if state.next_size() is None:  # less than a mel frame of audio
                deliver(state.index, state.raw())
        errors: dict[int, Exception] = {}
        while passes := self._round(states):
            for group in _groups(passes, slack):  # the shortest first: they are done soonest
                self._run_guarded(group, errors)
                self._finish(group, errors, wall0, deliver)

    def _finish(
        self, group: list[_Pass], errors: dict[int, Exception], wall0: float, deliver: Deliver
    ) -> None:
        """Each window's words to its clip; a clip with no window left is delivered now."""
        for p in group:
            state = p.state
            if state.index not in errors:
                try:
                    state.take(p.words, p.finished, self._silence_dbfs)
                except Exception as exc:  # noqa: BLE001
                    errors[state.index] = exc
            if state.index in errors:
                deliver(state.index, errors[state.index])
                state.done = True
            elif state.done or state.next_size() is None:
                if state.decode_again():
                    continue
                state.done = True
                state.decode_s = time.perf_counter() - wall0
                deliver(state.index, state.raw())

    def _start(self, index: int, clip: Clip) -> _Clip:
        cpu0 = self._cpu.start()
        features = self._model.feature_extractor(clip.samples)
        prompt = clip.prompt.strip() if clip.prompt else ""
        previous = self._tokenizer.encode(" " + prompt)[-PROMPT_TOKENS:] if prompt else []
        state = _Clip(index, clip, features, previous, prompt=previous)
        state.cpu_s = self._cpu.stop(cpu0)
        return state

    def _round(self, states: list[_Clip]) -> list[_Pass]:
        """The next window of every clip not yet decoded."""
        passes = []
        for state in states:
            size = state.next_size()
            if size is None:
                continue
            margin = state.clip.margin_s
            if margin is None or state.full_window:
                window = FULL_WINDOW
            else:
                window = encoder_window(size / FRAMES_PER_S, margin)
            state.windows.append(window)
            prompt = self._model.get_prompt(self._tokenizer, state.previous)
            purpose = state.clip.purpose
            cap = min(
                _max_tokens(purpose, size / FRAMES_PER_S), self._model.max_length - len(prompt)
            )
            options = replace(self._options[purpose], max_new_tokens=cap)
            passes.append(_Pass(state, size, window, prompt, options))
        return passes

    def _run_guarded(self, group: list[_Pass], errors: dict[int, Exception]) -> None:
        """A group, or when it fails, each of its windows alone: one window may be the cause."""
        try:
            self._run(group)
            return
        except Exception as exc:  # noqa: BLE001
            if len(group) == 1:
                errors[id(group[0].state)] = exc
                return
        for p in group:
            try:
                self._run([p])
            except Exception as exc:  # noqa: BLE001
                errors[id(p.state)] = exc

    def _run(self, group: list[_Pass]) -> None:
        """The windows encoded, one generate per prompt length, one align; words into each pass."""
        model = self._model
        window = max(p.window for p in group)
        for p in group:
            p.state.windows[-1] = window
        outputs = []
        for p in group:
            cpu0 = self._cpu.start()
            features = p.state.features[:, p.state.seek : p.state.seek + p.size]
            # one clip per encode: a batched encode measured 1.0-1.9x the CPU of lone ones
            output = model.encode(pad_or_trim(features, window))
            outputs.append(np.array(np.asarray(output)[0]))  # a copy: CTranslate2 owns output
            p.state.cpu_s += self._cpu.stop(cpu0)
        rows = np.stack(outputs)
        encoded = ctranslate2.StorageView.from_array(rows)
        by_prompt: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(group):
            by_prompt.setdefault((len(p.prompt), p.options.beam_size), []).append(i)
        for indices in by_prompt.values():
            self._generate([group[i] for i in indices], _select(encoded, rows, indices))
        for i, p in enumerate(group):
            self._restore(p, partial(_select, encoded, rows, [i]))
        spoken = [i for i, p in enumerate(group) if p.tokens]
        if spoken:
            self._align([group[i] for i in spoken], _select(encoded, rows, spoken))

    def _generate(self, passes: list[_Pass], encoded: Any) -> None:
        options = passes[0].options
        cpu0 = self._cpu.start()
        results = self._model.model.generate(
            encoded,
            [p.prompt for p in passes],
            beam_size=options.beam_size,
            patience=options.patience,
            length_penalty=options.length_penalty,
            repetition_penalty=options.repetition_penalty,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            max_length=max(p.max_length for p in passes),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=options.suppress_blank,
            suppress_tokens=options.suppress_tokens,
            max_initial_timestamp_index=_max_initial_timestamp_index(self._model, options),
        )
        for p, result in zip(passes, results, strict=True):
            p.tokens = list(result.sequences_ids[0])
            p.no_speech_prob = float(result.no_speech_prob)
            p.avg_logprob = _avg_logprob(result, options)
        _charge(passes, self._cpu.stop(cpu0), [len(p.tokens) + 1.0 for p in passes])

    def _restore(self, p: _Pass, encoded: Callable[[], Any]) -> None:
        """A lone decode where the batch could not give the clip its own cap or its fallback;
        then faster-whisper's no-speech rule."""
        cap_hit = len(p.tokens) > int(p.options.max_new_tokens)
        if cap_hit or (len(p.options.temperatures) > 1 and self._needs_fallback(p)):
            cpu0 = self._cpu.start()
            result, avg_logprob, _, _ = self._model.generate_with_fallback(
                encoded(), p.prompt, self._tokenizer, p.options
            )
            p.tokens = list(result.sequences_ids[0])
            p.no_speech_prob, p.avg_logprob = float(result.no_speech_prob), float(avg_logprob)
            p.state.cpu_s += self._cpu.stop(cpu0)
        text = [token for token in p.tokens if token < self._tokenizer.eot]
        if _no_speech(p.no_speech_prob, p.avg_logprob, p.options) or not text:
            p.tokens, p.finished = [], True

    def _needs_fallback(self, p: _Pass) -> bool:
        """faster-whisper's test for another temperature, on the greedy decode."""
        options = p.options
        text = self._tokenizer.decode(p.tokens).strip()
        threshold = options.compression_ratio_threshold
        needs = threshold is not None and get_compression_ratio(text) > threshold
        low = options.log_prob_threshold is not None and p.avg_logprob < options.log_prob_threshold
        silent = (
            options.no_speech_threshold is not None
            and p.no_speech_prob > options.no_speech_threshold
            and low
        )
        return (needs or low) and not silent

    def _align(self, passes: list[_Pass], encoded: Any) -> None:
        model, tokenizer = self._model, self._tokenizer
        cpu0 = self._cpu.start()
        texts = [[t for t in p.tokens if t < tokenizer.eot] for p in passes]
        alignments = model.model.align(
            encoded, tokenizer.sot_sequence, texts, [p.size for p in passes]
        )
        _charge(passes, self._cpu.stop(cpu0), [len(t) + 1.0 for t in texts])
        for p, alignment in zip(passes, alignments, strict=True):
            cpu0 = self._cpu.start()
            seek = p.state.seek
            segment: dict[str, Any] = {
                "seek": seek,
                "start": seek / FRAMES_PER_S,
                "end": (seek + p.size) / FRAMES_PER_S,
                "tokens": p.tokens,
            }
            WhisperModel.add_word_timestamps(
                _Aligned(model, alignment),
                [[segment]],
                tokenizer,
                None,
                p.size,
                p.options.prepend_punctuations,
                p.options.append_punctuations,
                last_speech_timestamp=seek / FRAMES_PER_S,
            )
            p.words = _words(segment.get("words", []))
            tokens = p.tokens
            p.finished = len(tokens) >= 2 and tokens[-2] < tokenizer.timestamp_begin <= tokens[-1]
            p.state.cpu_s += self._cpu.stop(cpu0)


class _Aligned:
    """Stands for the model in faster-whisper's word timing code, with CTranslate2's alignment of
    one window already computed in a batch: its post-processing stays faster-whisper's."""

    def __init__(self, model: WhisperModel, alignment: Any) -> None:
        self.frames_per_second = model.frames_per_second
        self.tokens_per_second = model.tokens_per_second
        self.model = SimpleNamespace(align=lambda *_args, **_kwargs: [alignment])

    def find_alignment(self, *args: Any, **kwargs: Any) -> Any:
        return WhisperModel.find_alignment(self, *args, **kwargs)


def _groups(passes: list[_Pass], slack: float) -> list[list[_Pass]]:
    """Windows sorted by size; a group grows while its largest window stays within the slack of
    its smallest, so padding stays small."""
    groups: list[list[_Pass]] = []
    for p in sorted(passes, key=lambda p: p.window):
        if groups and p.window <= groups[-1][0].window * (1 + slack):
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


def _select(encoded: Any, rows: npt.NDArray[np.float32], indices: list[int]) -> Any:
    """Rows of an encoder output (all of it when all are asked)."""
    if len(indices) == rows.shape[0]:
        return encoded
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(rows[indices]))


def _charge(passes: list[_Pass], cpu_s: float, weights: list[float]) -> None:
    total = sum(weights)
    for p, weight in zip(passes, weights, strict=True):
        p.state.cpu_s += cpu_s * weight / total


def _avg_logprob(result: Any, options: TranscriptionOptions) -> float:
    """faster-whisper's average log probability, recovered from the score."""
    seq_len = len(result.sequences_ids[0])
    return float(result.scores[0] * (seq_len**options.length_penalty) / (seq_len + 1))


def _max_initial_timestamp_index(model: WhisperModel, options: TranscriptionOptions) -> int:
    return int(round(options.max_initial_timestamp / model.time_precision))


def _max_tokens(purpose: Purpose, audio_s: float) -> int:
    """A cap on tokens per decoding pass, so a loop (and each fallback retrying it) ends early."""
    rate, extra = (PARTIAL_TOKENS_PER_S, 10) if purpose == "partial" else (FINAL_TOKENS_PER_S, 20)
    return min(MAX_SAMPLED_TOKENS, math.ceil(rate * audio_s) + extra)


def _stretched_s(words: Sequence[DecodedWord]) -> float:
    """Seconds by which the last ``STRETCHED_TAIL_WORDS`` words run over ``STRETCHED_WORD_S``."""
    tail = words[-STRETCHED_TAIL_WORDS:]
    return sum(max(0.0, w.end_s - w.start_s - STRETCHED_WORD_S) for w in tail)


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
