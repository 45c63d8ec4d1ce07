"""Where a generation's tokens lie on the source's sample clock.

vLLM sends no timestamps. Voxtral emits one token per 80 ms (1280 samples) of the audio it was
given; token ``i`` of a generation transcribes generation samples ``[i * 1280, (i + 1) * 1280)``
and arrives once the server holds audio up to ``(i + 1) * 1280`` plus the model's delay. The
generation's audio is the source's audio from the generation's origin, except keep-alive
silence, which has no place on the source clock: tokens over it get an empty span.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

SAMPLES_PER_TOKEN = 1280


@dataclass(frozen=True, slots=True)
class _Run:
    gen_start: int
    src_start: int
    length: int


class Timeline:
    """Maps generation samples (what the server got) to source samples."""

    def __init__(self, origin: int) -> None:
        self.origin = origin
        self.sent = 0  # generation samples sent
        self.source_end = origin  # source samples sent
        self._runs: list[_Run] = []
        self._starts: list[int] = []

    def add_audio(self, src_start: int, length: int) -> None:
        last = self._runs[-1] if self._runs else None
        if (
            last
            and last.gen_start + last.length == self.sent
            and last.src_start + last.length == src_start
        ):
            self._runs[-1] = _Run(last.gen_start, last.src_start, last.length + length)
        else:
            self._runs.append(_Run(self.sent, src_start, length))
            self._starts.append(self.sent)
        self.sent += length
        self.source_end = src_start + length

    def add_silence(self, length: int) -> None:
        self.sent += length

    def source_at(self, gen_sample: int) -> int:
        index = bisect.bisect_right(self._starts, gen_sample) - 1
        if index < 0:
            return self.origin
        run = self._runs[index]
        return run.src_start + min(gen_sample - run.gen_start, run.length)

    def token_span(self, index: int) -> tuple[int, int]:
        """Source samples ``[start, end)`` that token ``index`` transcribes."""
        return (
            self.source_at(index * SAMPLES_PER_TOKEN),
            self.source_at((index + 1) * SAMPLES_PER_TOKEN),
        )

    def tokens_due(self, first_step: int) -> int:
        """Tokens the server owes for the audio it has (its first needs ``first_step`` samples)."""
        if self.sent < first_step:
            return 0
        return (self.sent - first_step) // SAMPLES_PER_TOKEN + 1
