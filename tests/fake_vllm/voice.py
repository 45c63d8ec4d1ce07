"""Synthetic speech the fake server can recognise from the audio alone.

Word ``j`` of script utterance ``k`` is a tone burst: amplitude ``(k + 1) * LEVEL`` names the
utterance, frequency ``BASE_HZ + j * STEP_HZ`` the word; bursts are separated by silence. So the
fake transcribes any slice of the audio (a replay, a reconnect, a rollover) the same way, and
a test knows exactly which text belongs between which samples.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

RATE = 16_000
LEVEL = 2_000
MAX_UTTERANCES = 15
BASE_HZ = 250.0
STEP_HZ = 100.0
MAX_WORDS = 16
WORD_S = 0.32
GAP_S = 0.16
MIN_VOICED = 320  # 20 ms of a burst in a frame are enough to tell which word it is

Pcm = npt.NDArray[np.int16]


def speak(utterance: int, words: int) -> Pcm:
    """The audio of script utterance ``utterance`` with ``words`` words."""
    if not 0 <= utterance < MAX_UTTERANCES or not 0 < words <= MAX_WORDS:
        raise ValueError(f"utterance {utterance} / {words} words is out of the voice's range")
    t = np.arange(int(WORD_S * RATE)) / RATE
    gap = np.zeros(int(GAP_S * RATE), dtype=np.int16)
    parts: list[Pcm] = []
    for word in range(words):
        tone = (utterance + 1) * LEVEL * np.sin(2 * np.pi * (BASE_HZ + word * STEP_HZ) * t)
        parts += [np.round(tone).astype(np.int16), gap]
    return np.concatenate(parts[:-1])


def hear(frame: Pcm) -> tuple[int, int] | None:
    """(utterance, word) voiced in ``frame``, or None for silence."""
    voiced = np.flatnonzero(frame)
    if len(voiced) < MIN_VOICED:
        return None
    burst = frame[voiced[0] : voiced[-1] + 1].astype(np.int32)
    level = round(int(np.abs(burst).max()) / LEVEL)
    if level < 1:
        return None
    signs = np.signbit(burst)
    crossings = int(np.count_nonzero(signs[1:] != signs[:-1]))
    hz = crossings * RATE / (2 * len(burst))
    return level - 1, max(0, round((hz - BASE_HZ) / STEP_HZ))
