"""A scripted listener for real speech: the fake "hears" ``script[k]`` in the k-th voiced stretch.

The tone-burst voice (``voice.py``) names its words in the audio, which real recordings cannot do.
A test that gives the Voxtral fake the same real speech as the whisper worker uses this listener
instead: it finds voiced stretches by frame energy, as a VAD would, and when the k-th stretch of a
generation's audio begins it hears the words of ``script[k]``. The text still depends only on the
audio; but stretches are counted from the generation's first sample, so a restart in the middle
of a source (reconnect, rollover) numbers them anew — tests using it must not restart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RATE = 16_000

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True)
class ScriptedListener:
    """Hears ``script[k]`` at the start of the k-th voiced stretch of each generation."""

    script: Sequence[str]
    voiced_rms: float = 200.0
    """A frame at or above this RMS (PCM16 units) is voiced."""
    min_pause_s: float = 0.4
    """Silence at least this long ends a stretch; shorter dips (between words) do not."""

    def __post_init__(self) -> None:
        if self.voiced_rms <= 0 or self.min_pause_s <= 0:
            raise ValueError("voiced_rms and min_pause_s must be positive")

    def listen(self) -> Listening:
        """Fresh state for one generation."""
        return Listening(self)


class Listening:
    """One generation's ear: frames in order, words out when a new stretch begins."""

    def __init__(self, listener: ScriptedListener) -> None:
        self._listener = listener
        self._stretches = 0
        self._silent_samples = math.inf
        self._in_stretch = False

    def hear(self, frame: Pcm) -> list[str]:
        """The words that start in ``frame`` (the next consecutive frame of the generation)."""
        if not len(frame):
            return []
        rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
        if rms < self._listener.voiced_rms:
            self._silent_samples += len(frame)
            if self._silent_samples >= self._listener.min_pause_s * RATE:
                self._in_stretch = False
            return []
        self._silent_samples = 0
        if self._in_stretch:
            return []
        self._in_stretch = True
        stretch, self._stretches = self._stretches, self._stretches + 1
        script = self._listener.script
        return script[stretch].split() if stretch < len(script) else []
